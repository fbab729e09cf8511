import VhostUserBackend
import VMMSysUtil
import VirtioNet

/// Where a net device's frames go and come from: a TAP interface, a switch port, or a benchmark
/// sink/source. The device owns the rings; a port sees packets (a 12-byte `NetHeader` plus the
/// Ethernet frame) and, on the receive side, the ring through a `ReceiveLane`.
///
/// Thread-safety: `transmit`/`transmitBatchEnded` run on a transmit queue's worker, the receive
/// calls on a receive queue's worker (one pair's queues may be on different threads);
/// `featuresNegotiated` and `reset` on the control thread while no worker runs the device.
protocol NetPort: AnyObject, Sendable {
    /// The offload features (CSUM, GUEST_CSUM, TSO) the port can carry end to end.
    var offloadFeatures: UInt64 { get }
    /// The longest Ethernet frame the port takes or produces.
    var maxFrameLength: Int { get }
    /// One validated packet from the driver's transmit queue of `pair`; the buffer is the
    /// worker's scratch (the port may change it). Returns false if the port dropped it.
    func transmit(_ packet: UnsafeMutableRawBufferPointer, pair: Int) -> Bool
    /// The transmit worker of `pair` drained its ring (a switch wakes receivers once per batch).
    func transmitBatchEnded(pair: Int)
    /// The receive ring of `lane` (re)started: watch sources here.
    func receiveStarted(_ lane: ReceiveLane, queue: inout VhostUserQueue) throws
    /// The receive ring of `lane` stops (its sources are unwatched by the framework).
    func receiveStopping(_ lane: ReceiveLane)
    /// Move frames into `lane`'s ring: after a kick or a poll (`event` nil) or when a watched
    /// source is ready.
    func receive(_ lane: ReceiveLane, queue: inout VhostUserQueue, event: PollEvent?) throws
    /// The driver's features (a TAP sets its offloads from them).
    func featuresNegotiated(_ features: UInt64)
    /// The front-end went away or reset the device.
    func reset()
}

extension NetPort {
    func transmitBatchEnded(pair: Int) {}
    func receiveStarted(_ lane: ReceiveLane, queue: inout VhostUserQueue) throws {}
    func receiveStopping(_ lane: ReceiveLane) {}
    func featuresNegotiated(_ features: UInt64) {}
    func reset() {}
}

// The framework's queue is what the VirtioNet packet paths drive.
extension VhostUserQueue: NetQueue {}
