/// A typed vhost-user payload with its C layout (native endian, natural alignment, LP64).
///
/// Thread-safety: conforming types are value types; freely shareable.
public protocol WirePayload: Hashable, Sendable {
    /// Decodes the payload from exactly the payload bytes of a message of `request`.
    ///
    /// - Throws: `ProtocolError` when the byte count or a field breaks the layout's rules.
    init(decoding bytes: UnsafeRawBufferPointer, for request: AnyRequest) throws(ProtocolError)

    /// Appends the payload's wire bytes (padding as zeros) to `buffer`.
    func encode(into buffer: inout [UInt8])

    /// The number of bytes `encode(into:)` appends.
    var encodedSize: Int { get }
}

extension WirePayload {
    /// Throws `payloadSize` unless `bytes` holds exactly `expected` bytes; fixed-size payloads call
    /// it before reading.
    static func requireSize(_ bytes: UnsafeRawBufferPointer, _ expected: Int, _ request: AnyRequest)
        throws(ProtocolError)
    {
        try requirePayloadSize(bytes, expected, request)
    }
}

/// Throws `payloadSize` unless `bytes` holds exactly `expected` bytes.
func requirePayloadSize(_ bytes: UnsafeRawBufferPointer, _ expected: Int, _ request: AnyRequest)
    throws(ProtocolError)
{
    guard bytes.count == expected else {
        throw .payloadSize(request: request, size: bytes.count, expected: expected)
    }
}
