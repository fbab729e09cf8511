/// Per-buffer-id bookkeeping a queue keeps in its own memory (never in guest memory): whether an id
/// is in flight, how many ring slots it occupies, how many bytes the device may write into it, and
/// the buffers pop translated for it.
/// Allocated once at configure; the queue caches the raw pointers so pop/push touch no ARC.
final class InFlightTable {
    /// 0 = not in flight; otherwise the chain's descriptor (slot) count.
    let slots: UnsafeMutablePointer<UInt16>
    let writable: UnsafeMutablePointer<UInt32>
    /// `chainCacheCapacity` translated buffers per id, written by pop; one extra set of entries
    /// after the last id is scratch space for a packed pop that does not know its id yet.
    let cache: UnsafeMutablePointer<CachedBuffer>
    let count: Int
    /// The queue's walk context (see `QueueContext`).
    let context: UnsafeMutablePointer<QueueContext>
    /// Packed queues: descriptor copies of resubmitted chains (16 × count bytes) and the walk
    /// context over them (see `PackedQueue.resubmit(descriptors:)`). Split queues resubmit from
    /// their own descriptor table and leave these empty.
    let resubmitRing: UnsafeMutableRawPointer
    let resubmitContext: UnsafeMutablePointer<QueueContext>
    /// Packed queues: copies of the ring descriptors of chains re-walked after pop (see
    /// `ChainSnapshots`). Split queues walk their driver-owned table and leave it at one entry.
    let snapshots: ChainSnapshots

    init(count: Int, context: QueueContext) {
        self.count = count
        self.context = .allocate(capacity: 1)
        self.context.initialize(to: context)
        let copies = context.layout == .packed ? count : 0
        resubmitRing = .allocate(byteCount: max(copies, 1) * 16, alignment: 16)
        resubmitRing.initializeMemory(as: UInt8.self, repeating: 0, count: max(copies, 1) * 16)
        resubmitContext = .allocate(capacity: 1)
        resubmitContext.initialize(
            to: QueueContext(
                regions: context.regions, ring: resubmitRing, queueSize: context.queueSize,
                layout: context.layout, indirectAllowed: context.indirectAllowed))
        snapshots = ChainSnapshots.allocate(capacity: max(copies, 1), ringContext: context)
        slots = .allocate(capacity: count)
        slots.initialize(repeating: 0, count: count)
        writable = .allocate(capacity: count)
        writable.initialize(repeating: 0, count: count)
        cache = .allocate(capacity: (count + 1) * chainCacheCapacity)
        cache.initialize(repeating: CachedBuffer(), count: (count + 1) * chainCacheCapacity)
    }

    func reset() {
        slots.update(repeating: 0, count: count)
    }

    deinit {
        slots.deallocate()
        writable.deallocate()
        cache.deallocate()
        context.deallocate()
        resubmitRing.deallocate()
        resubmitContext.deallocate()
        snapshots.deallocate()
    }
}
