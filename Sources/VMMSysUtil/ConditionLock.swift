#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// A mutex with one condition variable, at stable addresses: the lock for mutable state shared
/// between threads (`Synchronization.Mutex` needs macOS 15; this works wherever the package does).
///
/// A device class with a mutable `var` read by `process` on queue workers and written by the
/// control thread (`featuresNegotiated`, `reset`, config writes) guards it with one of these:
///
/// ```swift
/// final class Counter: VhostUserDevice, @unchecked Sendable {
///     private let lock = ConditionLock()
///     private var served = 0  // guarded by `lock`
///     func process(_ queue: inout VhostUserQueue) throws {
///         lock.withLock { served += 1 }
///     }
/// }
/// ```
///
/// Never held across a system call on the data path; `wait()` is for handshakes (one thread waits
/// for another to change the guarded state and `broadcast()`).
///
/// Thread-safety: that is its purpose. `wait()` must be called with the lock held; the lock is not
/// recursive.
public final class ConditionLock: @unchecked Sendable {
    private let mutex: UnsafeMutablePointer<pthread_mutex_t>
    private let condition: UnsafeMutablePointer<pthread_cond_t>

    /// A new, unlocked lock.
    public init() {
        mutex = .allocate(capacity: 1)
        mutex.initialize(to: pthread_mutex_t())
        condition = .allocate(capacity: 1)
        condition.initialize(to: pthread_cond_t())
        // Default attributes: neither call can fail on the supported systems.
        _ = pthread_mutex_init(mutex, nil)
        _ = pthread_cond_init(condition, nil)
    }

    deinit {
        _ = pthread_cond_destroy(condition)
        _ = pthread_mutex_destroy(mutex)
        condition.deinitialize(count: 1)
        condition.deallocate()
        mutex.deinitialize(count: 1)
        mutex.deallocate()
    }

    /// Takes the lock, blocking while another thread holds it.
    public func lock() { _ = pthread_mutex_lock(mutex) }
    /// Releases the lock (held by the calling thread).
    public func unlock() { _ = pthread_mutex_unlock(mutex) }
    /// Atomically unlocks, waits for a `broadcast()`, relocks. Spurious wake-ups happen: call it in
    /// a loop that re-checks the condition.
    public func wait() { _ = pthread_cond_wait(condition, mutex) }
    /// Wakes every thread in `wait()`. Call with the lock held, after changing the guarded state.
    public func broadcast() { _ = pthread_cond_broadcast(condition) }

    /// Runs `body` with the lock held.
    ///
    /// - Throws: what `body` throws (the lock is released either way).
    public func withLock<Result, Failure: Error>(_ body: () throws(Failure) -> Result) throws(Failure) -> Result {
        lock()
        defer { unlock() }
        return try body()
    }
}
