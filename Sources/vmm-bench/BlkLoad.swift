// The front-end side of `vmm-bench blk`: one VhostUserFrontend connection to a vhost-user-blk
// back-end, guest memory shared with SET_MEM_TABLE, and a closed loop of 4 KiB requests.
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import VMMBenchCases
import VMMSysUtil
import VhostUserFrontend
import Virtio
import VirtioBlock
import VirtioBlockDriver

/// What one load case produced.
struct BlkLoadResult {
    var requests = 0
    var seconds = 0.0
    var p50 = 0.0
    var p99 = 0.0
    /// Kicks we sent (event suppression honoured) and calls we received, in the measured period.
    var kicks = 0
    var calls = 0
    /// Times the front-end blocked in poll(2) waiting for a call, in the slices, warm-up and
    /// drain included.
    var waits = 0
    /// Requests completed in the slices, warm-up and drain included, and the daemon's CPU time
    /// (ns) over the same span (0 where not measured).
    var completed = 0
    var cpuNanoseconds: UInt64 = 0
    /// The front-end's (this benchmark's driving thread's) CPU time (ns) over the same span.
    var driverNanoseconds: UInt64 = 0

    var cpuPerRequest: Double? {
        completed > 0 && cpuNanoseconds > 0 ? Double(cpuNanoseconds) / Double(completed) : nil
    }
    var driverPerRequest: Double? {
        completed > 0 && driverNanoseconds > 0 ? Double(driverNanoseconds) / Double(completed) : nil
    }
    var iops: Double { seconds > 0 ? Double(requests) / seconds : 0 }
    var kicksPerRequest: Double { requests > 0 ? Double(kicks) / Double(requests) : 0 }
    var callsPerRequest: Double { requests > 0 ? Double(calls) / Double(requests) : 0 }
}

/// Failures of the load loop that are the back-end's fault.
struct BlkLoadError: Error, CustomStringConvertible {
    let description: String
}

/// A connected, negotiated front-end with `queues.count` started queues and request slots.
///
/// Thread-safety: driven by one thread.
final class BlkSession {
    static let blockSize = 4096
    static let queueSize = 128
    static let maxDepth = 32
    /// VIRTIO_BLK_F_FLUSH (writes complete into the page cache, as with a write-back cache) and
    /// VIRTIO_BLK_F_MQ.
    static let flushFeature = VirtioFeatures(bit: 9)
    static let multiqueueFeature = VirtioFeatures(bit: 12)

    let frontend: VhostUserFrontend
    let memory: GuestMemory
    let queues: [FrontendQueue]
    /// 4 KiB blocks in the image.
    let blocks: UInt64
    /// Slots by queue, `maxDepth` each; data 4 KiB aligned.
    let slots: [[VirtioBlockRequest]]
    /// Post time (ns) and slot of each id in flight, at `queue * queueSize + id`.
    private let started: UnsafeMutablePointer<UInt64>
    private let slotOfID: UnsafeMutablePointer<Int>
    /// Latency samples (ns) of the measured period.
    private let samples: UnsafeMutablePointer<UInt32>
    private static let sampleCapacity = 1 << 22
    private let pollfds: UnsafeMutablePointer<pollfd>
    /// Calls are eventfd counters (exact count) or 8-byte pipe writes.
    private let callsAreCounters: Bool
    private let shared: SharedMemory
    /// The front-end's polling window (ns; 0: none): see `drive`.
    let idlePollNanoseconds: UInt64
    /// The current case's totals and sample count (see `beginCase`).
    private var total = BlkLoadResult()
    private var sampleCount = 0

    /// The inode of the file behind guest memory (memfd, shm object or file): how its mappings
    /// are found in the daemon's /proc/PID/smaps.
    var guestInode: UInt64 {
        var info = stat()
        guard fstat(shared.descriptor, &info) == 0 else { return 0 }
        return UInt64(info.st_ino)
    }

    /// - Parameter dirtyLog: turn dirty logging on after the queues started, as QEMU does when a
    ///   migration begins (the log is never read: the back-end's cost is the atomic ORs).
    /// - Parameter idlePollMicroseconds: the front-end's polling window (`drive`); 0: none.
    init(socket: String, maxQueues: Int, dirtyLog: Bool = false, idlePollMicroseconds: Int = 0) throws {
        idlePollNanoseconds = UInt64(max(0, idlePollMicroseconds)) * 1000
        frontend = try VhostUserFrontend(connectingTo: socket, timeout: .seconds(10))
        let negotiated = try frontend.negotiate(
            features: [.version1, .ringEventIndex, Self.flushFeature, Self.multiqueueFeature])
        guard negotiated.features.contains(.ringEventIndex), negotiated.features.contains(Self.flushFeature) else {
            throw BlkLoadError(description: "the back-end did not accept EVENT_IDX and FLUSH")
        }
        let offered = negotiated.features.contains(Self.multiqueueFeature) ? (negotiated.queueCount ?? 1) : 1
        let queueCount = max(1, min(offered, maxQueues))
        let config = try frontend.readConfig(size: 8)
        let capacity = config.withUnsafeBytes { UInt64(littleEndian: $0.loadUnaligned(as: UInt64.self)) }
        blocks = capacity / UInt64(Self.blockSize / 512)
        guard blocks > 0 else { throw BlkLoadError(description: "the disk is smaller than one block") }

        shared = try SharedMemory(size: 4 << 20)
        memory = try frontend.setMemory([FrontendMemoryRegion(shared)])
        var queues: [FrontendQueue] = []
        var slots: [[VirtioBlockRequest]] = []
        for q in 0..<queueCount {
            queues.append(try frontend.startQueue(index: q, size: Self.queueSize, ringAddress: UInt64(q) * 0x4000))
            // Header 512 bytes before a 4 KiB boundary, so the data is page aligned.
            slots.append(
                (0..<Self.maxDepth).map {
                    VirtioBlockRequest(
                        at: 0x10_0000 + UInt64(q) * 0x4_0000 + UInt64($0) * 0x2000 + 0xE00,
                        dataLength: UInt32(Self.blockSize))
                })
        }
        if dirtyLog { _ = try frontend.startLogging() }
        self.queues = queues
        self.slots = slots
        started = .allocate(capacity: queueCount * Self.queueSize)
        started.initialize(repeating: 0, count: queueCount * Self.queueSize)
        slotOfID = .allocate(capacity: queueCount * Self.queueSize)
        slotOfID.initialize(repeating: -1, count: queueCount * Self.queueSize)
        samples = .allocate(capacity: Self.sampleCapacity)
        pollfds = .allocate(capacity: queueCount)
        pollfds.initialize(repeating: pollfd(fd: -1, events: 0, revents: 0), count: queueCount)
        callsAreCounters = (try? EventNotifier.defaultBackend) == .eventfd
    }

    deinit {
        started.deallocate()
        slotOfID.deallocate()
        samples.deallocate()
        pollfds.deallocate()
    }

    /// Stops the queues and closes the connection.
    func close() {
        try? frontend.disconnect()
    }

    /// One slice of a case: keeps `depth` random 4 KiB requests of `kind` in flight on each of the
    /// first `queueCount` queues, `warmup` ns unrecorded, then `duration` ns measured (added to the
    /// case's figures); then waits for what is left in flight. Several queues are driven by one
    /// thread each, as fio runs one job per queue: a single thread serving every queue would
    /// leave completed requests of the other queues unreplaced while it waits for the CPU on a
    /// busy machine, and measure itself rather than the back-end.
    func run(
        _ kind: BlockRequestType, depth: Int, queueCount: Int, warmup: UInt64, duration: UInt64,
        seed: UInt64
    ) throws {
        let active = min(queueCount, queues.count)
        let depth = min(max(depth, 1), Self.maxDepth)
        let room = Self.sampleCapacity - sampleCount
        guard active > 1 else {
            let (result, recorded) = try drive(
                kind, depth: depth, queues: 0..<1, warmup: warmup, duration: duration, seed: seed,
                samples: samples + sampleCount, capacity: room)
            add(result, seconds: result.seconds, recorded: recorded)
            return
        }
        let share = room / active
        let outcomes = UnsafeMutablePointer<Result<(BlkLoadResult, Int), any Error>>.allocate(capacity: active)
        outcomes.initialize(repeating: .failure(BlkLoadError(description: "driver thread did not run")), count: active)
        defer {
            outcomes.deinitialize(count: active)
            outcomes.deallocate()
        }
        let shared = BlkDriverShared(session: self, outcomes: outcomes, samples: samples + sampleCount)
        var threads: [JoinableThread] = []
        defer { for thread in threads { thread.join() } }
        for q in 0..<active {
            let queueSeed = seed &+ UInt64(q) &* 0x9E37_79B9
            threads.append(
                try JoinableThread {
                    // Safe: each thread writes only its own outcome slot and its own part of the
                    // sample buffer, and drives only its own queue.
                    shared.outcomes[q] = Result {
                        try shared.session.drive(
                            kind, depth: depth, queues: q..<(q + 1), warmup: warmup, duration: duration,
                            seed: queueSeed, samples: shared.samples + q * share, capacity: share)
                    }
                })
        }
        for thread in threads { thread.join() }
        threads.removeAll()
        var combined = BlkLoadResult()
        var seconds = 0.0
        var recorded = 0
        for q in 0..<active {
            let (result, count) = try outcomes[q].get()
            combined.requests += result.requests
            combined.kicks += result.kicks
            combined.calls += result.calls
            combined.waits += result.waits
            combined.completed += result.completed
            seconds = max(seconds, result.seconds)
            // Compacted so the case's samples stay contiguous.
            (samples + sampleCount + recorded).update(from: samples + sampleCount + q * share, count: count)
            recorded += count
        }
        add(combined, seconds: seconds, recorded: recorded)
    }

    /// Adds one slice's figures (measured over `seconds`) and `recorded` latency samples.
    private func add(_ result: BlkLoadResult, seconds: Double, recorded: Int) {
        total.requests += result.requests
        total.seconds += seconds
        total.kicks += result.kicks
        total.calls += result.calls
        total.waits += result.waits
        total.completed += result.completed
        sampleCount += recorded
    }

    /// The closed loop over `queues` (see `run`): latency samples go to `samples` (at most
    /// `capacity`). Returns the slice's figures and how many samples it recorded.
    ///
    /// When a pass over the queues reaps nothing, the loop asks for a call, looks once more and
    /// blocks in poll(2). With a polling window (`idlePollNanoseconds`) it first keeps passing
    /// over the used rings (memory reads and a vDSO clock read), yielding the CPU between passes,
    /// until something is published or the window ends. Why: this machine is itself a VM whose idle vCPUs halt
    /// (plain HLT, no cpuidle-haltpoll), so a completion that lands while the front-end blocks
    /// wakes a halted vCPU, which costs 100-300 µs when the host is busy; fio, the disk's own
    /// figure, never crosses CPUs. A Linux guest on a KVM host rarely pays that: KVM polls a
    /// halted vCPU for wake-ups before scheduling it out (`halt_poll_ns`, 200 µs on x86 by
    /// default; Documentation/virt/kvm/halt-polling.rst), and guests with the cpuidle-haltpoll
    /// driver poll inside the guest first (`guest_halt_poll_ns`, default 200 µs;
    /// Documentation/virt/guest-halt-polling.rst). The window lets the benchmark's driver model
    /// such a guest; 0 keeps the plain blocking driver. The yield stands for what the guest's
    /// idle polling does when another task becomes runnable on its vCPU (it stops polling and
    /// runs it): without it, a spinning driver thread that shares its CPU with the daemon (one
    /// CPU) or with the other queues' driver threads (four queues) holds that CPU for its whole
    /// time slice while the completion it waits for cannot be published or reaped. Measured on
    /// this machine (`--direct --aio io_uring`, 200 µs, interleaved runs, medians): without the
    /// yield four queues at depth 1 (four driver threads on CPU 0) went from 77-80k IOPS to
    /// 40-42k with the daemon on CPU 1 and from 72-75k to 10-12k on one CPU; with it to 91-92k
    /// and 82-83k. Alone on its CPU the yield returns at once.
    func drive(
        _ kind: BlockRequestType, depth: Int, queues range: Range<Int>, warmup: UInt64, duration: UInt64,
        seed: UInt64, samples: UnsafeMutablePointer<UInt32>, capacity: Int
    ) throws -> (BlkLoadResult, Int) {
        var random = seed | 1
        var result = BlkLoadResult()
        var recorded = 0
        var recording = false
        var posting = true
        var inFlight = 0
        /// Calls were requested (used_event set) since the last completion.
        var armed = false
        /// Where the current idle stretch's polling window ends (monotonic ns); 0: no stretch.
        var pollingUntil: UInt64 = 0
        let window = idlePollNanoseconds
        try drainCalls(range)

        func next() -> UInt64 {
            random ^= random << 13
            random ^= random >> 7
            random ^= random << 17
            return random % blocks
        }
        func post(queue q: Int, slot s: Int) throws {
            let sector = next() * UInt64(Self.blockSize / 512)
            let id = try slots[q][s].post(kind, sector: sector, on: queues[q], memory: memory)
            guard Int(id) < Self.queueSize else { throw BlkLoadError(description: "id \(id) out of range") }
            started[q * Self.queueSize + Int(id)] = monotonicNanoseconds()
            slotOfID[q * Self.queueSize + Int(id)] = s
            inFlight += 1
        }

        for q in range {
            for s in 0..<depth { try post(queue: q, slot: s) }
            if try queues[q].kickIfNeeded() { result.kicks += 1 }
        }
        var start = monotonicNanoseconds()
        var end = start &+ warmup
        while posting || inFlight > 0 {
            var reaped = 0
            for q in range {
                let queue = queues[q]
                while let used = try queue.reap() {
                    let now = monotonicNanoseconds()
                    let key = q * Self.queueSize + Int(used.id)
                    let s = slotOfID[key]
                    guard Int(used.id) < Self.queueSize, s >= 0 else {
                        throw BlkLoadError(description: "completion of id \(used.id) not in flight")
                    }
                    slotOfID[key] = -1
                    inFlight -= 1
                    reaped += 1
                    result.completed += 1
                    let status = try slots[q][s].status(in: memory)
                    guard status == BlockStatus.ok else {
                        throw BlkLoadError(description: "request completed with status \(status)")
                    }
                    if recording && posting {
                        result.requests += 1
                        if recorded < capacity {
                            samples[recorded] = UInt32(clamping: now &- started[key])
                            recorded += 1
                        }
                    }
                    if posting { try post(queue: q, slot: s) }
                }
                if reaped > 0, try queue.kickIfNeeded(), recording { result.kicks += 1 }
            }
            if posting && monotonicNanoseconds() >= end {
                if recording {
                    posting = false
                    result.seconds = Double(monotonicNanoseconds() &- start) / 1e9
                } else {
                    recording = true
                    result.kicks = 0
                    result.calls = 0
                    start = monotonicNanoseconds()
                    end = start &+ duration
                }
            }
            if reaped > 0 {
                armed = false
                pollingUntil = 0
            } else if inFlight > 0 {
                if window > 0 && !armed {
                    // The polling window: pass over the used rings again, letting any other
                    // runnable thread of this CPU run first, until it ends; only then ask for a
                    // call and block.
                    let now = monotonicNanoseconds()
                    if pollingUntil == 0 { pollingUntil = now &+ window }
                    if now < pollingUntil {
                        yieldThread()
                        continue
                    }
                }
                if armed {
                    // Asked for a call and looked once more: nothing yet, so block.
                    let calls = try waitForCalls(range)
                    result.waits += 1
                    if recording && posting { result.calls += calls }
                    armed = false
                } else {
                    for q in range { queues[q].requestCall() }
                    armed = true
                }
            }
        }
        return (result, recorded)
    }

    /// Starts accumulating a case's slices.
    func beginCase() {
        total = BlkLoadResult()
        sampleCount = 0
    }

    /// The case's figures over every slice since `beginCase()`.
    func finishCase() -> BlkLoadResult {
        var result = total
        if sampleCount > 0 {
            var sorted = UnsafeMutableBufferPointer(start: samples, count: sampleCount)
            sorted.sort()
            result.p50 = Double(sorted[(sampleCount - 1) / 2])
            result.p99 = Double(sorted[min(sampleCount - 1, (sampleCount * 99 + 99) / 100 - 1)])
        }
        return result
    }

    /// Blocks (at most 10 s) until a call comes on one of `range`'s queues (calls already
    /// requested), and consumes the calls. Returns how many calls were consumed.
    private func waitForCalls(_ range: Range<Int>) throws -> Int {
        for q in range { pollfds[q] = pollfd(fd: queues[q].callDescriptor, events: Int16(POLLIN), revents: 0) }
        let ready = try systemCall("poll") { poll(pollfds + range.lowerBound, nfds_t(range.count), 10_000) }
        guard ready > 0 else { throw BlkLoadError(description: "no completion within 10 s") }
        return try consumeCalls(range)
    }

    /// Consumes calls that are already pending on `range`'s queues (none blocks).
    private func drainCalls(_ range: Range<Int>) throws {
        for q in range { pollfds[q] = pollfd(fd: queues[q].callDescriptor, events: Int16(POLLIN), revents: 0) }
        _ = try systemCall("poll") { poll(pollfds + range.lowerBound, nfds_t(range.count), 0) }
        _ = try consumeCalls(range)
    }

    /// Reads every call descriptor of `range` that `poll` reported readable: an eventfd's counter
    /// is the number of calls; a pipe carries 8 bytes per call.
    private func consumeCalls(_ range: Range<Int>) throws -> Int {
        var calls = 0
        for q in range where pollfds[q].revents & Int16(POLLIN) != 0 {
            var value: (UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0)
            let fd = pollfds[q].fd
            // Safe: reads at most the 32 bytes of `value`, which outlives the call.
            let n = try withUnsafeMutableBytes(of: &value) { (bytes) throws(SystemCallError) -> Int in
                try systemCall("read") { read(fd, bytes.baseAddress, callsAreCounters ? 8 : bytes.count) }
            }
            calls += callsAreCounters ? Int(truncatingIfNeeded: value.0) : n / 8
        }
        return calls
    }
}

/// What the driving threads of one slice share: the session (each thread drives only its own
/// queue, its own slots and its own part of the sample buffer) and one outcome slot per thread.
/// Hence `@unchecked Sendable`.
private struct BlkDriverShared: @unchecked Sendable {
    let session: BlkSession
    let outcomes: UnsafeMutablePointer<Result<(BlkLoadResult, Int), any Error>>
    /// Where the slice's samples start; thread q writes from `q * share`.
    let samples: UnsafeMutablePointer<UInt32>
}
