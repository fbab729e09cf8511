/// The `ADD_MEM_REG` / `REM_MEM_REG` payload (40 bytes): 8 bytes of padding, then one region.
///
/// Thread-safety: a value type; freely shareable.
public struct SingleMemoryRegion: WirePayload {
    /// Bytes on the wire.
    public static let wireSize = 40

    /// The region (offset 8).
    public var region: MemoryRegion

    /// Creates the payload from its fields.
    public init(region: MemoryRegion) {
        self.region = region
    }

    public init(decoding bytes: UnsafeRawBufferPointer, for request: AnyRequest) throws(ProtocolError) {
        try Self.requireSize(bytes, Self.wireSize, request)
        var reader = WireReader(bytes)
        reader.skip(8)
        region = MemoryRegion(reading: &reader)
    }

    public func encode(into buffer: inout [UInt8]) {
        buffer.appendPadding(8)
        region.encode(into: &buffer)
    }

    public var encodedSize: Int { Self.wireSize }
}
