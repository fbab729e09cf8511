/// The `BACKEND_VRING_HOST_NOTIFIER_MSG` payload (24 bytes): which ring, and the range of the
/// accompanying fd to map as its notify area. No fd (bit 8) removes the notifier.
///
/// Thread-safety: a value type; freely shareable.
public struct VringArea: WirePayload {
    /// Bytes on the wire.
    public static let wireSize = 24

    /// Ring index and whether an fd accompanies the message (offset 0, a `u64`).
    public var file: VringFileIndex
    /// mmap length, normally one host page (offset 8).
    public var size: UInt64
    /// mmap offset in the fd (offset 16).
    public var offset: UInt64

    /// Creates the payload from its fields.
    public init(file: VringFileIndex, size: UInt64, offset: UInt64) {
        self.file = file
        self.size = size
        self.offset = offset
    }

    /// - Throws: `payloadSize`, or `reservedBits` when the first `u64` has bits above 8 set.
    public init(decoding bytes: UnsafeRawBufferPointer, for request: AnyRequest) throws(ProtocolError) {
        try Self.requireSize(bytes, Self.wireSize, request)
        var reader = WireReader(bytes)
        file = try VringFileIndex(value: reader.read(), for: request)
        size = reader.read()
        offset = reader.read()
    }

    public func encode(into buffer: inout [UInt8]) {
        buffer.appendWire(file.value)
        buffer.appendWire(size)
        buffer.appendWire(offset)
    }

    public var encodedSize: Int { Self.wireSize }
}
