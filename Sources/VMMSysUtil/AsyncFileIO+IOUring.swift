import CVMMFileIO
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// An `AsyncFileQueue` over one io_uring (liburing): submissions are batched into the submission
/// ring and started by `commit()` (one `io_uring_enter`); the kernel posts completions to the
/// completion ring, and the ring's own descriptor (`completionDescriptor`) polls readable while
/// it holds any. Watching the ring itself rather than an eventfd registered with it saves the
/// eventfd's read on every reap (one system call per completion event; at queue depth 1, one per
/// request): its readiness is the completion queue's, level-triggered, nothing to reset.
///
/// Thread-safety: as `AsyncFileQueue` (one owner thread).
final class IOUringFileQueue: AsyncFileQueue {
    let capacity: Int
    private let ring: OpaquePointer
    private var inFlight = 0
    private let chunk = ShimCompletionChunk()

    let completionDescriptor: Int32

    init(capacity: Int) throws(AsyncFileEngineError) {
        guard vmm_uring_compiled() else { throw .ioUringNotBuilt }
        let capacity = max(1, min(capacity, 32768))
        var code: Int32 = 0
        guard let made = vmm_uring_create(UInt32(capacity), &code) else {
            throw .ioUringRefused(Errno(rawValue: code))
        }
        ring = made
        completionDescriptor = vmm_uring_fd(made)
        self.capacity = capacity
    }

    deinit {
        vmm_uring_destroy(ring)
    }

    func submit(
        _ operation: AsyncFileOperation, descriptor: Int32, vectors: UnsafePointer<iovec>?, count: Int,
        offset: UInt64, tag: UInt64
    ) throws(SystemCallError) {
        guard !operation.isSpaceOperation else { throw SystemCallError("io_uring_get_sqe", Errno(rawValue: EINVAL)) }
        let code = Self.code(of: operation)
        try queueEntry { vmm_uring_prepare(ring, code, descriptor, vectors, UInt32(count), offset, tag) }
    }

    func submit(
        _ operation: AsyncFileOperation, descriptor: Int32, offset: UInt64, length: UInt64, tag: UInt64
    ) throws(SystemCallError) {
        guard operation.isSpaceOperation else { throw SystemCallError("io_uring_get_sqe", Errno(rawValue: EINVAL)) }
        let code = Self.code(of: operation)
        try queueEntry { vmm_uring_prepare_space(ring, code, descriptor, offset, length, tag) }
    }

    /// The shim's operation code (shared with the Linux AIO engine).
    static func code(of operation: AsyncFileOperation) -> Int32 {
        switch operation {
        case .read: return Int32(VMM_URING_READV)
        case .write: return Int32(VMM_URING_WRITEV)
        case .durableWrite: return Int32(VMM_URING_WRITEV_DSYNC)
        case .dataSync: return Int32(VMM_URING_DATASYNC)
        case .punchHole: return Int32(VMM_URING_PUNCH_HOLE)
        case .zeroRange: return Int32(VMM_URING_ZERO_RANGE)
        }
    }

    /// Queues one entry with `prepare` (a `vmm_uring_prepare*` call returning 0 or -errno), at
    /// most `capacity` in flight. A submission ring full of entries not yet committed is
    /// committed first to make room.
    @inline(__always)
    private func queueEntry(_ prepare: () -> Int32) throws(SystemCallError) {
        guard inFlight < capacity else { throw SystemCallError("io_uring_get_sqe", Errno(rawValue: EBUSY)) }
        var rc = prepare()
        if rc == -EBUSY {
            try commit()
            rc = prepare()
        }
        guard rc == 0 else { throw SystemCallError("io_uring_get_sqe", Errno(rawValue: -rc)) }
        inFlight += 1
    }

    func commit() throws(SystemCallError) {
        let rc = vmm_uring_submit(ring)
        if rc < 0 { throw SystemCallError("io_uring_enter", Errno(rawValue: -rc)) }
    }

    func reap(into buffer: UnsafeMutableBufferPointer<AsyncFileCompletion>) -> Int {
        // Nothing to reset: the ring polls readable exactly while completions are left in it.
        let stored = chunk.reap(into: buffer) { vmm_uring_reap(ring, $0, $1, $2) }
        inFlight -= stored
        return stored
    }

    /// Whether io_uring works here: built in, and the kernel creates a ring (probed once).
    static let isUsable: Bool = (try? checkUsable()) != nil

    /// Throws why io_uring cannot be used here.
    static func checkUsable() throws(AsyncFileEngineError) {
        guard vmm_uring_compiled() else { throw .ioUringNotBuilt }
        var code: Int32 = 0
        guard let probe = vmm_uring_create(2, &code) else { throw .ioUringRefused(Errno(rawValue: code)) }
        vmm_uring_destroy(probe)
    }
}

/// The 64-entry tag and result arrays a C shim's reap fills, shared by the engines built on one
/// (io_uring, Linux AIO): allocated once per queue, so reaping allocates nothing.
///
/// Thread-safety: not thread-safe; owned by one queue.
final class ShimCompletionChunk {
    private let tags = UnsafeMutablePointer<UInt64>.allocate(capacity: 64)
    private let results = UnsafeMutablePointer<Int32>.allocate(capacity: 64)

    deinit {
        tags.deallocate()
        results.deallocate()
    }

    /// Fills `buffer` with completions taken by `take` (the shim's reap: up to its count into
    /// the arrays it is given, returning how many) until `take` returns fewer than asked.
    ///
    /// - Returns: how many were stored.
    @inline(__always)
    func reap(
        into buffer: UnsafeMutableBufferPointer<AsyncFileCompletion>,
        _ take: (UnsafeMutablePointer<UInt64>, UnsafeMutablePointer<Int32>, UInt32) -> UInt32
    ) -> Int {
        guard let base = buffer.baseAddress else { return 0 }
        var stored = 0
        while stored < buffer.count {
            let want = UInt32(min(64, buffer.count - stored))
            let got = Int(take(tags, results, want))
            for i in 0..<got { base[stored + i] = AsyncFileCompletion(tag: tags[i], result: results[i]) }
            stored += got
            if got < Int(want) { break }
        }
        return stored
    }
}
