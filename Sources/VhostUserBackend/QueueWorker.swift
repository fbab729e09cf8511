import VhostUserProtocol
import Logging
import VMMSysUtil

/// A thread serving some of a session's rings: it waits with a `Poller` on their kick
/// notifiers, the device's own event sources registered on those rings, its completion wake-up
/// (deferred chains completed on other threads) and a control notifier, and calls the device
/// for a ring after each kick or event. Only this thread touches its rings (hence no lock on the
/// data path).
///
/// The control thread changes ring configuration only while every worker is parked: `pause()`
/// then `waitUntilParked()`, change, `resume()`. A parked worker holds no poller registration of a
/// kick fd, so the control thread may close or replace them. Before parking, the worker quiesces
/// the rings the control thread named in `pause(quiescing:changing:)`: it waits up to
/// `completionTimeout` for their postponed chains, publishing completions as they come, then
/// refuses the rest; when the ring is about to stop or be re-created, it first lets the device
/// give back the chains it keeps (`VhostUserDevice.queueChanging`). After each resume the worker
/// registers the current kick fds, tells the device about rings that (re)started, and serves
/// every started ring once (a kick may have come while it was parked, or before the ring started).
///
/// Thread-safety: `pause`, `waitUntilParked`, `resume`, `stop` and `removeSources(ring:)` (while
/// parked) are for the control thread; `addSource` / `removeSource` for the worker thread.
final class QueueWorker: @unchecked Sendable {
    private enum Command { case run, pause, exit }
    private enum Work { case kick, event(PollEvent), completions }
    private struct Source {
        let ring: Int
        let descriptor: Int32
        let token: UInt64
    }

    private let rings: [Vring]
    private let device: any VhostUserDevice
    private let logger: Logger
    private let poller: Poller
    private let control: EventNotifier
    /// Signalled by other threads' deferred completions (shared by this worker's rings).
    let wakeup: WorkerWakeup
    /// Watches only `wakeup`: waiting for deferred completions while quiescing.
    private let completionPoller: Poller
    private var completionEvents = PollEvents(capacity: 1)
    private let completionTimeout: Duration
    /// Poll mode (`VhostUserSessionOptions.pollTime`); `.zero`: off.
    private let pollTime: Duration
    private let state = ConditionLock()
    // Guarded by `state`.
    private var command = Command.pause
    private var parked = false
    /// Counts `pause()` requests; the worker parks anew for each (see `park()`).
    private var pauseRequests: UInt64 = 0
    /// The request the worker last parked for.
    private var parkedFor: UInt64 = 0
    /// By ring position: quiesce the ring before parking (named by the latest `pause`, taken
    /// by the worker when it parks for it).
    private var quiesceMarks: [Bool]
    /// With `quiesceMarks`: the change the marked rings are about to undergo, if any.
    private var quiesceChange: QueueChange?
    private var thread: JoinableThread?
    /// Kick fds registered with the poller (worker thread only).
    private var registered: [Int32] = []
    /// Device event sources by slot (poller token `sourceTokenBase + slot`).
    private var sources: [Source?] = []
    /// Per ring position: the ring's `startCount` the device was told about (`queueStarted`).
    private var announced: [UInt64]
    private static let controlToken = UInt64.max
    private static let wakeupToken = UInt64.max - 1
    private static let sourceTokenBase: UInt64 = 1 << 32

    /// Creates a parked worker for `rings` and starts its thread.
    ///
    /// - Throws: `VhostUserError.worker` if the poller, notifier or thread cannot be created.
    init(
        rings: [Vring], device: any VhostUserDevice, completionTimeout: Duration, pollTime: Duration = .zero,
        logger: Logger
    ) throws(VhostUserError) {
        self.rings = rings
        self.pollTime = pollTime
        self.device = device
        self.logger = logger
        self.completionTimeout = completionTimeout
        announced = Array(repeating: 0, count: rings.count)
        quiesceMarks = Array(repeating: false, count: rings.count)
        do {
            poller = try Poller()
            control = try EventNotifier()
            wakeup = try WorkerWakeup()
            completionPoller = try Poller()
            try poller.register(control.waitDescriptor, interest: .readable, token: Self.controlToken)
            try poller.register(wakeup.notifier.waitDescriptor, interest: .readable, token: Self.wakeupToken)
            try completionPoller.register(wakeup.notifier.waitDescriptor, interest: .readable, token: Self.wakeupToken)
        } catch {
            throw .worker("\(error)")
        }
        do throws(SystemCallError) {
            thread = try JoinableThread { [self] in run() }
        } catch {
            throw .worker("\(error)")
        }
    }

    /// Asks the worker to park (returns at once; see `waitUntilParked`). Before parking it
    /// quiesces those of `draining` it serves; with a `change`, the device first gives back what
    /// it keeps of them. The marks are handed over under the lock: the worker may be reading
    /// them at this moment (it parks on its own at start, or for an earlier request).
    func pause(quiescing draining: [Vring] = [], changing change: QueueChange? = nil) {
        state.withLock {
            guard command != .exit else { return }
            command = .pause
            pauseRequests &+= 1
            for (position, ring) in rings.enumerated() where draining.contains(where: { $0 === ring }) {
                quiesceMarks[position] = true
            }
            quiesceChange = change
            state.broadcast()
        }
        // A failed notify on our own notifier cannot happen short of fd exhaustion; the worker
        // then still parks at its next wake-up.
        try? control.notify()
    }

    /// Blocks until the worker is parked (it finishes a callback in progress, and quiesces the
    /// marked rings, first).
    func waitUntilParked() {
        state.withLock {
            while !(parked && parkedFor == pauseRequests) && command != .exit { state.wait() }
        }
    }

    /// Lets a parked worker run again.
    func resume() {
        state.withLock {
            if command == .pause { command = .run }
            state.broadcast()
        }
    }

    /// True once the control thread asked the worker to park or exit: a device waiting inside
    /// `process` (see `VhostUserQueue.shouldYield`) must then return promptly. Any thread.
    var yieldRequested: Bool { state.withLock { command != .run } }

    /// Ends the thread and waits for it. Idempotent.
    func stop() {
        state.withLock {
            command = .exit
            state.broadcast()
        }
        try? control.notify()
        if let thread {
            thread.join()
            self.thread = nil
        }
        for slot in sources.indices { sources[slot] = nil }
    }

    // MARK: device event sources

    /// Registers a device source for ring `ring` (worker thread, from a device callback).
    func addSource(ring: Int, descriptor: Int32, interest: PollInterest, token: UInt64) throws(VhostUserError) {
        guard !sources.contains(where: { $0?.ring == ring && $0?.token == token }) else {
            throw .eventSource(index: ring, "token \(token) is already watched")
        }
        let slot = sources.firstIndex(where: { $0 == nil }) ?? sources.count
        do {
            try poller.register(descriptor, interest: interest, token: Self.sourceTokenBase + UInt64(slot))
        } catch {
            throw .eventSource(index: ring, "fd \(descriptor): \(error)")
        }
        let source = Source(ring: ring, descriptor: descriptor, token: token)
        if slot == sources.count { sources.append(source) } else { sources[slot] = source }
    }

    /// Removes a device source (worker thread).
    func removeSource(ring: Int, token: UInt64) {
        guard let slot = sources.firstIndex(where: { $0?.ring == ring && $0?.token == token }),
            let source = sources[slot]
        else { return }
        // The device may have closed the fd already (then the poller forgot it itself).
        try? poller.deregister(source.descriptor)
        sources[slot] = nil
    }

    /// Removes every source of ring `ring` (control thread, worker parked): the ring stopped.
    func removeSources(ring: Int) {
        for slot in sources.indices {
            guard let source = sources[slot], source.ring == ring else { continue }
            removeSource(ring: ring, token: source.token)
        }
    }

    // MARK: the loop

    private func run() {
        // The worker writes to the front-end's call and log fds; with the pipe backend, a
        // front-end gone away must cost an EPIPE (ignored), not the process.
        do {
            try BrokenPipeSignal.blockOnThisThread()
        } catch {
            logger.warning("queue worker: cannot block SIGPIPE: \(error)")
        }
        var events = PollEvents(capacity: rings.count + 16)
        let clock = ContinuousClock()
        // While set, the worker is in a poll window (see `pollRound`) that ends at this instant.
        var pollingUntil: ContinuousClock.Instant?
        while true {
            let current = state.withLock { command }
            if current != .run {
                pollingUntil = nil
                guard park() else { break }
                continue
            }
            let polling = rings.contains { $0.isPolled && $0.enabled && !$0.broken }
            let count: Int
            do {
                let timeout: Duration? = pollingUntil != nil ? .zero : polling ? .milliseconds(1) : nil
                count = try poller.wait(into: &events, timeout: timeout)
            } catch {
                logger.error("queue worker: poller wait failed: \(error)")
                state.withLock { command = .pause }
                continue
            }
            for i in 0..<count {
                dispatch(events[i])
            }
            if polling {
                for ring in rings where ring.isPolled { serve(ring, .kick) }
            }
            if pollTime > .zero {
                let busy = pollRound() || count > 0
                let now = clock.now
                if busy {
                    pollingUntil = now + pollTime
                } else if let until = pollingUntil, now >= until {
                    // Idle for a whole window: notifications back on (each ring re-checked once
                    // by a normal serve), then sleep on the poller.
                    pollingUntil = nil
                    for ring in rings { serve(ring, .kick) }
                }
            }
        }
    }

    // MARK: poll mode

    /// `process` calls per ring between two looks at the poller (and the clock) in poll mode:
    /// each look is a system call, which would otherwise cost more than an empty poll.
    private static let spinsPerRound = 64

    /// Serves the started rings with available-buffer notifications off (the driver need not kick
    /// while the worker polls), publishing and signalling after each call that completed
    /// something, for `spinsPerRound` calls per ring in all. A ring's turn lasts while its calls
    /// move chains and ends at its first idle call; the rings then take turns again until the
    /// calls are spent: a busy ring is not held up by idle ones (the unused direction, the
    /// control queue), and the poller and clock are looked at once per round, not once per idle
    /// ring. Returns whether any ring published a used entry.
    private func pollRound() -> Bool {
        var busy = false
        let budget = Self.spinsPerRound * rings.count
        var calls = 0
        while calls < budget {
            let before = calls
            for ring in rings where ring.isStarted && ring.enabled && !ring.broken {
                guard
                    let (made, published) = ring.queue?.inPlace({ queue in
                        poll(ring, &queue, limit: max(1, budget - calls))
                    })
                else { continue }
                calls += made
                busy = busy || published
            }
            if calls == before { break }
        }
        return busy
    }

    /// One ring's turn in `pollRound`, on its queue in place: at most `limit` calls; returns the
    /// calls made and whether they published anything.
    private func poll(_ ring: Vring, _ queue: inout VhostUserQueue, limit: Int) -> (Int, Bool) {
        queue.worker = self
        queue.call = ring.call
        defer {
            queue.worker = nil
            queue.call = nil
        }
        var busy = false
        var calls = 0
        do {
            try announceStart(ring, &queue)
            queue.ring.disableNotifications()
            while calls < limit {
                calls += 1
                let popped = queue.popCount
                try device.process(&queue)
                _ = try queue.drainCompletions()
                guard queue.staged > 0 else {
                    if queue.popCount == popped { break }
                    continue
                }
                queue.flush()
                queue.signalIfNeeded()
                busy = true
            }
        } catch {
            queue.flush()
            markBroken(ring, error)
        }
        return (calls, busy)
    }

    private func dispatch(_ event: PollEvent) {
        let token = event.token
        switch token {
        case Self.controlToken:
            _ = try? control.tryConsume()
        case Self.wakeupToken:
            wakeup.rearm()
            for ring in rings { serve(ring, .completions) }
        case Self.sourceTokenBase...:
            let slot = Int(token - Self.sourceTokenBase)
            guard slot < sources.count, let source = sources[slot],
                let ring = rings.first(where: { $0.index == source.ring })
            else { return }
            var deviceEvent = event
            deviceEvent.token = source.token
            serve(ring, .event(deviceEvent))
        default:
            guard token < UInt64(rings.count) else { return }
            let ring = rings[Int(token)]
            if let kick = ring.kick {
                do {
                    _ = try kick.tryConsume()
                } catch {
                    // A kick fd whose writer went away would report readable forever.
                    logger.warning("ring \(ring.index): kick fd failed (\(error)); no longer watched")
                    deregister(kick.waitDescriptor)
                }
            }
            serve(ring, .kick)
        }
    }

    /// Parks until resumed (true) or told to exit (false).
    ///
    /// Each `pause()` gets a park of its own: a pause that arrives while the worker is still
    /// parked from the previous one (resumed, but not yet awake) makes it leave and park again,
    /// quiescing the rings marked for the new one. Otherwise two requests in a row
    /// (`SET_VRING_ENABLE` 0 then `GET_VRING_BASE`, as QEMU stops a ring) would find the worker
    /// parked already and skip the second one's quiesce: its postponed chains not waited for,
    /// the device not asked to give back what it keeps.
    private func park() -> Bool {
        var outcome = Command.pause
        while outcome == .pause {
            // The request parked for is the one whose marks were taken: a pause arriving while
            // the worker quiesces finds it not parked for it, and it parks again for that one.
            let (marks, change, request) = state.withLock {
                defer {
                    for position in quiesceMarks.indices { quiesceMarks[position] = false }
                    quiesceChange = nil
                }
                return (quiesceMarks, quiesceChange, pauseRequests)
            }
            for (position, ring) in rings.enumerated() where marks[position] { quiesce(ring, change) }
            for fd in registered { try? poller.deregister(fd) }
            registered.removeAll(keepingCapacity: true)
            outcome = state.withLock {
                parked = true
                parkedFor = request
                state.broadcast()
                while command == .pause && parkedFor == pauseRequests { state.wait() }
                parked = false
                return command
            }
        }
        guard outcome == .run else { return false }
        _ = try? control.tryConsume()
        for (position, ring) in rings.enumerated() {
            guard let kick = ring.kick, ring.isStarted else { continue }
            do {
                try poller.register(kick.waitDescriptor, interest: .readable, token: UInt64(position))
                registered.append(kick.waitDescriptor)
            } catch {
                logger.error("ring \(ring.index): cannot watch kick fd: \(error)")
            }
        }
        for ring in rings { serve(ring, .kick) }
        return true
    }

    private func deregister(_ fd: Int32) {
        try? poller.deregister(fd)
        registered.removeAll { $0 == fd }
    }

    /// Waits up to `completionTimeout` for the ring's postponed chains, publishing completions as
    /// they arrive, then refuses those still held (`CompletionChannel.abandon`). Worker thread.
    private func quiesce(_ ring: Vring, _ change: QueueChange?) {
        guard var queue = ring.queue.take() else { return }
        queue.call = ring.call
        if let change { announceChange(change, ring, &queue) }
        let clock = ContinuousClock()
        let deadline = clock.now + completionTimeout
        while queue.postponedCount > 0 {
            wakeup.rearm()
            publishCompletions(&queue, ring)
            let remaining = deadline - clock.now
            guard queue.postponedCount > 0, remaining > .zero else { break }
            _ = try? completionPoller.wait(into: &completionEvents, timeout: remaining)
        }
        if queue.postponedCount > 0 {
            let (abandoned, completing) = queue.completions.abandon(keeping: queue.ring.chainReferences)
            // Completions producers won just before: their entries land within instructions.
            var landing = completing
            let landingDeadline = clock.now + .milliseconds(100)
            while landing > 0, clock.now < landingDeadline {
                let before = queue.postponedCount
                publishCompletions(&queue, ring)
                landing -= before - queue.postponedCount
                if landing > 0 { yieldThread() }
            }
            queue.abandoned += abandoned
            logger.warning(
                "ring \(ring.index): \(abandoned.count) postponed chain(s) not completed within \(completionTimeout); their completions are refused (an inflight region keeps them for resubmission)"
            )
        }
        queue.call = nil
        ring.queue = consume queue
    }

    /// Lets the device give back the chains it keeps before the ring stops or is re-created
    /// (`VhostUserDevice.queueChanging`), and publishes what it completed: the driver gets those
    /// buffers back before the control thread answers. Only a device told of the ring's current
    /// start can hold any of its chains.
    private func announceChange(_ change: QueueChange, _ ring: Vring, _ queue: inout VhostUserQueue) {
        guard !ring.broken, let position = rings.firstIndex(where: { $0 === ring }),
            announced[position] == ring.startCount
        else { return }
        queue.worker = self
        queue.completions.beginServing()
        do {
            try device.queueChanging(&queue, to: change)
            _ = try queue.drainCompletions()
        } catch {
            markBroken(ring, error)
        }
        queue.flush()
        queue.completions.endServing()
        queue.log?.notificationFieldsWritten()
        queue.signalIfNeeded()
        queue.worker = nil
    }

    private func publishCompletions(_ queue: inout VhostUserQueue, _ ring: Vring) {
        guard !ring.broken else { return }
        do {
            guard try queue.drainCompletions() > 0 else { return }
        } catch {
            markBroken(ring, error)
        }
        queue.flush()
        queue.signalIfNeeded()
    }

    /// Serves one ring for a kick, a device event or deferred completions: notification
    /// suppression around `process`, batch publication, call.
    ///
    /// The driver is signalled after every round that published something, not only when the
    /// ring runs dry: a paced device (rate limit) may keep a ring busy for a long time, and its
    /// completions must reach the driver meanwhile. When the control thread asks the worker to
    /// park, the loop ends after the current round (notifications re-enabled); the worker serves
    /// every ring again once resumed, so chains left available are not forgotten.
    private func serve(_ ring: Vring, _ work: Work) {
        guard !ring.broken else { return }
        // A disabled ring takes no new chains, but completions of chains it gave out still land.
        if case .completions = work {} else if !ring.enabled { return }
        guard var queue = ring.queue.take() else { return }
        queue.worker = self
        queue.call = ring.call
        // Kicks keep the historical rule (a call check after every drain); events and
        // completions signal only when they published something.
        var signal = true
        // Completions the device makes on this thread during its callbacks are drained below.
        if case .completions = work {} else { queue.completions.beginServing() }
        do {
            switch work {
            case .completions:
                signal = try queue.drainCompletions() > 0
            case .event(let event):
                try announceStart(ring, &queue)
                try device.handle(event, on: &queue)
                _ = try queue.drainCompletions()
                signal = queue.staged > 0
            case .kick:
                try announceStart(ring, &queue)
                try drain(&queue)
            }
            queue.flush()
        } catch {
            queue.flush()
            markBroken(ring, error)
        }
        queue.completions.endServing()
        queue.log?.notificationFieldsWritten()
        if signal { queue.signalIfNeeded() }
        queue.worker = nil
        queue.call = nil
        ring.queue = consume queue
    }

    /// Calls `queueStarted` once per start of the ring, before anything else reaches the device.
    private func announceStart(_ ring: Vring, _ queue: inout VhostUserQueue) throws {
        guard let position = rings.firstIndex(where: { $0 === ring }), announced[position] != ring.startCount else {
            return
        }
        announced[position] = ring.startCount
        try device.queueStarted(&queue)
    }

    private func drain(_ queue: inout VhostUserQueue) throws {
        while true {
            queue.ring.disableNotifications()
            let popped = queue.popCount
            let offered = queue.ring.hasAvailable
            try device.process(&queue)
            _ = try queue.drainCompletions()
            queue.flush()
            let more = queue.ring.enableNotifications()
            // A device that took nothing of what was offered leaves it for later (an rx ring
            // waits for host data, a paced device for tokens): it is called again on the next
            // kick or event. But chains that arrived only after it looked (the driver saw
            // notifications off and did not kick) must be offered again, or they are lost.
            if !more || yieldRequested || (queue.popCount == popped && offered) { break }
            queue.signalIfNeeded()
        }
    }

    private func markBroken(_ ring: Vring, _ error: any Error) {
        ring.broken = true
        logger.error("ring \(ring.index) broken: \(error)")
        try? ring.err?.notify()
    }
}
