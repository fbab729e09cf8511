#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A thread running a test body. Tests synchronise with it through notifiers and bounded polls;
/// they join it only once it has signalled that it finished, so a bug fails the test instead of
/// hanging it.
struct TestThread {
    #if canImport(Darwin)
    fileprivate var thread: pthread_t?
    #else
    fileprivate var thread: pthread_t
    #endif
    fileprivate let started: Bool

    /// Waits until the thread has exited (and released what its body captured).
    func join() {
        guard started else { return }
        #if canImport(Darwin)
        if let thread { pthread_join(thread, nil) }
        #else
        pthread_join(thread, nil)
        #endif
    }
}

/// Runs `body` on a new thread (or, if no thread can be created, right here).
@discardableResult
func startThread(_ body: @escaping @Sendable () -> Void) -> TestThread {
    let context = Unmanaged.passRetained(ThreadBody(body)).toOpaque()
    #if canImport(Darwin)
    var thread: pthread_t? = nil
    #else
    var thread = pthread_t()
    #endif
    let rc = pthread_create(&thread, nil, { raw in runThreadBody(raw) }, context)
    if rc != 0 {
        Unmanaged<ThreadBody>.fromOpaque(context).release()
        body()
    }
    return TestThread(thread: thread, started: rc == 0)
}

private final class ThreadBody {
    let body: @Sendable () -> Void
    init(_ body: @escaping @Sendable () -> Void) { self.body = body }
}

private func runThreadBody(_ raw: UnsafeMutableRawPointer?) -> UnsafeMutableRawPointer? {
    guard let raw else { return nil }
    Unmanaged<ThreadBody>.fromOpaque(raw).takeRetainedValue().body()
    return nil
}

/// Whether `fd` becomes readable within `milliseconds` (default 10 s: generous, only a bound).
func becomesReadable(_ fd: Int32, within milliseconds: Int32 = 10_000) -> Bool {
    var entry = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
    while true {
        let n = poll(&entry, 1, milliseconds)
        if n == -1 && errno == EINTR { continue }
        return n == 1
    }
}

/// The descriptors open in this process (probing the first 4096 numbers).
func openDescriptors() -> Set<Int32> {
    Set((0..<4096).filter { fcntl($0, F_GETFD) != -1 })
}

/// Whether FD_CLOEXEC is set on `fd`.
func isCloseOnExec(_ fd: Int32) -> Bool {
    let flags = fcntl(fd, F_GETFD)
    return flags != -1 && flags & FD_CLOEXEC != 0
}

/// A plain pipe (not close-on-exec, blocking), for tests that play the peer.
func rawPipe() -> (read: Int32, write: Int32) {
    var fds: [Int32] = [-1, -1]
    _ = pipe(&fds)
    return (fds[0], fds[1])
}

/// A connected AF_UNIX stream socket pair (not close-on-exec), or (-1, -1).
func rawSocketPair() -> [Int32] {
    var pair: [Int32] = [-1, -1]
    #if os(Linux)
    let type = Int32(SOCK_STREAM.rawValue)
    #else
    let type = SOCK_STREAM
    #endif
    if socketpair(AF_UNIX, type, 0, &pair) != 0 { return [-1, -1] }
    return pair
}
