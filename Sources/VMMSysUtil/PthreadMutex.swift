#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// A pthread mutex at a stable address (Synchronization.Mutex needs macOS 15). For state shared
/// by a few threads where a critical section is a handful of loads and stores.
///
/// Thread-safety: that is its purpose. Not recursive: never lock it twice on one thread.
public final class PthreadMutex: @unchecked Sendable {
    private let mutex: UnsafeMutablePointer<pthread_mutex_t>

    public init() {
        mutex = .allocate(capacity: 1)
        mutex.initialize(to: pthread_mutex_t())
        // A default mutex: pthread_mutex_init cannot fail without attributes on the supported systems.
        _ = pthread_mutex_init(mutex, nil)
    }

    deinit {
        _ = pthread_mutex_destroy(mutex)
        mutex.deinitialize(count: 1)
        mutex.deallocate()
    }

    /// Blocks until the mutex is ours.
    public func lock() { _ = pthread_mutex_lock(mutex) }
    /// Releases the mutex (held by this thread).
    public func unlock() { _ = pthread_mutex_unlock(mutex) }

    /// Runs `body` with the mutex held.
    @inlinable
    public func withLock<Result, Failure: Error>(_ body: () throws(Failure) -> Result) throws(Failure) -> Result {
        lock()
        defer { unlock() }
        return try body()
    }
}
