import CVMMPlatform
import VhostUserBackend
import VMMSysUtil
import VirtioNet

/// `--switch`: a learning Ethernet switch between the daemon's sockets, one port per socket.
/// A frame goes to the port its destination was learned on, or to every other port (broadcast,
/// multicast, unknown destination); never back to the port it came from, so there are no loops.
///
/// Each port has a bounded `FrameQueue` filled by the other ports' transmit workers and drained
/// by its own receive worker (woken through an `EventNotifier` once per transmit batch). A port
/// whose driver stops posting receive buffers fills its queue; further frames for it are dropped
/// and counted (`rxNoBuffers` on that port, as are frames for a port with no front-end), and no
/// other port waits.
///
/// Thread-safety: shared by every port's workers: the learning table and the frame queues are
/// thread-safe; `attached` flags are atomics.
final class SwitchFabric: @unchecked Sendable {
    static let maxFrameLength = 9_234
    let table = MacLearningTable()
    let queues: [FrameQueue]
    let wakers: [EventNotifier]
    /// Per port: 1 while a front-end is attached (it negotiated features; frames are queued for
    /// it), else 0. Set on the control thread at SET_FEATURES, which the front-end sees answered,
    /// not when the receive worker first runs: a frame flooded right after the port's front-end
    /// finished its set-up must be queued for it, however late that worker is scheduled.
    private let attachedFlags: UnsafeMutablePointer<UInt32>
    /// Per port: its device's counters (drops for a port are counted on that port).
    var counters: [NetCounters] = []

    init(ports: Int, queueCapacity: Int) throws {
        queues = (0..<ports).map { _ in
            FrameQueue(capacity: queueCapacity, slotSize: NetHeader.size + Self.maxFrameLength)
        }
        wakers = try (0..<ports).map { _ in try EventNotifier() }
        attachedFlags = .allocate(capacity: ports)
        attachedFlags.initialize(repeating: 0, count: ports)
    }

    deinit { attachedFlags.deallocate() }

    var portCount: Int { queues.count }

    func isAttached(_ port: Int) -> Bool { vmm_load_acquire_u32(attachedFlags + port) != 0 }
    func setAttached(_ port: Int, _ attached: Bool) { vmm_store_release_u32(attachedFlags + port, attached ? 1 : 0) }
}

/// One port of a `SwitchFabric`: the `NetPort` of the device served on one socket.
///
/// Thread-safety: `transmit`/`transmitBatchEnded` on the port's one transmit worker (switch ports
/// have one queue pair); the receive calls on its receive worker.
final class SwitchPort: NetPort, @unchecked Sendable {
    let offloadFeatures: UInt64 = 0
    let maxFrameLength = SwitchFabric.maxFrameLength
    let fabric: SwitchFabric
    let index: Int
    /// Ports that got frames in the current transmit batch (bit per port; transmit worker only).
    private var woken: UInt64 = 0
    private static let token: UInt64 = 1

    init(fabric: SwitchFabric, index: Int) {
        self.fabric = fabric
        self.index = index
    }

    func transmit(_ packet: UnsafeMutableRawBufferPointer, pair: Int) -> Bool {
        let frame = UnsafeRawBufferPointer(rebasing: packet[NetHeader.size...])
        guard let destination = MacAddress.load(from: frame, at: 0), let source = MacAddress.load(from: frame, at: 6)
        else {
            return false
        }
        // No offloads were negotiated: a zero header is the whole truth (num_buffers is set on delivery).
        packet.storeBytes(of: (0 as UInt64), toByteOffset: 0, as: UInt64.self)
        packet.storeBytes(of: (0 as UInt32), toByteOffset: 8, as: UInt32.self)
        let bytes = UnsafeRawBufferPointer(packet)
        if let target = fabric.table.learn(source: source, port: index, lookup: destination) {
            // Learned here: the destination sits behind this very port; nothing to forward.
            guard target != index else { return true }
            forward(bytes, to: target)
        } else {
            for target in 0..<fabric.portCount where target != index { forward(bytes, to: target) }
        }
        return true
    }

    private func forward(_ packet: UnsafeRawBufferPointer, to target: Int) {
        // A port with no front-end has no buffers at all: dropped and counted like a full queue.
        if fabric.isAttached(target), fabric.queues[target].push(packet) {
            woken |= 1 << UInt64(target)
        } else {
            fabric.counters[target].add(.rxNoBuffers)
        }
    }

    func transmitBatchEnded(pair: Int) {
        while woken != 0 {
            let target = woken.trailingZeroBitCount
            woken &= woken - 1
            // A failed notify (fd exhaustion) only delays the frames until that port's next kick.
            try? fabric.wakers[target].notify()
        }
    }

    func receiveStarted(_ lane: ReceiveLane, queue: inout VhostUserQueue) throws {
        guard lane.pair == 0 else { return }
        try queue.watch(fabric.wakers[index].waitDescriptor, token: Self.token)
        fabric.setAttached(index, true)
    }

    func featuresNegotiated(_ features: UInt64) {
        fabric.setAttached(index, true)
    }

    func receive(_ lane: ReceiveLane, queue: inout VhostUserQueue, event: PollEvent?) throws {
        guard lane.pair == 0 else { return }
        if event != nil { _ = try? fabric.wakers[index].tryConsume() }
        let frames = fabric.queues[index]
        while let packet = frames.front() {
            if case .noBuffers = try lane.deliver(packet, to: &queue) { return }
            frames.removeFront()
        }
    }

    func reset() {
        fabric.setAttached(index, false)
        fabric.queues[index].removeAll()
        fabric.table.forget(port: index)
    }
}
