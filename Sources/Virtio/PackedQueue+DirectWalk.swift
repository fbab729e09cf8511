extension PackedQueue {
    /// Validates a chain of direct descriptors starting at `nextAvail` in one tight loop (the common
    /// case); nil if any descriptor is INDIRECT. See `DescriptorWalker.summarizeDirect`.
    ///
    /// - Returns: the summary, the number of slots, and the buffer id (from the last descriptor).
    @inlinable @inline(__always)
    func summarizeDirect(cache: UnsafeMutablePointer<CachedBuffer>) throws(VirtqueueError) -> (
        ChainSummary, UInt16, UInt16
    )? {
        try DescriptorWalker.summarizeDirect(
            ring: ring, first: nextAvail, layout: .packed, queueSize: size, regions: regions, cache: cache)
    }
}
