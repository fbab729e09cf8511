/// One validated region in the flat lookup table: `[start, end)` maps to `host`.
/// `end` is computed once with an overflow check, so lookups never do unchecked arithmetic.
@usableFromInline
struct RegionEntry {
    @usableFromInline var start: UInt64
    @usableFromInline var end: UInt64
    @usableFromInline var userStart: UInt64
    @usableFromInline var host: UnsafeMutableRawPointer
}

/// A borrowed view of `GuestMemory`'s sorted region table: two words, trivially copyable, no ARC.
///
/// Valid only while the `GuestMemory` it came from is alive (queues hold it strongly).
@usableFromInline
struct RegionTable {
    @usableFromInline let entries: UnsafePointer<RegionEntry>
    @usableFromInline let count: Int

    /// The region containing guest-physical `address`, by binary search over the sorted table.
    @inlinable @inline(__always)
    func index(containing address: UInt64) -> Int? {
        // Fast path: most guests have one region or hit the first one.
        if count > 0, address >= entries[0].start, address < entries[0].end { return 0 }
        var low = 0
        var high = count
        while low < high {
            let mid = (low + high) >> 1
            if entries[mid].end <= address { low = mid + 1 } else { high = mid }
        }
        guard low < count, entries[low].start <= address else { return nil }
        return low
    }

    /// Host pointer for `address` and how many bytes (at most `length`) are contiguous there.
    @inlinable @inline(__always)
    func piece(at address: UInt64, length: UInt64) -> (pointer: UnsafeMutableRawPointer, length: UInt64)? {
        guard let i = index(containing: address) else { return nil }
        let entry = entries[i]
        let offset = address &- entry.start  // < end - start: checked by index(containing:)
        let available = entry.end &- address  // > 0 for the same reason
        return (entry.host + Int(offset), min(length, available))
    }

    /// Whether `[address, address + length)` is backed by memory, possibly across adjacent regions.
    /// A zero length is never "inside" (callers reject empty buffers separately).
    @inlinable @inline(__always)
    func contains(_ address: UInt64, length: UInt64) -> Bool {
        guard length > 0 else { return false }
        let (last, overflow) = address.addingReportingOverflow(length - 1)
        guard !overflow, var i = index(containing: address) else { return false }
        // Regions are sorted and non-overlapping; the range continues only into an adjacent one.
        while entries[i].end <= last {
            let next = i + 1
            guard next < count, entries[next].start == entries[i].end else { return false }
            i = next
        }
        return true
    }

    /// Host pointer for a range that lies inside one region, or nil.
    @inlinable @inline(__always)
    func contiguous(_ address: UInt64, length: UInt64) -> UnsafeMutableRawPointer? {
        guard let piece = piece(at: address, length: length), piece.length == length else { return nil }
        return piece.pointer
    }

    /// The guest-physical address of host pointer `pointer`, if it lies inside a mapped region
    /// (the inverse of `piece(at:length:)`, for dirty logging of buffers pop translated).
    @inline(__always)
    func guestPhysical(host pointer: UnsafeRawPointer) -> UInt64? {
        for i in 0..<count {
            let entry = entries[i]
            let size = entry.end &- entry.start
            guard pointer >= UnsafeRawPointer(entry.host) else { continue }
            let offset = UInt64(UnsafeRawPointer(entry.host).distance(to: pointer))
            if offset < size { return entry.start &+ offset }
        }
        return nil
    }
}
