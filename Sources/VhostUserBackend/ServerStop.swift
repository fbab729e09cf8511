import VMMSysUtil

/// A server's stop request: a flag that, once set, stays set, and the control thread's waiter to
/// wake when it is set.
///
/// Thread-safety: every method may be called from any thread (one lock; `request` never waits
/// for the control thread).
final class StopRequest: @unchecked Sendable {
    private let lock = ConditionLock()
    private var requested = false
    private var waiting: [ObjectIdentifier: Poller] = [:]

    /// Whether `request` was called.
    var isRequested: Bool { lock.withLock { requested } }

    /// Sets the flag and wakes every attached waiter (a wake before its wait is kept by the poller).
    func request() {
        lock.withLock {
            requested = true
            // Nothing to do if a wake fails: the waiter then sees the flag after its current wait
            // (every wait of the control thread is bounded by a deadline or by readiness).
            for poller in waiting.values { try? poller.wake() }
        }
    }

    /// Makes `poller` one that `request` wakes. Attach before checking `isRequested`, so a request
    /// in between still wakes the next wait.
    func attach(_ poller: Poller) {
        lock.withLock { waiting[ObjectIdentifier(poller)] = poller }
    }

    func detach(_ poller: Poller) {
        lock.withLock { _ = waiting.removeValue(forKey: ObjectIdentifier(poller)) }
    }
}

/// What a wait of the control thread ended with.
enum ControlWaitOutcome {
    /// The descriptor is readable (or at end of stream, or failed: the next read says which).
    case ready
    /// The deadline passed first.
    case timedOut
    /// The server was asked to stop.
    case stopped
}

/// How the control thread waits: for one descriptor (the listener, or the connection) to become
/// readable, for a deadline, or for a stop request, whichever comes first. Owns a poller
/// (its descriptors are closed when this goes away) attached to the server's `StopRequest`.
///
/// Thread-safety: used by the one control thread that created it.
final class ControlWaiter {
    private let poller: Poller
    private let stop: StopRequest
    private var events = PollEvents(capacity: 4)
    private var watched: Int32?

    /// - Throws: what `Poller.init` throws (the process is out of descriptors, or `VMM_POLLER`
    ///   names an unavailable backend).
    init(stop: StopRequest) throws {
        poller = try Poller()
        self.stop = stop
        stop.attach(poller)
    }

    deinit {
        if let watched { try? poller.deregister(watched) }
        stop.detach(poller)
    }

    /// Watches `fd` for readability from now on (instead of the previous one).
    ///
    /// - Throws: `SystemCallError` from the poller.
    func watch(_ fd: Int32) throws(SystemCallError) {
        if let watched { try poller.deregister(watched) }
        watched = nil
        try poller.register(fd, interest: .readable, token: 0)
        watched = fd
    }

    /// Stops watching (before the watched descriptor is closed).
    func unwatch() {
        if let watched { try? poller.deregister(watched) }
        watched = nil
    }

    /// Waits until the watched descriptor is readable, `deadline` passes (nil: never), or a stop
    /// is requested. A stop requested before the call returns `.stopped` at once.
    ///
    /// - Throws: `SystemCallError` from the poller's wait.
    func waitReadable(until deadline: ContinuousClock.Instant?) throws(SystemCallError) -> ControlWaitOutcome {
        while true {
            if stop.isRequested { return .stopped }
            var timeout: Duration?
            if let deadline {
                let left = deadline - .now
                if left <= .zero { return .timedOut }
                timeout = left
            }
            // 0 events: a wake (the flag says whether it was a stop), EINTR, or the timeout; the
            // loop sorts them out.
            // One descriptor is registered: any event is its readiness.
            if try poller.wait(into: &events, timeout: timeout) > 0 {
                return stop.isRequested ? .stopped : .ready
            }
        }
    }
}
