#if canImport(Glibc)
import VhostUserProtocol
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import VMMSysUtil

/// A pthread mutex with one condition variable, at stable addresses (Synchronization.Mutex needs
/// macOS 15). Used for the control thread ↔ queue worker handshake, never on the data path.
///
/// Thread-safety: that is its purpose; `wait()` must be called with the lock held.
final class ConditionLock: @unchecked Sendable {
    private let mutex: UnsafeMutablePointer<pthread_mutex_t>
    private let condition: UnsafeMutablePointer<pthread_cond_t>

    init() {
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

    func lock() { _ = pthread_mutex_lock(mutex) }
    func unlock() { _ = pthread_mutex_unlock(mutex) }
    /// Atomically unlocks, waits for a broadcast, relocks. Spurious wake-ups happen: loop.
    func wait() { _ = pthread_cond_wait(condition, mutex) }
    func broadcast() { _ = pthread_cond_broadcast(condition) }

    func withLock<T>(_ body: () throws -> T) rethrows -> T {
        lock()
        defer { unlock() }
        return try body()
    }
}

/// A joinable thread running a closure.
package final class JoinableThread: @unchecked Sendable {
    #if canImport(Darwin)
    private var thread: pthread_t?
    #else
    private var thread = pthread_t()
    #endif

    /// Starts `body` on a new thread.
    ///
    /// - Throws: `SystemCallError` (`pthread_create`) if no thread can be created.
    package init(_ body: @escaping @Sendable () -> Void) throws(SystemCallError) {
        let context = Unmanaged.passRetained(ThreadBody(body)).toOpaque()
        let rc = pthread_create(&thread, nil, { raw in runThreadBody(raw) }, context)
        if rc != 0 {
            Unmanaged<ThreadBody>.fromOpaque(context).release()
            throw SystemCallError("pthread_create", Errno(rawValue: rc))
        }
    }

    /// Waits for the thread to exit. Call once.
    package func join() {
        #if canImport(Darwin)
        if let thread { pthread_join(thread, nil) }
        #else
        pthread_join(thread, nil)
        #endif
    }
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

/// Gives the CPU to another thread (waiting out another thread's few instructions).
func yieldThread() { _ = sched_yield() }
