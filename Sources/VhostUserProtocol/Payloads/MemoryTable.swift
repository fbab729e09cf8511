/// The `SET_MEM_TABLE` payload: `nregions` u32, 4 bytes padding, then `nregions` regions of 32
/// bytes. The message size must be exactly 8 + 32·n and n at most 8; one fd per region follows,
/// in the same order.
///
/// Thread-safety: a value type; freely shareable.
public struct MemoryTable: WirePayload {
    /// Bytes before the first region.
    public static let headerSize = 8
    /// `VHOST_MEMORY_BASELINE_NREGIONS`: the most regions (and fds) one message carries.
    public static let maximumRegionCount = 8

    /// The regions, in wire (and fd) order.
    public var regions: [MemoryRegion]

    /// Creates the payload from its fields.
    public init(regions: [MemoryRegion]) {
        self.regions = regions
    }

    /// - Throws: `payloadTooSmall` under 8 bytes, `tooManyMemoryRegions` when n > 8,
    ///   `memoryRegionCountMismatch` when the size is not 8 + 32·n.
    public init(decoding bytes: UnsafeRawBufferPointer, for request: AnyRequest) throws(ProtocolError) {
        guard bytes.count >= Self.headerSize else {
            throw .payloadTooSmall(request: request, size: bytes.count, minimum: Self.headerSize)
        }
        var reader = WireReader(bytes)
        let count: UInt32 = reader.read()
        reader.skip(4)
        guard count <= UInt32(Self.maximumRegionCount) else {
            throw .tooManyMemoryRegions(request: request, count: count)
        }
        guard bytes.count == Self.headerSize + Int(count) * MemoryRegion.wireSize else {
            throw .memoryRegionCountMismatch(request: request, count: count, size: bytes.count)
        }
        var regions: [MemoryRegion] = []
        regions.reserveCapacity(Int(count))
        for _ in 0..<count {
            regions.append(MemoryRegion(reading: &reader))
        }
        self.regions = regions
    }

    public func encode(into buffer: inout [UInt8]) {
        buffer.appendWire(UInt32(truncatingIfNeeded: regions.count))
        buffer.appendPadding(4)
        for region in regions { region.encode(into: &buffer) }
    }

    public var encodedSize: Int { Self.headerSize + regions.count * MemoryRegion.wireSize }
}
