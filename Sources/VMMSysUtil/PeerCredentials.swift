#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import CVMMPlatform

/// Who is at the other end of a Unix socket: its effective user and group id at connect time.
///
/// Thread-safety: a value type.
public struct PeerCredentials: Hashable, Sendable, CustomStringConvertible {
    /// The peer's effective user id.
    public let uid: uid_t
    /// The peer's effective group id.
    public let gid: gid_t

    public init(uid: uid_t, gid: gid_t) {
        self.uid = uid
        self.gid = gid
    }

    /// The credentials of the peer of a connected Unix socket, via `getpeereid` (libc on the BSDs
    /// and macOS, libbsd on Linux).
    ///
    /// - Throws: `SystemCallError` from `getpeereid`.
    init(socket fd: Int32) throws(SystemCallError) {
        var uid = uid_t()
        var gid = gid_t()
        _ = try systemCall("getpeereid") { getpeereid(fd, &uid, &gid) }
        self.init(uid: uid, gid: gid)
    }

    public var description: String { "uid \(uid), gid \(gid)" }
}
