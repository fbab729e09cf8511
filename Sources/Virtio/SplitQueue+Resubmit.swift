extension SplitQueue {
    /// The device's used index (`used->idx` as of configure or `setNextAvailIndex(_:)`, plus what
    /// was published since). vhost-user inflight recovery compares it with its own record.
    public var publishedUsedIndex: UInt16 { usedIndex }

    /// Takes the chain whose head is `head` in flight again without consuming an available-ring
    /// entry: vhost-user inflight recovery resubmits requests a previous back-end popped but never
    /// completed. Call it after `setNextAvailIndex(_:)` (which forgets in-flight buffers).
    ///
    /// The chain is validated exactly as `pop()` validates, but a bad chain does not break the
    /// queue: the recovered head came from a record, not from the driver's ring.
    /// - Throws: `.descriptorIndexOutOfRange` if `head` is not below the queue size,
    ///   `.bufferInUse` if it is in flight already, or any chain validation error.
    public mutating func resubmit(head: UInt16) throws(VirtqueueError) -> Chain {
        if let brokenReason { throw brokenReason }
        guard Int(head) < size else { throw .descriptorIndexOutOfRange(index: head, limit: size) }
        guard slots[Int(head)] == 0 else { throw .bufferInUse(id: head) }
        // As in `popValidated`, without consuming an avail entry.
        let start = WalkStart(context: context, head: head)
        let cache = cacheBase + Int(head) &* chainCacheCapacity
        let summary: ChainSummary
        let count: UInt16
        if let direct = try summarizeDirect(head: head, cache: cache) {
            (summary, count) = direct
        } else {
            var walker = DescriptorWalker(start)
            summary = try walker.summarize(into: cache)
            count = walker.directCount
        }
        slots[Int(head)] = count
        inFlightCount &+= 1
        writable[Int(head)] = summary.writableLength
        return Chain(id: head, slots: count, summary: summary, start: start, cache: cache)
    }
}
