#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import CVMMPlatform
import VMMSysUtil

/// A flag shared between the measuring thread and a peer, read with acquire and set with release.
///
/// Thread-safety: `set()` and `isSet` may be called from any thread.
final class StopFlag: @unchecked Sendable {
    // Why it is safe: allocated once, freed in deinit, accessed only through C atomics.
    private let word = UnsafeMutablePointer<UInt32>.allocate(capacity: 1)
    init() { word.initialize(to: 0) }
    deinit { word.deallocate() }
    var isSet: Bool { vmm_load_acquire_u32(word) != 0 }
    func set() { vmm_store_release_u32(word, 1) }
}

/// A pthread running one closure, pinned to a CPU, joined by `join()`.
///
/// Thread-safety: start and join from the same thread.
final class PeerThread {
    private final class Body {
        let cpu: Int32?
        let work: () -> Void
        init(cpu: Int32?, work: @escaping () -> Void) {
            self.cpu = cpu
            self.work = work
        }
    }

    #if os(Linux)
    private var thread: pthread_t = 0
    #else
    private var thread: pthread_t? = nil
    #endif
    private var joined = false

    /// Starts `work` on a new thread pinned to `cpu` (nil: not pinned).
    ///
    /// - Throws: `SystemCallError` from `pthread_create`.
    init(cpu: Int32?, _ work: @escaping () -> Void) throws {
        let context = Unmanaged.passRetained(Body(cpu: cpu, work: work)).toOpaque()
        let rc = pthread_create(&thread, nil, { raw in
            // Why it is safe: `raw` is the retained Body passed below, released exactly here.
            #if os(Linux)
            let body = Unmanaged<Body>.fromOpaque(raw!).takeRetainedValue()
            #else
            let body = Unmanaged<Body>.fromOpaque(raw).takeRetainedValue()
            #endif
            if let cpu = body.cpu { _ = vmm_pin_current_thread(cpu) }
            body.work()
            return nil
        }, context)
        if rc != 0 {
            Unmanaged<Body>.fromOpaque(context).release()
            joined = true
            throw SystemCallError("pthread_create", Errno(rawValue: rc))
        }
    }

    /// Waits for the thread to finish.
    func join() {
        guard !joined else { return }
        joined = true
        #if os(Linux)
        pthread_join(thread, nil)
        #else
        if let thread { pthread_join(thread, nil) }
        #endif
    }

    deinit { join() }
}
