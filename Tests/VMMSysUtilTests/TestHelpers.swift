#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Testing
import VMMTestSupport

/// Whether `fd` becomes readable within `milliseconds` (default 10 s: generous, only a bound).
func becomesReadable(_ fd: Int32, within milliseconds: Int32 = 10_000) -> Bool {
    var entry = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
    while true {
        let n = poll(&entry, 1, milliseconds)
        if n == -1 && errno == EINTR { continue }
        return n == 1
    }
}

/// The descriptors open in this process (probing the first 4096 numbers). Like
/// `openFileDescriptorCount`, meaningful only in a `.isolatedDescriptors` child: fails otherwise.
func openDescriptors(sourceLocation: SourceLocation = #_sourceLocation) -> Set<Int32> {
    if !isDescriptorIsolated {
        Issue.record(
            "descriptors listed outside isolation: add the .isolatedDescriptors trait", sourceLocation: sourceLocation)
    }
    return Set((0..<4096).filter { fcntl($0, F_GETFD) != -1 })
}

/// Whether FD_CLOEXEC is set on `fd`.
func isCloseOnExec(_ fd: Int32) -> Bool {
    let flags = fcntl(fd, F_GETFD)
    return flags != -1 && flags & FD_CLOEXEC != 0
}

/// A plain pipe (not close-on-exec, blocking), for tests that play the peer.
func rawPipe() -> (read: Int32, write: Int32) {
    var fds: [Int32] = [-1, -1]
    _ = pipe(&fds)
    return (fds[0], fds[1])
}

/// A connected AF_UNIX stream socket pair (not close-on-exec), or (-1, -1).
func rawSocketPair() -> [Int32] {
    var pair: [Int32] = [-1, -1]
    #if os(Linux)
    let type = Int32(SOCK_STREAM.rawValue)
    #else
    let type = SOCK_STREAM
    #endif
    if socketpair(AF_UNIX, type, 0, &pair) != 0 { return [-1, -1] }
    return pair
}
