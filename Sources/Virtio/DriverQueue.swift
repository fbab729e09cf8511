/// What the two driver-side queues have in common (used by the loopback benchmark and tests).
public protocol DriverQueue: AnyObject {
    /// Posts a chain; see `DriverSplitQueue.post(_:indirectTable:)`.
    @discardableResult
    func post(_ buffers: UnsafeBufferPointer<DriverBuffer>, indirectTable: UInt64?) throws(DriverQueueError) -> UInt16
    /// Reaps one used buffer; see `DriverSplitQueue.reap()`.
    func reap() throws(DriverQueueError) -> UsedBuffer?
    /// Whether the device wants a kick; see `DriverSplitQueue.needsKick()`.
    func needsKick() -> Bool
    /// Free descriptors (split) or ring slots (packed) left.
    var freeDescriptors: Int { get }
    /// The memory the ring and buffers live in.
    var memory: GuestMemory { get }
}

extension DriverSplitQueue: DriverQueue {}
extension DriverPackedQueue: DriverQueue {}

extension DriverQueue {
    /// Array convenience for `post(_:indirectTable:)` (allocates; not for hot loops).
    @discardableResult
    public func post(_ buffers: [DriverBuffer], indirectTable: UInt64? = nil) throws(DriverQueueError) -> UInt16 {
        try buffers.withUnsafeBufferPointer { (b) throws(DriverQueueError) in try post(b, indirectTable: indirectTable)
        }
    }
}
