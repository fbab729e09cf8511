import VhostUserProtocol
import Logging
import VMMSysUtil
import Virtio

/// What a session answers to one request: the reply payload and, for `GET_INFLIGHT_FD`, an fd to
/// send with it.
///
/// Thread-safety: a value type; `descriptor` is only borrowed (see below).
public struct VhostUserResponse: Sendable {
    /// The request this answers (the reply echoes its code).
    public let request: FrontendRequest
    /// The reply payload: the request's own reply, or a REPLY_ACK `u64` (0 = success).
    public let payload: ReplyPayload
    /// An fd to attach to the reply, owned by the session: valid until its next `handle` or
    /// `close`; send it (SCM_RIGHTS copies it), never close it.
    public let descriptor: Int32?
}

/// Tuning of a session.
///
/// Thread-safety: a value type.
public struct VhostUserSessionOptions: Sendable {
    /// Rings served by one worker thread (consecutive ring indices share a thread). At least 1.
    public var queuesPerThread: Int
    /// Answer to `GET_MAX_MEM_SLOTS`, and the most regions mapped at once (1...509).
    public var maxMemorySlots: Int
    /// At most this many worker threads: more rings then share a thread (consecutive indices
    /// together). nil: `queuesPerThread` alone decides. At least 1.
    public var maxThreads: Int?
    /// How long a back-end channel request waits for the front-end (its ack, or the socket taking
    /// the request) before the channel is closed. At least 1 ms.
    public var backendReplyTimeout: Duration = .seconds(2)
    /// How long a ring that stops (`GET_VRING_BASE`, `RESET_DEVICE`, disconnect) or whose memory
    /// table changes waits for chains the device postponed (`VhostUserQueue.postpone`) before it
    /// refuses their completions. Default 3 s (a disk request slower than that is stuck); the
    /// front-end's request waits that long at most. Clamped to 0...60 s.
    public var completionTimeout: Duration
    /// Poll mode: after serving its rings, a worker keeps serving them (available-buffer
    /// notifications off, its poller checked without blocking) until nothing has moved for this
    /// long, and only then enables notifications and sleeps. `.zero` (default): sleep at once.
    /// Trades a CPU for the kick and wake-up costs, as a DPDK poll-mode driver does.
    public var pollTime: Duration = .zero

    /// - Parameters: see the properties; values are clamped into their ranges.
    public init(
        queuesPerThread: Int = 1, maxMemorySlots: Int = 32, maxThreads: Int? = nil,
        completionTimeout: Duration = .seconds(3)
    ) {
        self.queuesPerThread = max(1, queuesPerThread)
        self.maxMemorySlots = min(max(1, maxMemorySlots), 509)
        self.maxThreads = maxThreads.map { max(1, $0) }
        self.completionTimeout = min(max(.zero, completionTimeout), .seconds(60))
    }

    /// What back-end programs use: one ring per thread, but no more threads than CPUs the process
    /// may run on (its affinity when started). Threads beyond that only add context switches and,
    /// for a device writing one file, lock contention: measured with `vmm-bench blk`, one thread
    /// serving 4 rings on one CPU beat 4 threads (p99 lower by 20-30%, IOPS up to 15% higher).
    public static var daemon: VhostUserSessionOptions {
        VhostUserSessionOptions(maxThreads: Processors.usableCount)
    }

    /// Rings per worker thread for `ringCount` rings under these options.
    func ringsPerThread(ringCount: Int) -> Int {
        guard let maxThreads, ringCount > 0 else { return queuesPerThread }
        return max(queuesPerThread, (ringCount + maxThreads - 1) / maxThreads)
    }
}

/// The back-end side of one vhost-user connection: a state machine that takes decoded requests and
/// returns replies. It does no socket I/O (the server, or a test, feeds it), but it owns the
/// connection's resources: guest memory mappings, kick/call/err notifiers, the inflight buffer, and
/// the queue worker threads that run the device's `process`.
///
/// Every value from the peer is validated before use: ring indices against the device's queue
/// count, sizes against `maxQueueSize`, memory regions against their fds' sizes, config accesses
/// against `configSize`, inflight geometry against the device. A refused request throws a typed
/// `VhostUserError`; the caller should close the connection (and `close()` the session).
///
/// Thread-safety: `handle` and `close` are called from one thread at a time (the connection's
/// control thread). Ring changes happen while the queue workers are parked, so a worker sees
/// either the old or the new memory and ring configuration, never a mix.
public final class VhostUserSession {
    /// The device served.
    public let device: any VhostUserDevice
    /// Feature bits offered in `GET_FEATURES`.
    public let offeredFeatures: UInt64
    /// Protocol features offered in `GET_PROTOCOL_FEATURES`.
    public let offeredProtocolFeatures: ProtocolFeatures
    /// Features acked with `SET_FEATURES`, nil before.
    public private(set) var ackedFeatures: UInt64?
    /// Protocol features acked with `SET_PROTOCOL_FEATURES`.
    public private(set) var protocolFeatures: ProtocolFeatures = []
    /// `SET_OWNER` was received.
    public private(set) var hasOwner = false
    /// The virtio status byte (`SET_STATUS`).
    public private(set) var status: UInt8 = 0

    let logger: Logger
    let options: VhostUserSessionOptions
    let rings: [Vring]
    private var workers: [QueueWorker] = []
    /// The worker serving each ring, by ring index.
    var workerOfRing: [QueueWorker] = []
    var memory: GuestMemory?
    var inflight: InflightBuffer?
    /// `SET_LOG_BASE`: the dirty log (used while `VHOST_F_LOG_ALL` is acked).
    var dirtyLog: DirtyLog?
    /// `SET_LOG_FD`: signalled after logging.
    var logNotifier: EventNotifier?
    /// `SET_BACKEND_REQ_FD`: the back-end channel, also handed to the device.
    public internal(set) var backendChannel: BackendChannel?
    private var closed = false

    /// Ring-format bits QEMU 7.2 acks even when they were not offered (vhost-user-rng); honoured.
    static let toleratedFeatures =
        VirtioFeatures.ringEventIndex.rawValue | VirtioFeatures.ringIndirectDescriptors.rawValue
    /// Bits whose change would reinterpret a started ring.
    static let ringFormatFeatures = toleratedFeatures | VirtioFeatures.ringPacked.rawValue
    /// Transport bits (24-49) the framework serves when a device declares them. IN_ORDER is the
    /// device's promise (VIRTIO 1.2 section 2.7.9 / 2.8.23: buffers used in the order they were
    /// made available): the framework publishes used entries exactly in completion order and
    /// resubmits inflight chains before new ones, so a device that completes every chain in the
    /// order `pop()` returned it serves IN_ORDER.
    static let servedTransportFeatures: VirtioFeatures = [
        .notifyOnEmpty, .logAll, .anyLayout, .ringIndirectDescriptors, .ringEventIndex, .protocolFeatures, .version1,
        .ringPacked, .inOrder, .orderPlatform,
    ]

    /// Refuses a device whose `deviceFeatures` holds a transport bit the framework cannot serve.
    ///
    /// - Throws: `VhostUserError.unservableFeature` naming the lowest such bit.
    static func checkServable(_ features: UInt64) throws(VhostUserError) {
        let transport: UInt64 = ((1 << 50) - 1) & ~((1 << 24) - 1)
        let refused = features & transport & ~servedTransportFeatures.rawValue
        guard refused != 0 else { return }
        let bit = refused.trailingZeroBitCount
        let reason =
            switch bit {
            case 33: "ACCESS_PLATFORM needs IOTLB translation, which the framework does not serve"
            default: "a transport feature the framework does not serve"
            }
        throw .unservableFeature(bit: bit, reason: reason)
    }

    /// Creates a session for `device` and its (parked) queue worker threads.
    ///
    /// - Throws: `VhostUserError.unservableFeature` if the device declares a transport feature the
    ///   framework cannot serve; `.worker` if a worker thread, poller or notifier cannot be created.
    public init(
        device: any VhostUserDevice, options: VhostUserSessionOptions = .init(),
        logger: Logger = Logger(label: "vhost-user")
    ) throws(VhostUserError) {
        try Self.checkServable(device.deviceFeatures.rawValue)
        self.device = device
        self.options = options
        self.logger = logger
        let queueCount = min(max(device.queueCount, 0), 256)
        rings = (0..<queueCount).map { Vring(index: $0) }
        offeredFeatures =
            device.deviceFeatures.rawValue | VirtioFeatures.protocolFeatures.rawValue | Self.toleratedFeatures
            | VirtioFeatures.logAll.rawValue
        var offered: ProtocolFeatures = [
            .multiqueue, .replyAck, .configureMemorySlots, .inflightSharedMemory, .resetDevice, .status,
            .logSharedMemory, .backendRequest,
        ]
        if device.configSize > 0 { offered.insert(.config) }
        offered.formUnion(device.requiredProtocolFeatures)
        offeredProtocolFeatures = offered
        let perThread = options.ringsPerThread(ringCount: rings.count)
        var start = 0
        while start < rings.count {
            let group = Array(rings[start..<min(start + perThread, rings.count)])
            do {
                let worker = try QueueWorker(
                    rings: group, device: device, completionTimeout: options.completionTimeout,
                    pollTime: options.pollTime, logger: logger)
                workers.append(worker)
                workerOfRing += Array(repeating: worker, count: group.count)
            } catch {
                for worker in workers { worker.stop() }
                throw error
            }
            start += perThread
        }
    }

    deinit { close() }

    /// Whether REPLY_ACK was negotiated (a failed NEED_REPLY request then gets a non-zero ack).
    public var replyAckNegotiated: Bool { protocolFeatures.contains(.replyAck) }

    /// Whether ring `index` is started (kick set, addresses valid, memory mapped).
    public func isStarted(ring index: Int) -> Bool {
        rings.indices.contains(index) && rings[index].isStarted
    }

    /// Whether ring `index` is enabled.
    public func isEnabled(ring index: Int) -> Bool {
        rings.indices.contains(index) && rings[index].enabled
    }

    /// Stops the workers, unmaps guest memory and the inflight buffer, closes every fd of the
    /// session and resets the device. Idempotent; later `handle` calls throw.
    public func close() {
        guard !closed else { return }
        closed = true
        quiesced(draining: rings, changing: .stopping) { for ring in rings { removeSources(ring) } }
        for worker in workers { worker.stop() }
        workers.removeAll()
        for ring in rings {
            ring.reset()
            ring.call = nil
            ring.err = nil
        }
        memory = nil
        inflight = nil
        dirtyLog = nil
        logNotifier = nil
        if let backendChannel {
            backendChannel.close()
            self.backendChannel = nil
            device.backendChannelChanged(nil)
        }
        device.reset()
    }

    /// Handles one decoded request.
    ///
    /// - Returns: the reply to send, or nil when the request has none (and no ack was asked for).
    /// - Throws: `VhostUserError` naming what was refused; nothing was half-applied that a worker
    ///   could observe. The message's fds not taken are closed.
    public func handle(_ message: consuming Message) throws(VhostUserError) -> VhostUserResponse? {
        guard !closed else { throw .worker("session closed") }
        let body = message.body
        let request = body.request
        if let gate = Self.gate(request), !protocolFeatures.contains(gate) { throw .notNegotiated(request) }
        var descriptor: Int32?
        let reply: ReplyPayload?
        switch body {
        case .getFeatures: reply = .u64(offeredFeatures)
        case .setFeatures(let features):
            try quiesced { () throws(VhostUserError) in try setFeatures(features.rawValue) }
            reply = nil
        case .getProtocolFeatures: reply = .u64(offeredProtocolFeatures.rawValue)
        case .setProtocolFeatures(let features):
            guard features.isSubset(of: offeredProtocolFeatures) else {
                throw .unofferedProtocolFeatures(acked: features.rawValue, offered: offeredProtocolFeatures.rawValue)
            }
            protocolFeatures = features
            reply = nil
        case .setOwner:
            hasOwner = true
            reply = nil
        case .resetOwner:
            quiesced { for ring in rings { ring.enabled = false } }
            reply = nil
        case .getQueueNum: reply = .u64(UInt64(rings.count))
        case .getMaxMemSlots: reply = .u64(UInt64(options.maxMemorySlots))
        case .setMemTable(let table):
            try setMemoryTable(table.regions, descriptors: message.descriptors)
            reply = nil
        case .addMemReg(let single):
            let fd = try Self.requiredDescriptor(&message)
            try addMemoryRegion(single.region, fd: fd)
            reply = nil
        case .remMemReg(let single):
            try removeMemoryRegion(single.region)
            reply = nil
        case .setVringNum(let state):
            try setVringNum(state)
            reply = nil
        case .setVringBase(let state):
            try setVringBase(state)
            reply = nil
        case .setVringAddr(let address):
            try setVringAddress(address)
            reply = nil
        case .getVringBase(let state):
            reply = .vringState(try getVringBase(state))
        case .setVringKick(let file):
            try setVringKick(file, fd: file.hasFile ? message.takeDescriptor() : nil)
            reply = nil
        case .setVringCall(let file):
            try setVringCall(file, fd: file.hasFile ? message.takeDescriptor() : nil)
            reply = nil
        case .setVringErr(let file):
            try setVringErr(file, fd: file.hasFile ? message.takeDescriptor() : nil)
            reply = nil
        case .setVringEnable(let state):
            try setVringEnable(state)
            reply = nil
        case .getConfig(let config):
            reply = .config(try getConfig(config))
        case .setConfig(let config):
            try quiesced { () throws(VhostUserError) in try setConfig(config) }
            reply = nil
        case .setStatus(let value):
            guard value & ~UInt64(VirtioDeviceStatus.defined.rawValue) == 0 else { throw .invalidStatus(value) }
            status = UInt8(value)
            reply = nil
        case .getStatus: reply = .u64(UInt64(status))
        case .resetDevice:
            quiesced(draining: rings, changing: .stopping) {
                for ring in rings {
                    removeSources(ring)
                    ring.reset()
                }
                status = 0
                device.reset()
            }
            reply = nil
        case .getInflightFD(let description):
            let (answer, fd) = try getInflight(description)
            descriptor = fd
            reply = .inflight(answer)
        case .setInflightFD(let description):
            let fd = try Self.requiredDescriptor(&message)
            try setInflight(description, fd: fd)
            reply = nil
        case .setLogBase(let description):
            let fd = try Self.requiredDescriptor(&message)
            try setLogBase(description, fd: fd)
            // With LOG_SHMFD the front-end waits for this reply (0 = installed).
            reply = .u64(0)
        case .setLogFD:
            let fd = try Self.requiredDescriptor(&message)
            try setLogFD(fd)
            reply = nil
        case .setBackendRequestFD:
            let fd = try Self.requiredDescriptor(&message)
            try setBackendChannel(fd)
            reply = nil
        case .sendRARP, .netSetMTU, .iotlbMessage, .setVringEndian,
            .closeCryptoSession, .postcopyAdvise, .postcopyListen, .postcopyEnd, .gpuSetSocket, .vringKick,
            .getSharedObject, .setDeviceStateFD, .checkDeviceState:
            throw .notNegotiated(request)
        }
        if let reply { return VhostUserResponse(request: request, payload: reply, descriptor: descriptor) }
        if message.needsReply && replyAckNegotiated {
            return VhostUserResponse(request: request, payload: .u64(0), descriptor: nil)
        }
        return nil
    }

    /// The one fd `message` must carry, moved out.
    /// - Throws: `.protocolViolation(.missingDescriptors)` if it has none.
    static func requiredDescriptor(_ message: inout Message) throws(VhostUserError) -> FileDescriptor {
        guard let fd = message.takeDescriptor() else {
            throw .protocolViolation(.missingDescriptors(request: .frontend(message.request), expected: 1, received: 0))
        }
        return fd
    }

    /// The protocol feature a request needs, if any.
    static func gate(_ request: FrontendRequest) -> ProtocolFeatures? {
        switch request {
        case .getQueueNum: .multiqueue
        case .getConfig, .setConfig: .config
        case .getMaxMemSlots, .addMemReg, .remMemReg: .configureMemorySlots
        case .getInflightFD, .setInflightFD: .inflightSharedMemory
        case .resetDevice: .resetDevice
        case .setStatus, .getStatus: .status
        case .setLogBase: .logSharedMemory
        case .setBackendRequestFD: .backendRequest
        default: nil
        }
    }

    /// Runs `body` with every queue worker parked; the workers of `draining` first wait (up to
    /// `completionTimeout`) for those rings' postponed chains (the rings stop or are rebuilt).
    ///
    /// - Throws: what `body` throws (nothing when it cannot fail); the workers resume either way.
    @discardableResult
    func quiesced<T, Failure: Error>(
        draining: [Vring] = [], changing change: QueueChange? = nil, _ body: () throws(Failure) -> T
    ) throws(Failure) -> T {
        park(draining: draining, changing: change)
        defer { for worker in workers { worker.resume() } }
        return try body()
    }

    /// Parks every worker; the `draining` rings' workers first wait for their postponed chains,
    /// and with a `change`, let the device give back what it keeps of those rings.
    private func park(draining: [Vring], changing change: QueueChange?) {
        for worker in workers { worker.pause(quiescing: draining, changing: change) }
        for worker in workers { worker.waitUntilParked() }
    }

    /// Forgets the device's event sources on `ring` (workers parked): the ring stops.
    func removeSources(_ ring: Vring) {
        if workerOfRing.indices.contains(ring.index) { workerOfRing[ring.index].removeSources(ring: ring.index) }
    }

    private func setFeatures(_ features: UInt64) throws(VhostUserError) {
        guard features & ~offeredFeatures == 0 else {
            throw .unofferedFeatures(acked: features, offered: offeredFeatures)
        }
        let old = ackedFeatures ?? 0
        if rings.contains(where: \.isStarted), (old ^ features) & Self.ringFormatFeatures != 0 {
            throw .featuresChangedWhileStarted(old: old, new: features)
        }
        ackedFeatures = features
        refreshLogging()
        if features & VirtioFeatures.protocolFeatures.rawValue == 0 {
            for ring in rings { ring.enabled = true }
        }
        device.featuresNegotiated(features)
    }

    private func getConfig(_ config: ConfigSpace) throws(VhostUserError) -> ConfigSpace {
        try checkConfigRange(config)
        var data = [UInt8](repeating: 0, count: config.data.count)
        data.withUnsafeMutableBytes { device.readConfig(offset: Int(config.offset), into: $0) }
        return ConfigSpace(offset: config.offset, flags: config.flags, data: data)
    }

    private func setConfig(_ config: ConfigSpace) throws(VhostUserError) {
        try checkConfigRange(config)
        do {
            try config.data.withUnsafeBytes { try device.writeConfig(offset: Int(config.offset), bytes: $0) }
        } catch let error as VhostUserError {
            throw error
        } catch {
            logger.warning("SET_CONFIG refused by the device: \(error)")
            throw .configWriteRefused(offset: Int(config.offset), size: config.data.count)
        }
    }

    private func checkConfigRange(_ config: ConfigSpace) throws(VhostUserError) {
        let size = device.configSize
        // offset is a u32 and data ≤ 256 bytes: no overflow in Int.
        guard config.flags <= 1, Int(config.offset) + config.data.count <= size else {
            throw .configOutOfRange(
                offset: config.offset, size: config.data.count, flags: config.flags, configSize: size)
        }
    }
}
