import VMMSysUtil

/// The fds that arrived with one message, owned until taken; any not taken are closed when the
/// container goes away.
///
/// The decoder receives this container (or raw fds it adopts) and from then on owns them: on
/// every error path they are closed, and a decoded message carries exactly the fds its request
/// defines. Indices follow arrival order (for `SET_MEM_TABLE`, region order).
/// Thread-safety: not synchronized; one owner at a time (it may move between threads).
public struct MessageDescriptors: ~Copyable, Sendable {
    /// Raw fds in arrival order; -1 marks one that was taken or closed.
    private var raw: [Int32]

    /// No fds.
    public init() {
        raw = []
    }

    /// Takes ownership of `descriptors`: distinct open fds no one else will close (as received via
    /// `SCM_RIGHTS`). They are closed unless taken.
    public init(adopting descriptors: [Int32]) {
        raw = descriptors
    }

    /// Takes over the fds that arrived with a message (`ScmSocket.receive`/`receiveExactly`),
    /// keeping their order and indices.
    public init(_ received: consuming ReceivedFileDescriptors) {
        var raw: [Int32] = []
        raw.reserveCapacity(received.count)
        for index in 0..<received.count {
            // A slot taken before the hand-over stays a gap, so indices keep their meaning.
            raw.append(received.take(at: index)?.release() ?? -1)
        }
        self.raw = raw
    }

    deinit {
        for fd in raw where fd >= 0 {
            // Nothing to report: the fd is released either way.
            _ = systemClose(fd)
        }
    }

    /// The number of fds that arrived (taken ones included).
    public var count: Int { raw.count }

    /// The raw number of fd `index` for a syscall (e.g. `mmap`), while this container still owns
    /// it; nil if out of range or already taken.
    public func rawValue(at index: Int) -> Int32? {
        guard raw.indices.contains(index), raw[index] >= 0 else { return nil }
        return raw[index]
    }

    /// Moves fd `index` out to the caller; nil if out of range or already taken.
    public mutating func take(at index: Int) -> FileDescriptor? {
        guard raw.indices.contains(index), raw[index] >= 0 else { return nil }
        let fd = raw[index]
        raw[index] = -1
        return FileDescriptor(adopting: fd)
    }

    /// Closes every fd still owned now (the count stays, so indices keep their meaning).
    public mutating func closeAll() {
        for index in raw.indices where raw[index] >= 0 {
            _ = systemClose(raw[index])
            raw[index] = -1
        }
    }
}
