/// One guest memory region (32 bytes): `[guestPhysicalAddress, +size)` in the guest, the same bytes
/// at `[userAddress, +size)` in the front-end, stored in the passed fd from `mmapOffset`.
///
/// The 40-byte PF_XEN_MMAP form is not supported (that feature must not be offered).
/// Thread-safety: a value type; freely shareable.
public struct MemoryRegion: WirePayload {
    /// Bytes on the wire.
    public static let wireSize = 32

    /// `guest_phys_addr` (offset 0).
    public var guestPhysicalAddress: UInt64
    /// `memory_size` (offset 8).
    public var size: UInt64
    /// `userspace_addr`: the front-end's address of the region start; only a lookup key (offset 16).
    public var userAddress: UInt64
    /// `mmap_offset`: where the region starts in the fd (offset 24).
    public var mmapOffset: UInt64

    /// Creates the payload from its fields.
    public init(guestPhysicalAddress: UInt64, size: UInt64, userAddress: UInt64, mmapOffset: UInt64) {
        self.guestPhysicalAddress = guestPhysicalAddress
        self.size = size
        self.userAddress = userAddress
        self.mmapOffset = mmapOffset
    }

    public init(decoding bytes: UnsafeRawBufferPointer, for request: AnyRequest) throws(ProtocolError) {
        try Self.requireSize(bytes, Self.wireSize, request)
        var reader = WireReader(bytes)
        self.init(reading: &reader)
    }

    init(reading reader: inout WireReader) {
        guestPhysicalAddress = reader.read()
        size = reader.read()
        userAddress = reader.read()
        mmapOffset = reader.read()
    }

    public func encode(into buffer: inout [UInt8]) {
        buffer.appendWire(guestPhysicalAddress)
        buffer.appendWire(size)
        buffer.appendWire(userAddress)
        buffer.appendWire(mmapOffset)
    }

    public var encodedSize: Int { Self.wireSize }
}
