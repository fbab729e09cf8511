/// The shared-object payload (16 bytes): a UUID, kept as the 16 wire bytes (its first three
/// components are big-endian there, so the bytes are the canonical UUID byte order).
///
/// Thread-safety: a value type; freely shareable.
public struct SharedObject: WirePayload {
    /// Bytes on the wire.
    public static let wireSize = 16

    /// The high 8 UUID bytes, in memory order.
    private var high: UInt64
    /// The low 8 UUID bytes, in memory order.
    private var low: UInt64

    /// Creates the payload from exactly 16 UUID bytes; nil for any other count.
    public init?(uuid: some Collection<UInt8>) {
        guard uuid.count == Self.wireSize else { return nil }
        let bytes = Array(uuid)
        let halves = bytes.withUnsafeBytes { raw in
            var reader = WireReader(raw)
            return (reader.read(UInt64.self), reader.read(UInt64.self))
        }
        high = halves.0
        low = halves.1
    }

    public init(decoding bytes: UnsafeRawBufferPointer, for request: AnyRequest) throws(ProtocolError) {
        try Self.requireSize(bytes, Self.wireSize, request)
        var reader = WireReader(bytes)
        high = reader.read()
        low = reader.read()
    }

    /// The 16 UUID bytes as on the wire.
    public var uuid: [UInt8] {
        var bytes: [UInt8] = []
        encode(into: &bytes)
        return bytes
    }

    public func encode(into buffer: inout [UInt8]) {
        buffer.appendWire(high)
        buffer.appendWire(low)
    }

    public var encodedSize: Int { Self.wireSize }
}
