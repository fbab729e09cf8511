/// The 12-byte header in front of every vhost-user message: `request`, `flags`, `size`, each a
/// native-endian `u32`, with the payload following at offset 12.
///
/// Parsing never fails except on a short buffer; `validate(_:)` applies the protocol's rules and
/// should run before the payload is read, so an oversized or malformed message is refused first.
/// Thread-safety: a value type; freely shareable.
public struct MessageHeader: Hashable, Sendable {
    /// Bytes in a header on the wire.
    public static let byteCount = 12

    /// The largest payload any accepted message has: `GET/SET_CONFIG` with 256 config bytes
    /// (12 + 256). `SET_MEM_TABLE` with 8 regions is 264. Per-request limits are tighter still.
    public static let maximumPayloadSize = PayloadShape.config.maximum

    /// The request code (front-end or back-end number space, depending on the channel).
    public var request: UInt32
    /// Version, REPLY and NEED_REPLY bits.
    public var flags: MessageFlags
    /// Payload length in bytes.
    public var size: UInt32

    /// Creates a header from its three fields, unvalidated.
    public init(request: UInt32, flags: MessageFlags, size: UInt32) {
        self.request = request
        self.flags = flags
        self.size = size
    }

    /// Parses the first 12 bytes of `bytes` (later bytes are ignored), unvalidated.
    ///
    /// - Throws: `ProtocolError.truncatedHeader` when fewer than 12 bytes are given.
    public init(decoding bytes: UnsafeRawBufferPointer) throws(ProtocolError) {
        guard bytes.count >= Self.byteCount else { throw .truncatedHeader(byteCount: bytes.count) }
        var reader = WireReader(bytes)
        request = reader.read()
        flags = MessageFlags(rawValue: reader.read())
        size = reader.read()
    }

    /// Appends the 12 header bytes to `buffer`.
    public func encode(into buffer: inout [UInt8]) {
        buffer.appendWire(request)
        buffer.appendWire(flags.rawValue)
        buffer.appendWire(size)
    }

    /// Whether the sender asked for a REPLY_ACK acknowledgement.
    public var needsReply: Bool { flags.contains(.needReply) }

    /// Checks the header against the rules for a message travelling in `direction`:
    /// version 1; no flag but REPLY and NEED_REPLY; REPLY clear on requests and flags exactly
    /// 0x5 on replies; a request code known in that direction's number space; and a size that fits
    /// the request's payload type (exact for fixed payloads, 8 + 32·n for memory tables, 12 + size
    /// for config space) or, for replies, at most the largest reply that request has.
    ///
    /// - Returns: the request code, typed for the direction's number space.
    /// - Throws: `ProtocolError` naming the rule the header broke.
    @discardableResult
    public func validate(_ direction: MessageDirection) throws(ProtocolError) -> AnyRequest {
        let raw = flags.rawValue
        guard raw & MessageFlags.versionMask == MessageFlags.version1.rawValue else {
            throw .unsupportedVersion(flags: raw)
        }
        guard raw & ~MessageFlags.knownMask == 0 else { throw .unknownFlags(flags: raw) }
        let typed: AnyRequest
        if direction.usesFrontendCodes {
            guard let code = FrontendRequest(rawValue: request) else {
                throw .unknownRequest(code: request, direction: direction)
            }
            typed = .frontend(code)
        } else {
            guard let code = BackendRequest(rawValue: request) else {
                throw .unknownRequest(code: request, direction: direction)
            }
            typed = .backend(code)
        }
        if direction.isReply {
            guard flags == MessageFlags.replyFlags else {
                throw .malformedReplyFlags(request: typed, flags: raw)
            }
            let limit: Int
            switch typed {
            case .frontend(let code): limit = code.replyLimit
            case .backend(let code): limit = code.replyLimit
            }
            guard size <= UInt32(limit) else { throw .payloadTooLarge(request: typed, size: size, limit: limit) }
        } else {
            guard !flags.contains(.reply) else { throw .replyFlagOnRequest(request: typed, flags: raw) }
            switch typed {
            case .frontend(let code): try code.requestShape.check(size: size, request: typed)
            case .backend(let code): try code.requestShape.check(size: size, request: typed)
            }
        }
        return typed
    }
}
