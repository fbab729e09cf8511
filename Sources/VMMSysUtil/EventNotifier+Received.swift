// Checking a descriptor a peer sent before an EventNotifier adopts it.
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// What a received notifier descriptor is, checked before we adopt it (it comes from a peer).
enum ReceivedNotifierKind {
    /// An eventfd: 8-byte counter reads.
    case counter
    /// A pipe or socket: a byte stream to drain.
    case stream

    init(inspecting fd: Int32, needsRead: Bool) throws(SystemCallError) {
        var status = stat()
        _ = try systemCall("fstat") { fstat(fd, &status) }
        let type = status.st_mode & S_IFMT
        if type == S_IFIFO || type == S_IFSOCK {
            self = .stream
        } else if type == 0 && eventfdBackendIsAvailable {
            // eventfds are anonymous inodes with no file type bits.
            self = .counter
        } else {
            throw SystemCallError("fstat", .invalidArgument)
        }
        let flags = try systemCall("fcntl(F_GETFL)") { fcntl(fd, F_GETFL) }
        let mode = flags & O_ACCMODE
        let usable = needsRead ? (mode == O_RDONLY || mode == O_RDWR) : (mode == O_WRONLY || mode == O_RDWR)
        guard usable else { throw SystemCallError("fcntl(F_GETFL)", .invalidArgument) }
        // FD_CLOEXEC is per descriptor, not shared with the peer, so setting it is ours to do.
        try setDescriptorFlag(fd, FD_CLOEXEC)
    }
}
