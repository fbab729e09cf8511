#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Testing
import VMMSysUtil
import VMMTestSupport
import Virtio
@testable import VhostUserProtocol
@testable import VhostUserBackend

/// A test device: fills every writable byte with `pattern`, records the ids it completes, and can
/// be told to "crash" (pop some chains, complete one, throw) to leave requests in flight.
final class PatternDevice: VhostUserDevice, @unchecked Sendable {
    let deviceType = VirtioDeviceType.entropy
    let deviceFeatures: VirtioFeatures
    let queueCount: Int
    let maxQueueSize = 256
    let configSize: Int
    let pattern: UInt8
    private let lock = ConditionLock()
    private var completedIDs: [UInt16] = []
    private var crashPlan: (pop: Int, complete: Int)?
    private var resets = 0

    struct Crash: Error {}

    /// Pops with `pop(into:)` (bursts of up to 4) instead of one `pop()` at a time.
    let bursts: Bool

    init(queueCount: Int = 1, configSize: Int = 0, pattern: UInt8 = 0xA5, packed: Bool = false, bursts: Bool = false) {
        deviceFeatures = packed ? [.version1, .ringPacked] : .version1
        self.queueCount = queueCount
        self.configSize = configSize
        self.pattern = pattern
        self.bursts = bursts
    }

    /// Next `process`: pop `pop` chains, complete only the `complete`th (0-based), then throw.
    func crashNextTime(pop: Int, complete: Int) { lock.withLock { crashPlan = (pop, complete) } }
    var completed: [UInt16] { lock.withLock { completedIDs } }
    var resetCount: Int { lock.withLock { resets } }

    func readConfig(offset: Int, into buffer: UnsafeMutableRawBufferPointer) {
        for i in buffer.indices { buffer[i] = UInt8(truncatingIfNeeded: offset + i) }
    }

    func reset() { lock.withLock { resets += 1 } }

    func process(_ queue: inout VhostUserQueue) throws {
        if let plan = lock.withLock({ crashPlan }) {
            lock.withLock { crashPlan = nil }
            var popped: [Chain] = []
            while popped.count < plan.pop, let chain = try popNext(&queue, max: plan.pop - popped.count) {
                popped += chain
            }
            if popped.indices.contains(plan.complete) { try fill(popped[plan.complete], &queue) }
            throw Crash()
        }
        while let chains = try popNext(&queue, max: 4) {
            for chain in chains { try fill(chain, &queue) }
        }
    }

    /// The next chain (`pop()`), or with `bursts` up to `max` chains (`pop(into:)`); nil when none.
    private func popNext(_ queue: inout VhostUserQueue, max: Int) throws -> [Chain]? {
        guard bursts else { return try queue.pop().map { [$0] } }
        let burst = UnsafeMutableBufferPointer<Chain>.allocate(capacity: max)
        defer { burst.deallocate() }
        let count = try queue.pop(into: burst)
        return count == 0 ? nil : Array(burst[..<count])
    }

    private func fill(_ chain: Chain, _ queue: inout VhostUserQueue) throws {
        try queue.complete(chain, written: try VhostUserBackendTests.fill(chain, with: pattern))
        lock.withLock { completedIDs.append(chain.id) }
    }
}

/// Fills a chain's writable buffers with `byte`; returns how many bytes that was.
func fill(_ chain: Chain, with byte: UInt8) throws -> UInt32 {
    var written: UInt32 = 0
    var buffers = chain.buffers()
    while let buffer = try buffers.next() {
        guard buffer.isWritable else { continue }
        buffer.bytes.initializeMemory(as: UInt8.self, repeating: byte)
        written += UInt32(buffer.bytes.count)
    }
    return written
}

/// Encodes `body` as a front-end would and decodes it as the back-end does; `fds` are duplicated
/// so the message owns its own copies.
func message(_ body: FrontendMessage, needsReply: Bool = false, fds: [Int32] = []) throws -> Message {
    var bytes: [UInt8] = []
    try Message.encodeRequest(body, needsReply: needsReply, into: &bytes)
    let owned = fds.map { fcntl($0, F_DUPFD_CLOEXEC, 0) }
    let raw = UnsafeMutableRawBufferPointer.allocate(byteCount: bytes.count, alignment: 8)
    defer { raw.deallocate() }
    raw.copyBytes(from: bytes)
    return try Message.decode(bytes: UnsafeRawBufferPointer(raw), descriptors: MessageDescriptors(adopting: owned))
}

/// Waits (bounded, 10 s) for `notifier` to be signalled and consumes it.
func waitForSignal(_ notifier: EventNotifier, milliseconds: Int32 = 10_000) -> Bool {
    var entry = pollfd(fd: notifier.waitDescriptor, events: Int16(POLLIN), revents: 0)
    while true {
        let n = poll(&entry, 1, milliseconds)
        if n == -1 && errno == EINTR { continue }
        guard n == 1 else { return false }
        return (try? notifier.tryConsume()) == true
    }
}

/// The next used entry, waiting (bounded) for call signals until one is there. Signals that come
/// without a used entry (the back-end signals a newly installed call fd once) are skipped.
/// Like a guest driver with EVENT_IDX, it asks (`used_event`) for a call at the next used entry
/// before it sleeps, then looks again so a completion published meanwhile is not missed.
func reapWaiting(_ rig: GuestRig) throws -> UsedBuffer? {
    for _ in 0..<10 {
        if let used = try rig.reap() { return used }
        rig.driver.setUsedEvent(rig.reaped)
        if let used = try rig.reap() { return used }
        guard waitForSignal(rig.call) else { return try rig.reap() }
    }
    return try rig.reap()
}

extension GuestRig {
    /// Posts one writable buffer of `length` bytes in slot `slot` of the buffer area.
    @discardableResult
    func postWritable(slot: Int, length: UInt32 = 64) throws -> UInt16 {
        try driver.post([
            DriverBuffer(address: Self.bufferBase + UInt64(slot) * 0x1000, length: length, isWritable: true)
        ])
    }

    func bytes(slot: Int, count: Int) -> [UInt8] {
        let start = memory.mapping.base + Int(Self.bufferBase) + slot * 0x1000
        return Array(UnsafeRawBufferPointer(start: start, count: count))
    }

    /// Every request a QEMU-like front-end sends to start ring 0, with the fds each carries.
    func startRequests(
        features: UInt64, protocolFeatures: ProtocolFeatures, base: UInt32 = 0,
        inflight: (InflightDescription, Int32)? = nil
    ) -> [(FrontendMessage, [Int32])] {
        var requests: [(FrontendMessage, [Int32])] = [
            (.setProtocolFeatures(protocolFeatures), []),
            (.setOwner, []),
            (.setFeatures(VirtioFeatures(rawValue: features)), []),
            (.setMemTable(MemoryTable(regions: [region])), [memory.descriptor]),
        ]
        if let inflight { requests.append((.setInflightFD(inflight.0), [inflight.1])) }
        requests += [
            (.setVringNum(VringState(index: 0, num: UInt32(Self.queueSize))), []),
            (.setVringBase(VringState(index: 0, num: base)), []),
            (.setVringAddr(vringAddress()), []),
            (.setVringKick(VringFileIndex(index: 0, hasFile: true)), [kick.waitDescriptor]),
            (.setVringCall(VringFileIndex(index: 0, hasFile: true)), [call.notifyDescriptor]),
            (.setVringEnable(VringState(index: 0, num: 1)), []),
        ]
        return requests
    }

    /// Feeds the start sequence to `session` directly.
    func start(
        _ session: VhostUserSession, protocolFeatures: ProtocolFeatures? = nil, base: UInt32 = 0,
        inflight: (InflightDescription, Int32)? = nil
    ) throws {
        let features = protocolFeatures ?? session.offeredProtocolFeatures
        for (body, fds) in startRequests(
            features: drivenFeatures, protocolFeatures: features, base: base, inflight: inflight)
        {
            _ = try session.handle(message(body, fds: fds))
        }
    }
}

/// Features a QEMU-like driver acks.
let drivenFeatures = VirtioFeatures([.version1, .protocolFeatures, .ringEventIndex, .ringIndirectDescriptors]).rawValue
