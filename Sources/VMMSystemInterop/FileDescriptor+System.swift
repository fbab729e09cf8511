import SystemPackage
import VMMSysUtil

// A VMM written with swift-system hands its `SystemPackage.FileDescriptor`s to this package and
// takes them back without raw numbers. swift-system's descriptor is a copyable handle that owns
// nothing (whoever calls `close()` closes it); ours has exactly one owner and closes on deinit.
// So ownership crosses explicitly: `init(adopting:)` moves it in, `releaseAsSystemDescriptor()`
// moves it out, `withSystemDescriptor` lends it for a call.
//
// Thread-safety: as the `FileDescriptor` and `ScmSocket` methods these forward to.

extension VMMSysUtil.FileDescriptor {
    /// Takes ownership of a swift-system descriptor: from now on this value closes it, so the
    /// caller must not `close()` it (nor use it after this value is gone).
    ///
    /// Thread-safety: as `init(adopting: Int32)`.
    public init(adopting descriptor: SystemPackage.FileDescriptor) {
        self.init(adopting: descriptor.rawValue)
    }

    /// Gives up ownership and returns the descriptor as swift-system's; the caller now closes it
    /// (`close()`).
    public consuming func releaseAsSystemDescriptor() -> SystemPackage.FileDescriptor {
        SystemPackage.FileDescriptor(rawValue: release())
    }

    /// Lends the descriptor to `body` as swift-system's, for swift-system calls (`read`, `write`,
    /// `seek`...). `body` must neither close it nor keep it: this value still owns it.
    ///
    /// - Throws: what `body` throws.
    public borrowing func withSystemDescriptor<Result, Failure: Error>(
        _ body: (SystemPackage.FileDescriptor) throws(Failure) -> Result
    ) throws(Failure) -> Result {
        try body(SystemPackage.FileDescriptor(rawValue: rawValue))
    }

    /// A close-on-exec duplicate owned by the caller as a swift-system descriptor (this value
    /// keeps its own).
    ///
    /// - Throws: `SystemCallError` from `fcntl(F_DUPFD_CLOEXEC)` (its `systemErrno` is
    ///   swift-system's `Errno`).
    public borrowing func duplicateAsSystemDescriptor() throws(SystemCallError) -> SystemPackage.FileDescriptor {
        try duplicate().releaseAsSystemDescriptor()
    }
}

extension ScmSocket {
    /// Takes ownership of a connected AF_UNIX stream socket opened with swift-system; see
    /// `init(adopting:)`. The caller must not close `socket`.
    public convenience init(adopting socket: SystemPackage.FileDescriptor) {
        self.init(adopting: VMMSysUtil.FileDescriptor(adopting: socket))
    }

    /// Sends `bytes` with swift-system descriptors attached (borrowed: the caller still owns and
    /// closes them; the peer receives its own copies).
    ///
    /// - Throws: as `send(_:fds:)`.
    public func send(_ bytes: [UInt8], descriptors: [SystemPackage.FileDescriptor]) throws(ScmSocketError) {
        try send(bytes, fds: descriptors.map(\.rawValue))
    }
}
