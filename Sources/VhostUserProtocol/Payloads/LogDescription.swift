/// The `SET_LOG_BASE` payload (16 bytes): the dirty-page bitmap's size and its offset in the fd.
///
/// Thread-safety: a value type; freely shareable.
public struct LogDescription: WirePayload {
    /// Bytes on the wire.
    public static let wireSize = 16

    /// `mmap_size`: bytes of bitmap (offset 0).
    public var size: UInt64
    /// `mmap_offset`: where the bitmap starts in the fd (offset 8).
    public var offset: UInt64

    /// Creates the payload from its fields.
    public init(size: UInt64, offset: UInt64) {
        self.size = size
        self.offset = offset
    }

    public init(decoding bytes: UnsafeRawBufferPointer, for request: AnyRequest) throws(ProtocolError) {
        try Self.requireSize(bytes, Self.wireSize, request)
        var reader = WireReader(bytes)
        size = reader.read()
        offset = reader.read()
    }

    public func encode(into buffer: inout [UInt8]) {
        buffer.appendWire(size)
        buffer.appendWire(offset)
    }

    public var encodedSize: Int { Self.wireSize }
}
