#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import VhostUserBackend
import VMMSysUtil

/// SIGTERM and SIGINT as a clean stop: blocked in every thread, and received by one thread that
/// waits for them (`sigwait`) and calls `VhostUserServer.stop()`, which a signal handler could not
/// (it takes a lock). The program then closes the session, removes its socket file and exits 0,
/// whether it serves `--socket-path` or `--fd`. A second signal exits at once (status 0), for a
/// device that does not let its session close.
///
/// Thread-safety: `block()` from the main thread before any other thread exists.
struct TerminationSignals {
    private static let stopSignals = [SIGTERM, SIGINT]

    /// Blocks the stop signals in the calling thread (and so in every thread it creates). The
    /// default dispositions are restored first: a signal ignored by the parent (a shell's
    /// background job ignores SIGINT) would never reach `sigwait`, and the mask inherited from the
    /// parent is replaced, so a parent that blocks SIGTERM (a test runner's thread) cannot make
    /// the program deaf to the stop request QEMU's conventions rely on.
    static func block() -> TerminationSignals {
        var set = signalSet()
        for number in stopSignals { signal(number, SIG_DFL) }
        pthread_sigmask(SIG_BLOCK, &set, nil)
        return TerminationSignals()
    }

    /// Starts the thread that stops `servers` on the first signal and exits on the second.
    ///
    /// - Throws: `VhostUserDaemonError.signals` if the thread cannot be created.
    func stopOnSignal(_ servers: [VhostUserServer]) throws(VhostUserDaemonError) {
        do {
            // Never joined: it lives until the process exits.
            _ = try JoinableThread {
                var set = Self.signalSet()
                var received: Int32 = 0
                // sigwait fails only for an invalid set; loop rather than stop listening.
                while sigwait(&set, &received) != 0 {}
                servers.first?.logger.info("signal \(received): stopping")
                for server in servers { server.stop() }
                while sigwait(&set, &received) != 0 {}
                _exit(0)
            }
        } catch {
            throw .signals("cannot start the signal thread: \(error)")
        }
    }

    private static func signalSet() -> sigset_t {
        var set = sigset_t()
        sigemptyset(&set)
        for number in stopSignals { sigaddset(&set, number) }
        return set
    }
}
