import VhostUserProtocol
import VMMSysUtil
import Virtio

/// One ring's configuration and, once started, its queue.
///
/// Thread-safety: the control thread changes it only while the ring's worker is parked
/// (`QueueWorker.pause`); the worker reads it, and moves `queue` in and out, only while running.
/// The worker's park/resume handshake (a mutex) orders the two, hence `@unchecked Sendable`.
final class Vring: @unchecked Sendable {
    let index: Int
    /// `SET_VRING_NUM`; 0 until set.
    var size = 0
    /// `SET_VRING_ADDR`.
    var address: VringAddress?
    /// `SET_VRING_BASE` (split: next avail index).
    var base: UInt32 = 0
    /// `SET_VRING_KICK` arrived (with an fd, or with the no-fd flag: then `kick` is nil, poll).
    var kickSet = false
    var kick: EventNotifier?
    var call: EventNotifier?
    var err: EventNotifier?
    var enabled = false
    /// Set while the ring is started (changed by the control thread only).
    var started = false
    /// The started ring's queue. Only the worker, which serves it in place, or the control thread
    /// while the worker is parked, may touch it. Those accesses never overlap on one thread (no
    /// callback reaches the ring's queue property), so the run-time exclusivity check, paid on
    /// every poll, is turned off.
    @exclusivity(unchecked) var queue: VhostUserQueue?
    /// Set when the ring failed: not served until reconfigured.
    var broken = false
    /// Counts starts, so the worker tells the device once per start (`queueStarted`).
    var startCount: UInt64 = 0

    init(index: Int) { self.index = index }

    var isStarted: Bool { started }
    /// Started without a kick fd: the worker polls it.
    var isPolled: Bool { started && kick == nil }

    /// Forgets everything but the call and err notifiers (`RESET_DEVICE`).
    func reset() {
        size = 0
        address = nil
        base = 0
        kickSet = false
        kick = nil
        enabled = false
        started = false
        queue = nil
        broken = false
    }
}
