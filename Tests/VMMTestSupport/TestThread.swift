#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Testing

/// A thread running a test body (shared by the test targets). Tests synchronise with it through notifiers and bounded polls;
/// `join` is bounded too, so a bug fails the test instead of hanging it.
public struct TestThread: Sendable {
    #if canImport(Darwin)
    fileprivate var thread: pthread_t?
    #else
    fileprivate var thread: pthread_t
    #endif
    fileprivate let started: Bool
    fileprivate let finished: FinishFlag

    /// Waits up to `seconds` for the body to return, then joins the thread. A body still running
    /// then is left running (detached) and an issue is recorded: a test fails instead of hanging.
    /// Returns whether the thread finished.
    @discardableResult
    public func join(seconds: Int = 30, sourceLocation: SourceLocation = #_sourceLocation) -> Bool {
        guard started else { return true }
        for _ in 0..<(seconds * 1000) where !finished.isSet { usleep(1000) }
        guard finished.isSet else {
            Issue.record("a test thread did not finish within \(seconds) s", sourceLocation: sourceLocation)
            #if canImport(Darwin)
            if let thread { pthread_detach(thread) }
            #else
            pthread_detach(thread)
            #endif
            return false
        }
        #if canImport(Darwin)
        if let thread { pthread_join(thread, nil) }
        #else
        pthread_join(thread, nil)
        #endif
        return true
    }
}

/// Set once by a thread body that returned; read by `join`.
final class FinishFlag: @unchecked Sendable {
    private let mutex: UnsafeMutablePointer<pthread_mutex_t>
    private var value = false

    init() {
        mutex = .allocate(capacity: 1)
        mutex.initialize(to: pthread_mutex_t())
        pthread_mutex_init(mutex, nil)
    }

    deinit {
        pthread_mutex_destroy(mutex)
        mutex.deallocate()
    }

    func set() {
        pthread_mutex_lock(mutex)
        value = true
        pthread_mutex_unlock(mutex)
    }

    var isSet: Bool {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return value
    }
}

/// Runs `body` on a new thread (or, if no thread can be created, right here).
@discardableResult
public func startThread(_ body: @escaping @Sendable () -> Void) -> TestThread {
    let finished = FinishFlag()
    let context = Unmanaged.passRetained(ThreadBody {
        body()
        finished.set()
    }).toOpaque()
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
    return TestThread(thread: thread, started: rc == 0, finished: finished)
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
