import CVMMPlatform
import VhostUserBackend
import Virtio
import VirtioNet

/// One receive queue's state, touched only by that queue's worker: the writer (with the chains
/// it holds), a packet buffer for ports that read frames in, and the receive filter in force.
///
/// Thread-safety: used by one worker at a time (the receive queue's), hence `@unchecked Sendable`;
/// `start` runs on that worker too (`queueStarted`). For the same reason its variables are
/// `@exclusivity(unchecked)`: accesses never overlap (one thread, no re-entrancy), and the run-time
/// check, a thread-local access set, cost more per packet than the copy of the frame.
final class ReceiveLane: @unchecked Sendable {
    /// The queue pair.
    let pair: Int
    @exclusivity(unchecked) var writer: ReceiveWriter
    /// A packet read in and not yet delivered (the ring had no buffers): `packet[..<pending]`.
    @exclusivity(unchecked) var pending = 0
    /// Room for one packet: header plus the port's longest frame.
    let packet: UnsafeMutableRawBufferPointer
    /// Whether the port's source is watched now (it is not while the ring has no buffers).
    @exclusivity(unchecked) var watching = false
    let counters: NetCounters
    private let control: SharedNetControl
    @exclusivity(unchecked) private var filter: ReceiveFilter
    @exclusivity(unchecked) private var filterGeneration: UInt32
    /// Frames delivered since the last `publishCounts()`.
    @exclusivity(unchecked) private var tally = ReceiveTally()

    init(pair: Int, maxQueueSize: Int, maxFrameLength: Int, control: SharedNetControl, counters: NetCounters) {
        self.pair = pair
        self.control = control
        self.counters = counters
        writer = ReceiveWriter(features: 0, queueSize: maxQueueSize, maxQueueSize: maxQueueSize)
        packet = .allocate(byteCount: NetHeader.size + maxFrameLength, alignment: 64)
        (filter, filterGeneration) = control.snapshot()
    }

    deinit { packet.deallocate() }

    /// The ring (re)started: forget held chains (they belonged to the old ring) and any packet.
    func start(features: UInt64, queueSize: Int) {
        writer.start(features: features, queueSize: queueSize)
        pending = 0
        watching = false
    }

    /// The ring is about to stop or be re-created: the held chains go back to the driver unused.
    /// A packet read in and not delivered stays (a rebuilt ring takes it next).
    func giveBack(to queue: inout VhostUserQueue) throws(VirtqueueError) {
        try writer.giveBack(to: &queue, counters: counters)
    }

    /// Delivers `packet` if the receive filter takes its destination; counts drops.
    @inline(__always)
    func deliver(_ packet: UnsafeMutableRawBufferPointer, to queue: inout VhostUserQueue) throws(VirtqueueError)
        -> DeliveryResult
    {
        if control.generation != filterGeneration { (filter, filterGeneration) = control.snapshot() }
        if !filter.promiscuous,
            let destination = MacAddress.load(from: UnsafeRawBufferPointer(packet), at: NetHeader.size),
            !filter.accepts(destination)
        {
            counters.add(.rxFiltered)
            return .dropped(.rxFiltered)
        }
        let result = try writer.deliver(packet, to: &queue, counters: counters, tally: &tally)
        if case .dropped(let reason) = result { counters.add(reason) }
        return result
    }

    /// Holds up to `wanted` more receive chains for the next deliveries (`ReceiveWriter.reserve`);
    /// returns how many it took.
    @inline(__always)
    func reserve(_ wanted: Int, from queue: inout VhostUserQueue) throws(VirtqueueError) -> Int {
        try writer.reserve(wanted, from: &queue, counters: counters)
    }

    /// Adds the frames delivered since the last call to the counters (the device calls it after
    /// each port callback: one pair of atomic adds per burst, not per frame).
    @inline(__always)
    func publishCounts() { tally.publish(to: counters) }
}
