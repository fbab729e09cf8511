import SystemPackage
import VMMSysUtil

// Errors of this package that come from a system call carry its errno; these expose it as
// swift-system's `Errno`, so a VMM written with swift-system matches them as it matches its own
// (`catch let error as ScmSocketError where error.systemErrno == .connectionRefused`).
//
// Thread-safety: value types and pure conversions.

extension VMMSysUtil.Errno {
    /// Ours from swift-system's (same number).
    public init(_ errno: SystemPackage.Errno) {
        self.init(rawValue: errno.rawValue)
    }

    /// swift-system's `Errno` with the same number.
    public var systemErrno: SystemPackage.Errno { SystemPackage.Errno(rawValue: rawValue) }
}

extension SystemPackage.Errno {
    /// swift-system's from ours (same number).
    public init(_ errno: VMMSysUtil.Errno) {
        self.init(rawValue: errno.rawValue)
    }
}

extension SystemCallError {
    /// The errno of the failed call, as swift-system's `Errno`.
    public var systemErrno: SystemPackage.Errno { errno.systemErrno }
}

extension ScmSocketError {
    /// The errno when a system call failed (`.system`), as swift-system's `Errno`; `.peerClosed`
    /// (which is EPIPE, ECONNRESET or end of stream) and the validation cases have none.
    public var systemErrno: SystemPackage.Errno? {
        if case .system(let error) = self { return error.systemErrno }
        return nil
    }
}

extension MappingError {
    /// The errno when `mmap` or a related call failed, as swift-system's `Errno`.
    public var systemErrno: SystemPackage.Errno? {
        if case .system(let error) = self { return error.systemErrno }
        return nil
    }
}

extension SharedMemoryError {
    /// The errno when a system call failed (directly or while mapping), as swift-system's `Errno`.
    public var systemErrno: SystemPackage.Errno? {
        switch self {
        case .system(let error): error.systemErrno
        case .mapping(let error): error.systemErrno
        default: nil
        }
    }
}
