import VhostUserProtocol
import VMMSysUtil
import Virtio

/// The framework's handle on one started queue, passed to the device's callbacks
/// (`process(_:)`, `queueStarted(_:)`, `handle(_:on:)`) on the queue's worker thread.
///
/// Completions are staged and published to the driver in one batch when the callback returns
/// (or earlier with `publish()`). A chain can also be kept past the callback with
/// `postpone(_:)` and completed later from any thread. In-flight chains are recorded in the
/// inflight buffer when the front-end set one (INFLIGHT_SHMFD), and chains a previous back-end
/// left in flight come out of `pop()` first, in their original order.
///
/// Non-copyable: a ring has one owner. Thread-safety: owned by the queue's worker thread; valid
/// only during the callback it was passed to.
public struct VhostUserQueue: ~Copyable {
    /// The ring index.
    public let index: Int
    /// The ring size (`SET_VRING_NUM`): at most this many chains can be in flight.
    public var size: Int { ring.size }
    /// The features the driver acked (`SET_FEATURES`).
    public let negotiatedFeatures: UInt64
    /// Whether the ring uses the packed layout (`VIRTIO_F_RING_PACKED` negotiated).
    public var isPacked: Bool { ring.isPacked }
    var ring: DeviceRing
    var inflight: InflightTracker
    /// Whether `inflight` records anything (fixed at start): without a region, pop and completion
    /// skip the record entirely instead of switching over an empty one per chain.
    let tracked: Bool
    /// Split heads to resubmit before popping new chains (inflight recovery), and how many were.
    var resubmit: [UInt16]
    var resubmitted = 0
    /// Packed chains to resubmit (from the inflight region's descriptor copies), and how many were.
    var packedResubmit: [InflightPackedQueue.Resubmission] = []
    var packedResubmitted = 0
    /// Heads completed since the last publication (inflight bookkeeping only).
    var batch: [UInt16]
    var staged = 0
    /// Chains popped so far (wrapping): tells the worker whether a callback took any.
    var popCount = 0
    /// An error `pop(into:)` met after popping some chains, thrown by its next call.
    var deferredPopError: VirtqueueError?
    /// Postponed chains refused after the quiesce timeout (split rings resubmit them when rebuilt).
    var abandoned: [UInt16] = []
    /// This generation's deferred completions.
    let completions: CompletionChannel
    /// The worker serving the queue, set for the duration of each callback. Not retained (the
    /// worker outlives its callbacks), so setting it per poll turn costs no atomic count.
    unowned(unsafe) var worker: QueueWorker?
    /// The ring's call notifier, set for the duration of each callback (for `publish()`). Not
    /// retained: the ring holds it, and replaces it only while its worker is parked.
    unowned(unsafe) var call: EventNotifier?
    /// Dirty logging while the front-end migrates the guest; nil otherwise (then completion and
    /// publication cost one branch more than without logging support).
    var log: QueueLog?

    init(
        index: Int, negotiatedFeatures: UInt64, ring: consuming DeviceRing, inflight: consuming InflightTracker,
        resubmit: [UInt16], packedResubmit: [InflightPackedQueue.Resubmission] = [], wakeup: WorkerWakeup
    ) {
        self.index = index
        self.negotiatedFeatures = negotiatedFeatures
        let size = ring.size
        self.ring = ring
        let tracked = !inflight.isNone
        self.tracked = tracked
        self.inflight = inflight
        self.resubmit = resubmit
        self.packedResubmit = packedResubmit
        // Reserved once, so appends on the data path never allocate.
        self.batch = []
        if tracked { batch.reserveCapacity(size) }
        completions = CompletionChannel(ringIndex: index, size: size, wakeup: wakeup)
    }

    /// The next available chain (validated by Virtio), or nil when the driver has made none
    /// available.
    ///
    /// - Throws: `VirtqueueError` for an invalid ring or chain: the framework then marks the
    ///   queue broken, stops serving it and signals the err fd if one was set.
    public mutating func pop() throws(VirtqueueError) -> Chain? {
        if resubmitted < resubmit.count || packedResubmitted < packedResubmit.count {
            return try popResubmission()
        }
        guard let chain = try ring.pop() else { return nil }
        if tracked { recordPop(chain) }
        popCount &+= 1
        return chain
    }

    /// Pops up to `chains.count` chains into `chains` (initialising its first elements); returns
    /// how many. For devices that pop a burst before using any chain: the ring writes each chain
    /// straight into `chains`, one call per burst (with an inflight region or resubmissions
    /// pending, chains are taken one at a time as by `pop()`).
    ///
    /// - Throws: only when no chain was popped, as `pop()`; an invalid chain after the first ends
    ///   the burst early and the next call throws.
    public mutating func pop(into chains: UnsafeMutableBufferPointer<Chain>) throws(VirtqueueError) -> Int {
        guard !tracked, deferredPopError == nil, resubmitted == resubmit.count,
            packedResubmitted == packedResubmit.count
        else { return try popOneByOne(into: chains) }
        let count = try ring.pop(into: chains)
        popCount &+= count
        return count
    }

    /// `pop(into:)` one chain at a time; an error after the first chain is kept for the next call.
    @inline(never)
    private mutating func popOneByOne(into chains: UnsafeMutableBufferPointer<Chain>) throws(VirtqueueError) -> Int {
        if let error = deferredPopError {
            deferredPopError = nil
            throw error
        }
        let (count, laterError) = try Virtio.popEach(into: chains) { () throws(VirtqueueError) in try pop() }
        deferredPopError = laterError
        return count
    }

    /// Records a popped chain in the inflight region (split: its head; packed: its descriptors).
    @inline(never)
    private mutating func recordPop(_ chain: Chain) {
        let descriptors: RingDescriptors? = ring.read({ _ in nil }, { $0.ringDescriptors(of: chain) })
        inflight.apply(
            otherwise: (), { $0.recordPop(chain.id) },
            { record in
                if let descriptors { record.recordPop(chain, descriptors: descriptors) }
            })
    }

    /// The next chain a previous back-end left in flight. Already recorded in flight (with its
    /// original order): not recorded again.
    private mutating func popResubmission() throws(VirtqueueError) -> Chain {
        popCount &+= 1
        if resubmitted < resubmit.count {
            let head = resubmit[resubmitted]
            resubmitted += 1
            return try ring.apply(
                { (ring) throws(VirtqueueError) in try ring.resubmit(head: head) },
                { (_) throws(VirtqueueError) in throw VirtqueueError.notInFlight(id: head) })
        }
        let copy = packedResubmit[packedResubmitted]
        packedResubmitted += 1
        return try ring.apply(
            { (_) throws(VirtqueueError) in throw VirtqueueError.notInFlight(id: copy.id) },
            { (ring) throws(VirtqueueError) in
                let result = copy.descriptors.withUnsafeBytes { bytes in
                    Result { () throws(VirtqueueError) in try ring.resubmit(descriptors: bytes) }
                }
                return try result.get()
            })
    }

    /// Completes a popped chain with `written` bytes in its writable part. The driver sees it when
    /// the current callback returns (or at `publish()`).
    ///
    /// - Throws: `VirtqueueError.notInFlight` / `.writtenExceedsWritable` (device bugs).
    public mutating func complete(_ chain: Chain, written: UInt32) throws(VirtqueueError) {
        try finish(chain, written: written)
    }

    /// Keeps a popped chain past the current callback: complete it later, from any thread, with
    /// the returned token's `complete(written:)`. Allocation-free.
    ///
    /// The chain counts as in flight until then; the ring's worker publishes the used entry (in
    /// a batch with others) once it is completed. A ring that stops, is reset, or gets a new
    /// memory table waits for deferred chains up to `VhostUserSessionOptions.completionTimeout`;
    /// chains still held then are refused (`CompletionError.ringStopped`) and stay recorded in
    /// the inflight region, if any, for resubmission.
    public mutating func postpone(_ chain: Chain) -> DeferredChain {
        DeferredChain(chain: chain, channel: completions, sequence: completions.track(chain))
    }

    /// Chains postponed and not yet completed (and drained by the worker).
    public var postponedCount: Int { completions.outstanding }

    /// THE used-entry funnel: every used entry, immediate (`complete`) or deferred (drained from
    /// the completion channel), split or packed, is written here, with the chain and the bytes the
    /// device wrote into its writable part. `flush()` then publishes the batch and the worker
    /// decides the call (`signalIfNeeded()`).
    ///
    /// While the front-end migrates the guest, the pages of those `written` bytes are marked in
    /// the dirty log here, before the entry is written: a device declares what it wrote and
    /// cannot forget to log it, whichever thread completed the chain.
    @inline(__always)
    mutating func finish(_ chain: Chain, written: UInt32) throws(VirtqueueError) {
        if let log { log.completed(chain, written: written) }
        try ring.stage(chain, written: written)
        let id = chain.id
        if tracked,
            inflight.apply(
                otherwise: false, { _ in true },
                {
                    $0.recordCompletion(id)
                    return false
                })
        {
            batch.append(id)
        }
        staged &+= 1
    }

    /// Stages every deferred completion queued so far (worker only); returns how many.
    mutating func drainCompletions() throws(VirtqueueError) -> Int {
        let channel = completions
        return try channel.drain { (chain, written) throws(VirtqueueError) in try finish(chain, written: written) }
    }

    /// True when the framework wants the callback to return: a ring is being stopped or
    /// reconfigured (`GET_VRING_BASE`, new memory table, `RESET_DEVICE`) or the front-end went
    /// away. The control thread waits for the callback to return before it answers, so a device
    /// that waits inside `process` (pacing, back-pressure) must check this at least every few
    /// milliseconds and then return without popping further chains (after completing or
    /// postponing the ones it popped). Chains left available are served after the worker resumes.
    /// Cost: one uncontended mutex.
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

    /// Publishes the completions made so far (staged with `complete`, and deferred ones completed
    /// meanwhile on any thread) and signals the driver if it wants to hear, without waiting for
    /// the callback to return. For devices that hold popped chains for a long time (a paced
    /// device): each completion reaches the driver as soon as it is made.
    ///
    /// - Throws: `VirtqueueError` as `complete` (a deferred completion that does not fit its chain).
    public mutating func publish() throws(VirtqueueError) {
        _ = try drainCompletions()
        flush()
        signalIfNeeded()
    }

    /// Watches `descriptor` (the device's own: a socket, a tap fd, an `EventNotifier`'s
    /// `waitDescriptor`, a timer) on this queue's worker: `VhostUserDevice.handle(_:on:)` is then
    /// called on this thread, with this queue, each time it is ready (level-triggered: consume
    /// the readiness or `unwatch` it). The framework only borrows the fd: keep it open until it
    /// is unwatched. Sources are removed when the ring stops, on `RESET_DEVICE` and on
    /// disconnect (before `VhostUserDevice.reset()`, so the device may close them there).
    ///
    /// - Parameters:
    ///   - descriptor: the device's descriptor to watch.
    ///   - interest: the readiness to report (default: readable).
    ///   - token: the device's name for the source, passed back in the event; unique per queue.
    /// - Throws: `VhostUserError.eventSource` if the poller refuses the fd or the token is in use.
    public mutating func watch(_ descriptor: Int32, interest: PollInterest = .readable, token: UInt64)
        throws(VhostUserError)
    {
        guard let worker else { throw .eventSource(index: index, "no worker (queue not being served)") }
        try worker.addSource(ring: index, descriptor: descriptor, interest: interest, token: token)
    }

    /// Stops watching the source registered with `token` on this queue (no-op if there is none).
    public mutating func unwatch(token: UInt64) {
        worker?.removeSource(ring: index, token: token)
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
        guard tracked || log != nil else {
            // Nothing to record around it: one release store of the used index.
            ring.publishUsed()
            staged = 0
            return
        }
        flushRecorded()
    }

    /// `flush()` with inflight records or dirty logging around the publication.
    @inline(never)
    private mutating func flushRecorded() {
        let first = ring.read({ $0.publishedUsedIndex }, { _ in 0 })
        let count = staged
        defer { log?.published(from: first, count: count) }
        // Moved out (not copied) so clearing it keeps its storage: no allocation per batch.
        var heads: [UInt16] = []
        swap(&heads, &batch)
        let usedAfter = ring.read({ _ in 0 }, { $0.nextUsedPosition })
        inflight.apply(otherwise: (), { $0.beginBatch(heads) }, { $0.beginCommit(usedAfter: usedAfter) })
        ring.publishUsed()
        let usedIndex = ring.read({ $0.publishedUsedIndex }, { _ in 0 })
        inflight.apply(otherwise: (), { $0.endBatch(heads, deviceUsedIndex: usedIndex) }, { $0.endCommit() })
        heads.removeAll(keepingCapacity: true)
        swap(&heads, &batch)
        staged = 0
    }

    /// Runs `body` on this queue where it lies: the worker reaches a ring's queue with
    /// `ring.queue?.inPlace { ... }` rather than moving the whole struct out of the ring and back
    /// (two copies of some 600 bytes per ring per poll round).
    @inline(__always)
    mutating func inPlace<R>(_ body: (inout VhostUserQueue) -> R) -> R { body(&self) }

    /// Resubmissions still pending (carried over when the ring is rebuilt for new memory).
    var pendingResubmissions: [UInt16] { Array(resubmit[resubmitted...]) }
    var pendingPackedResubmissions: [InflightPackedQueue.Resubmission] { Array(packedResubmit[packedResubmitted...]) }
}
