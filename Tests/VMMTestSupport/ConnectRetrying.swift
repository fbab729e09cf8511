#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import VMMSysUtil

/// Why a test could not reach a peer it started.
public struct PeerUnreachable: Error, CustomStringConvertible {
    public let description: String
}

extension ScmSocket {
    /// Connects to `path`, retrying every 10 ms for up to `seconds`: a listener binds, sets the
    /// mode and then listens, so the socket file appears before it accepts. Connecting is the only
    /// readiness check that cannot race it.
    ///
    /// - Throws: `PeerUnreachable` when no connection succeeded in time.
    public static func connectRetrying(path: String, seconds: Int = 10) throws -> ScmSocket {
        for _ in 0..<(seconds * 100) {
            if let socket = try? ScmSocket.connect(path: path) { return socket }
            usleep(10_000)
        }
        throw PeerUnreachable(description: "nothing accepted connections on \(path) within \(seconds) s")
    }
}
