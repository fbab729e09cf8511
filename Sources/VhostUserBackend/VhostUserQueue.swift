import VhostUserProtocol
import VMMSysUtil
import Virtio

/// The framework's handle on one started queue, passed to `VhostUserDevice.process(_:)`.
///
/// Valid only during that call, on that thread. Completions are staged and published to the driver
/// in one batch when `process` returns (or earlier with `publish()`); in-flight chains are recorded in the inflight buffer when
/// the front-end set one (INFLIGHT_SHMFD), and chains a previous back-end left in flight come out of
/// `pop()` first, in their original order.
/// Thread-safety: not shared; owned by the queue's worker thread.
public struct VhostUserQueue {
    /// The ring index.
    public let index: Int
    /// The ring size (`SET_VRING_NUM`): at most this many chains can be in flight.
    public var size: Int { ring.size }
    /// The features the driver acked (`SET_FEATURES`).
    public let negotiatedFeatures: UInt64
    var ring: SplitQueue
    var inflight: InflightSplitQueue?
    /// Heads to resubmit before popping new chains (inflight recovery), and how many were.
    var resubmit: [UInt16]
    var resubmitted = 0
    /// Heads completed since the last publication (inflight bookkeeping only).
    var batch: [UInt16]
    var staged = 0
    /// The worker serving the queue, set for the duration of each serve (for `shouldYield`).
    var worker: QueueWorker?
    /// The ring's call notifier, set for the duration of each serve (for `publish()`).
    var call: EventNotifier?
    /// Dirty logging while the front-end migrates the guest; nil otherwise (then completion and
    /// publication cost one branch more than without logging support).
    var log: QueueLog?

    init(index: Int, negotiatedFeatures: UInt64, ring: SplitQueue, inflight: InflightSplitQueue?, resubmit: [UInt16]) {
        self.index = index
        self.negotiatedFeatures = negotiatedFeatures
        self.ring = ring
        self.inflight = inflight
        self.resubmit = resubmit
        // Reserved once, so appends on the data path never allocate.
        self.batch = []
        if inflight != nil { batch.reserveCapacity(ring.size) }
    }

    /// The next available chain (validated by Virtio), or nil when the driver has made none
    /// available.
    ///
    /// - Throws: `VirtqueueError` for an invalid ring or chain: the framework then marks the
    ///   queue broken, stops serving it and signals the err fd if one was set.
    public mutating func pop() throws(VirtqueueError) -> Chain? {
        if resubmitted < resubmit.count {
            let head = resubmit[resubmitted]
            resubmitted += 1
            // Already recorded in flight (with its original order); not recorded again.
            return try ring.resubmit(head: head)
        }
        guard let chain = try ring.pop() else { return nil }
        inflight?.recordPop(chain.id)
        return chain
    }

    /// Completes a popped chain with `written` bytes in its writable part. The driver sees it when
    /// the current `process` call returns.
    ///
    /// - Throws: `VirtqueueError.notInFlight` / `.writtenExceedsWritable` (device bugs).
    ///
    /// While the front-end migrates the guest, the pages of those `written` bytes are marked in
    /// the dirty log here: a device declares what it wrote and cannot forget to log it.
    public mutating func complete(_ chain: Chain, written: UInt32) throws(VirtqueueError) {
        if let log { log.completed(chain, written: written) }
        try ring.stage(chain, written: written)
        if inflight != nil { batch.append(chain.id) }
        staged += 1
    }

    /// True when the framework wants `process` to return: a ring is being stopped or reconfigured
    /// (`GET_VRING_BASE`, new memory table, `RESET_DEVICE`) or the front-end went away. The control
    /// thread waits for `process` to return before it answers, so a device that waits inside
    /// `process` (pacing, back-pressure) must check this at least every few milliseconds and then
    /// return without popping further chains (after completing the ones it popped). Chains left
    /// available are served after the worker resumes. Cost: one uncontended mutex.
    public var shouldYield: Bool { worker?.yieldRequested ?? false }

    /// Waits on this worker thread until `bucket` grants one request, re-checking `shouldYield`
    /// at least every `TokenBucket.maximumSleep`. Returns false, having taken nothing, when the
    /// framework wants `process` to return; true with one token taken (give it back with
    /// `TokenBucket.refund()` if `pop()` then finds no chain).
    public func acquire(_ bucket: TokenBucket) -> Bool {
        while true {
            if shouldYield { return false }
            let wait = bucket.tryTake()
            if wait == 0 { return true }
            TokenBucket.sleep(nanoseconds: min(wait, TokenBucket.maximumSleep))
        }
    }

    /// Publishes the completions staged so far and signals the driver if it wants to hear, without
    /// waiting for `process` to return. For devices that hold popped chains for a long time (a
    /// paced device): each completion reaches the driver as soon as it is made.
    public mutating func publish() {
        flush()
        signalIfNeeded()
    }

    mutating func signalIfNeeded() {
        if ring.needsNotification() {
            // A call fd whose reader is gone is the front-end's problem; nothing to do about it.
            try? call?.notify()
        }
    }

    /// Publishes the staged completions: inflight links, used index, inflight clear (in that order).
    mutating func flush() {
        guard staged > 0 else { return }
        let first = ring.publishedUsedIndex
        let count = staged
        defer { log?.published(from: first, count: count) }
        if let inflight {
            inflight.beginBatch(batch)
            ring.publishUsed()
            inflight.endBatch(batch, deviceUsedIndex: ring.publishedUsedIndex)
            batch.removeAll(keepingCapacity: true)
        } else {
            ring.publishUsed()
        }
        staged = 0
    }

    /// Resubmissions still pending (carried over when the ring is rebuilt for new memory).
    var pendingResubmissions: [UInt16] { Array(resubmit[resubmitted...]) }
}
