#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

extension ScmSocket {
    /// Whether the descriptor is a stream socket (`SO_TYPE` is `SOCK_STREAM`): what a peer's fd
    /// must be before it is used as a channel. False for anything else, or if the query fails
    /// (`ENOTSOCK` for a pipe, file or eventfd).
    public var isStreamSocket: Bool {
        var type: Int32 = 0
        var length = socklen_t(MemoryLayout<Int32>.size)
        guard getsockopt(descriptor, SOL_SOCKET, SO_TYPE, &type, &length) == 0 else { return false }
        #if os(Linux) && canImport(Glibc)
        return type == Int32(SOCK_STREAM.rawValue)
        #else
        return type == SOCK_STREAM
        #endif
    }

    /// Bounds every later `send` and `receive` by `timeout` (`SO_SNDTIMEO`, `SO_RCVTIMEO`): a call
    /// that waits longer throws `.system` with `Errno.wouldBlock`. Whole microseconds; at least 1.
    ///
    /// - Throws: `.system` from `setsockopt` (e.g. `ENOTSOCK`).
    public func setTimeouts(_ timeout: Duration) throws(ScmSocketError) {
        let (seconds, attoseconds) = timeout.components
        let microseconds = max(1, min(seconds, 1 << 31) * 1_000_000 + attoseconds / 1_000_000_000_000)
        var value = timeval(tv_sec: .init(microseconds / 1_000_000), tv_usec: .init(microseconds % 1_000_000))
        for option in [SO_RCVTIMEO, SO_SNDTIMEO] {
            do {
                _ = try systemCall("setsockopt") {
                    setsockopt(descriptor, SOL_SOCKET, option, &value, socklen_t(MemoryLayout<timeval>.size))
                }
            } catch { throw .system(error) }
        }
    }

    /// Shuts both directions down (`shutdown(SHUT_RDWR)`): the peer sees end of stream and a thread
    /// blocked on this socket returns, while the descriptor stays open until the object goes.
    /// Failures (the peer closed first) are ignored.
    public func shutdown() {
        _ = Self.shutdownBoth(descriptor)
    }

    private static func shutdownBoth(_ fd: Int32) -> Int32 {
        #if canImport(Glibc)
        Glibc.shutdown(fd, Int32(SHUT_RDWR))
        #elseif canImport(Musl)
        Musl.shutdown(fd, Int32(SHUT_RDWR))
        #else
        Darwin.shutdown(fd, Int32(SHUT_RDWR))
        #endif
    }
}
