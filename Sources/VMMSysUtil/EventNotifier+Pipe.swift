// The pipe backends. pipe2 sets close-on-exec atomically (Linux, FreeBSD, OpenBSD); plain pipe
// plus fcntl works everywhere and is what macOS uses. Both are built on Linux so CI runs them.
import CVMMPlatform
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

#if os(Linux) || os(FreeBSD) || os(OpenBSD)
let pipe2BackendIsAvailable = true

/// A pipe made close-on-exec atomically; the write end non-blocking (a full pipe must not block
/// `notify()`), the read end blocking unless asked (so `wait()` is one read).
func makePipe2(nonBlockingRead: Bool) throws(SystemCallError) -> (read: Int32, write: Int32) {
    var fds: (Int32, Int32) = (-1, -1)
    // Safe: the tuple is two contiguous Int32s, the array pipe2 fills.
    _ = try withUnsafeMutableBytes(of: &fds) { (raw) throws(SystemCallError) -> Int32 in
        let pointer = raw.baseAddress!.assumingMemoryBound(to: Int32.self)
        return try systemCall("pipe2") { vmm_pipe2(pointer, O_CLOEXEC) }
    }
    return try finishPipe(fds, nonBlockingRead: nonBlockingRead)
}
#else
let pipe2BackendIsAvailable = false

func makePipe2(nonBlockingRead: Bool) throws(SystemCallError) -> (read: Int32, write: Int32) {
    throw SystemCallError("pipe2", .noSystemCall)
}
#endif

/// A pipe made with `pipe`, then close-on-exec by `fcntl` (not atomic: another thread's fork+exec
/// in between could inherit it; macOS has no pipe2). Write end non-blocking, as for pipe2.
func makePipeWithFcntl(nonBlockingRead: Bool) throws(SystemCallError) -> (read: Int32, write: Int32) {
    var fds: (Int32, Int32) = (-1, -1)
    // Safe: the tuple is two contiguous Int32s, the array pipe fills.
    _ = try withUnsafeMutableBytes(of: &fds) { (raw) throws(SystemCallError) -> Int32 in
        let pointer = raw.baseAddress!.assumingMemoryBound(to: Int32.self)
        return try systemCall("pipe") { pipe(pointer) }
    }
    do {
        try setDescriptorFlag(fds.0, FD_CLOEXEC)
        try setDescriptorFlag(fds.1, FD_CLOEXEC)
    } catch {
        _ = systemClose(fds.0)
        _ = systemClose(fds.1)
        throw error
    }
    return try finishPipe(fds, nonBlockingRead: nonBlockingRead)
}

/// Sets the status flags both pipe backends want; closes both ends on failure.
private func finishPipe(_ fds: (Int32, Int32), nonBlockingRead: Bool) throws(SystemCallError) -> (
    read: Int32, write: Int32
) {
    do {
        try addStatusFlag(fds.1, O_NONBLOCK)
        if nonBlockingRead { try addStatusFlag(fds.0, O_NONBLOCK) }
    } catch {
        _ = systemClose(fds.0)
        _ = systemClose(fds.1)
        throw error
    }
    return (fds.0, fds.1)
}

/// Adds a file status flag (F_GETFL/F_SETFL). Only for descriptors we created ourselves.
private func addStatusFlag(_ fd: Int32, _ flag: Int32) throws(SystemCallError) {
    let flags = try systemCall("fcntl(F_GETFL)") { fcntl(fd, F_GETFL) }
    if flags & flag == 0 {
        _ = try systemCall("fcntl(F_SETFL)") { fcntl(fd, F_SETFL, flags | flag) }
    }
}
