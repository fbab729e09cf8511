// The platform-specific pieces of the benchmark harness: clock, CPU pinning, executable path.
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import CVMMPlatform
import VMMSysUtil

/// Monotonic time in nanoseconds, read without allocation (vDSO `clock_gettime` on Linux).
@inline(__always)
public func monotonicNanoseconds() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return UInt64(ts.tv_sec) &* 1_000_000_000 &+ UInt64(ts.tv_nsec)
}

/// Pins the calling thread to `cpu` (no-op for nil).
///
/// - Throws: `SystemCallError` from `sched_setaffinity`.
public func pinCurrentThread(_ cpu: Int32?) throws(SystemCallError) {
    guard let cpu else { return }
    try Processors.pinCurrentThread(to: cpu)
}

/// Absolute path of the running executable.
public func currentExecutablePath() -> String? {
    #if os(Linux)
    var buffer = [UInt8](repeating: 0, count: 4096)
    let n = buffer.withUnsafeMutableBufferPointer { raw in
        raw.baseAddress!.withMemoryRebound(to: CChar.self, capacity: raw.count) {
            readlink("/proc/self/exe", $0, raw.count - 1)
        }
    }
    guard n > 0 else { return nil }
    return String(decoding: buffer[0..<n], as: UTF8.self)
    #else
    guard let first = CommandLine.arguments.first, let resolved = realpath(first, nil) else { return nil }
    defer { free(resolved) }
    return String(cString: resolved)
    #endif
}

/// The path of `name` in the same folder as the running executable, if it exists there.
public func siblingExecutable(_ name: String) -> String? {
    guard let me = currentExecutablePath(), let slash = me.lastIndex(of: "/") else { return nil }
    let candidate = String(me[..<slash]) + "/" + name
    return access(candidate, X_OK) == 0 ? candidate : nil
}
