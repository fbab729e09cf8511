// The kqueue backend: Darwin, FreeBSD, OpenBSD; Linux with libkqueue (-DVMM_LIBKQUEUE); or
// type-checked only against Platform/kqueue-typecheck (-DVMM_KQUEUE_TYPECHECK). Kept small and
// written against kqueue(2): everything it shares with the other backends is common code.
// EVFILT_USER (the wake-up) exists on Darwin, FreeBSD, libkqueue, and OpenBSD from 7.8.
//
// Portability rules: EV_SET is a macro Swift cannot import, and FreeBSD 12+ adds fields to
// struct kevent (and makes `data` 64-bit), so events are zero-initialised and their fields set by
// name, never with the memberwise initialiser; constants come from the system header.
#if canImport(Darwin) || os(FreeBSD) || os(OpenBSD) || VMM_LIBKQUEUE || VMM_KQUEUE_TYPECHECK
import CVMMPlatform
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

let kqueueBackendIsAvailable = true
let kqueueKernelEventStride = MemoryLayout<kevent>.stride

func makeKqueuePoller() throws(SystemCallError) -> any PollerImplementation { try KqueuePoller() }

/// Level-triggered kqueue: one EVFILT_READ and/or EVFILT_WRITE knote per registered descriptor,
/// its udata carrying the registration generation; `wake()` triggers an EV_CLEAR EVFILT_USER knote.
final class KqueuePoller: PollerImplementation, @unchecked Sendable {
    private let kqueueFD: Int32
    private let table = RegistrationTable()
    /// The EVFILT_USER identifier (its own namespace, unrelated to descriptors).
    private static let wakeIdent: UInt = 0

    init() throws(SystemCallError) {
        let fd = try systemCall("kqueue") { kqueue() }
        kqueueFD = fd
        // Assigned before anything can throw, so deinit closes it on every failure below.
        try setDescriptorFlag(fd, FD_CLOEXEC)
        try change(
            ident: KqueuePoller.wakeIdent, filter: EVFILT_USER, flags: EV_ADD | EV_CLEAR, fflags: 0,
            generation: wakeGeneration)
    }

    deinit { _ = systemClose(kqueueFD) }

    /// Applies one change; with no event list, kevent reports a failed change as -1 and errno.
    private func change(ident: UInt, filter: Int32, flags: Int32, fflags: Int32, generation: UInt32)
        throws(SystemCallError)
    {
        var event = kevent()
        event.ident = ident
        event.filter = Int16(truncatingIfNeeded: filter)
        event.flags = UInt16(truncatingIfNeeded: flags)
        event.fflags = UInt32(truncatingIfNeeded: fflags)
        event.data = 0
        event.udata = UnsafeMutableRawPointer(bitPattern: UInt(generation))
        let kqueueFD = kqueueFD
        _ = try systemCall("kevent") { kevent(kqueueFD, &event, 1, nil, 0, nil) }
    }

    private func setFilter(_ fd: Int32, _ filter: Int32, add: Bool, generation: UInt32) throws(SystemCallError) {
        try change(
            ident: UInt(bitPattern: Int(fd)), filter: filter, flags: add ? EV_ADD : EV_DELETE, fflags: 0,
            generation: generation)
    }

    /// Moves the knotes of `fd` from interest `old` to `new`: additions first (undone if one
    /// fails, so a failed change leaves the old filters), then removals.
    private func apply(_ fd: Int32, from old: PollInterest, to new: Registration) throws(SystemCallError) {
        let filters = [(PollInterest.readable, EVFILT_READ), (PollInterest.writable, EVFILT_WRITE)]
        var added: [Int32] = []
        do throws(SystemCallError) {
            for (flag, filter) in filters where new.interest.contains(flag) && !old.contains(flag) {
                try setFilter(fd, filter, add: true, generation: new.generation)
                added.append(filter)
            }
        } catch {
            for filter in added { try? setFilter(fd, filter, add: false, generation: new.generation) }
            throw error
        }
        for (flag, filter) in filters where old.contains(flag) && !new.interest.contains(flag) {
            try setFilter(fd, filter, add: false, generation: new.generation)
        }
    }

    func register(_ fd: Int32, interest: PollInterest, token: UInt64) throws(SystemCallError) {
        try table.withLock { (state) throws(SystemCallError) in
            let registration = try state.prepareAdd(fd, interest: interest, token: token)
            // With no filter nothing would check the descriptor: do it, as epoll would.
            _ = try systemCall("fcntl(F_GETFD)") { fcntl(fd, F_GETFD) }
            try apply(fd, from: [], to: registration)
            state.store(fd, registration)
        }
    }

    func modify(_ fd: Int32, interest: PollInterest, token: UInt64) throws(SystemCallError) {
        try table.withLock { (state) throws(SystemCallError) in
            var registration = try state.existing(fd, operation: "Poller.modify")
            let old = registration.interest
            registration.interest = interest
            registration.token = token
            try apply(fd, from: old, to: registration)
            state.store(fd, registration)
        }
    }

    func deregister(_ fd: Int32) throws(SystemCallError) {
        try table.withLock { (state) throws(SystemCallError) in
            let registration = try state.remove(fd)
            var firstError: SystemCallError?
            for (flag, filter) in [(PollInterest.readable, EVFILT_READ), (.writable, EVFILT_WRITE)]
            where registration.interest.contains(flag) {
                do throws(SystemCallError) {
                    try setFilter(fd, filter, add: false, generation: registration.generation)
                } catch {
                    if firstError == nil { firstError = error }
                }
            }
            if let firstError { throw firstError }
        }
    }

    func wait(into events: inout PollEvents, timeout: Duration?) throws(SystemCallError) -> Int {
        events.count = 0
        let buffer = events.kernelEvents.assumingMemoryBound(to: kevent.self)
        let kqueueFD = kqueueFD
        let capacity = Int32(events.capacity)
        var deadline = timeout.map(pollTimespec) ?? timespec()
        let forever = timeout == nil
        // Safe: `buffer` holds `capacity` kevents (PollEvents sizes it for the largest layout).
        let ready = try systemCall("kevent", retryOnInterrupt: false) {
            let n =
                forever
                ? kevent(kqueueFD, nil, 0, buffer, capacity, nil)
                : kevent(kqueueFD, nil, 0, buffer, capacity, &deadline)
            return n == -1 && Errno.current == .interrupted ? 0 : n
        }
        if ready == 0 { return 0 }
        table.withLock { state in
            for index in 0..<Int(ready) {
                let report = buffer[index]
                let filter = Int32(report.filter)
                if filter == EVFILT_USER { continue }  // the wake-up; EV_CLEAR already reset it
                let generation = UInt32(truncatingIfNeeded: UInt(bitPattern: report.udata))
                let flags = Int32(report.flags)
                if let event = state.resolve(
                    Int32(truncatingIfNeeded: report.ident), generation: generation,
                    readable: filter == EVFILT_READ,
                    writable: filter == EVFILT_WRITE,
                    hangup: flags & (EV_EOF | EV_ERROR) != 0)
                {
                    events.append(event)
                }
            }
        }
        return events.count
    }

    func wake() throws(SystemCallError) {
        try change(
            ident: KqueuePoller.wakeIdent, filter: EVFILT_USER, flags: 0, fflags: NOTE_TRIGGER,
            generation: wakeGeneration)
    }
}
#else
let kqueueBackendIsAvailable = false
let kqueueKernelEventStride = 0

func makeKqueuePoller() throws(SystemCallError) -> any PollerImplementation {
    // Unreachable: Poller.init refuses an unavailable backend before building one.
    throw SystemCallError("kqueue", .noSystemCall)
}
#endif
