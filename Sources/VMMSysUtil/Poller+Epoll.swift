// The epoll backend (Linux). Elsewhere the same names exist and report "unavailable".
#if os(Linux)
import CVMMPlatform
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// An epoll flag as the UInt32 `epoll_event.events` holds: glibc declares the flags as an enum,
/// musl as plain macros.
#if canImport(Glibc)
private func bits(_ flag: EPOLL_EVENTS) -> UInt32 { flag.rawValue }
#else
private func bits(_ flag: Int32) -> UInt32 { UInt32(bitPattern: flag) }
#endif

let epollBackendIsAvailable = true
let epollKernelEventStride = MemoryLayout<epoll_event>.stride

func makeEpollPoller() throws(SystemCallError) -> any PollerImplementation { try EpollPoller() }

/// Level-triggered epoll. The 64-bit user data carries `generation << 32 | fd`, so a report can be
/// checked against the registration table (as SwiftNIO does); the wake-up eventfd carries
/// generation 0.
final class EpollPoller: PollerImplementation, @unchecked Sendable {
    private let epollFD: Int32
    private let wakeNotifier: EventNotifier
    private let table = RegistrationTable()

    init() throws(SystemCallError) {
        // Non-blocking read side: several threads may wait on one epoll and drain the wake-up.
        let notifier = try EventNotifier(available: .native, nonBlockingWait: true)
        let fd = try systemCall("epoll_create1") { epoll_create1(Int32(EPOLL_CLOEXEC)) }
        var event = epoll_event()
        event.events = bits(EPOLLIN)
        event.data.u64 = EpollPoller.userData(notifier.waitDescriptor, generation: wakeGeneration)
        do throws(SystemCallError) {
            _ = try systemCall("epoll_ctl") { epoll_ctl(fd, EPOLL_CTL_ADD, notifier.waitDescriptor, &event) }
        } catch {
            _ = systemClose(fd)
            throw error
        }
        epollFD = fd
        wakeNotifier = notifier
    }

    deinit { _ = systemClose(epollFD) }

    private static func userData(_ fd: Int32, generation: UInt32) -> UInt64 {
        UInt64(generation) << 32 | UInt64(UInt32(bitPattern: fd))
    }

    private static func events(for interest: PollInterest) -> UInt32 {
        var events: UInt32 = 0
        if interest.contains(.readable) { events |= bits(EPOLLIN) | bits(EPOLLRDHUP) }
        if interest.contains(.writable) { events |= bits(EPOLLOUT) }
        return events
    }

    private func control(_ op: Int32, _ fd: Int32, _ registration: Registration) throws(SystemCallError) {
        var event = epoll_event()
        event.events = EpollPoller.events(for: registration.interest)
        event.data.u64 = EpollPoller.userData(fd, generation: registration.generation)
        let epollFD = epollFD
        _ = try systemCall("epoll_ctl") { epoll_ctl(epollFD, op, fd, &event) }
    }

    func register(_ fd: Int32, interest: PollInterest, token: UInt64) throws(SystemCallError) {
        try table.withLock { (state) throws(SystemCallError) in
            let registration = try state.prepareAdd(fd, interest: interest, token: token)
            try control(EPOLL_CTL_ADD, fd, registration)
            state.store(fd, registration)
        }
    }

    func modify(_ fd: Int32, interest: PollInterest, token: UInt64) throws(SystemCallError) {
        try table.withLock { (state) throws(SystemCallError) in
            var registration = try state.existing(fd, operation: "Poller.modify")
            registration.interest = interest
            registration.token = token
            try control(EPOLL_CTL_MOD, fd, registration)
            state.store(fd, registration)
        }
    }

    func deregister(_ fd: Int32) throws(SystemCallError) {
        try table.withLock { (state) throws(SystemCallError) in
            let registration = try state.remove(fd)
            try control(EPOLL_CTL_DEL, fd, registration)
        }
    }

    func wait(into events: inout PollEvents, timeout: Duration?) throws(SystemCallError) -> Int {
        events.count = 0
        let buffer = events.kernelEvents.assumingMemoryBound(to: epoll_event.self)
        let epollFD = epollFD
        let capacity = Int32(events.capacity)
        let milliseconds = pollMilliseconds(timeout)
        // Safe: `buffer` holds `capacity` epoll_events (PollEvents sizes it for the largest layout).
        let ready = try systemCall("epoll_wait", retryOnInterrupt: false) {
            let n = epoll_wait(epollFD, buffer, capacity, milliseconds)
            return n == -1 && Errno.current == .interrupted ? 0 : n
        }
        if ready == 0 { return 0 }
        var woken = false
        table.withLock { state in
            for index in 0..<Int(ready) {
                let report = buffer[index]
                let data = report.data.u64
                let generation = UInt32(truncatingIfNeeded: data >> 32)
                if generation == wakeGeneration {
                    woken = true
                    continue
                }
                let fd = Int32(bitPattern: UInt32(truncatingIfNeeded: data))
                let flags = report.events
                if let event = state.resolve(
                    fd, generation: generation,
                    readable: flags & (bits(EPOLLIN) | bits(EPOLLPRI) | bits(EPOLLRDHUP)) != 0,
                    writable: flags & bits(EPOLLOUT) != 0,
                    hangup: flags & (bits(EPOLLHUP) | bits(EPOLLERR)) != 0)
                {
                    events.append(event)
                }
            }
        }
        if woken { _ = try wakeNotifier.tryConsume() }
        return events.count
    }

    func wake() throws(SystemCallError) {
        try wakeNotifier.notify()
    }
}
#else
let epollBackendIsAvailable = false
let epollKernelEventStride = 0

func makeEpollPoller() throws(SystemCallError) -> any PollerImplementation {
    // Unreachable: Poller.init refuses an unavailable backend before building one.
    throw SystemCallError("epoll_create1", .noSystemCall)
}
#endif
