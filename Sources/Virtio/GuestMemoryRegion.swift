import VMMSysUtil

/// One region of guest memory: `size` bytes at guest-physical address `guestPhysicalAddress`, which
/// the front-end sees at `userAddress`, stored in its fd at `mmapOffset`, mapped here by `mapping`.
///
/// `mapping` must map exactly the region's bytes (map the fd with `offset: mmapOffset`); its `base`
/// is the host address of `guestPhysicalAddress`. Holding the region keeps the mapping alive.
///
/// Thread-safety: immutable and `Sendable`.
public struct GuestMemoryRegion: Sendable {
    /// First guest-physical address of the region.
    public let guestPhysicalAddress: UInt64
    /// Length in bytes (> 0).
    public let size: UInt64
    /// The front-end's (user-space) address of the first byte; only a lookup key, never dereferenced.
    public let userAddress: UInt64
    /// Offset of the region in the fd it came from (informative; `mapping` already applied it).
    public let mmapOffset: UInt64
    /// The local mapping of the region's bytes.
    public let mapping: MemoryMapping

    /// Describes a region. Nothing is validated here; `GuestMemory.init` validates the whole table.
    public init(
        guestPhysicalAddress: UInt64, size: UInt64, userAddress: UInt64, mmapOffset: UInt64 = 0,
        mapping: MemoryMapping
    ) {
        self.guestPhysicalAddress = guestPhysicalAddress
        self.size = size
        self.userAddress = userAddress
        self.mmapOffset = mmapOffset
        self.mapping = mapping
    }

    /// A region covering all of `mapping`, with the front-end address equal to the guest-physical one.
    public init(guestPhysicalAddress: UInt64, mapping: MemoryMapping) {
        self.init(
            guestPhysicalAddress: guestPhysicalAddress, size: UInt64(mapping.size),
            userAddress: guestPhysicalAddress, mapping: mapping)
    }
}
