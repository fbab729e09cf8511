import Logging
import VhostUserBackend
import VhostUserProtocol
import Virtio
import VirtioNet
import VMMSysUtil
import VhostUserDaemon

/// virtio-net (device ID 1) over vhost-user: `pairs` receive/transmit queue pairs and a control
/// queue (VIRTIO 1.2 section 5.1.2: receiveq N = 2N, transmitq N = 2N+1, controlq last), frames
/// exchanged with a `NetPort`.
///
/// Offered: VERSION_1, MRG_RXBUF, MAC, STATUS (link up), CTRL_VQ with CTRL_RX and CTRL_MAC_ADDR,
/// MQ when there are several pairs, RING_PACKED, IN_ORDER (every queue completes chains in the
/// order it popped them), MTU, GUEST_ANNOUNCE, and the port's offloads (a TAP carries
/// CSUM/GUEST_CSUM/TSO; the switch and the benchmark ports carry none, so the driver computes
/// every checksum itself).
///
/// Live migration (the framework offers `VHOST_F_LOG_ALL` and `LOG_SHMFD`): every byte this device
/// writes into guest memory goes through a chain's buffer API and is declared in
/// `VhostUserQueue.complete(_:written:)` (receive buffers, `num_buffers` included, and control
/// acks; transmit chains complete with 0), where the framework marks its pages in the dirty log.
/// GUEST_ANNOUNCE lets the front-end have a migrated guest announce itself (QEMU sets
/// `VIRTIO_NET_S_ANNOUNCE` after the migration; the driver sends a gratuitous ARP), so a learning
/// switch moves the guest's address to its new port at once instead of waiting for the guest to
/// send on its own.
///
/// Thread-safety: `Sendable` per the `VhostUserDevice` contract: each lane and transmit buffer is
/// used only by its queue's worker; `features` changes only while no worker runs the device.
final class NetDevice: VhostUserDaemonDevice, @unchecked Sendable {
    static let virtioDeviceType = VirtioDeviceType.network
    let deviceFeatures: VirtioFeatures
    let queueCount: Int
    let maxQueueSize: Int
    let configSize = NetConfiguration.size
    let port: any NetPort
    let pairs: Int
    let mtu: UInt16
    let counters = NetCounters()
    let control: SharedNetControl
    private let logger: Logger
    private let lanes: [ReceiveLane]
    /// Per pair: the transmit worker's packet buffer.
    private let transmitBuffers: [UnsafeMutableRawBufferPointer]
    /// Per pair: room for one burst of popped transmit chains.
    private let transmitBursts: [UnsafeMutablePointer<Chain>]
    /// Transmit chains popped before the first of them is read and completed.
    static let transmitBurst = 32
    private let controlBuffer: UnsafeMutableRawBufferPointer
    /// The driver's features (set while no worker runs; read by workers).
    private var features: UInt64 = 0

    init(port: any NetPort, mac: MacAddress, pairs: Int, maxQueueSize: Int, logger: Logger) {
        self.port = port
        self.pairs = pairs
        self.maxQueueSize = maxQueueSize
        self.logger = logger
        mtu = UInt16(min(65535, port.maxFrameLength - 14))
        queueCount = 2 * pairs + 1
        var offered =
            NetFeature.version1 | NetFeature.mergeableRxBuffers | NetFeature.mac | NetFeature.status
            | NetFeature.controlQueue | NetFeature.controlReceiveMode | NetFeature.controlMACAddress | NetFeature.mtu
            | NetFeature.guestAnnounce | NetFeature.ringPacked | NetFeature.inOrder | port.offloadFeatures
        if pairs > 1 { offered |= NetFeature.multiQueue }
        deviceFeatures = VirtioFeatures(rawValue: offered)
        let control = SharedNetControl(mac: mac, maxQueuePairs: UInt16(pairs))
        self.control = control
        let counters = counters
        lanes = (0..<pairs).map {
            ReceiveLane(
                pair: $0, maxQueueSize: maxQueueSize, maxFrameLength: port.maxFrameLength, control: control,
                counters: counters)
        }
        transmitBuffers = (0..<pairs).map { _ in
            .allocate(byteCount: NetHeader.size + port.maxFrameLength, alignment: 64)
        }
        transmitBursts = (0..<pairs).map { _ in .allocate(capacity: Self.transmitBurst) }
        controlBuffer = .allocate(byteCount: ControlCommand.maximumLength, alignment: 8)
    }

    deinit {
        for buffer in transmitBuffers { buffer.deallocate() }
        for burst in transmitBursts { burst.deallocate() }
        controlBuffer.deallocate()
    }

    /// What ring `index` is for the negotiated features: without MQ only the first pair exists
    /// and the control queue is ring 2 (section 5.1.2).
    private func role(of index: Int, features: UInt64) -> NetQueueRole {
        let active = features & NetFeature.multiQueue != 0 ? pairs : 1
        if index == 2 * active { return features & NetFeature.controlQueue != 0 ? .control : .unused }
        guard index < 2 * active else { return .unused }
        return index % 2 == 0 ? .receive(index / 2) : .transmit(index / 2)
    }

    func readConfig(offset: Int, into buffer: UnsafeMutableRawBufferPointer) {
        let configuration = NetConfiguration(mac: control.current.filter.mac, maxQueuePairs: UInt16(pairs), mtu: mtu)
        if !configuration.read(offset: offset, into: buffer), !buffer.isEmpty {
            buffer.initializeMemory(as: UInt8.self, repeating: 0)
        }
    }

    func queueStarted(_ queue: inout VhostUserQueue) throws {
        guard case .receive(let pair) = role(of: queue.index, features: queue.negotiatedFeatures) else { return }
        lanes[pair].start(features: queue.negotiatedFeatures, queueSize: queue.size)
        defer { lanes[pair].publishCounts() }
        try port.receiveStarted(lanes[pair], queue: &queue)
    }

    /// The receive lane's held chains go back to the driver before the ring stops or is
    /// re-created (they would be stale after); a stopping ring's port lets go of it.
    func queueChanging(_ queue: inout VhostUserQueue, to change: QueueChange) throws {
        guard case .receive(let pair) = role(of: queue.index, features: queue.negotiatedFeatures) else { return }
        try lanes[pair].giveBack(to: &queue)
        if change == .stopping { port.receiveStopping(lanes[pair]) }
    }

    func handle(_ event: PollEvent, on queue: inout VhostUserQueue) throws {
        guard case .receive(let pair) = role(of: queue.index, features: queue.negotiatedFeatures) else {
            queue.unwatch(token: event.token)
            return
        }
        defer { lanes[pair].publishCounts() }
        try port.receive(lanes[pair], queue: &queue, event: event)
    }

    func process(_ queue: inout VhostUserQueue) throws {
        switch role(of: queue.index, features: queue.negotiatedFeatures) {
        case .receive(let pair):
            // Borrowed, not retained: `lanes` (immutable) keeps every lane alive as long as the
            // device, and a poll-mode worker calls this for an idle ring thousands of times per
            // millisecond.
            try Unmanaged.passUnretained(lanes[pair])._withUnsafeGuaranteedRef { lane in
                defer { lane.publishCounts() }
                try port.receive(lane, queue: &queue, event: nil)
            }
        case .transmit(let pair): try transmit(&queue, pair: pair)
        case .control: try answerControl(&queue)
        case .unused: break
        }
    }

    /// Drains a transmit queue: each chain's packet is copied out, validated and handed to the
    /// port; every chain is completed with 0 bytes written (section 5.1.6.2: nothing to write).
    ///
    /// Chains are popped in bursts, all of a burst before the first is completed: a pop right
    /// after a completion waits for the used-ring stores to leave the store buffer (the ring's
    /// lines are the driver's), which per frame was the largest cost of the path. A chain the
    /// queue refuses ends the burst; the chains popped before it are still completed.
    private func transmit(_ queue: inout VhostUserQueue, pair: Int) throws {
        // Locals: one reference count for the whole batch, not one per frame.
        let reader = TransmitReader(features: queue.negotiatedFeatures)
        let buffer = transmitBuffers[pair]
        let burst = transmitBursts[pair]
        let port = port, counters = counters
        var frames: UInt64 = 0, bytes: UInt64 = 0
        var failure: VirtqueueError?
        while failure == nil {
            var popped = 0
            do {
                // The burst is written straight into `burst` (transmitBurst chains).
                popped = try queue.pop(into: UnsafeMutableBufferPointer(start: burst, count: Self.transmitBurst))
            } catch {
                failure = error
            }
            // The frames' first lines, all requested before the first is read.
            for index in 0..<popped { burst[index].prefetch(forWriting: false) }
            for index in 0..<popped {
                let chain = burst[index]
                switch try reader.read(chain, into: buffer, counters: counters) {
                case .frame(let length):
                    frames &+= 1
                    bytes &+= UInt64(length)
                    if !port.transmit(
                        UnsafeMutableRawBufferPointer(rebasing: buffer[..<(NetHeader.size + length)]), pair: pair)
                    {
                        counters.add(.txPortDropped)
                    }
                case .dropped(let reason):
                    counters.add(reason)
                }
                try queue.complete(chain, written: 0)
            }
            if popped < Self.transmitBurst { break }
        }
        if frames > 0 {
            counters.add(.txFrames, frames)
            counters.add(.txBytes, bytes)
            port.transmitBatchEnded(pair: pair)
        }
        if let failure { throw failure }
    }

    /// Answers control commands (section 5.1.6.5): the ack byte, VIRTIO_NET_OK or VIRTIO_NET_ERR.
    private func answerControl(_ queue: inout VhostUserQueue) throws {
        let features = queue.negotiatedFeatures
        while let chain = try queue.pop() {
            let (ack, written) = try control.update { (state) throws(VirtqueueError) in
                try state.answer(chain, features: features, scratch: controlBuffer)
            }
            switch ack {
            case ControlCommand.ackOK: counters.add(.controlOK)
            case nil: counters.add(.controlNoAck)
            default: counters.add(.controlError)
            }
            try queue.complete(chain, written: written)
        }
    }

    func featuresNegotiated(_ features: UInt64) {
        self.features = features
        port.featuresNegotiated(features)
    }

    func reset() {
        logger.info("device reset; counters: \(counters.summary)")
        features = 0
        let mac = control.defaultMAC
        control.update { state in state.reset(mac: mac) }
        port.reset()
    }
}

/// What a ring of a net device carries.
enum NetQueueRole: Equatable {
    case receive(Int)
    case transmit(Int)
    case control
    case unused
}
