#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// SIGPIPE, which a `write` to a pipe whose reader is gone raises in the writing thread. Its
/// default action ends the process: a library that writes to a peer's pipe (an `EventNotifier`
/// of the `pipe` backend received from a front-end that exited) must not let a peer do that.
///
/// Thread-safety: affects only the calling thread.
public enum BrokenPipeSignal {
    /// Blocks SIGPIPE in the calling thread: such a `write` then fails with EPIPE (the signal
    /// stays pending on this thread and is dropped when it exits). Call it first thing on a thread
    /// that writes to descriptors a peer reads. Allocation-free; one system call.
    ///
    /// - Throws: `SystemCallError` from `pthread_sigmask` (only for an invalid argument, which
    ///   this call never passes).
    public static func blockOnThisThread() throws(SystemCallError) {
        var set = sigset_t()
        sigemptyset(&set)
        sigaddset(&set, SIGPIPE)
        let rc = pthread_sigmask(SIG_BLOCK, &set, nil)
        guard rc == 0 else { throw SystemCallError("pthread_sigmask", Errno(rawValue: rc)) }
    }
}
