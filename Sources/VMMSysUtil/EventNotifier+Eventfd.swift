// The eventfd backend: Linux only. Elsewhere the same names exist and report "unavailable".
#if os(Linux)
import CVMMPlatform
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

let eventfdBackendIsAvailable = true

/// A new eventfd, close-on-exec; blocking unless asked otherwise (a blocking read is `wait()` in
/// one system call).
func makeEventfd(nonBlocking: Bool) throws(SystemCallError) -> Int32 {
    let flags = Int32(EFD_CLOEXEC) | (nonBlocking ? Int32(EFD_NONBLOCK) : 0)
    return try systemCall("eventfd") { eventfd(0, flags) }
}
#else
let eventfdBackendIsAvailable = false

func makeEventfd(nonBlocking: Bool) throws(SystemCallError) -> Int32 {
    throw SystemCallError("eventfd", .noSystemCall)
}
#endif
