extension SplitQueue {
    /// Validates a chain of direct descriptors in one tight loop (the common case), with the same
    /// rules and error order as `DescriptorWalker`. Returns nil at the first INDIRECT descriptor:
    /// the caller then re-walks from the head with the general walker.
    ///
    /// - Returns: the summary and the number of descriptors.
    @inline(__always)
    func summarizeDirect(head: UInt16, cache: UnsafeMutablePointer<CachedBuffer>) throws(VirtqueueError) -> (ChainSummary, UInt16)? {
        var summary = ChainSummary()
        var index = head
        var count: UInt16 = 0
        var cacheable = true
        let table = regions
        while true {
            guard Int(count) < size else { throw .chainTooLong(limit: size) }
            // Safe: index < size (head checked by the caller, links below); the table holds 16 × size bytes.
            let d = Descriptor(loading: descriptors + Int(index) &* 16, packed: false)
            if d.isIndirect { return nil }
            count &+= 1
            if d.hasNext {
                guard Int(d.next) < size else { throw .descriptorIndexOutOfRange(index: d.next, limit: size) }
            }
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
                    // Safe: `cache` has chainCacheCapacity entries for this head.
                    cache[Int(count) - 1] = CachedBuffer(pointer: host, length: d.length, isWritable: d.isWritable)
                } else {
                    cacheable = false
                }
            }
            guard d.hasNext else { break }
            index = d.next
        }
        summary.cachedCount = cacheable ? Int8(count) : -1
        return (summary, count)
    }
}
