/// The guest's memory as this process sees it: an immutable, sorted table of mapped regions.
///
/// Translates guest-physical addresses (descriptor buffers) and front-end user addresses (vhost-user
/// ring addresses) to local pointers, always bounds-checked and overflow-checked. A buffer may run
/// across adjacent regions, in order; a gap refuses it. A new memory table is a new `GuestMemory`
/// (replaced wholesale), so a reader sees either the old or the new table, never a mix.
///
/// Thread-safety: immutable, `Sendable`. The bytes it maps are shared with the guest and may change
/// at any time: read them with the copy helpers (memcpy semantics) and validate the copies.
public final class GuestMemory: @unchecked Sendable {
    /// The regions, sorted by guest-physical address.
    public let regions: [GuestMemoryRegion]
    // Flat copy of `regions` for lookups without ARC or bounds-check traffic; freed in deinit.
    // @unchecked Sendable is sound: written only in init, read-only afterwards.
    private let entries: UnsafeMutablePointer<RegionEntry>

    var table: RegionTable { RegionTable(entries: entries, count: regions.count) }

    /// Validates and sorts `regions`.
    ///
    /// - Throws: `GuestMemoryError` if a region is empty, overflows 64 bits, is larger than its
    ///   mapping, or overlaps another region in guest-physical or front-end address space.
    public init(regions: [GuestMemoryRegion]) throws(GuestMemoryError) {
        var checked: [GuestMemoryRegion] = []
        for region in regions {
            guard region.size > 0 else { throw .emptyRegion(guestPhysicalAddress: region.guestPhysicalAddress) }
            guard !region.guestPhysicalAddress.addingReportingOverflow(region.size).overflow else {
                throw .regionOverflow(address: region.guestPhysicalAddress, size: region.size)
            }
            guard !region.userAddress.addingReportingOverflow(region.size).overflow else {
                throw .regionOverflow(address: region.userAddress, size: region.size)
            }
            guard region.size <= UInt64(region.mapping.size) else {
                throw .mappingTooSmall(
                    guestPhysicalAddress: region.guestPhysicalAddress, size: region.size,
                    mappingSize: region.mapping.size)
            }
            checked.append(region)
        }
        checked.sort { $0.guestPhysicalAddress < $1.guestPhysicalAddress }
        for (i, a) in checked.enumerated() {
            for b in checked[(i + 1)...] {
                // Sizes were checked not to overflow above.
                let gpaOverlap =
                    a.guestPhysicalAddress < b.guestPhysicalAddress + b.size
                    && b.guestPhysicalAddress < a.guestPhysicalAddress + a.size
                let uvaOverlap = a.userAddress < b.userAddress + b.size && b.userAddress < a.userAddress + a.size
                if gpaOverlap || uvaOverlap {
                    throw .overlappingRegions(first: a.guestPhysicalAddress, second: b.guestPhysicalAddress)
                }
            }
        }
        self.regions = checked
        entries = .allocate(capacity: max(1, checked.count))
        for (i, region) in checked.enumerated() {
            (entries + i).initialize(
                to: RegionEntry(
                    start: region.guestPhysicalAddress, end: region.guestPhysicalAddress + region.size,
                    userStart: region.userAddress, host: region.mapping.base))
        }
    }

    deinit {
        entries.deinitialize(count: regions.count)
        entries.deallocate()
    }

    /// Local pointer to `[address, address + length)` in guest-physical space, if the range lies
    /// inside a single region (ring structures must), else nil. `length` may be zero.
    public func pointer(guestPhysical address: UInt64, length: UInt64) -> UnsafeMutableRawPointer? {
        table.contiguous(address, length: max(length, 1))
    }

    /// Local pointer to `[address, address + length)` in the front-end's address space (vhost-user
    /// ring addresses), if the range lies inside a single region, else nil.
    public func pointer(userAddress address: UInt64, length: UInt64) -> UnsafeMutableRawPointer? {
        let span = max(length, 1)
        for i in 0..<regions.count {
            let entry = entries[i]
            let size = entry.end - entry.start
            guard address >= entry.userStart else { continue }
            let offset = address - entry.userStart
            guard offset < size, span <= size - offset else { continue }
            return entry.host + Int(offset)
        }
        return nil
    }

    /// The guest-physical address of front-end address `address`, if it is inside a region.
    public func guestPhysicalAddress(userAddress address: UInt64) -> UInt64? {
        for i in 0..<regions.count {
            let entry = entries[i]
            if address >= entry.userStart, address - entry.userStart < entry.end - entry.start {
                return entry.start + (address - entry.userStart)
            }
        }
        return nil
    }

    /// Whether every byte of `[address, address + length)` is guest memory (adjacent regions allowed).
    /// Zero-length ranges are reported as not contained.
    public func contains(guestPhysical address: UInt64, length: UInt64) -> Bool {
        table.contains(address, length: length)
    }
}
