// Raw-syscall building blocks for the twins: what a C programmer would write, nothing more.
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import CVMMPlatform
import VMMSysUtil

/// Throws a `SystemCallError` for `operation` when `result` is -1.
@inline(__always)
func check<T: FixedWidthInteger>(_ operation: String, _ result: T) throws -> T {
    if result == -1 { throw SystemCallError(operation, Errno.current) }
    return result
}

/// The fd kinds a notifier can be built from.
enum RawNotifierKind: String, Sendable {
    case eventfd
    case pipe
}

/// A raw notifier: an eventfd (one fd for both ends) or a pipe (read end, write end), both blocking
/// and close-on-exec. `signal` writes 8 bytes; `consume` reads 8 bytes.
///
/// Thread-safety: `signal` and `consume` may run on different threads.
final class RawNotifier {
    let readFD: Int32
    let writeFD: Int32

    /// - Throws: `SystemCallError` from `eventfd` or `pipe`, or `BenchSkipped` where eventfd does not exist.
    init(_ kind: RawNotifierKind, nonBlockingWrite: Bool = false) throws {
        switch kind {
        case .eventfd:
            #if os(Linux)
            let fd = try check("eventfd", eventfd(0, Int32(EFD_CLOEXEC)))
            readFD = fd
            writeFD = fd
            #else
            throw BenchSkipped("no eventfd on this platform")
            #endif
        case .pipe:
            var fds: [Int32] = [-1, -1]
            #if os(Linux) || os(FreeBSD) || os(OpenBSD)
            _ = try check("pipe2", vmm_pipe2(&fds, O_CLOEXEC))
            #else
            _ = try check("pipe", vmm_pipe2(&fds, O_CLOEXEC))
            _ = fcntl(fds[0], F_SETFD, FD_CLOEXEC)
            _ = fcntl(fds[1], F_SETFD, FD_CLOEXEC)
            #endif
            readFD = fds[0]
            writeFD = fds[1]
        }
        if nonBlockingWrite {
            let flags = fcntl(writeFD, F_GETFL)
            _ = fcntl(writeFD, F_SETFL, flags | O_NONBLOCK)
        }
    }

    /// Adopts existing fds (a child's inherited 3 and 4).
    init(readFD: Int32, writeFD: Int32) {
        self.readFD = readFD
        self.writeFD = writeFD
    }

    deinit {
        _ = systemClose(readFD)
        if writeFD != readFD { _ = systemClose(writeFD) }
    }

    /// `write(fd, &one, 8)`; a full non-blocking pipe (EAGAIN) counts as signalled.
    @inline(__always)
    func signal() throws {
        var one: UInt64 = 1
        if write(writeFD, &one, 8) == -1 && errno != EAGAIN {
            throw SystemCallError("write", Errno.current)
        }
    }

    /// `read(fd, &buffer, 8)`, blocking until the peer signals.
    @inline(__always)
    func consume() throws {
        var value: UInt64 = 0
        _ = try check("read", read(readFD, &value, 8))
    }
}

/// A raw readiness set: `epoll_wait` or `poll` over one watched fd plus idle fds that never fire,
/// as a C event loop would hold it (poll's array is scanned for `revents` after each call).
///
/// Thread-safety: one thread.
final class RawPollSet {
    enum Kind: String, Sendable {
        case epoll
        case kqueue
        case poll
    }

    private let kind: Kind
    private let pollFD: Int32
    private let count: Int
    // Why it is safe: allocated for `count` entries in init, freed in deinit, used by one thread.
    private let pollFDs: UnsafeMutablePointer<pollfd>
    #if os(Linux)
    private let events: UnsafeMutablePointer<epoll_event>
    #endif
    private static let eventCapacity: Int32 = 16

    /// Watches `fd` for readability, beside `idle` fds registered for readability too.
    ///
    /// - Throws: `SystemCallError`, or `BenchSkipped` where the mechanism has no raw twin here.
    init(_ kind: Kind, watching fd: Int32, idle: [Int32] = []) throws {
        self.kind = kind
        count = idle.count + 1
        pollFDs = .allocate(capacity: count)
        // Where the ready fd sits matters to poll(2): the kernel stops queueing wait entries on
        // the fds after the first ready one. The package's poll backend orders its pollfd array
        // by descriptor number, so the twin does the same.
        let ordered = (idle + [fd]).sorted()
        for (index, watched) in ordered.enumerated() {
            pollFDs[index] = pollfd(fd: watched, events: Int16(POLLIN), revents: 0)
        }
        #if os(Linux)
        events = .allocate(capacity: Int(Self.eventCapacity))
        #endif
        switch kind {
        case .epoll:
            #if os(Linux)
            pollFD = epoll_create1(Int32(EPOLL_CLOEXEC))
            if pollFD == -1 { throw SystemCallError("epoll_create1", Errno.current) }
            for (token, watched) in ordered.enumerated() {
                var event = epoll_event()
                event.events = EPOLLIN.rawValue
                event.data.u64 = UInt64(token)
                _ = try check("epoll_ctl", epoll_ctl(pollFD, EPOLL_CTL_ADD, watched, &event))
            }
            #else
            throw BenchSkipped("no epoll on this platform")
            #endif
        case .kqueue:
            throw BenchSkipped("no raw kqueue twin on this platform")
        case .poll:
            pollFD = -1
        }
    }

    deinit {
        if pollFD >= 0 { _ = systemClose(pollFD) }
        pollFDs.deallocate()
        #if os(Linux)
        events.deallocate()
        #endif
    }

    /// Blocks until something is readable; returns how many fds are ready.
    @inline(__always)
    @discardableResult
    func waitReadable() throws -> Int {
        switch kind {
        case .epoll:
            #if os(Linux)
            return Int(try check("epoll_wait", epoll_wait(pollFD, events, Self.eventCapacity, -1)))
            #else
            return 0
            #endif
        case .kqueue:
            return 0
        case .poll:
            let n = try check("poll", poll(pollFDs, nfds_t(count), -1))
            var found = 0
            for index in 0..<count where pollFDs[index].revents != 0 {
                found &+= 1
                if found == Int(n) { break }
            }
            return found
        }
    }
}
