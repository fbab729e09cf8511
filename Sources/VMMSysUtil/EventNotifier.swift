#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// How an `EventNotifier` is built: an eventfd (Linux), or a pipe made by `pipe2` or by
/// `pipe` + `fcntl` (everywhere; the only choice on macOS).
///
/// All backends available on an OS work there, so Linux CI runs the macOS/BSD code paths too.
/// Thread-safety: a value type.
public enum EventNotifierBackend: String, SelectableBackend {
    /// `eventfd(2)`: one descriptor for both roles, an 8-byte counter. Linux only.
    case eventfd
    /// `pipe2(O_CLOEXEC)`: Linux, FreeBSD, OpenBSD.
    case pipe2
    /// `pipe(2)` followed by `fcntl` for FD_CLOEXEC and O_NONBLOCK. Every POSIX system.
    case pipe

    /// `VMM_EVENT_NOTIFIER`: `eventfd`, `pipe2` or `pipe`.
    public static var environmentVariable: String { "VMM_EVENT_NOTIFIER" }

    /// eventfd where it exists, else pipe2, else pipe.
    public static var native: EventNotifierBackend {
        if eventfdBackendIsAvailable { return .eventfd }
        if pipe2BackendIsAvailable { return .pipe2 }
        return .pipe
    }

    public var isAvailable: Bool {
        switch self {
        case .eventfd: return eventfdBackendIsAvailable
        case .pipe2: return pipe2BackendIsAvailable
        case .pipe: return true
        }
    }
}

/// A wake-up signal between threads or processes: the kick and call descriptors of vhost-user.
///
/// `notify()` never blocks and coalesces: any number of notifications before a `wait()` are
/// consumed by that one `wait()`. The representation depends on the backend:
///
/// - **eventfd** (Linux): one descriptor plays both roles, so `waitDescriptor == notifyDescriptor`.
///   Give that descriptor to the peer whatever its role.
/// - **pipe** (everywhere else, and on Linux when asked): two descriptors. For a *kick* (the peer
///   notifies, we wait) we keep the read end (`waitDescriptor`) and the peer gets the write end
///   (`notifyDescriptor`). For a *call* (we notify, the peer waits) we keep the write end and the
///   peer gets the read end. Each notification writes an 8-byte 1, the same bytes an eventfd
///   write carries, so peers that emulate eventfd with pipes (libvhost-user, vmm-sys-util)
///   interoperate; waiting drains everything in the pipe.
///
/// A notifier built from a descriptor received from a peer (`init(waitingOn:)`,
/// `init(notifyingThrough:)`) has only the role it was given: `notify()` on a wait-only notifier
/// and `wait()`/`tryConsume()` on a notify-only one throw `SystemCallError` with
/// `.badFileDescriptor` (operation `"write"` or `"read"`), as the kernel would. Its `backend` is
/// `nil`. The received descriptor's O_NONBLOCK flag is never changed (it belongs to the open file
/// description shared with the peer): waiting works on blocking and non-blocking descriptors alike.
///
/// Descriptors this type creates are close-on-exec; received ones are made close-on-exec.
/// Our own eventfd and pipe read end are blocking, so `wait()` is one `read` in the common case;
/// our pipe write end is non-blocking, so `notify()` on a full pipe succeeds (the pipe already
/// holds a pending notification).
///
/// Writing to a pipe whose read end is closed raises SIGPIPE: a process that notifies through
/// pipes received from peers that may exit should ignore SIGPIPE (it then gets `.brokenPipe`).
///
/// Thread-safety: `notify()` may be called from any number of threads at once. `wait()` and
/// `tryConsume()` are for one consumer at a time (two threads consuming the same notifier may leave
/// one blocked until the next notification). The descriptors stay open until the notifier is freed.
public final class EventNotifier: @unchecked Sendable {
    /// The backend this notifier was built with, or `nil` when built from a received descriptor.
    public let backend: EventNotifierBackend?

    /// Read side: the eventfd or the pipe's read end; -1 for a notify-only notifier.
    let readFD: Int32
    /// Write side: the eventfd (same as `readFD`) or the pipe's write end; -1 for a wait-only one.
    let writeFD: Int32
    /// eventfd semantics (read exactly 8 bytes) rather than a byte stream to drain.
    let isCounter: Bool
    /// The read side is ours and non-blocking, so `tryConsume` can read without polling first.
    let readIsKnownNonBlocking: Bool

    /// The process-wide default: `VMM_EVENT_NOTIFIER` (read once, on first use), or `native`.
    ///
    /// - Throws: `BackendSelectionError` if the variable names an unknown or unavailable backend.
    /// Thread-safety: safe from any thread; the variable is read exactly once.
    public static var defaultBackend: EventNotifierBackend {
        get throws(BackendSelectionError) { try cachedDefaultBackend.get() }
    }

    private static let cachedDefaultBackend = Result {
        () throws(BackendSelectionError) -> EventNotifierBackend in
        try EventNotifierBackend.fromEnvironment()
    }

    /// Creates a notifier with both roles, unnotified.
    ///
    /// - Parameter backend: the backend, or `nil` for `defaultBackend`.
    /// - Throws: `PrimitiveCreationError`: `.backend` for an unavailable backend (or a bad
    ///   `VMM_EVENT_NOTIFIER`), `.system` if the descriptors cannot be created.
    public convenience init(backend: EventNotifierBackend? = nil) throws(PrimitiveCreationError) {
        try self.init(backend: backend, nonBlockingWait: false)
    }

    /// Creates a notifier, choosing how its read side behaves.
    ///
    /// With `nonBlockingWait: false` (the default) the read side blocks, so `wait()` is a single
    /// `read`, and `tryConsume()` asks `poll` first (two system calls). With `true` the read side is
    /// non-blocking: `tryConsume()` is a single `read` — pick this when the consumer waits in a
    /// `Poller` and consumes after readiness, or when several threads may call `tryConsume` — and
    /// `wait()` with nothing pending costs `read`, `poll`, `read`.
    ///
    /// - Parameters:
    ///   - backend: the backend, or `nil` for `defaultBackend`.
    ///   - nonBlockingWait: whether the read side is non-blocking (see above).
    /// - Throws: as `init(backend:)`.
    public convenience init(backend: EventNotifierBackend?, nonBlockingWait: Bool) throws(PrimitiveCreationError) {
        let chosen: EventNotifierBackend
        do throws(BackendSelectionError) {
            if let backend { chosen = backend } else { chosen = try EventNotifier.defaultBackend }
            try chosen.checkAvailable()
        } catch { throw .backend(error) }
        do throws(SystemCallError) {
            try self.init(available: chosen, nonBlockingWait: nonBlockingWait)
        } catch { throw .system(error) }
    }

    /// Creates a notifier with a backend known to be available here (e.g. `.native`).
    package init(available chosen: EventNotifierBackend, nonBlockingWait: Bool) throws(SystemCallError) {
        let pair: (read: Int32, write: Int32)
        switch chosen {
        case .eventfd:
            let fd = try makeEventfd(nonBlocking: nonBlockingWait)
            pair = (fd, fd)
        case .pipe2:
            pair = try makePipe2(nonBlockingRead: nonBlockingWait)
        case .pipe:
            pair = try makePipeWithFcntl(nonBlockingRead: nonBlockingWait)
        }
        self.backend = chosen
        self.readFD = pair.read
        self.writeFD = pair.write
        self.isCounter = chosen == .eventfd
        self.readIsKnownNonBlocking = nonBlockingWait
    }

    /// Adopts a descriptor a peer will notify (a vhost-user kick): an eventfd, or a pipe's read end.
    ///
    /// The notifier can `wait()` and `tryConsume()`; `notify()` throws. The descriptor is made
    /// close-on-exec; its O_NONBLOCK flag is left as the peer set it.
    /// - Throws: `SystemCallError` (`"fstat"`/`"fcntl"`) if it cannot be inspected, or with
    ///   `.invalidArgument` if it is not readable or not an eventfd, pipe or socket. The descriptor
    ///   is closed when this throws.
    public init(waitingOn received: consuming FileDescriptor) throws(SystemCallError) {
        let kind = try ReceivedNotifierKind(inspecting: received.rawValue, needsRead: true)
        self.backend = nil
        self.readFD = received.release()
        self.writeFD = -1
        self.isCounter = kind == .counter
        // A peer that made its descriptor non-blocking (QEMU's eventfds are EFD_NONBLOCK) lets
        // `tryConsume` read without asking `poll` first. Should the peer clear the flag later, a
        // read after readiness still returns at once unless the peer itself consumed meanwhile,
        // which only stalls the peer's own queue.
        let statusFlags = fcntl(readFD, F_GETFL)
        self.readIsKnownNonBlocking = statusFlags >= 0 && statusFlags & O_NONBLOCK != 0
    }

    /// Adopts a descriptor we will notify for a peer (a vhost-user call): an eventfd, or a pipe's
    /// write end.
    ///
    /// The notifier can `notify()`; `wait()` and `tryConsume()` throw. The descriptor is made
    /// close-on-exec; its O_NONBLOCK flag is left as the peer set it (a blocking pipe write end
    /// would block `notify()` while the pipe is full).
    /// - Throws: as `init(waitingOn:)`, for a descriptor that is not writable.
    public init(notifyingThrough received: consuming FileDescriptor) throws(SystemCallError) {
        let kind = try ReceivedNotifierKind(inspecting: received.rawValue, needsRead: false)
        self.backend = nil
        self.readFD = -1
        self.writeFD = received.release()
        self.isCounter = kind == .counter
        self.readIsKnownNonBlocking = false
    }

    deinit {
        if readFD >= 0 { _ = systemClose(readFD) }
        if writeFD >= 0 && writeFD != readFD { _ = systemClose(writeFD) }
    }

    /// The descriptor to poll for readability, or to give to a peer that will wait on it.
    /// -1 for a notify-only notifier. Owned by this notifier: never close it; sending it with
    /// SCM_RIGHTS gives the peer its own copy.
    public var waitDescriptor: Int32 { readFD }

    /// The descriptor a peer writes to notify us (or we write to notify it). Equal to
    /// `waitDescriptor` for an eventfd; -1 for a wait-only notifier. Owned by this notifier, as
    /// `waitDescriptor` is.
    public var notifyDescriptor: Int32 { writeFD }

    /// Signals the notifier: one `write` of an 8-byte 1. Never blocks on descriptors this type
    /// created; allocates nothing.
    ///
    /// A full pipe or a saturated non-blocking eventfd counts as success: a notification is
    /// already pending. (Our own eventfd is blocking for the sake of `wait()`; a write to it could
    /// block only after 2^64 - 2 unconsumed notifications.)
    /// - Throws: `SystemCallError` from `write` (`.badFileDescriptor` on a wait-only notifier,
    ///   `.brokenPipe` if the reader is gone and SIGPIPE is ignored or blocked in this thread, see
    ///   `BrokenPipeSignal`; otherwise the signal ends the process).
    public func notify() throws(SystemCallError) {
        let fd = writeFD
        guard fd >= 0 else { throw SystemCallError("write", .badFileDescriptor) }
        var one: UInt64 = 1
        // Safe: `one` outlives the call and is exactly 8 bytes, the size written.
        _ = try withUnsafeBytes(of: &one) { (bytes) throws(SystemCallError) -> Int? in
            try nonBlockingSystemCall("write") { write(fd, bytes.baseAddress, 8) }
        }
    }

    /// Blocks until notified, then consumes every pending notification. Allocates nothing.
    ///
    /// On our own notifiers, and whenever a notification is already pending, this is one `read`
    /// (plus, for a pipe holding more than 256 bytes, further reads to drain it). A non-blocking
    /// received descriptor with nothing pending costs `read`, `poll`, `read`.
    /// - Throws: `SystemCallError`: `.badFileDescriptor` on a notify-only notifier, `.brokenPipe`
    ///   (operation `"read"`) when every writer of a pipe has closed it, or the errno of
    ///   `read`/`poll`.
    public func wait() throws(SystemCallError) {
        let fd = readFD
        guard fd >= 0 else { throw SystemCallError("read", .badFileDescriptor) }
        while true {
            if try consumeOnce(fd) { return }
            try waitUntilReadable(fd, timeoutMilliseconds: -1)
        }
    }

    /// Consumes pending notifications without blocking. Allocates nothing.
    ///
    /// - Returns: `true` if the notifier had been notified (every pending notification is now
    ///   consumed), `false` if not.
    /// - Throws: as `wait()`.
    public func tryConsume() throws(SystemCallError) -> Bool {
        let fd = readFD
        guard fd >= 0 else { throw SystemCallError("read", .badFileDescriptor) }
        if !readIsKnownNonBlocking {
            // A blocking read would wait: ask first. Safe for the single consumer this type
            // documents, since nothing else takes the notification between poll and read.
            guard try isReadable(fd, timeoutMilliseconds: 0) else { return false }
        }
        return try consumeOnce(fd)
    }

    /// Blocks until notified or until `timeout` has passed; consumes every pending notification
    /// if notified. Allocates nothing.
    ///
    /// - Parameter timeout: rounded up to whole milliseconds; zero or negative does not block
    ///   (then it is `tryConsume()`).
    /// - Returns: `true` if notified (the notifications are consumed), `false` on timeout.
    /// - Throws: as `wait()`.
    public func wait(timeout: Duration) throws(SystemCallError) -> Bool {
        let fd = readFD
        guard fd >= 0 else { throw SystemCallError("read", .badFileDescriptor) }
        let clock = ContinuousClock()
        let deadline = clock.now + timeout
        while true {
            if readIsKnownNonBlocking, try consumeOnce(fd) { return true }
            // A blocking read side is read only once poll said it is readable.
            let remaining = pollMilliseconds(clock.now.duration(to: deadline))
            guard try isReadable(fd, timeoutMilliseconds: remaining) else { return false }
            if try consumeOnce(fd) { return true }
            // Readable but nothing to consume: another consumer took it. Wait again, if time is left.
            if remaining == 0 { return false }
        }
    }

    /// Whether a notification is pending, without consuming it (one `poll` with a zero timeout).
    /// For callers that check readiness without a `Poller` and consume later (`tryConsume()`).
    ///
    /// A pipe whose writers all closed also reports `true` (the next `wait()` then throws
    /// `.brokenPipe`).
    /// - Throws: `SystemCallError`: `.badFileDescriptor` on a notify-only notifier, or from `poll`.
    public func isNotified() throws(SystemCallError) -> Bool {
        let fd = readFD
        guard fd >= 0 else { throw SystemCallError("read", .badFileDescriptor) }
        return try isReadable(fd, timeoutMilliseconds: 0)
    }

    /// One read (eventfd) or a full drain (pipe). `false` if the descriptor had nothing (EAGAIN).
    func consumeOnce(_ fd: Int32) throws(SystemCallError) -> Bool {
        if isCounter {
            var value: UInt64 = 0
            // Safe: `value` is 8 writable bytes for the duration of the call.
            let n = try withUnsafeMutableBytes(of: &value) { (bytes) throws(SystemCallError) -> Int? in
                try nonBlockingSystemCall("read") { read(fd, bytes.baseAddress, 8) }
            }
            return n != nil
        }
        return try drainStream(fd)
    }

    /// Reads a pipe (or socket) until it is empty. `false` if it was empty from the start.
    func drainStream(_ fd: Int32) throws(SystemCallError) -> Bool {
        // 256 bytes = 32 notifications per read; a short read means the pipe is now empty.
        var buffer:
            (
                UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64,
                UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64,
                UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64,
                UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64
            ) =
                (
                    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0
                )
        let size = MemoryLayout.size(ofValue: buffer)
        var consumed = false
        while true {
            // Safe: the tuple is `size` contiguous writable bytes on this frame.
            let n = try withUnsafeMutableBytes(of: &buffer) { (bytes) throws(SystemCallError) -> Int? in
                try nonBlockingSystemCall("read") { read(fd, bytes.baseAddress, size) }
            }
            guard let n else { return consumed }
            if n == 0 {
                // End of file: no writer is left, so no notification can ever come.
                if consumed { return true }
                throw SystemCallError("read", .brokenPipe)
            }
            consumed = true
            if n < size { return true }
            // Possibly more: read again only if that cannot block (the fd may be blocking).
            if try !isReadable(fd, timeoutMilliseconds: 0) { return true }
        }
    }
}

/// Whether `fd` is readable (or hung up) within the timeout.
package func isReadable(_ fd: Int32, timeoutMilliseconds: Int32) throws(SystemCallError) -> Bool {
    var entry = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
    let n = try systemCall("poll") { poll(&entry, 1, timeoutMilliseconds) }
    if n == 0 { return false }
    if entry.revents & Int16(POLLNVAL) != 0 { throw SystemCallError("poll", .badFileDescriptor) }
    return true
}

/// Blocks until `fd` is readable or hung up (the following read reports which).
func waitUntilReadable(_ fd: Int32, timeoutMilliseconds: Int32) throws(SystemCallError) {
    _ = try isReadable(fd, timeoutMilliseconds: timeoutMilliseconds)
}
