#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import VhostUserBackend
import VMMSysUtil

/// Why a back-end program cannot start or go on (exit status 1).
///
/// Thread-safety: a value type.
public enum VhostUserDaemonError: Error, Sendable, CustomStringConvertible {
    /// The socket could not be created, adopted or accepted on.
    case socket(String)
    /// The signal-waiting thread could not be started.
    case signals(String)

    public var description: String {
        switch self {
        case .socket(let text): text
        case .signals(let text): text
        }
    }
}

/// Serves on the socket the options name, until the server is stopped (or, for a connected
/// `--fd`, until that connection ends).
enum DaemonServing {
    static func serve(_ server: VhostUserServer, _ options: VhostUserDaemonOptions) throws(VhostUserDaemonError) {
        if let path = options.socketPath {
            do {
                // The listener (and its socket file) goes away when run returns.
                try server.run(socketPath: path, mode: 0o600, allowedUIDs: options.allowedSet)
            } catch {
                throw .socket("cannot serve on \(path): \(error)")
            }
            return
        }
        let fd = options.fd ?? -1
        let listening: Bool
        do {
            listening = try isListeningSocket(fd)
        } catch {
            throw .socket("--fd \(fd) is not a socket: \(error)")
        }
        if listening {
            let listener = ScmListener(adopting: FileDescriptor(adopting: fd), allowedUIDs: options.allowedSet)
            do {
                try server.run(listener: listener)
            } catch {
                throw .socket("accept on fd \(fd) failed: \(error)")
            }
            return
        }
        let connection = ScmSocket(adopting: FileDescriptor(adopting: fd))
        if let allowed = options.allowedSet {
            // A connected --fd is checked like an accepted one, before anything is read.
            let credentials: PeerCredentials
            do {
                credentials = try connection.peerCredentials()
            } catch {
                throw .socket("--fd \(fd): cannot read the peer's credentials: \(error)")
            }
            guard allowed.contains(credentials.uid) else {
                throw .socket("--fd \(fd): peer uid \(credentials.uid) is not allowed (--allow-uid)")
            }
        }
        let reason = server.serve(connection)
        server.logger.info("connection ended: \(reason)")
    }

    /// Whether `fd` is a socket in the listening state (SO_ACCEPTCONN).
    private static func isListeningSocket(_ fd: Int32) throws(SystemCallError) -> Bool {
        var listening: Int32 = 0
        var length = socklen_t(MemoryLayout<Int32>.size)
        guard getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &length) == 0 else {
            throw SystemCallError("getsockopt", .current)
        }
        return listening != 0
    }
}
