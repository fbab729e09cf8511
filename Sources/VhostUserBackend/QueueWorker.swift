import VhostUserProtocol
import Logging
import VMMSysUtil

/// A thread serving some of a session's rings: it waits on their kick notifiers and a control
/// notifier with a `Poller`, and calls the device's `process` for a ring after each kick.
///
/// The control thread changes ring configuration only while every worker is parked: `pause()`
/// then `waitUntilParked()`, change, `resume()`. A parked worker holds no poller registration of a
/// kick fd, so the control thread may close or replace them. After each resume the worker
/// registers the current kick fds and serves every started ring once (a kick may have come while
/// it was parked, or before the ring started).
///
/// Thread-safety: `pause`, `waitUntilParked`, `resume` and `stop` are for the control thread.
final class QueueWorker: @unchecked Sendable {
    private enum Command { case run, pause, exit }

    private let rings: [Vring]
    private let device: any VhostUserDevice
    private let logger: Logger
    private let poller: Poller
    private let control: EventNotifier
    private let state = ConditionLock()
    // Guarded by `state`.
    private var command = Command.pause
    private var parked = false
    private var thread: JoinableThread?
    /// Kick fds registered with the poller (worker thread only).
    private var registered: [Int32] = []
    private static let controlToken = UInt64.max

    /// Creates a parked worker for `rings` and starts its thread.
    ///
    /// - Throws: `VhostUserError.worker` if the poller, notifier or thread cannot be created.
    init(rings: [Vring], device: any VhostUserDevice, logger: Logger) throws(VhostUserError) {
        self.rings = rings
        self.device = device
        self.logger = logger
        do {
            poller = try Poller()
            control = try EventNotifier()
            try poller.register(control.waitDescriptor, interest: .readable, token: Self.controlToken)
        } catch {
            throw .worker("\(error)")
        }
        do throws(SystemCallError) {
            thread = try JoinableThread { [self] in run() }
        } catch {
            throw .worker("\(error)")
        }
    }

    /// Asks the worker to park (returns at once; see `waitUntilParked`).
    func pause() {
        state.withLock { if command == .run { command = .pause } }
        // A failed notify on our own notifier cannot happen short of fd exhaustion; the worker
        // then still parks at its next wake-up.
        try? control.notify()
    }

    /// Blocks until the worker is parked (it finishes a `process` call in progress first).
    func waitUntilParked() {
        state.withLock {
            while !parked && command != .exit { state.wait() }
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
    }

    private func run() {
        var events = PollEvents(capacity: rings.count + 1)
        while true {
            let current = state.withLock { command }
            if current != .run {
                guard park() else { break }
                continue
            }
            let polling = rings.contains { $0.isPolled && $0.enabled && !$0.broken }
            let count: Int
            do {
                count = try poller.wait(into: &events, timeout: polling ? .milliseconds(1) : nil)
            } catch {
                logger.error("queue worker: poller wait failed: \(error)")
                state.withLock { command = .pause }
                continue
            }
            for i in 0..<count {
                let token = events[i].token
                if token == Self.controlToken {
                    _ = try? control.tryConsume()
                    continue
                }
                guard token < UInt64(rings.count) else { continue }
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
                serve(ring)
            }
            if polling {
                for ring in rings where ring.isPolled { serve(ring) }
            }
        }
    }

    /// Parks until resumed (true) or told to exit (false).
    private func park() -> Bool {
        for fd in registered { try? poller.deregister(fd) }
        registered.removeAll(keepingCapacity: true)
        let resumed: Bool = state.withLock {
            parked = true
            state.broadcast()
            while command == .pause { state.wait() }
            parked = false
            return command == .run
        }
        guard resumed else { return false }
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
        for ring in rings { serve(ring) }
        return true
    }

    private func deregister(_ fd: Int32) {
        try? poller.deregister(fd)
        registered.removeAll { $0 == fd }
    }

    /// Drains one ring: notification suppression around `process`, batch publication, call.
    ///
    /// The driver is signalled after every round that published something, not only when the
    /// ring runs dry: a paced device (rate limit) may keep a ring busy for a long time, and its
    /// completions must reach the driver meanwhile. When the control thread asks the worker to
    /// park, the loop ends after the current round (notifications re-enabled); the worker serves
    /// every ring again once resumed, so chains left available are not forgotten.
    private func serve(_ ring: Vring) {
        guard ring.enabled, !ring.broken, var queue = ring.queue.take() else { return }
        queue.worker = self
        queue.call = ring.call
        defer {
            queue.worker = nil
            queue.call = nil
            ring.queue = queue
        }
        do {
            while true {
                queue.ring.disableNotifications()
                try device.process(&queue)
                queue.flush()
                let more = queue.ring.enableNotifications()
                if !more || yieldRequested { break }
                queue.signalIfNeeded()
            }
        } catch {
            queue.flush()
            ring.broken = true
            logger.error("ring \(ring.index) broken: \(error)")
            try? ring.err?.notify()
        }
        queue.log?.notificationFieldsWritten()
        queue.signalIfNeeded()
    }
}
