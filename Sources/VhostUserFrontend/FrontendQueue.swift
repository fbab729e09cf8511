import VhostUserProtocol
import CVMMPlatform
import Virtio
import VMMSysUtil

/// One started virtqueue of a `VhostUserFrontend`: the driver side of a split or packed ring in
/// shared guest memory, with its kick, call and error notifiers.
///
/// The data path (`post`, `kick`/`kickIfNeeded`, `reap`, `waitForUsed`) allocates nothing and makes
/// no socket request: a kick is one `write`, a wait one `read` (plus one `poll` with a timeout).
///
/// Thread-safety: not synchronized; one thread at a time drives a queue (it may move between
/// threads). Different queues are independent.
public final class FrontendQueue: @unchecked Sendable {
    /// The ring index.
    public let index: Int
    /// The queue size (descriptors).
    public let size: Int
    /// Whether the ring uses the packed layout (RING_PACKED negotiated).
    public let isPacked: Bool
    /// The ring's layout (packed when RING_PACKED was negotiated).
    public var layout: RingLayout { isPacked ? .packed : .split }
    /// Guest-physical addresses of the ring's three parts.
    public let addresses: RingAddresses
    /// The driver side, of the negotiated layout.
    let driver: DriverRing
    /// We notify it; the back-end waits on it.
    let kickNotifier: EventNotifier
    /// The back-end notifies it; we wait on it.
    let callNotifier: EventNotifier
    /// The back-end notifies it when the ring broke.
    let errorNotifier: EventNotifier
    /// EVENT_IDX on a split ring: `used_event` must follow what we reaped.
    let tracksUsedEvent: Bool
    /// The used index we expect next (split), mirroring the driver's own.
    var nextUsed: UInt16
    /// Whether the back-end was told to run this ring (cleared by `stopQueue`).
    public internal(set) var isStarted = false

    init(
        index: Int, size: Int, addresses: RingAddresses, memory: GuestMemory, features: VirtioFeatures,
        startIndex: UInt16
    ) throws(FrontendError) {
        self.index = index
        self.size = size
        self.addresses = addresses
        let packedLayout = features.contains(.ringPacked)
        isPacked = packedLayout
        do {
            if packedLayout {
                driver = .packed(
                    try DriverPackedQueue(memory: memory, size: size, addresses: addresses, features: features))
            } else {
                driver = .split(
                    try DriverSplitQueue(
                        memory: memory, size: size, addresses: addresses,
                        features: features, startIndex: startIndex))
            }
        } catch { throw .driverQueue(error) }
        tracksUsedEvent = !packedLayout && features.contains(.ringEventIndex)
        nextUsed = startIndex
        do throws(PrimitiveCreationError) {
            // Non-blocking read side, as QEMU makes its kick eventfds: the back-end consumes a kick
            // with one `read` after its poller reports it, instead of `poll` + `read`.
            kickNotifier = try EventNotifier(backend: nil, nonBlockingWait: true)
            callNotifier = try EventNotifier()
            errorNotifier = try EventNotifier()
        } catch { throw frontendError(error) }
    }

    /// Bytes a ring of `size` descriptors needs from a 64-byte aligned start: split = descriptor
    /// table, available ring (with `used_event`), used ring (64-byte aligned, with `avail_event`);
    /// packed = descriptor ring and the two 4-byte event-suppression areas.
    public static func ringBytes(size: Int, packed: Bool) -> UInt64 {
        let q = UInt64(max(size, 0))
        if packed { return 16 * q + 8 }
        return align64(16 * q + 6 + 2 * q) + 6 + 8 * q
    }

    /// Where each part of a ring at `address` (64-byte aligned) goes, in the layout `ringBytes`
    /// sizes.
    static func layout(at address: UInt64, size: Int, packed: Bool) -> RingAddresses {
        // Wrapping: an address near the top of the space yields parts that fail translation
        // (a typed error) instead of trapping here.
        let q = UInt64(max(size, 0))
        if packed {
            return RingAddresses(
                descriptorTable: address, driverArea: address &+ 16 &* q,
                deviceArea: address &+ 16 &* q &+ 4)
        }
        return RingAddresses(
            descriptorTable: address, driverArea: address &+ 16 &* q,
            deviceArea: address &+ align64(16 &* q &+ 6 &+ 2 &* q))
    }

    /// Free descriptors (split) or ring slots (packed) left for `post`.
    public var freeDescriptors: Int { driver.freeDescriptors }

    /// Posts a chain of buffers (device-readable ones first) without notifying the back-end.
    /// Allocates nothing.
    ///
    /// - Returns: the id `reap` will report for it (split head index or packed buffer id).
    /// - Throws: `.driverQueue` (`.queueFull`, `.emptyChain`).
    @discardableResult
    public func post(_ buffers: UnsafeBufferPointer<DriverBuffer>) throws(FrontendError) -> UInt16 {
        do {
            return try driver.post(buffers)
        } catch { throw .driverQueue(error) }
    }

    /// Array convenience for `post(_:)` (allocates; not for hot loops).
    @discardableResult
    public func post(_ buffers: [DriverBuffer]) throws(FrontendError) -> UInt16 {
        try buffers.withUnsafeBufferPointer { (pointer) throws(FrontendError) in try post(pointer) }
    }

    /// Notifies the back-end unconditionally (one `write`).
    ///
    /// - Throws: `.system` from the write.
    public func kick() throws(FrontendError) {
        do {
            try kickNotifier.notify()
        } catch { throw .system(error) }
    }

    /// Notifies the back-end if its event suppression asks for it (EVENT_IDX or NO_NOTIFY).
    ///
    /// - Returns: whether a kick was sent.
    /// - Throws: `.system` from the write.
    @discardableResult
    public func kickIfNeeded() throws(FrontendError) -> Bool {
        let needed = driver.needsKick()
        if needed { try kick() }
        return needed
    }

    /// The next completed chain, or nil if the back-end has published none. Allocates nothing.
    ///
    /// - Throws: `.driverQueue(.unknownUsedID)` if the back-end completed an id not in flight.
    public func reap() throws(FrontendError) -> UsedBuffer? {
        do {
            let used = try driver.reap()
            if used != nil { nextUsed &+= 1 }
            return used
        } catch { throw .driverQueue(error) }
    }

    /// Returns the next completed chain, waiting for the back-end's call if there is none yet.
    ///
    /// Before blocking it asks for a call (EVENT_IDX: `used_event` = the next used index) and looks
    /// again, so a completion published meanwhile is not missed. Allocates nothing.
    /// - Parameter timeout: the longest wait; nil waits forever.
    /// - Returns: the completion, or nil if none came within `timeout`.
    /// - Throws: `.driverQueue(.unknownUsedID)`, `.system` from waiting.
    public func waitForUsed(timeout: Duration?) throws(FrontendError) -> UsedBuffer? {
        let deadline = timeout.map { ContinuousClock.now + $0 }
        while true {
            if let used = try reap() { return used }
            requestCall()
            if let used = try reap() { return used }
            if let deadline {
                let remaining = deadline - ContinuousClock.now
                let wait = remaining <= .zero ? 0 : Int32(clamping: milliseconds(rounding: remaining))
                let ready: Bool
                do {
                    ready = try isReadable(callNotifier.waitDescriptor, timeoutMilliseconds: wait)
                } catch { throw .system(error) }
                guard ready else { return try reap() }
            }
            do {
                try callNotifier.wait()
            } catch { throw .system(error) }
        }
    }

    /// Asks the back-end to call at its next completion (EVENT_IDX on a split ring: `used_event` =
    /// the next used index we expect), ordered before any later look at the used ring. For a
    /// front-end that waits on several queues itself: `requestCall()`, `reap()` once more, and only
    /// then block on `callDescriptor`, so a completion published meanwhile is not missed.
    /// Allocates nothing; makes no system call.
    public func requestCall() {
        if tracksUsedEvent, case .split(let split) = driver {
            split.setUsedEvent(nextUsed)
            // The used_event store must be visible before we look at used->idx again (a
            // store-load order, hence a full fence), or a completion could slip between.
            vmm_fence_seq_cst()
        }
    }

    /// The descriptor the back-end's calls make readable (for `poll` over several queues). Owned
    /// by this queue: never close it. Consume a call by reading it once it polls readable (an
    /// eventfd's 8-byte counter, or a pipe's bytes), or with `waitForUsed`.
    public var callDescriptor: Int32 { callNotifier.waitDescriptor }

    /// Whether the back-end signalled an error on this ring since the last call (consumes it).
    ///
    /// - Throws: `.system` from reading the error notifier.
    public func consumeError() throws(FrontendError) -> Bool {
        do {
            return try errorNotifier.tryConsume()
        } catch { throw .system(error) }
    }
}

/// The driver side of one ring: exactly one layout.
///
/// Thread-safety: as the driver queues (one thread at a time).
enum DriverRing {
    case split(DriverSplitQueue)
    case packed(DriverPackedQueue)

    /// See `DriverQueue.post(_:indirectTable:)`.
    @inline(__always)
    func post(_ buffers: UnsafeBufferPointer<DriverBuffer>) throws(DriverQueueError) -> UInt16 {
        switch self {
        case .split(let split): try split.post(buffers, indirectTable: nil)
        case .packed(let packed): try packed.post(buffers, indirectTable: nil)
        }
    }

    /// See `DriverQueue.reap()`.
    @inline(__always)
    func reap() throws(DriverQueueError) -> UsedBuffer? {
        switch self {
        case .split(let split): try split.reap()
        case .packed(let packed): try packed.reap()
        }
    }

    /// See `DriverQueue.needsKick()`.
    @inline(__always)
    func needsKick() -> Bool {
        switch self {
        case .split(let split): split.needsKick()
        case .packed(let packed): packed.needsKick()
        }
    }

    /// See `DriverQueue.freeDescriptors`.
    var freeDescriptors: Int {
        switch self {
        case .split(let split): split.freeDescriptors
        case .packed(let packed): packed.freeDescriptors
        }
    }
}

@inline(__always)
func align64(_ value: UInt64) -> UInt64 { (value + 63) & ~63 }
