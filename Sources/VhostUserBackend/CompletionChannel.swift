#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import CVMMPlatform
import VMMSysUtil
import Virtio

/// The deferred completions of one started ring, from any thread to the ring's worker: a
/// bounded multi-producer, single-consumer queue plus a per-id state word. Lock-free on both
/// sides; allocated once when the ring starts, sized by the ring.
///
/// One channel is one *generation* of the ring: a ring that stops (`GET_VRING_BASE`,
/// `RESET_DEVICE`, disconnect) or is rebuilt over a new memory table gets a new channel, and a
/// token of an old channel can only be refused.
///
/// Per-id state (u64): `sequence << 2 | phase`, phase 0 idle, 1 outstanding (the device holds
/// it), 2 completing (a producer won it; its entry is in, or about to be in, the queue), 3
/// abandoned (the ring stopped before it was completed). The sequence changes on every deferral,
/// so a token completed twice, or kept past its id's next deferral, never matches.
///
/// The queue holds at most one entry per id (an id is deferred again only after its entry was
/// drained), so `size` cells never overflow: the "bounded by the queue" of the design.
///
/// Thread-safety: `complete` from any thread; everything else on the ring's worker thread (or
/// the control thread while the worker is parked).
final class CompletionChannel: @unchecked Sendable {
    /// The ring index (for errors).
    let ringIndex: Int
    /// Ids are below this (the ring size).
    let size: Int
    private let wakeup: WorkerWakeup
    private let states: UnsafeMutablePointer<UInt64>
    /// The deferred chains by id, for the used-entry funnel (worker only).
    private let chains: UnsafeMutablePointer<Chain>
    private let cellSequences: UnsafeMutablePointer<UInt64>
    private let cellValues: UnsafeMutablePointer<UInt64>
    private let cellMask: UInt64
    /// Next cell producers claim (fetch-add); consumer's next cell. Separate allocations so they
    /// do not share a cache line with each other or with the states.
    private let tail: UnsafeMutablePointer<UInt64>
    private var head: UInt64 = 0
    /// Deferred and not yet drained (worker only).
    private(set) var outstanding = 0
    /// Guards `retained` and `abandonedCount` (cold path: abandonment only).
    private let abandonLock = ConditionLock()
    /// What abandoned chains point into (guest memory, the queue's chain storage).
    private var retained: [AnyObject] = []
    private var abandonedCount = 0

    init(ringIndex: Int, size: Int, wakeup: WorkerWakeup) {
        self.ringIndex = ringIndex
        self.size = size
        self.wakeup = wakeup
        var cells = 1
        while cells < size { cells <<= 1 }
        cellMask = UInt64(cells - 1)
        states = .allocate(capacity: size)
        states.initialize(repeating: 0, count: size)
        chains = .allocate(capacity: size)
        cellSequences = .allocate(capacity: cells)
        for cell in 0..<cells { (cellSequences + cell).initialize(to: UInt64(cell)) }
        cellValues = .allocate(capacity: cells)
        cellValues.initialize(repeating: 0, count: cells)
        tail = .allocate(capacity: 8)
        tail.initialize(repeating: 0, count: 8)
    }

    deinit {
        states.deallocate()
        chains.deallocate()
        cellSequences.deallocate()
        cellValues.deallocate()
        tail.deallocate()
    }

    // MARK: worker side

    /// Marks `chain` outstanding and returns the sequence its token carries.
    @inline(__always)
    func track(_ chain: Chain) -> UInt64 {
        let id = chain.id
        // Safe: id < size (the ring validated it when the chain was popped). Chain is a plain
        // value (no references), so the slot needs no deinitialization.
        (chains + Int(id)).initialize(to: chain)
        let state = states + Int(id)
        let sequence = (vmm_load_acquire_u64(state) >> 2) &+ 1
        vmm_store_release_u64(state, sequence << 2 | 1)
        outstanding &+= 1
        return sequence
    }

    /// Hands every completion queued so far to `body` (the chain, bytes written), in the order
    /// they were made; returns how many. Stops early if `body` throws, the rest stay queued.
    @inline(__always)
    func drain<E: Error>(_ body: (Chain, UInt32) throws(E) -> Void) throws(E) -> Int {
        var count = 0
        while true {
            let cell = Int(head & cellMask)
            // Acquire: the value was written before the producer's release of the sequence.
            guard vmm_load_acquire_u64(cellSequences + cell) == head &+ 1 else { break }
            let value = cellValues[cell]
            vmm_store_release_u64(cellSequences + cell, head &+ cellMask &+ 1)
            head &+= 1
            let id = UInt16(truncatingIfNeeded: value)
            guard Int(id) < size else { continue }
            let state = states + Int(id)
            let current = vmm_load_acquire_u64(state)
            // Only a producer that won the id's state pushes it; anything else is not ours.
            guard current & 3 == 2 else { continue }
            vmm_store_release_u64(state, current & ~3)
            outstanding &-= 1
            count &+= 1
            try body(chains[Int(id)], UInt32(truncatingIfNeeded: value >> 16))
        }
        return count
    }

    /// Refuses every outstanding chain from now on (the ring stops or is rebuilt) and returns
    /// their ids. Completions producers already won still arrive: `drain` them afterwards
    /// (`completing` says how many). `references` (guest memory, the queue's chain storage) stay
    /// alive until every abandoned token was handed back (refused) or this channel is gone, so a
    /// device still reading or writing a chain's buffers on another thread never faults.
    func abandon(keeping references: [AnyObject]) -> (abandoned: [UInt16], completing: Int) {
        var abandoned: [UInt16] = []
        var completing = 0
        for id in 0..<size {
            let state = states + id
            while true {
                let current = vmm_load_acquire_u64(state)
                switch current & 3 {
                case 1:
                    if vmm_cas_u64(state, current, current | 3) == 0 { continue }
                    abandoned.append(UInt16(id))
                case 2: completing += 1
                default: break
                }
                break
            }
        }
        if !abandoned.isEmpty {
            abandonLock.withLock {
                retained = references
                abandonedCount += abandoned.count
            }
        }
        outstanding -= abandoned.count
        return (abandoned, completing)
    }

    // MARK: producer side (any thread)

    /// Queues the completion of the chain `id` deferred with `sequence`.
    ///
    /// - Throws: `CompletionError.ringStopped` if the ring stopped (or was rebuilt) before,
    ///   `.notOutstanding` if this token was completed already.
    func complete(id: UInt16, sequence: UInt64, written: UInt32) throws(CompletionError) {
        guard Int(id) < size else { throw .notOutstanding(ring: ringIndex, id: id) }
        let state = states + Int(id)
        if vmm_cas_u64(state, sequence << 2 | 1, sequence << 2 | 2) != 0 {
            push(UInt64(id) | UInt64(written) << 16)
            wakeup.signal()
            return
        }
        if vmm_cas_u64(state, sequence << 2 | 3, sequence << 2) != 0 {
            releaseAbandoned()
            throw .ringStopped(ring: ringIndex, id: id)
        }
        // A later deferral of the id, or an abandoned generation reused: either way not ours.
        if vmm_load_acquire_u64(state) >> 2 == sequence {
            throw .notOutstanding(ring: ringIndex, id: id)
        }
        throw .ringStopped(ring: ringIndex, id: id)
    }

    private func push(_ value: UInt64) {
        let position = vmm_fetch_add_u64(tail, 1)
        let cell = Int(position & cellMask)
        // At most one entry per id is queued, so the cell is free once the consumer passed it
        // a lap ago; this loop only waits out a consumer in the middle of freeing it.
        while vmm_load_acquire_u64(cellSequences + cell) != position { sched_yield() }
        cellValues[cell] = value
        vmm_store_release_u64(cellSequences + cell, position &+ 1)
    }

    private func releaseAbandoned() {
        abandonLock.withLock {
            abandonedCount -= 1
            if abandonedCount == 0 { retained.removeAll() }
        }
    }
}

/// Wakes a queue worker when another thread completed a deferred chain: one notifier per worker,
/// written at most once per wake-up (a flag says a wake-up is already pending).
///
/// Thread-safety: `signal` from any thread; `rearm` on the worker.
final class WorkerWakeup: @unchecked Sendable {
    let notifier: EventNotifier
    private let pending: UnsafeMutablePointer<UInt64>

    /// - Throws: `SystemCallError` if no notifier can be created.
    init() throws {
        notifier = try EventNotifier()
        pending = .allocate(capacity: 8)
        pending.initialize(repeating: 0, count: 8)
    }

    deinit { pending.deallocate() }

    @inline(__always)
    func signal() {
        // A failed notify means fd exhaustion of a notifier we own; the worker still drains
        // completions after its next kick or event.
        if vmm_exchange_u64(pending, 1) == 0 { try? notifier.notify() }
    }

    /// Called by the worker before it drains: completions queued from now on wake it again.
    func rearm() {
        _ = try? notifier.tryConsume()
        _ = vmm_exchange_u64(pending, 0)
    }
}
