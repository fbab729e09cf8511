#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// How a `Poller` waits: epoll (Linux), kqueue (Darwin, the BSDs, or Linux with libkqueue when
/// built with `-Xswiftc -DVMM_LIBKQUEUE`), or poll(2) (everywhere; Linux CI runs it too).
///
/// Thread-safety: a value type.
public enum PollerBackend: String, SelectableBackend {
    case epoll
    case kqueue
    case poll

    /// `VMM_POLLER`: `epoll`, `kqueue` or `poll`.
    public static var environmentVariable: String { "VMM_POLLER" }

    /// epoll where it exists, else kqueue, else poll.
    public static var native: PollerBackend {
        if epollBackendIsAvailable { return .epoll }
        if kqueueBackendIsAvailable { return .kqueue }
        return .poll
    }

    public var isAvailable: Bool {
        switch self {
        case .epoll: return epollBackendIsAvailable
        case .kqueue: return kqueueBackendIsAvailable
        case .poll: return true
        }
    }
}

/// What a registration waits for. Thread-safety: a value type.
public struct PollInterest: OptionSet, Sendable, Hashable {
    public let rawValue: UInt8
    public init(rawValue: UInt8) { self.rawValue = rawValue }

    /// Data to read, or end of file.
    public static let readable = PollInterest(rawValue: 1 << 0)
    /// Room to write.
    public static let writable = PollInterest(rawValue: 1 << 1)
}

/// One readiness report from `Poller.wait`. Thread-safety: a value type.
public struct PollEvent: Sendable, Hashable {
    /// The token the descriptor was registered (or last modified) with.
    public var token: UInt64
    /// Readable, and readable interest is registered.
    public var isReadable: Bool
    /// Writable, and writable interest is registered.
    public var isWritable: Bool
    /// The other end hung up, or the descriptor has an error pending; reported whatever the
    /// interest. A read on it then returns end of file or the error.
    public var isHangup: Bool

    public init(token: UInt64, isReadable: Bool, isWritable: Bool, isHangup: Bool) {
        self.token = token
        self.isReadable = isReadable
        self.isWritable = isWritable
        self.isHangup = isHangup
    }
}

/// Waits for readiness on many descriptors: a level-triggered epoll, kqueue or poll(2).
///
/// Level-triggered on every backend: a descriptor that stays ready is reported by every `wait`.
/// A descriptor is identified by its caller-chosen token. Events are checked against the current
/// registrations before `wait` returns, so once `deregister(fd)` (or a deregister followed by a
/// re-registration with a new token) has returned, no `wait` that returns afterwards reports the
/// old registration, even if that wait was already blocked in the kernel.
///
/// Per backend: epoll and poll report one event per descriptor (both flags set when both apply);
/// kqueue reports readability and writability of one descriptor as two events with the same token.
/// With an empty interest, epoll and poll still report hangups; kqueue reports nothing.
///
/// **Deregister before you close.** epoll forgets a descriptor only when its last duplicate is
/// closed, BSD kqueue drops it at close, and libkqueue keeps it alive unless EV_DELETE is sent.
/// Stale reports are filtered either way, but only `deregister` frees the registration: until
/// then the number stays taken, and registering a new descriptor that reuses it throws
/// `.fileExists`.
///
/// `wake()` ends a concurrent `wait` (which returns, possibly with 0 events). It is implemented
/// with an internal eventfd/pipe (epoll, poll) or EVFILT_USER (kqueue) and never appears as an
/// event. A `wake()` with no wait in progress makes the next `wait` return at once.
///
/// Thread-safety: every method may be called from any thread. `register`, `modify` and
/// `deregister` take a lock; `wait` takes it once per call to filter events. epoll and kqueue
/// allow concurrent waits (each with its own `PollEvents`); the poll backend runs one `wait` at a
/// time (concurrent callers queue), and a registration change from another thread
/// interrupts its poll(2) internally so it can rebuild its descriptor set and poll again.
public final class Poller: @unchecked Sendable {
    /// The backend this poller uses.
    public let backend: PollerBackend
    private let implementation: any PollerImplementation

    /// The process-wide default: `VMM_POLLER` (read once, on first use), or `native`.
    ///
    /// - Throws: `BackendSelectionError` if the variable names an unknown or unavailable backend.
    /// Thread-safety: safe from any thread; the variable is read exactly once.
    public static var defaultBackend: PollerBackend {
        get throws(BackendSelectionError) { try cachedDefaultBackend.get() }
    }

    private static let cachedDefaultBackend = Result {
        () throws(BackendSelectionError) -> PollerBackend in
        try PollerBackend.fromEnvironment()
    }

    /// Creates an empty poller. Its own descriptor (epoll/kqueue) and wake-up notifier are
    /// close-on-exec.
    ///
    /// - Parameter backend: the backend, or `nil` for `defaultBackend`.
    /// - Throws: `PrimitiveCreationError`: `.backend` for an unavailable backend (or a bad
    ///   `VMM_POLLER`), `.system` if the kernel objects cannot be created.
    public init(backend: PollerBackend? = nil) throws(PrimitiveCreationError) {
        let chosen: PollerBackend
        do throws(BackendSelectionError) {
            if let backend { chosen = backend } else { chosen = try Poller.defaultBackend }
            try chosen.checkAvailable()
        } catch { throw .backend(error) }
        self.backend = chosen
        do throws(SystemCallError) {
            switch chosen {
            case .epoll: implementation = try makeEpollPoller()
            case .kqueue: implementation = try makeKqueuePoller()
            case .poll: implementation = try PollPoller()
            }
        } catch { throw .system(error) }
    }

    /// Starts watching `fd` for `interest`, reported with `token`.
    ///
    /// The poller does not own `fd`; deregister it before closing it.
    /// - Throws: `SystemCallError`: `.fileExists` if `fd` is already registered, `.badFileDescriptor`
    ///   if it is not open, or the kernel's errno (operation `epoll_ctl`, `kevent`, `fcntl`).
    public func register(_ fd: Int32, interest: PollInterest, token: UInt64) throws(SystemCallError) {
        try implementation.register(fd, interest: interest, token: token)
    }

    /// Changes the interest and token of a registered descriptor.
    ///
    /// - Throws: `SystemCallError`: `.noSuchFile` if `fd` is not registered, or the kernel's errno.
    public func modify(_ fd: Int32, interest: PollInterest, token: UInt64) throws(SystemCallError) {
        try implementation.modify(fd, interest: interest, token: token)
    }

    /// Stops watching `fd`. The registration is forgotten even if the kernel reports an error.
    ///
    /// - Throws: `SystemCallError`: `.noSuchFile` if `fd` is not registered, or the kernel's errno
    ///   (e.g. `.badFileDescriptor` if `fd` was closed first).
    public func deregister(_ fd: Int32) throws(SystemCallError) {
        try implementation.deregister(fd)
    }

    /// Waits until a registered descriptor is ready, the timeout passes, or `wake()` is called,
    /// and fills `events` with at most `events.capacity` reports. Allocates nothing (the poll
    /// backend allocates only when the registration set has grown since its last wait).
    ///
    /// - Parameters:
    ///   - events: the caller's buffer, emptied and then filled with this wait's reports.
    ///   - timeout: `nil` waits forever; durations are rounded up to whole milliseconds
    ///     (epoll, poll) or nanoseconds (kqueue); negative means do not block.
    /// - Returns: the number of events, also in `events.count`. 0 after a timeout, a `wake()`, an
    ///   interrupting signal (EINTR is not retried: the caller's loop decides), or (epoll, kqueue)
    ///   when every report was filtered as stale.
    /// - Throws: `SystemCallError` from `epoll_wait`, `kevent` or `poll`.
    @discardableResult
    public func wait(into events: inout PollEvents, timeout: Duration?) throws(SystemCallError) -> Int {
        try implementation.wait(into: &events, timeout: timeout)
    }

    /// Ends a `wait` in progress on another thread, or the next one if none is in progress.
    /// Wakes coalesce. Allocates nothing and never waits for the waiter (the poll backend takes
    /// its registration lock briefly).
    ///
    /// - Throws: `SystemCallError` from `write` or `kevent`.
    public func wake() throws(SystemCallError) {
        try implementation.wake()
    }
}

/// What each backend provides; `Poller` forwards to it.
protocol PollerImplementation: AnyObject, Sendable {
    func register(_ fd: Int32, interest: PollInterest, token: UInt64) throws(SystemCallError)
    func modify(_ fd: Int32, interest: PollInterest, token: UInt64) throws(SystemCallError)
    func deregister(_ fd: Int32) throws(SystemCallError)
    func wait(into events: inout PollEvents, timeout: Duration?) throws(SystemCallError) -> Int
    func wake() throws(SystemCallError)
}
