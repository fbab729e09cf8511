/// The descriptors that arrived with one message (or one `receiveExactly`), owned until taken.
///
/// Holds up to `capacity` descriptors inline (no heap allocation). `take(at:)` moves one out to the
/// caller; every descriptor not taken is closed when this value goes away, so an error path or an
/// ignored descriptor can never leak. Every descriptor in here is already close-on-exec.
///
/// Thread-safety: a non-copyable value with one owner; not shared.
public struct ReceivedFileDescriptors: ~Copyable, Sendable {
    /// The most descriptors one message may carry: twice vhost-user's per-message maximum of 8.
    public static let capacity = 16

    // A fixed tuple rather than an array: no allocation per message. -1 marks a taken slot.
    private var storage:
        (
            Int32, Int32, Int32, Int32, Int32, Int32, Int32, Int32,
            Int32, Int32, Int32, Int32, Int32, Int32, Int32, Int32
        ) = (-1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1)

    /// How many descriptors arrived (taken ones included: indices stay stable).
    public private(set) var count = 0

    /// An empty set.
    public init() {}

    /// Whether no descriptor arrived.
    public var isEmpty: Bool { count == 0 }

    /// Moves the descriptor at `index` to the caller, or `nil` if `index` is out of range or the
    /// descriptor was taken already.
    public mutating func take(at index: Int) -> FileDescriptor? {
        guard index >= 0, index < count else { return nil }
        let fd = element(index)
        guard fd >= 0 else { return nil }
        setElement(index, -1)
        return FileDescriptor(adopting: fd)
    }

    /// The descriptor number at `index` without taking it (still owned and closed by this value),
    /// or `nil` if out of range or taken.
    public func descriptor(at index: Int) -> Int32? {
        guard index >= 0, index < count else { return nil }
        let fd = element(index)
        return fd >= 0 ? fd : nil
    }

    /// Moves every descriptor out, in order, as raw numbers the caller now owns (e.g. to hand
    /// them to a decoder that adopts them).
    public consuming func releaseAll() -> [Int32] {
        var raw: [Int32] = []
        for index in 0..<count {
            if let fd = take(at: index) { raw.append(fd.release()) }
        }
        return raw
    }

    /// Closes every descriptor not taken yet; `count` becomes 0.
    public mutating func closeAll() {
        for index in 0..<count {
            let fd = element(index)
            if fd >= 0 { _ = systemClose(fd) }
        }
        storage = (-1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1)
        count = 0
    }

    /// Adds a received descriptor; `false` (descriptor not added, caller still owns it) when full.
    mutating func append(_ fd: Int32) -> Bool {
        guard count < Self.capacity else { return false }
        setElement(count, fd)
        count += 1
        return true
    }

    deinit {
        for index in 0..<count {
            let fd = element(index)
            if fd >= 0 { _ = systemClose(fd) }
        }
    }

    // Safe: every caller checks index < count <= capacity, the tuple's 16 Int32 elements are
    // laid out contiguously (homogeneous tuple), so the offset stays inside it.
    private func element(_ index: Int) -> Int32 {
        withUnsafeBytes(of: storage) { $0.load(fromByteOffset: index * 4, as: Int32.self) }
    }

    private mutating func setElement(_ index: Int, _ fd: Int32) {
        withUnsafeMutableBytes(of: &storage) { $0.storeBytes(of: fd, toByteOffset: index * 4, as: Int32.self) }
    }
}

/// What one `ScmSocket.receive` call read: a byte count and the descriptors that came with it.
///
/// Thread-safety: a non-copyable value with one owner.
public struct ReceivedMessage: ~Copyable, Sendable {
    /// Bytes written to the start of the caller's buffer (at least 1).
    public let byteCount: Int
    /// Descriptors that arrived with those bytes (close-on-exec, closed unless taken).
    public var fds: ReceivedFileDescriptors
}
