/// Why a Unix-socket operation (`ScmSocket`, `ScmListener`) failed.
///
/// Thread-safety: a value type.
public enum ScmSocketError: Error, Hashable, Sendable, CustomStringConvertible {
    /// The peer closed the connection (end of stream, EPIPE or ECONNRESET).
    case peerClosed
    /// The path does not fit in `sockaddr_un.sun_path` with its terminating NUL; it is never truncated.
    case pathTooLong(String)
    /// The path is empty or contains a NUL byte.
    case invalidPath(String)
    /// The kernel truncated the control data (MSG_CTRUNC): descriptors were lost. Every descriptor
    /// that did arrive has been closed.
    case controlDataTruncated
    /// More descriptors than allowed: received more than the caller's `maxFDs` (all of them have
    /// been closed), or asked to send more than `ReceivedFileDescriptors.capacity`.
    case tooManyDescriptors(count: Int, limit: Int)
    /// A control message other than SOL_SOCKET/SCM_RIGHTS arrived; every received descriptor has
    /// been closed.
    case unexpectedControlMessage(level: Int32, type: Int32)
    /// Descriptors can only travel with at least one byte of data on a stream socket.
    case descriptorsWithoutBytes
    /// An accepted peer's user id is not in the listener's `allowedUIDs`; the connection was closed
    /// before anything was read from it.
    case peerNotAllowed(uid: UInt32)
    /// Another process is listening on the path; its socket file was left alone.
    case addressInUse(String)
    /// Something other than a socket (a regular file, a directory, a symlink) is at the path; it
    /// was left alone.
    case notASocket(String)
    /// A system call failed.
    case system(SystemCallError)

    public var description: String {
        switch self {
        case .peerClosed: return "the peer closed the connection"
        case let .pathTooLong(path):
            return "socket path is too long for sockaddr_un (\(path.utf8.count) bytes): \(path)"
        case let .invalidPath(path): return "invalid socket path \"\(path)\" (empty or containing NUL)"
        case .controlDataTruncated: return "control data truncated (MSG_CTRUNC); received descriptors closed"
        case let .tooManyDescriptors(count, limit):
            return "\(count) file descriptors where at most \(limit) are allowed"
        case let .unexpectedControlMessage(level, type):
            return "unexpected control message (level \(level), type \(type)); received descriptors closed"
        case .descriptorsWithoutBytes: return "file descriptors must be sent with at least one byte"
        case let .peerNotAllowed(uid): return "peer uid \(uid) is not allowed to connect"
        case let .addressInUse(path): return "another process is listening on \(path)"
        case let .notASocket(path): return "\(path) exists and is not a socket; not replacing it"
        case let .system(error): return error.description
        }
    }
}
