extension SplitQueue {
    /// What chains popped from this queue point into besides guest memory (their translated
    /// buffers and walk context). Holding it (and the `GuestMemory`) keeps such a chain readable
    /// after the queue itself is gone: vhost-user keeps both while a device may still hold a chain
    /// whose completion will be refused.
    public var chainStorage: AnyObject { inFlight }

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
        if let broken { throw broken }
        return try takeInFlight(head: head)
    }
}
