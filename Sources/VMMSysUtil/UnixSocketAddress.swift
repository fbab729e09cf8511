#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// A filesystem path as a `sockaddr_un`, refused (never truncated) when it does not fit.
///
/// Thread-safety: a value type.
struct UnixSocketAddress {
    private var address = sockaddr_un()
    let path: String

    /// - Throws: `.invalidPath` for an empty path or one with a NUL byte, `.pathTooLong` when the
    ///   path and its terminating NUL do not fit in `sun_path` (108 bytes on Linux, 104 on the BSDs).
    init(path: String) throws(ScmSocketError) {
        self.path = path
        let bytes = path.utf8
        guard !bytes.isEmpty, !bytes.contains(0) else { throw .invalidPath(path) }
        let capacity = MemoryLayout.size(ofValue: address.sun_path)
        guard bytes.count + 1 <= capacity else { throw .pathTooLong(path) }
        address.sun_family = sa_family_t(AF_UNIX)
        setSocketAddressLength(&address)
        // Safe: bytes.count + 1 <= capacity was checked above; the rest of sun_path stays zero, so
        // the path is NUL-terminated.
        withUnsafeMutableBytes(of: &address.sun_path) { destination in
            destination.copyBytes(from: bytes)
        }
    }

    /// Calls `body` with the address as a `sockaddr` pointer and its length.
    func withSocketAddress<Result>(_ body: (UnsafePointer<sockaddr>, socklen_t) -> Result) -> Result {
        withUnsafeBytes(of: address) { raw in
            // Safe: sockaddr_un starts with the common sockaddr header, as bind/connect expect.
            body(raw.baseAddress!.assumingMemoryBound(to: sockaddr.self), socklen_t(MemoryLayout<sockaddr_un>.size))
        }
    }
}
