import Logging
import VhostUserProtocol
import VhostUserBackend
import VhostUserDaemon
import Virtio
import VirtioBlock
import VMMSysUtil

/// virtio-blk (device ID 2) over vhost-user: a raw image served by one `BlockRequestProcessor`
/// per request queue, each used only by that queue's worker thread.
///
/// With an asynchronous engine (`--aio`), a queue keeps up to its size in requests in flight:
/// `process` pops every available chain, submits reads, writes and flushes (each at once, as it
/// is popped) and postpones their chains; the engine's completion descriptor is an event
/// source of the queue's worker, and `handle` reaps what finished, completes the postponed
/// chains and publishes them in chunks, starting the chains the driver posted meanwhile between
/// chunks. Everything else completes at once.
///
/// Thread-safety: `Sendable` per the `VhostUserDevice` contract: a queue's processor and postponed
/// chains are touched by `process`, `queueStarted` and `handle` only for their own queue, on its
/// worker (one callback per queue at a time), and by `featuresNegotiated` / `reset` only while no
/// worker is inside a callback. Requests still in flight at a reset finish on their own; their
/// completions are refused (the ring stopped) and their slots return to the processor.
final class BlockDevice: VhostUserDaemonDevice, @unchecked Sendable {
    static let virtioDeviceType = VirtioDeviceType.block
    let deviceFeatures: VirtioFeatures
    /// QEMU's vhost-user-blk front-end refuses a back-end without GET_CONFIG.
    var requiredProtocolFeatures: ProtocolFeatures { .config }
    let queueCount: Int
    let maxQueueSize: Int
    let configSize = BlockConfiguration.size
    let configuration: BlockConfiguration
    let file: BlockBackingFile
    // @unchecked Sendable is sound: see the type's thread-safety note.
    private let processors: [BlockRequestProcessor]
    /// Per queue, the postponed chain of each processor slot in flight (asynchronous engine only).
    private let inFlight: [InFlightChains]
    /// The engine the processors submit to, if any (`--aio`).
    let engine: AsyncFileEngine?
    /// Per queue, the chains a paced `process` call holds (capacity kept: no allocation per call);
    /// each used only by its queue's worker.
    private let heldChains: [HeldChains]
    /// `--iops-limit`: one bucket shared by every queue (the limit is the device's).
    let limiter: TokenBucket?
    /// The front-end's back-end channel, for config-change messages (capacity grew).
    let channel = BackendChannelSlot()

    /// A device serving `file` on `queueCount` queues of at most `queueSize` descriptors, at most
    /// `iopsLimit` requests per second in total when given, through `engine` when given (paced or
    /// not: a paced queue keeps the requests it was granted tokens for in flight in the engine).
    ///
    /// - Throws: `AsyncFileEngineError` if a queue of the engine cannot be created.
    init(
        file: BlockBackingFile, queueCount: Int, queueSize: Int, iopsLimit: Int? = nil,
        engine: AsyncFileEngine? = nil
    ) throws(AsyncFileEngineError) {
        self.file = file
        limiter = iopsLimit.map { TokenBucket(rate: UInt64($0)) }
        self.queueCount = queueCount
        maxQueueSize = queueSize
        // Header and status take two descriptors of a chain that is not indirect.
        let segmentMax = UInt32(max(1, min(126, queueSize - 2)))
        let configuration = BlockConfiguration(
            capacity: file.capacity, blockSize: file.logicalBlockSize,
            queueCount: UInt16(queueCount), segmentMax: segmentMax)
        self.configuration = configuration
        // Packed rings are served by the framework (and tracked in the inflight region).
        deviceFeatures = VirtioFeatures(rawValue: configuration.features(readOnly: file.isReadOnly)).union(.ringPacked)
        self.engine = engine
        var processors: [BlockRequestProcessor] = []
        for _ in 0..<queueCount {
            // Room beyond one operation per chain: a DISCARD / WRITE_ZEROES takes one per range.
            let io = try engine?.makeQueue(capacity: 2 * queueSize)
            processors.append(
                BlockRequestProcessor(file: file, configuration: configuration, io: io, slotCount: queueSize))
        }
        self.processors = processors
        inFlight = processors.map { InFlightChains(slots: engine == nil ? 0 : $0.slotCount) }
        heldChains = (0..<queueCount).map { _ in HeldChains(capacity: iopsLimit == nil ? 0 : queueSize) }
    }

    func readConfig(offset: Int, into buffer: UnsafeMutableRawBufferPointer) {
        // The capacity is the file's now (it grows with the image, see `imageMayHaveGrown`).
        var current = configuration
        current.capacity = file.capacity
        // The framework checked the range against `configSize`; `read` checks again and copies nothing if wrong.
        if !current.read(offset: offset, into: buffer), !buffer.isEmpty {
            buffer.initializeMemory(as: UInt8.self, repeating: 0)
        }
    }

    func process(_ queue: inout VhostUserQueue) throws {
        guard queue.index >= 0, queue.index < processors.count else { return }
        let processor = processors[queue.index]
        if engine != nil {
            if let limiter { return try submitPaced(&queue, processor, inFlight[queue.index], limiter) }
            try submitAvailable(&queue, processor, inFlight[queue.index])
            return
        }
        guard let limiter else {
            while let chain = try queue.pop() {
                let written = try processor.handle(chain)
                try queue.complete(chain, written: written)
            }
            return
        }
        // Paced (--iops-limit). Whatever is available is popped at once, so it is recorded in
        // flight (INFLIGHT_SHMFD: if this back-end is killed, its successor resubmits these), then
        // served in order as tokens come, each completion published at once; chains the driver
        // adds meanwhile join the line. Waiting happens here, on this queue's worker only. When
        // the framework needs the worker (ring stop, new memory table, disconnect), nothing more
        // is popped and the chains still held are served without waiting (every popped chain must
        // be completed before `process` returns): the limit gives way for that one batch.
        let held = heldChains[queue.index]
        defer { held.chains.removeAll(keepingCapacity: true) }
        var next = 0
        while true {
            if !queue.shouldYield { try held.refill(from: &queue, served: &next) }
            guard next < held.chains.count else { return }
            let chain = held.chains[next]
            next += 1
            let paced = queue.acquire(limiter)
            let written = try processor.handle(chain)
            try queue.complete(chain, written: written)
            if paced { try queue.publish() }
        }
    }

    func queueStarted(_ queue: inout VhostUserQueue) throws {
        guard queue.index >= 0, queue.index < processors.count,
            let descriptor = processors[queue.index].completionDescriptor
        else { return }
        try queue.watch(descriptor, token: Self.completionToken)
    }

    func handle(_ event: PollEvent, on queue: inout VhostUserQueue) throws {
        guard queue.index >= 0, queue.index < processors.count, event.token == Self.completionToken else {
            queue.unwatch(token: event.token)
            return
        }
        let processor = processors[queue.index], chains = inFlight[queue.index]
        // Completions are published (and the driver called) in chunks, and what the driver posted
        // meanwhile is started between them: the first requests of the next round reach the disk
        // while the rest of this one is still being completed. A disk that completes a whole
        // batch at once (as this machine's virtio disk does) otherwise idles while the batch goes
        // around the driver and back. The loop ends once the engine is empty; new chains are
        // taken for at most one ring's worth per event (a file in the page cache completes
        // within the submission, and a fast driver would keep the loop going), and none when the
        // framework wants the worker back (`shouldYield`).
        // Short transfers resumed by the reap are queued: start them, also when a bad chain among
        // those popped here (or a refused publication) ends the round with an error.
        defer { commit(processor, chains) }
        var budget = queue.size
        while true {
            let taken = processor.reap(maximum: Self.completionChunk) { slot, written in finish(slot, written, chains) }
            guard taken > 0 else { break }
            try queue.publish()
            if limiter == nil, budget > 0, !queue.shouldYield {
                budget -= try submitAvailable(&queue, processor, chains)
            }
            // A short chunk emptied the engine; what finished since signals the descriptor again.
            if taken < Self.completionChunk { break }
        }
    }

    /// Completions published per chunk (see `handle`): small enough that the driver gets the
    /// first ones back while the worker completes the rest, large enough that a call and a
    /// publication serve several requests (measured on a disk completing 32 at once: 4 and 8
    /// give the same IOPS, 8 the least CPU per request).
    static let completionChunk = 8

    /// The event-source token of a queue's engine completions.
    static let completionToken: UInt64 = 1

    /// Pops every available chain and starts it; reads, writes and flushes stay in flight (their
    /// chains postponed), the rest complete at once. Each request reaches the disk as it is
    /// popped (`BlockRequestProcessor.start` commits it): the disk works on the first while the
    /// rest are popped. Returns how many chains it popped.
    @discardableResult
    private func submitAvailable(
        _ queue: inout VhostUserQueue, _ processor: BlockRequestProcessor,
        _ chains: InFlightChains
    ) throws -> Int {
        // A commit the kernel refused inside `start` is retried here until it is in.
        defer { commit(processor, chains) }
        var started = 0
        while let chain = try queue.pop() {
            try start(chain, &queue, processor, chains)
            started += 1
        }
        return started
    }

    /// Paced (`--iops-limit`) through the engine. As in the synchronous paced path, everything
    /// available is popped at once (recorded in flight, so a successor resubmits it) and served in
    /// order as tokens come; here each granted request is submitted to the engine at once, so
    /// requests are in flight on the disk while the next ones wait for their tokens, and what
    /// finishes meanwhile is completed and published during the wait. When the framework needs
    /// the worker, the chains still held are started without waiting (the limit gives way for
    /// that one batch) and `process` returns with them in flight.
    private func submitPaced(
        _ queue: inout VhostUserQueue, _ processor: BlockRequestProcessor,
        _ chains: InFlightChains, _ limiter: TokenBucket
    ) throws {
        let held = heldChains[queue.index]
        defer {
            held.chains.removeAll(keepingCapacity: true)
            commit(processor, chains)
        }
        var next = 0
        while true {
            let yielding = queue.shouldYield
            if !yielding { try held.refill(from: &queue, served: &next) }
            guard next < held.chains.count else { return }
            if !yielding {
                let wait = limiter.tryTake()
                if wait > 0 {
                    commit(processor, chains)
                    // Sleeps until the token is due (at most `maximumSleep`, then `shouldYield`
                    // is looked at again), woken early by completions to publish.
                    let milliseconds = (min(wait, TokenBucket.maximumSleep) + 999_999) / 1_000_000
                    if processor.waitForCompletions(milliseconds: Int32(milliseconds)) {
                        completeFinished(processor, chains)
                    }
                    try queue.publish()
                    continue
                }
            }
            try start(held.chains[next], &queue, processor, chains)
            next += 1
            if !yielding { commit(processor, chains) }
        }
    }

    /// Starts one popped chain: completed at once, or submitted with its chain postponed. A request
    /// that needs the queue quiet (a read-modify-write of a partial direct-I/O block), or finds
    /// no free slot, waits here for the requests in flight to finish.
    private func start(
        _ chain: Chain, _ queue: inout VhostUserQueue, _ processor: BlockRequestProcessor,
        _ chains: InFlightChains
    ) throws {
        while true {
            switch try processor.start(chain) {
            case let .completed(written):
                try queue.complete(chain, written: written)
            case let .submitted(slot):
                chains.deferred[slot] = queue.postpone(chain)
            case .needsDrain:
                commit(processor, chains)
                // Bounded by the disk: every request in flight finishes (or fails) on its own.
                while processor.inFlight > 0 {
                    _ = processor.waitForCompletions(milliseconds: 100)
                    completeFinished(processor, chains)
                }
                continue
            }
            return
        }
    }

    /// Starts what `start` queued. A kernel that takes it only partly for now (io_uring under
    /// memory pressure) is asked again until it has all of it: nothing else would ever start what
    /// is left, and the requests in flight finish meanwhile (their chains are completed here).
    private func commit(_ processor: BlockRequestProcessor, _ chains: InFlightChains) {
        while !processor.commit() {
            _ = processor.waitForCompletions(milliseconds: 1)
            completeFinished(processor, chains)
        }
    }

    /// Completes the postponed chains of every finished request. A refused completion means the
    /// ring stopped meanwhile: the chain is the front-end's again, nothing more to do.
    private func completeFinished(_ processor: BlockRequestProcessor, _ chains: InFlightChains) {
        processor.reap { slot, written in finish(slot, written, chains) }
    }

    /// Completes the postponed chain of a finished slot (see `completeFinished`).
    @inline(__always)
    private func finish(_ slot: Int, _ written: UInt32, _ chains: InFlightChains) {
        guard let deferred = chains.deferred[slot] else { return }
        chains.deferred[slot] = nil
        try? deferred.complete(written: written)
    }

    func featuresNegotiated(_ features: UInt64) {
        // Spec 5.2.6.3: without FLUSH (and CONFIG_WCE, never offered) writes must be durable when
        // they complete.
        let writeThrough = features & BlockFeature.flush == 0
        for processor in processors { processor.writeThrough = writeThrough }
    }

    func reset() {
        for processor in processors { processor.writeThrough = false }
    }

    func backendChannelChanged(_ channel: BackendChannel?) {
        self.channel.set(channel)
    }

    /// Measures the image again (SIGHUP): if it grew, requests up to the new end are served and
    /// the front-end is told the config changed (`BACKEND_CONFIG_CHANGE_MSG`), so it re-reads the
    /// capacity and the guest sees the larger disk. Any thread.
    func imageMayHaveGrown(logger: Logger) {
        let sizes: (old: UInt64, new: UInt64)
        do {
            sizes = try file.refreshCapacity()
        } catch {
            logger.error("cannot measure the image again: \(error)")
            return
        }
        guard sizes.new > sizes.old else {
            logger.notice("image not larger (\(sizes.old) sectors): capacity unchanged")
            return
        }
        logger.notice("image grew from \(sizes.old) to \(sizes.new) sectors")
        do {
            if try !channel.sendConfigChange() {
                logger.warning("no back-end channel: the front-end learns the new capacity when it reads the config")
            }
        } catch {
            logger.error("config-change message failed: \(error)")
        }
    }
}

/// A queue's postponed chains by processor slot. Used by one queue worker at a time, hence
/// `@unchecked Sendable`.
final class InFlightChains: @unchecked Sendable {
    var deferred: [DeferredChain?]
    init(slots: Int) { deferred = Array(repeating: nil, count: slots) }
}

/// The chains one paced `process` call holds. Used by one queue worker at a time (the framework
/// calls `process` for a queue from its worker only), hence `@unchecked Sendable`.
final class HeldChains: @unchecked Sendable {
    var chains: [Chain] = []
    init(capacity: Int) { chains.reserveCapacity(capacity) }

    /// Pops what the driver made available onto the end of the line. The `served` chains at the
    /// front are dropped first once the line could outgrow the ring (pop() refuses a head already
    /// in flight, so at most the ring size wait).
    func refill(from queue: inout VhostUserQueue, served: inout Int) throws(VirtqueueError) {
        if served > 0 && chains.count >= queue.size {
            chains.removeFirst(served)
            served = 0
        }
        while chains.count < chains.capacity, let chain = try queue.pop() { chains.append(chain) }
    }
}
