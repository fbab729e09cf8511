import VhostUserProtocol
import Virtio
import VMMSysUtil

/// One region of guest memory a front-end shares: a `SharedMemory` block placed at a
/// guest-physical address. The back-end gets its fd (offset 0) and our mapping's address as the
/// region's user address.
///
/// Thread-safety: immutable; freely shareable.
public struct FrontendMemoryRegion: Sendable {
    /// The memory; it stays alive (and its fd open) as long as the region is used.
    public let memory: SharedMemory
    /// Where the region starts in guest-physical space.
    public let guestPhysicalAddress: UInt64

    public init(_ memory: SharedMemory, guestPhysicalAddress: UInt64 = 0) {
        self.memory = memory
        self.guestPhysicalAddress = guestPhysicalAddress
    }

    /// Our address of the first byte: the region's `userspace_addr` on the wire.
    var userAddress: UInt64 { UInt64(UInt(bitPattern: memory.mapping.base)) }

    var wireRegion: MemoryRegion {
        MemoryRegion(
            guestPhysicalAddress: guestPhysicalAddress, size: UInt64(memory.size),
            userAddress: userAddress, mmapOffset: 0)
    }

    var guestRegion: GuestMemoryRegion {
        GuestMemoryRegion(
            guestPhysicalAddress: guestPhysicalAddress, size: UInt64(memory.size),
            userAddress: userAddress, mmapOffset: 0, mapping: memory.mapping)
    }
}

extension VhostUserFrontend {
    /// Shares `regions` as the guest's memory, replacing any earlier table.
    ///
    /// With CONFIGURE_MEM_SLOTS negotiated the old regions are removed (`REM_MEM_REG`) and each new
    /// one is added with `ADD_MEM_REG` (at most `memorySlots`); otherwise one `SET_MEM_TABLE`
    /// carries them all (at most 8). With REPLY_ACK each request is acknowledged.
    ///
    /// - Returns: the table, also in `guestMemory`; post buffers with its guest-physical addresses.
    /// - Throws: `.negotiationState` before `negotiate`, `.noGuestMemory` for an empty list,
    ///   `.tooManyRegions`, `.guestMemory` for an overlap, or a transport/ack error.
    @discardableResult
    public func setMemory(_ regions: [FrontendMemoryRegion]) throws(FrontendError) -> GuestMemory {
        let negotiated = try requireNegotiated()
        guard !regions.isEmpty else { throw .noGuestMemory }
        let memory: GuestMemory
        do {
            memory = try GuestMemory(regions: regions.map(\.guestRegion))
        } catch { throw .guestMemory(error) }
        try share(regions, negotiated: negotiated)
        guestMemory = memory
        return memory
    }

    /// Sends `regions` to the back-end (removing the ones it has, if they were added one by one).
    func share(_ regions: [FrontendMemoryRegion], negotiated: NegotiatedFeatures) throws(FrontendError) {
        if negotiated.protocolFeatures.contains(.configureMemorySlots) {
            let limit = min(negotiated.memorySlots ?? 0, 512)
            guard regions.count <= limit else { throw .tooManyRegions(count: regions.count, limit: limit) }
            if memoryAddedBySlots {
                for old in memoryRegions {
                    try sendAcknowledged(.remMemReg(SingleMemoryRegion(region: old.wireRegion)))
                }
            }
            memoryRegions = []
            for region in regions {
                try sendAcknowledged(
                    .addMemReg(SingleMemoryRegion(region: region.wireRegion)),
                    fds: [region.memory.descriptor])
                memoryRegions.append(region)
            }
            memoryAddedBySlots = true
        } else {
            guard regions.count <= MemoryTable.maximumRegionCount else {
                throw .tooManyRegions(count: regions.count, limit: MemoryTable.maximumRegionCount)
            }
            try sendAcknowledged(
                .setMemTable(MemoryTable(regions: regions.map(\.wireRegion))),
                fds: regions.map(\.memory.descriptor))
            memoryRegions = regions
            memoryAddedBySlots = false
        }
    }

    /// Our (user) address of guest-physical `address`, as `SET_VRING_ADDR` carries it.
    func userAddress(ofGuestPhysical address: UInt64, length: UInt64) throws(FrontendError) -> UInt64 {
        guard let pointer = guestMemory?.pointer(guestPhysical: address, length: length) else {
            throw .driverQueue(.outsideMemory(address: address))
        }
        return UInt64(UInt(bitPattern: pointer))
    }
}
