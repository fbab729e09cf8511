#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// A joinable POSIX thread running one closure: the package's one thread wrapper (queue workers,
/// benchmark peers, tests).
///
/// A thread rather than a task: a queue worker blocks in `Poller.wait` and in device code, which
/// must not tie up the cooperative pool.
///
/// Thread-safety: `join()` is for one thread (the one that owns this object), never the thread
/// itself. Whatever `body` captured is released when it returns. Dropping the object without
/// `join()` detaches the thread.
public final class JoinableThread: @unchecked Sendable {
    #if canImport(Darwin)
    private var thread: pthread_t?
    #else
    private var thread = pthread_t()
    #endif
    // Written only by the owning thread (init, join, deinit).
    private var joined = false

    /// Starts `body` on a new thread, pinned to `cpu` first if given (a failed pin is ignored: the
    /// thread runs unpinned, as it would on a system without affinity).
    ///
    /// - Throws: `SystemCallError` (`pthread_create`) if no thread can be created; `body` is then
    ///   released without running.
    public init(pinnedTo cpu: Int32? = nil, _ body: @escaping @Sendable () -> Void) throws(SystemCallError) {
        let context = Unmanaged.passRetained(ThreadBody(cpu: cpu, body)).toOpaque()
        let rc = pthread_create(&thread, nil, { raw in runThreadBody(raw) }, context)
        if rc != 0 {
            Unmanaged<ThreadBody>.fromOpaque(context).release()
            joined = true
            throw SystemCallError("pthread_create", Errno(rawValue: rc))
        }
    }

    /// Waits for the thread to return. Idempotent.
    public func join() {
        guard !joined else { return }
        joined = true
        #if canImport(Darwin)
        if let thread { pthread_join(thread, nil) }
        #else
        pthread_join(thread, nil)
        #endif
    }

    /// Detaches a thread nobody joined (it runs on; its resources are reclaimed when it returns).
    /// Never waits: a thread dropped while its body waits for the dropper would deadlock.
    deinit {
        guard !joined else { return }
        #if canImport(Darwin)
        if let thread { pthread_detach(thread) }
        #else
        pthread_detach(thread)
        #endif
    }
}

private final class ThreadBody {
    let cpu: Int32?
    let body: @Sendable () -> Void
    init(cpu: Int32?, _ body: @escaping @Sendable () -> Void) {
        self.cpu = cpu
        self.body = body
    }
}

private func runThreadBody(_ raw: UnsafeMutableRawPointer?) -> UnsafeMutableRawPointer? {
    guard let raw else { return nil }
    // Safe: `raw` is the ThreadBody retained in `init`, released exactly once, here.
    let context = Unmanaged<ThreadBody>.fromOpaque(raw).takeRetainedValue()
    if let cpu = context.cpu { _ = try? Processors.pinCurrentThread(to: cpu) }
    context.body()
    return nil
}

/// Gives the processor to another runnable thread (`sched_yield`), for short spin-waits.
package func yieldThread() { _ = sched_yield() }
