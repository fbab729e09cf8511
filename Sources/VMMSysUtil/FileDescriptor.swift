#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// An open file descriptor with exactly one owner, closed exactly once when the owner goes away.
///
/// Non-copyable: ownership moves with `consume`, so a descriptor cannot be closed twice or used
/// after close. Code that only needs the number for a syscall borrows `rawValue`.
///
/// Thread-safety: the owner may share `rawValue` with other threads for the duration of a borrow;
/// closing (deinit, `close()`, `release()`) is the owner's alone.
public struct FileDescriptor: ~Copyable, @unchecked Sendable {
    /// The descriptor number. Valid for as long as this value is alive.
    public let rawValue: Int32

    /// Takes ownership of `rawValue`, which must be an open descriptor no one else will close.
    public init(adopting rawValue: Int32) {
        self.rawValue = rawValue
    }

    deinit {
        // Errors from close are not actionable here: the descriptor is gone either way
        // (POSIX leaves its state unspecified after EINTR, and Linux always releases it).
        _ = systemClose(rawValue)
    }

    /// Closes now, reporting an error from `close(2)` (the descriptor is released regardless).
    ///
    /// - Throws: `SystemCallError` with the errno of `close`.
    public consuming func close() throws(SystemCallError) {
        let fd = rawValue
        discard self
        if systemClose(fd) == -1 {
            let error = Errno.current
            if error != .interrupted { throw SystemCallError("close", error) }
        }
    }

    /// Gives up ownership and returns the number; the caller now owns it.
    public consuming func release() -> Int32 {
        let fd = rawValue
        discard self
        return fd
    }

    /// Duplicates the descriptor (close-on-exec) into a new owner.
    ///
    /// - Throws: `SystemCallError` from `fcntl(F_DUPFD_CLOEXEC)`.
    public borrowing func duplicate() throws(SystemCallError) -> FileDescriptor {
        let fd = rawValue
        let copy = try systemCall("fcntl(F_DUPFD_CLOEXEC)") { fcntl(fd, F_DUPFD_CLOEXEC, 0) }
        return FileDescriptor(adopting: copy)
    }

    /// Whether FD_CLOEXEC is set.
    ///
    /// - Throws: `SystemCallError` from `fcntl(F_GETFD)`.
    public borrowing func isCloseOnExec() throws(SystemCallError) -> Bool {
        let fd = rawValue
        let flags = try systemCall("fcntl(F_GETFD)") { fcntl(fd, F_GETFD) }
        return flags & FD_CLOEXEC != 0
    }

    /// Sets FD_CLOEXEC, for descriptors from calls that cannot set it atomically.
    ///
    /// - Throws: `SystemCallError` from `fcntl`.
    public borrowing func setCloseOnExec() throws(SystemCallError) {
        try setDescriptorFlag(rawValue, FD_CLOEXEC)
    }

    /// Sets or clears O_NONBLOCK.
    ///
    /// - Throws: `SystemCallError` from `fcntl`.
    public borrowing func setNonBlocking(_ nonBlocking: Bool = true) throws(SystemCallError) {
        let fd = rawValue
        let flags = try systemCall("fcntl(F_GETFL)") { fcntl(fd, F_GETFL) }
        let wanted = nonBlocking ? flags | O_NONBLOCK : flags & ~O_NONBLOCK
        if wanted != flags {
            _ = try systemCall("fcntl(F_SETFL)") { fcntl(fd, F_SETFL, wanted) }
        }
    }
}

/// Adds `flag` to the descriptor flags (F_GETFD/F_SETFD) of a raw fd.
package func setDescriptorFlag(_ fd: Int32, _ flag: Int32) throws(SystemCallError) {
    let flags = try systemCall("fcntl(F_GETFD)") { fcntl(fd, F_GETFD) }
    if flags & flag == 0 {
        _ = try systemCall("fcntl(F_SETFD)") { fcntl(fd, F_SETFD, flags | flag) }
    }
}

/// `close(2)` without the name clash with `FileDescriptor.close()`.
@usableFromInline
package func systemClose(_ fd: Int32) -> Int32 {
    #if canImport(Glibc)
    return Glibc.close(fd)
    #elseif canImport(Musl)
    return Musl.close(fd)
    #else
    return Darwin.close(fd)
    #endif
}
