extension SplitQueue {
    /// Validates a chain of direct descriptors from `head` in one tight loop (the common case); nil
    /// at the first INDIRECT descriptor. See `DescriptorWalker.summarizeDirect`.
    ///
    /// - Returns: the summary and the number of descriptors.
    @inlinable @inline(__always)
    func summarizeDirect(head: UInt16, cache: UnsafeMutablePointer<CachedBuffer>) throws(VirtqueueError) -> (
        ChainSummary, UInt16
    )? {
        guard
            let (summary, count, _) = try DescriptorWalker.summarizeDirect(
                ring: descriptors, first: head, layout: .split, queueSize: size, regions: regions, cache: cache)
        else { return nil }
        return (summary, count)
    }
}
