import VhostUserProtocol
import Virtio
import VMMSysUtil

/// The front-end (driver, VMM) side of a vhost-user connection: negotiates features with a
/// back-end, shares guest memory with it, sets up virtqueues in that memory and drives them.
///
/// Typical use, in the order QEMU sends the requests (the vhost-user specification's
/// "Communication" and "Starting and stopping rings" sections):
/// ```swift
/// let frontend = try VhostUserFrontend(connectingTo: path, timeout: .seconds(5))
/// try frontend.negotiate(features: [.version1, .ringEventIndex], protocolFeatures: [.replyAck, .config])
/// let memory = try SharedMemory(size: 4 << 20)
/// try frontend.setMemory([FrontendMemoryRegion(memory)])
/// let queue = try frontend.startQueue(index: 0, size: 128, ringAddress: 0)
/// // post chains into `frontend.guestMemory`, `queue.kick()`, `queue.waitForUsed(timeout:)`
/// try frontend.disconnect()
/// ```
///
/// Every reply is validated (request code echoed, flags exactly 0x5, exact size, fd count) and a
/// misbehaving back-end yields a `FrontendError`, never a crash. With REPLY_ACK negotiated, every
/// request that has no reply of its own is sent with NEED_REPLY and its ack checked. Every wait
/// for a reply is bounded by `timeout` (per reply).
///
/// Thread-safety: not synchronized. Control requests must come from one thread at a time (the
/// object may move between threads). Each started `FrontendQueue` is independent and may be
/// driven from its own thread while no control request touches that queue.
public final class VhostUserFrontend: @unchecked Sendable {
    /// The current connection (replaced by `reconnect`).
    var channel: FrontendChannel
    /// What the caller asked `negotiate` for, asked again on `reconnect`.
    var wantedFeatures: (features: VirtioFeatures, protocolFeatures: ProtocolFeatures)?
    /// What negotiation on the current connection produced; nil before `negotiate` completes.
    public internal(set) var negotiated: NegotiatedFeatures?
    /// The features of the first completed negotiation: the rings were laid out for them, so a
    /// `reconnect` must get the same.
    var sessionFeatures: VirtioFeatures?
    /// The shared guest memory; nil before `setMemory`.
    public internal(set) var guestMemory: GuestMemory?
    /// The regions behind `guestMemory` (they own the fds re-sent when the table changes).
    var memoryRegions: [FrontendMemoryRegion] = []
    /// Whether the regions were added with `ADD_MEM_REG` (then they are removed one by one).
    var memoryAddedBySlots = false
    /// The inflight buffer from `GET_INFLIGHT_FD` (or given to `setInflight`), kept so it can be
    /// handed to a back-end again after a reconnect.
    public internal(set) var inflight: InflightRegion?
    /// The dirty log while logging (`startLogging`), else nil.
    public internal(set) var dirtyLog: FrontendDirtyLog?
    /// Started queues by index.
    var queues: [Int: FrontendQueue] = [:]
    /// The last status sent with `SET_STATUS`.
    var status: VirtioDeviceStatus = []
    /// `setDriverReady` set DRIVER_OK; `reconnect` sets it again.
    var driverReady = false

    /// Connects to a back-end listening on the Unix socket at `path`.
    ///
    /// - Parameters:
    ///   - path: the back-end's socket.
    ///   - timeout: the longest wait for each reply; nil waits forever. Default 10 s.
    /// - Throws: `FrontendError.socket` (e.g. `.system` with ENOENT or ECONNREFUSED).
    public convenience init(connectingTo path: String, timeout: Duration? = .seconds(10)) throws(FrontendError) {
        let socket: ScmSocket
        do {
            socket = try ScmSocket.connect(path: path)
        } catch { throw .socket(error) }
        self.init(socket: socket, timeout: timeout)
    }

    /// Uses an already connected socket (e.g. one end of `ScmSocket.pair()` or an inherited fd).
    ///
    /// The socket is closed on `disconnect()`, on a transport or reply error, or when the frontend
    /// goes away, unless the caller keeps its own reference to it.
    /// - Parameters:
    ///   - socket: the connection to the back-end.
    ///   - timeout: the longest wait for each reply; nil waits forever.
    public init(socket: ScmSocket, timeout: Duration? = .seconds(10)) {
        channel = FrontendChannel(socket: socket, timeout: timeout)
    }

    /// Whether the connection can still carry requests (no earlier failure, no `disconnect()`).
    public var isConnected: Bool { channel.isUsable }

    /// The started queue with `index`, if any.
    public func queue(_ index: Int) -> FrontendQueue? {
        queues[index]
    }

    /// Stops every started queue (`SET_VRING_ENABLE` 0 and `GET_VRING_BASE`, so the back-end no
    /// longer touches our memory), then releases the socket, which closes it unless the caller
    /// holds another reference. The queues and memory stay valid for inspection.
    ///
    /// - Throws: `FrontendError` from stopping a queue; the connection is closed anyway.
    public func disconnect() throws(FrontendError) {
        defer { channel.poison() }
        guard channel.isUsable else { return }
        for index in queues.keys.sorted() {
            if let queue = queues[index] { _ = try stopQueue(queue) }
        }
    }

    /// Requires negotiation to have happened; returns its result.
    func requireNegotiated() throws(FrontendError) -> NegotiatedFeatures {
        guard let negotiated else { throw .negotiationState(negotiated: false) }
        return negotiated
    }

    /// Requires `feature` among the negotiated protocol features.
    func require(_ feature: ProtocolFeatures) throws(FrontendError) {
        guard try requireNegotiated().protocolFeatures.contains(feature) else { throw .notNegotiated(feature) }
    }

    /// Sends a request that has no reply: with REPLY_ACK negotiated, with NEED_REPLY and a checked
    /// ack; otherwise fire and forget.
    func sendAcknowledged(_ message: FrontendMessage, fds: [Int32] = []) throws(FrontendError) {
        if negotiated?.protocolFeatures.contains(.replyAck) == true {
            try channel.sendAwaitingAck(message, fds: fds)
        } else {
            try channel.send(message, fds: fds)
        }
    }
}
