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
    /// `servers[i]` on `options.socketPaths[i]`: the last on this thread, the others on threads of
    /// their own (joined before returning); or `servers[0]` on `--fd`.
    static func serve(_ servers: [VhostUserServer], _ options: VhostUserDaemonOptions) throws(VhostUserDaemonError) {
        let paths = options.socketPaths
        guard paths.count > 1 else { return try serve(servers[0], options) }
        let failures = PortFailures()
        var threads: [JoinableThread] = []
        for (server, path) in zip(servers, paths).dropLast() {
            do {
                threads.append(
                    try JoinableThread {
                        do {
                            try server.run(socketPath: path, mode: 0o600, allowedUIDs: options.allowedSet)
                        } catch {
                            failures.record("cannot serve on \(path): \(error)")
                            // One port down takes the program down: stop the others.
                            for other in servers { other.stop() }
                        }
                    })
            } catch {
                throw .socket("cannot start a thread for \(path): \(error)")
            }
        }
        var last: VhostUserDaemonError?
        do {
            try serve(servers[paths.count - 1], options)
        } catch {
            last = error
            for other in servers { other.stop() }
        }
        for thread in threads { thread.join() }
        if let last { throw last }
        if let message = failures.first { throw .socket(message) }
    }

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

/// The first failure of a port's thread.
///
/// Thread-safety: any thread (a mutex).
final class PortFailures: @unchecked Sendable {
    private let mutex = ConditionLock()
    private var message: String?

    func record(_ text: String) { mutex.withLock { if message == nil { message = text } } }
    var first: String? { mutex.withLock { message } }
}
