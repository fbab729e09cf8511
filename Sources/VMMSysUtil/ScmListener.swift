#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// A listening AF_UNIX stream socket that hands out `ScmSocket` connections, optionally only to
/// peers with an allowed user id.
///
/// Creating the socket file:
/// - The path must fit in `sun_path` with its NUL, or `.pathTooLong` is thrown (never truncated).
/// - The file gets exactly `mode` whatever the umask: it is bound, `chmod`ed, and only then
///   `listen`ed on. Until `listen` every connect is refused, so the moment with the umask's mode
///   grants nobody anything.
/// - A socket file nobody listens on (connect gives ECONNREFUSED) is a stale one and is replaced.
///   A live listener is `.addressInUse` (it sees the probe as a connection that closes at once);
///   anything that is not a socket is `.notASocket`; neither is ever removed. (On the BSDs and macOS a live listener with a full backlog also refuses
///   connections and would look stale; keep backlogs sensible.)
/// - Put the socket in a directory only trusted users can write to: between `bind` and `chmod`
///   (microseconds) someone who can write the directory could swap the path for a symlink.
/// - The file is removed when the listener goes away, only if it is still the one we created
///   (same device and inode), so a newer listener's file is never deleted.
///
/// Thread-safety: `accept` may be called from one thread at a time; `descriptor` from any.
public final class ScmListener: @unchecked Sendable {
    private let socket: FileDescriptor
    /// The socket file this listener created (and removes), or `nil` for an adopted descriptor.
    public let path: String?
    /// User ids allowed to connect, or `nil` for anyone who can open the socket file.
    public let allowedUIDs: Set<uid_t>?
    private let createdFile: (device: UInt64, inode: UInt64)?

    /// The listening descriptor: poll it for readability, then call `accept`.
    public var descriptor: Int32 { socket.rawValue }

    /// Creates a socket file at `path` with permissions `mode` and listens on it.
    ///
    /// - Throws: `.pathTooLong`, `.invalidPath`, `.addressInUse`, `.notASocket`, `.system`.
    public init(path: String, mode: mode_t = 0o600, allowedUIDs: Set<uid_t>? = nil, backlog: Int32 = 8)
        throws(ScmSocketError)
    {
        let address = try UnixSocketAddress(path: path)
        let listening: FileDescriptor
        do {
            listening = try makeStreamSocket()
        } catch { throw .system(error) }
        let fd = listening.rawValue
        try bindReplacingStale(fd, address)
        let identity: (device: UInt64, inode: UInt64)
        do {
            identity = try socketFileIdentity(path)
        } catch { throw .system(error) }
        do {
            // chmod before listen: nobody can connect until listen, whatever mode bind left.
            _ = try systemCall("chmod(\(path))") { chmod(path, mode) }
            _ = try systemCall("listen") { listen(fd, backlog) }
        } catch {
            removeIfSame(path, identity)
            throw .system(error)
        }
        self.socket = listening
        self.path = path
        self.allowedUIDs = allowedUIDs
        self.createdFile = identity
    }

    /// Takes ownership of a socket that is already listening (e.g. inherited as `--fd N`) and makes
    /// it close-on-exec (which cannot fail on an open descriptor). No file is removed on deinit.
    public init(adopting listening: consuming FileDescriptor, allowedUIDs: Set<uid_t>? = nil) {
        _ = try? setDescriptorFlag(listening.rawValue, FD_CLOEXEC)
        self.socket = listening
        self.path = nil
        self.allowedUIDs = allowedUIDs
        self.createdFile = nil
    }

    deinit {
        if let path, let createdFile { removeIfSame(path, createdFile) }
    }

    /// Waits for (or, if the descriptor is non-blocking and one is pending, takes) one connection.
    ///
    /// The connection is close-on-exec. With `allowedUIDs`, the peer's uid is checked with
    /// `getpeereid` before anything is read; a peer not in the set is disconnected and
    /// `.peerNotAllowed` thrown, and the listener stays usable.
    ///
    /// - Throws: `.peerNotAllowed`, `.system` (`Errno.wouldBlock` on a non-blocking listener with
    ///   nothing pending).
    public func accept() throws(ScmSocketError) -> ScmSocket {
        let connection: FileDescriptor
        do {
            connection = try acceptConnection(socket.rawValue)
        } catch { throw .system(error) }
        if let allowedUIDs {
            let credentials: PeerCredentials
            do {
                credentials = try PeerCredentials(socket: connection.rawValue)
            } catch { throw .system(error) }
            // Throwing drops `connection`, which closes it.
            guard allowedUIDs.contains(credentials.uid) else { throw .peerNotAllowed(uid: credentials.uid) }
        }
        return ScmSocket(configured: connection)
    }
}

/// Binds `fd` to `address`; a stale socket file (no listener) in the way is removed once.
private func bindReplacingStale(_ fd: Int32, _ address: UnixSocketAddress) throws(ScmSocketError) {
    var replaced = false
    while true {
        let result = address.withSocketAddress { pointer, length in bind(fd, pointer, length) }
        if result == 0 { return }
        let error = Errno.current
        if error == .interrupted { continue }
        guard error == .addressInUse else { throw .system(SystemCallError("bind(\(address.path))", error)) }
        if replaced { throw .addressInUse(address.path) }
        try removeStaleSocket(address)
        replaced = true
    }
}

/// Removes the socket file at `address` if nobody listens on it; throws if someone does or if it
/// is not a socket.
private func removeStaleSocket(_ address: UnixSocketAddress) throws(ScmSocketError) {
    let path = address.path
    var info = stat()
    if lstat(path, &info) == -1 {
        let error = Errno.current
        if error == .noSuchFile { return }  // gone meanwhile: just bind again
        throw .system(SystemCallError("lstat(\(path))", error))
    }
    guard info.st_mode & S_IFMT == S_IFSOCK else { throw .notASocket(path) }

    let probe: FileDescriptor
    do {
        probe = try makeStreamSocket()
    } catch { throw .system(error) }
    do {
        // Non-blocking, so a live listener with a full backlog answers EAGAIN instead of blocking us.
        try probe.setNonBlocking()
        try connectSocket(probe.rawValue, to: address)
    } catch {
        switch error.errno {
        case .connectionRefused:
            if unlink(path) == -1 && Errno.current != .noSuchFile {
                throw .system(SystemCallError("unlink(\(path))", .current))
            }
            return
        case .noSuchFile:
            return
        case .wouldBlock:
            throw .addressInUse(path)
        default:
            throw .system(error)
        }
    }
    throw .addressInUse(path)
}

/// The device and inode of the socket file at `path`, which must be a socket.
private func socketFileIdentity(_ path: String) throws(SystemCallError) -> (device: UInt64, inode: UInt64) {
    var info = stat()
    _ = try systemCall("lstat(\(path))") { lstat(path, &info) }
    return (UInt64(truncatingIfNeeded: info.st_dev), UInt64(truncatingIfNeeded: info.st_ino))
}

/// Unlinks `path` if it is still the file with `identity` (a newer listener's file is left alone).
private func removeIfSame(_ path: String, _ identity: (device: UInt64, inode: UInt64)) {
    guard let current = try? socketFileIdentity(path), current == identity else { return }
    _ = unlink(path)
}
