#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import VhostUserBackend
import VMMSysUtil

/// A signal that means "do something" rather than "stop", handled outside signal context.
///
/// Thread-safety: call `start` from the main thread before any other thread exists.
public enum SignalThread {
    /// Runs `body` on a dedicated thread each time the process receives `signal` (e.g. SIGHUP:
    /// "the image grew, look again"). The signal is blocked in the calling thread, which every
    /// thread created afterwards inherits, and taken with `sigwait` by the dedicated thread; so
    /// call this from the main thread before any other thread starts (in `makeDevice`, which a
    /// `VhostUserDaemonCommand` calls before it creates the server). `body`
    /// runs outside signal context: it may lock, allocate and do I/O.
    ///
    /// - Throws: `SystemCallError` if the thread cannot be created (the signal stays blocked).
    public static func start(onEach signal: Int32, _ body: @escaping @Sendable () -> Void) throws(SystemCallError) {
        var set = sigset_t()
        sigemptyset(&set)
        sigaddset(&set, signal)
        let rc = pthread_sigmask(SIG_BLOCK, &set, nil)
        guard rc == 0 else { throw SystemCallError("pthread_sigmask", Errno(rawValue: rc)) }
        let waited = set
        // Never joined: it lives as long as the process.
        _ = try JoinableThread {
            var set = waited
            while true {
                var received: Int32 = 0
                if sigwait(&set, &received) == 0, received == signal { body() }
            }
        }
    }
}
