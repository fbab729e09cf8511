#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// A system call failed: which call, and the errno it returned.
///
/// Every errno this package sees becomes one of these in one place, `systemCall(_:_:)`.
/// Thread-safety: a value type; freely shareable.
public struct SystemCallError: Error, Hashable, Sendable, CustomStringConvertible {
    /// The C function that failed, e.g. `"recvmsg"` or `"mmap"`.
    public let operation: String
    /// The errno it set.
    public let errno: Errno

    public init(_ operation: String, _ errno: Errno) {
        self.operation = operation
        self.errno = errno
    }

    public var description: String { "\(operation) failed: \(errno)" }
}

/// Runs a C call that signals failure with -1 and errno, retrying `EINTR` when `retryOnInterrupt`.
///
/// The one place where errno becomes a typed error. Allocates nothing unless it throws.
@inlinable @inline(__always)
package func systemCall<Result: FixedWidthInteger>(
    _ operation: String,
    retryOnInterrupt: Bool = true,
    _ body: () -> Result
) throws(SystemCallError) -> Result {
    while true {
        let result = body()
        if result != -1 { return result }
        let error = Errno.current
        if retryOnInterrupt && error == .interrupted { continue }
        throw SystemCallError(operation, error)
    }
}

/// Like `systemCall`, but `EAGAIN`/`EWOULDBLOCK` is returned as `nil` instead of thrown.
@inlinable @inline(__always)
package func nonBlockingSystemCall<Result: FixedWidthInteger>(
    _ operation: String,
    _ body: () -> Result
) throws(SystemCallError) -> Result? {
    while true {
        let result = body()
        if result != -1 { return result }
        let error = Errno.current
        if error == .interrupted { continue }
        if error == .wouldBlock || error.rawValue == EWOULDBLOCK { return nil }
        throw SystemCallError(operation, error)
    }
}
