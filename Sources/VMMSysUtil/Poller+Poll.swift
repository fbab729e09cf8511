// The poll(2) backend: every POSIX system. Built and tested on Linux too.
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Level-triggered poll(2) over a snapshot of the registration table.
///
/// Slot 0 of the pollfd array is the wake-up notifier; the other slots are rebuilt from the table
/// whenever it changed since the last wait (reusing the arrays, which only grow). A registration
/// change while a wait is blocked notifies the wake-up so the waiter rebuilds and polls again
/// (returning only if `wake()` was called, something is ready, or the timeout is over); a report
/// is delivered only if the slot's generation still matches the table.
final class PollPoller: PollerImplementation, @unchecked Sendable {
    private let wakeNotifier: EventNotifier
    private let table = RegistrationTable()
    /// Serialises waits: the arrays below belong to the waiter holding it.
    private let waiterMutex = ConditionLock()
    private var descriptors: UnsafeMutablePointer<pollfd>
    private var generations: UnsafeMutablePointer<UInt32>
    private var slotCapacity: Int
    private var slotCount = 0
    /// The slot the next scan of poll's results starts at (1 is the first registration).
    private var scanStart = 1
    /// The table version the arrays were built from; `nil` before the first build.
    private var builtVersion: UInt64?

    init() throws(SystemCallError) {
        wakeNotifier = try EventNotifier(available: .native, nonBlockingWait: true)
        slotCapacity = 16
        descriptors = .allocate(capacity: slotCapacity)
        generations = .allocate(capacity: slotCapacity)
    }

    deinit {
        descriptors.deallocate()
        generations.deallocate()
    }

    func register(_ fd: Int32, interest: PollInterest, token: UInt64) throws(SystemCallError) {
        // poll(2) would only report POLLNVAL later; refuse a closed descriptor now, as epoll does.
        _ = try systemCall("fcntl(F_GETFD)") { fcntl(fd, F_GETFD) }
        try changed { (state) throws(SystemCallError) in
            let registration = try state.prepareAdd(fd, interest: interest, token: token)
            state.store(fd, registration)
        }
    }

    func modify(_ fd: Int32, interest: PollInterest, token: UInt64) throws(SystemCallError) {
        try changed { (state) throws(SystemCallError) in
            var registration = try state.existing(fd, operation: "Poller.modify")
            registration.interest = interest
            registration.token = token
            state.store(fd, registration)
        }
    }

    func deregister(_ fd: Int32) throws(SystemCallError) {
        try changed { (state) throws(SystemCallError) in _ = try state.remove(fd) }
    }

    /// Applies a change and, if a wait is blocked on the old snapshot, wakes it to rebuild.
    private func changed(_ body: (inout RegistrationTable.State) throws(SystemCallError) -> Void)
        throws(SystemCallError)
    {
        let waiterToWake = try table.withLock { (state) throws(SystemCallError) -> Bool in
            try body(&state)
            return state.pollerIsWaiting
        }
        if waiterToWake { try wakeNotifier.notify() }
    }

    func wait(into events: inout PollEvents, timeout: Duration?) throws(SystemCallError) -> Int {
        waiterMutex.lock()
        defer { waiterMutex.unlock() }
        let start = ContinuousClock.now
        var remaining = timeout
        while true {
            let outcome = try waitOnce(into: &events, timeout: remaining)
            // Return unless the only thing that happened was a registration change (the internal
            // wake-up with no wake() behind it): then rebuild and wait out the rest of the timeout.
            guard outcome == .rebuildOnly else { return events.count }
            if let timeout {
                let left = timeout - (ContinuousClock.now - start)
                if left <= .zero { return 0 }
                remaining = left
            }
        }
    }

    private enum WaitOutcome { case done, rebuildOnly }

    /// One poll(2) over a fresh snapshot; fills `events`.
    private func waitOnce(into events: inout PollEvents, timeout: Duration?) throws(SystemCallError) -> WaitOutcome {
        events.count = 0
        table.withLock { state in
            if builtVersion != state.version { rebuild(from: state) }
            state.pollerIsWaiting = true
        }
        let descriptors = descriptors
        let count = nfds_t(slotCount)
        let milliseconds = pollMilliseconds(timeout)
        // Safe: `descriptors` holds `slotCount` initialised pollfds, owned by this waiter.
        let result: Result<Int32, SystemCallError> = Result { () throws(SystemCallError) -> Int32 in
            try systemCall("poll", retryOnInterrupt: false) {
                let n = poll(descriptors, count, milliseconds)
                return n == -1 && Errno.current == .interrupted ? 0 : n
            }
        }
        var wokenByCaller = false
        table.withLock { state in
            state.pollerIsWaiting = false
            guard case .success(let ready) = result, ready > 0 else { return }
            wokenByCaller = state.wakeRequested
            state.wakeRequested = false
            var remaining = Int(ready)
            if descriptors[0].revents != 0 { remaining -= 1 }
            // Scan from where the last full buffer stopped, so with more ready descriptors than
            // capacity every one is reported in turn (as epoll's ready list does).
            var slot = scanStart < slotCount ? scanStart : 1
            var visited = 1
            while remaining > 0 && visited < slotCount && events.count < events.capacity {
                let revents = Int32(descriptors[slot].revents)
                if revents != 0 {
                    remaining -= 1
                    if let event = state.resolve(
                        descriptors[slot].fd, generation: generations[slot],
                        readable: revents & Int32(POLLIN | POLLPRI) != 0,
                        writable: revents & Int32(POLLOUT) != 0,
                        hangup: revents & Int32(POLLHUP | POLLERR | POLLNVAL) != 0)
                    {
                        events.append(event)
                    }
                }
                slot = slot + 1 < slotCount ? slot + 1 : 1
                visited += 1
            }
            scanStart = slot
        }
        let ready = try result.get()
        guard ready > 0 && descriptors[0].revents != 0 else { return .done }
        _ = try wakeNotifier.tryConsume()
        return events.count == 0 && !wokenByCaller ? .rebuildOnly : .done
    }

    /// Refills the pollfd array from the table; grows it (the only allocation) when it is too small.
    private func rebuild(from state: RegistrationTable.State) {
        let needed = state.entries.count + 1
        if needed > slotCapacity {
            var newCapacity = slotCapacity
            while newCapacity < needed { newCapacity *= 2 }
            descriptors.deallocate()
            generations.deallocate()
            descriptors = .allocate(capacity: newCapacity)
            generations = .allocate(capacity: newCapacity)
            slotCapacity = newCapacity
        }
        // pollfd and UInt32 are trivial types: plain assignment into allocated memory is safe.
        descriptors[0] = pollfd(fd: wakeNotifier.waitDescriptor, events: Int16(POLLIN), revents: 0)
        generations[0] = wakeGeneration
        var slot = 1
        state.entries.forEach { fd, registration in
            var wanted: Int32 = 0
            if registration.interest.contains(.readable) { wanted |= Int32(POLLIN) }
            if registration.interest.contains(.writable) { wanted |= Int32(POLLOUT) }
            descriptors[slot] = pollfd(fd: fd, events: Int16(truncatingIfNeeded: wanted), revents: 0)
            generations[slot] = registration.generation
            slot += 1
        }
        slotCount = slot
        scanStart = 1
        builtVersion = state.version
    }

    func wake() throws(SystemCallError) {
        // Marked first, so the waiter can tell a caller's wake from a rebuild request.
        table.withLock { state in state.wakeRequested = true }
        try wakeNotifier.notify()
    }
}
