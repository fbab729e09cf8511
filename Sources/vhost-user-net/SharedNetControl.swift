import CVMMPlatform
import VMMSysUtil
import VirtioNet

/// The control-queue state shared by the control queue's worker (which changes it) and the
/// receive workers (which filter with it): a mutex, and a generation the receive path checks
/// with one load per packet, copying the filter only when it changed.
///
/// Thread-safety: any thread.
final class SharedNetControl: @unchecked Sendable {
    private let mutex = ConditionLock()
    /// Touched only under `mutex`, so the run-time exclusivity check (which the receive path paid
    /// per burst) is redundant.
    @exclusivity(unchecked) private var state: NetControlState
    private let counter: UnsafeMutablePointer<UInt32>
    /// The MAC address a reset returns to.
    let defaultMAC: MacAddress

    init(mac: MacAddress, maxQueuePairs: UInt16) {
        defaultMAC = mac
        state = NetControlState(mac: mac, maxQueuePairs: maxQueuePairs)
        counter = .allocate(capacity: 1)
        counter.initialize(to: 0)
    }

    deinit { counter.deallocate() }

    /// Changes with every update (acquire load: a reader that sees it sees the new state).
    var generation: UInt32 { vmm_load_acquire_u32(counter) }

    /// The filter and the generation it belongs to.
    func snapshot() -> (ReceiveFilter, UInt32) {
        mutex.withLock { (state.filter, vmm_load_acquire_u32(counter)) }
    }

    /// The current state (a copy).
    var current: NetControlState { mutex.withLock { state } }

    /// Runs `body` on the state and publishes the change.
    func update<Result, Failure: Error>(_ body: (inout NetControlState) throws(Failure) -> Result) throws(Failure)
        -> Result
    {
        try mutex.withLock { () throws(Failure) -> Result in
            let result = try body(&state)
            vmm_store_release_u32(counter, vmm_load_acquire_u32(counter) &+ 1)
            return result
        }
    }
}
