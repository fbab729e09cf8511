#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import CVMMPlatform

/// The CPUs this process may run on, and pinning a thread to one of them.
///
/// Thread-safety: every member may be used from any thread.
public enum Processors {
    /// How many CPUs the calling thread may run on: its affinity mask on Linux (so a container or
    /// `taskset` limit counts), the online CPUs elsewhere. At least 1.
    public static var usableCount: Int { Int(vmm_usable_cpu_count()) }

    /// How many CPUs are online (`sysconf(_SC_NPROCESSORS_ONLN)`), at least 1.
    public static var onlineCount: Int { max(1, Int(sysconf(Int32(_SC_NPROCESSORS_ONLN)))) }

    /// Whether `pinCurrentThread(to:)` can work here (Linux `sched_setaffinity`).
    public static var pinningIsSupported: Bool {
        #if os(Linux)
        return true
        #else
        return false
        #endif
    }

    /// Pins the calling thread to `cpu`.
    ///
    /// - Throws: `SystemCallError` (`sched_setaffinity`): `.invalidArgument` for a CPU out of
    ///   range or not allowed, ENOSYS where pinning is not supported.
    public static func pinCurrentThread(to cpu: Int32) throws(SystemCallError) {
        _ = try systemCall("sched_setaffinity") { vmm_pin_current_thread(cpu) }
    }
}
