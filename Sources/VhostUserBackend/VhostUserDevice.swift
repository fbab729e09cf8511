import VhostUserProtocol
import Virtio
import VMMSysUtil

/// A virtio device served over vhost-user: what a device author implements. The framework
/// (`VhostUserSession`, `VhostUserServer`) does the protocol, memory, rings and notifications.
///
/// Threading: each ring is served by one queue worker thread, and only that thread touches the
/// ring, so devices need no locks for ring state.
/// - `queueStarted(_:)`, `process(_:)`, `handle(_:on:)` and `queueChanging(_:to:)` are called on
///   the ring's worker, one call per ring at a time; different rings may run concurrently (one
///   worker per ring by default, `VhostUserSessionOptions` groups them). Each gets the ring's `VhostUserQueue`: pop, complete,
///   `publish()`, `postpone(_:)`, and `watch`/`unwatch` the device's own event sources (a socket,
///   a tap fd, an `EventNotifier` another thread signals, a timer): readiness of a watched source
///   calls `handle(_:on:)` on that same worker with that ring's queue.
/// - A chain kept with `postpone(_:)` is completed later from any thread through its
///   `DeferredChain`; the worker publishes it (batched, EVENT_IDX honoured). `GET_VRING_BASE`,
///   `SET_MEM_TABLE`, `ADD_MEM_REG`/`REM_MEM_REG`, `RESET_DEVICE` and disconnect wait up to
///   `VhostUserSessionOptions.completionTimeout` for postponed chains; later completions are
///   refused (`CompletionError.ringStopped`) without touching guest memory.
/// - Every other requirement is called on the connection's control thread while no worker is
///   inside a callback. Event sources are removed when their ring stops, on `RESET_DEVICE` and on
///   disconnect, before `reset()` is called, so `reset()` may close them.
///
/// Mutable device state: a device is a class shared by those threads (hence `Sendable`). State
/// that only one ring's callbacks touch needs no lock; a `var` that two rings share, that
/// `DeferredChain` completions on your own threads touch, or that your code reads from outside
/// the callbacks (statistics, a test) needs one: guard it with a `ConditionLock` (VMMSysUtil) or
/// `Synchronization.Mutex`, declare the class `@unchecked Sendable`, and say in a comment which
/// lock guards what. Keep constant configuration in `let`s.
///
/// Errors: `process`, `handle` and `writeConfig` may throw any error (the framework logs it and
/// breaks the ring or closes the connection); the README's "Errors" table lists what each module
/// throws.
public protocol VhostUserDevice: AnyObject, Sendable {
    /// The virtio device ID (for logs and `--print-capabilities`).
    var deviceType: VirtioDeviceType { get }
    /// Device-specific feature bits plus any transport bits the device wants (e.g. VERSION_1,
    /// RING_PACKED to offer packed rings; IN_ORDER only if it completes every chain in the order
    /// `pop()` returned it, postponed ones included). The framework adds PROTOCOL_FEATURES,
    /// RING_EVENT_IDX and RING_INDIRECT_DESC itself. A transport bit the framework cannot serve
    /// (ACCESS_PLATFORM, ...) makes `VhostUserSession.init` throw `VhostUserError.unservableFeature`.
    var deviceFeatures: VirtioFeatures { get }
    /// Protocol features the device needs beyond the framework's own (blk: `.config`). Default [].
    var requiredProtocolFeatures: ProtocolFeatures { get }
    /// Number of queues (answers `GET_QUEUE_NUM`; ring indices at or above it are refused).
    var queueCount: Int { get }
    /// Largest queue size accepted in `SET_VRING_NUM` (a power of two, at most 32768).
    var maxQueueSize: Int { get }
    /// Bytes of config space; `GET/SET_CONFIG` beyond it are refused. 0: no CONFIG protocol feature.
    var configSize: Int { get }
    /// Copies config space bytes `[offset, offset + buffer.count)` (little-endian virtio layout)
    /// into `buffer`. The framework has checked the range lies within `configSize`.
    /// Default: zeros.
    func readConfig(offset: Int, into buffer: UnsafeMutableRawBufferPointer)
    /// Applies a `SET_CONFIG` write of `bytes` at `offset` (range within `configSize`).
    /// Default: throws `VhostUserError.configWriteRefused`.
    ///
    /// - Throws: any error to refuse the write (the connection is then closed).
    func writeConfig(offset: Int, bytes: UnsafeRawBufferPointer) throws
    /// Called on the queue's worker thread after a kick (and after the ring (re)starts): drain the
    /// queue with `queue.pop()` / `queue.complete(_:written:)`, completing (or postponing with
    /// `queue.postpone(_:)`) every chain popped before returning. The framework wraps this in the notification disable/drain/enable/re-check loop,
    /// records in-flight chains (INFLIGHT_SHMFD), publishes used entries in one batch per call and
    /// signals the call fd when the driver wants it.
    ///
    /// A device may wait inside `process` (pacing, back-pressure): it then publishes what it
    /// completed with `queue.publish()`, and returns promptly once `queue.shouldYield` is set (the
    /// control thread is waiting for it, e.g. to answer `GET_VRING_BASE`); `queue.acquire(_:)`
    /// does both for a `TokenBucket`.
    ///
    /// - Throws: any error to mark the queue broken: it is no longer served and its err fd (if any)
    ///   is signalled.
    func process(_ queue: inout VhostUserQueue) throws
    /// Called on the ring's worker once each time the ring starts (and restarts), before any other
    /// callback for it: register the device's event sources for this ring here with
    /// `queue.watch(_:interest:token:)`. Default: nothing.
    ///
    /// - Throws: any error to mark the queue broken (as `process`).
    func queueStarted(_ queue: inout VhostUserQueue) throws
    /// A source the device watched on this ring (`queue.watch`) is ready (`event.token` is the
    /// device's token). Called on the ring's worker; pop, complete, postpone and publish as in
    /// `process`. Default: unwatches the source (a device that watches must implement this).
    ///
    /// - Throws: any error to mark the queue broken (as `process`).
    func handle(_ event: PollEvent, on queue: inout VhostUserQueue) throws
    /// The ring is about to stop (`GET_VRING_BASE`, `RESET_DEVICE`, disconnect) or to be
    /// re-created over a new memory table or new ring addresses (`SET_MEM_TABLE`,
    /// `ADD_MEM_REG`/`REM_MEM_REG`, `SET_VRING_ADDR`): complete (or postpone) every chain popped
    /// from it that you still keep. Called on the ring's worker, with the queue in hand, once per
    /// such change and only if `queueStarted(_:)` ran for the ring's current start; completions
    /// made here are published (and logged while migrating) before the change, so the driver gets
    /// those buffers back and the position `GET_VRING_BASE` reports accounts for them. After it
    /// returns, a chain popped earlier is stale: its buffers may no longer be mapped (the memory
    /// table changed) and its completion would be refused. Default: nothing (a device that
    /// completes or postpones every chain before its callbacks return keeps none).
    ///
    /// - Throws: any error to mark the queue broken (as `process`).
    func queueChanging(_ queue: inout VhostUserQueue, to change: QueueChange) throws
    /// The driver acked these features (`SET_FEATURES`); called before queues start.
    func featuresNegotiated(_ features: UInt64)
    /// `RESET_DEVICE` or the end of a session: forget per-session state.
    func reset()
    /// The front-end opened a back-end channel (`SET_BACKEND_REQ_FD`), or it went away (nil, at
    /// the end of the session). Keep it to send requests from any thread, e.g.
    /// `channel.sendConfigChange()` after the config space changed (a `BackendChannelSlot` keeps
    /// it thread-safely). Called on the control thread while queue workers may be running, unlike
    /// the other control-thread requirements. Default: ignored.
    func backendChannelChanged(_ channel: BackendChannel?)
}

extension VhostUserDevice {
    public var requiredProtocolFeatures: ProtocolFeatures { [] }
    public func readConfig(offset: Int, into buffer: UnsafeMutableRawBufferPointer) {
        if !buffer.isEmpty { buffer.initializeMemory(as: UInt8.self, repeating: 0) }
    }
    public func writeConfig(offset: Int, bytes: UnsafeRawBufferPointer) throws {
        throw VhostUserError.configWriteRefused(offset: offset, size: bytes.count)
    }
    public func featuresNegotiated(_ features: UInt64) {}
    public func queueChanging(_ queue: inout VhostUserQueue, to change: QueueChange) throws {}
    public func queueStarted(_ queue: inout VhostUserQueue) throws {}
    public func handle(_ event: PollEvent, on queue: inout VhostUserQueue) throws {
        queue.unwatch(token: event.token)
    }
    public func reset() {}
    public func backendChannelChanged(_ channel: BackendChannel?) {}
}
