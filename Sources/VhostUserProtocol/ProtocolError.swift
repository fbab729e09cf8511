/// Why a vhost-user message from the peer was refused.
///
/// Every case says what the peer sent and which rule it broke; `description` renders it for logs,
/// e.g. "SET_VRING_NUM: payload size 4, expected 8". Receiving any of these means the peer does
/// not speak the protocol as we do: the connection should be dropped.
/// Thread-safety: a value type; freely shareable.
public enum ProtocolError: Error, Hashable, Sendable, CustomStringConvertible {
    /// Fewer than 12 bytes where a header was expected.
    case truncatedHeader(byteCount: Int)
    /// The version bits (0-1) of `flags` are not 1.
    case unsupportedVersion(flags: UInt32)
    /// `flags` has bits set besides version, REPLY (0x4) and NEED_REPLY (0x8).
    case unknownFlags(flags: UInt32)
    /// A request carried the REPLY flag.
    case replyFlagOnRequest(request: AnyRequest, flags: UInt32)
    /// A reply's flags were not exactly REPLY | version 1 (0x5).
    case malformedReplyFlags(request: AnyRequest, flags: UInt32)
    /// The request number is not defined in this direction's number space.
    case unknownRequest(code: UInt32, direction: MessageDirection)
    /// A defined request this codec does not implement (`CREATE_CRYPTO_SESSION`).
    case unsupportedRequest(AnyRequest)
    /// The header's size exceeds the largest payload this request (or its reply) has.
    case payloadTooLarge(request: AnyRequest, size: UInt32, limit: Int)
    /// A fixed-size payload had the wrong size.
    case payloadSize(request: AnyRequest, size: Int, expected: Int)
    /// A variable-size payload was shorter than its fixed part.
    case payloadTooSmall(request: AnyRequest, size: Int, minimum: Int)
    /// The payload bytes handed to the decoder differ in number from the header's size.
    case payloadLengthMismatch(request: AnyRequest, headerSize: UInt32, received: Int)
    /// A memory table's size is not 8 + 32·n.
    case memoryTableSize(request: AnyRequest, size: Int)
    /// A memory table names more regions than the 8 the protocol allows.
    case tooManyMemoryRegions(request: AnyRequest, count: UInt32)
    /// A memory table's region count disagrees with its size.
    case memoryRegionCountMismatch(request: AnyRequest, count: UInt32, size: Int)
    /// A config payload's size field disagrees with the message size (or exceeds 256).
    case configSizeMismatch(request: AnyRequest, configSize: UInt32, payloadSize: Int)
    /// A field had bits set that the protocol reserves (e.g. above bit 8 of a vring fd index).
    case reservedBits(request: AnyRequest, value: UInt64)
    /// More fds arrived than the request carries; all of them were closed.
    case unexpectedDescriptors(request: AnyRequest, expected: Int, received: Int)
    /// Fewer fds arrived than the request carries; those that did were closed.
    case missingDescriptors(request: AnyRequest, expected: Int, received: Int)
    /// A reply answered a different request than the one awaited.
    case replyMismatch(expected: AnyRequest, received: UInt32)

    public var description: String {
        switch self {
        case .truncatedHeader(let count):
            "header truncated: \(count) bytes, expected \(MessageHeader.byteCount)"
        case .unsupportedVersion(let flags):
            "flags \(hex(flags)): version \(flags & MessageFlags.versionMask), expected 1"
        case .unknownFlags(let flags):
            "flags \(hex(flags)): undefined bits \(hex(flags & ~MessageFlags.knownMask))"
        case .replyFlagOnRequest(let request, let flags):
            "\(request): flags \(hex(flags)) mark a reply, but a request was expected"
        case .malformedReplyFlags(let request, let flags):
            "\(request) reply: flags \(hex(flags)), expected 0x5 (REPLY | version 1)"
        case .unknownRequest(let code, let direction):
            "unknown request \(code) for a \(direction)"
        case .unsupportedRequest(let request):
            "\(request): not supported"
        case .payloadTooLarge(let request, let size, let limit):
            "\(request): payload size \(size), at most \(limit) allowed"
        case .payloadSize(let request, let size, let expected):
            "\(request): payload size \(size), expected \(expected)"
        case .payloadTooSmall(let request, let size, let minimum):
            "\(request): payload size \(size), at least \(minimum) required"
        case .payloadLengthMismatch(let request, let headerSize, let received):
            "\(request): header announces \(headerSize) payload bytes, \(received) given"
        case .memoryTableSize(let request, let size):
            "\(request): payload size \(size) is not 8 + 32 per region"
        case .tooManyMemoryRegions(let request, let count):
            "\(request): \(count) memory regions, at most \(MemoryTable.maximumRegionCount) allowed"
        case .memoryRegionCountMismatch(let request, let count, let size):
            "\(request): \(count) memory regions need payload size \(8 + 32 * UInt64(count)), got \(size)"
        case .configSizeMismatch(let request, let configSize, let payloadSize):
            "\(request): config size \(configSize) with payload size \(payloadSize), expected 12 + size ≤ 268"
        case .reservedBits(let request, let value):
            "\(request): reserved bits set in \(hex(value))"
        case .unexpectedDescriptors(let request, let expected, let received):
            "\(request): \(received) fds received, expected \(expected) (all closed)"
        case .missingDescriptors(let request, let expected, let received):
            "\(request): \(received) fds received, expected \(expected) (all closed)"
        case .replyMismatch(let expected, let received):
            "reply to request \(received) while awaiting the reply to \(expected)"
        }
    }
}

private func hex(_ value: some BinaryInteger) -> String {
    "0x" + String(value, radix: 16)
}
