extension PackedQueue {
    /// Validates a chain of direct descriptors starting at `nextAvail` in one tight loop (the common
    /// case), with the same rules and error order as `DescriptorWalker`. Returns nil if any
    /// descriptor is INDIRECT: the caller then re-walks with the general walker.
    ///
    /// - Returns: the summary, the number of slots, and the buffer id (from the last descriptor).
    @inline(__always)
    func summarizeDirect(cache: UnsafeMutablePointer<CachedBuffer>) throws(VirtqueueError) -> (ChainSummary, UInt16, UInt16)? {
        var summary = ChainSummary()
        var slot = Int(nextAvail)
        var count: UInt16 = 0
        var id: UInt16 = 0
        var cacheable = true
        let table = regions
        while true {
            guard Int(count) < size else { throw .chainTooLong(limit: size) }
            // Safe: slot < size; the ring holds 16 × size bytes.
            let d = Descriptor(loading: ring + slot &* 16, packed: true)
            if d.isIndirect { return nil }
            count &+= 1
            id = d.next
            guard d.length != 0 else { throw .zeroLengthDescriptor }
            guard !d.address.addingReportingOverflow(UInt64(d.length)).overflow else {
                throw .addressOverflow(address: d.address, length: d.length)
            }
            let host = table.contiguous(d.address, length: UInt64(d.length))
            guard host != nil || table.contains(d.address, length: UInt64(d.length)) else {
                throw .bufferOutsideMemory(address: d.address, length: UInt64(d.length))
            }
            if d.isWritable {
                let (sum, overflow) = summary.writableLength.addingReportingOverflow(d.length)
                guard !overflow else { throw .chainLengthOverflow }
                summary.writableLength = sum
            } else {
                guard summary.writableLength == 0 else { throw .readableAfterWritable }
                let (sum, overflow) = summary.readableLength.addingReportingOverflow(d.length)
                guard !overflow else { throw .chainLengthOverflow }
                summary.readableLength = sum
            }
            if cacheable {
                if Int(count) <= chainCacheCapacity, let host {
                    // Safe: `cache` has chainCacheCapacity entries.
                    cache[Int(count) - 1] = CachedBuffer(pointer: host, length: d.length, isWritable: d.isWritable)
                } else {
                    cacheable = false
                }
            }
            guard d.hasNext else { break }
            slot = slot + 1 == size ? 0 : slot + 1
        }
        summary.cachedCount = cacheable ? Int8(count) : -1
        return (summary, count, id)
    }
}
