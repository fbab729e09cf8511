#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A thread running a test body (shared by the test targets). Tests synchronise with it through notifiers and bounded polls;
/// they join it only once it has signalled that it finished, so a bug fails the test instead of
/// hanging it.
public struct TestThread: Sendable {
    #if canImport(Darwin)
    fileprivate var thread: pthread_t?
    #else
    fileprivate var thread: pthread_t
    #endif
    fileprivate let started: Bool

    /// Waits until the thread has exited (and released what its body captured).
    public func join() {
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
public func startThread(_ body: @escaping @Sendable () -> Void) -> TestThread {
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
