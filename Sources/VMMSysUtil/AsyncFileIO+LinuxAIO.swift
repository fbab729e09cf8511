import CVMMFileIO
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// An `AsyncFileQueue` over one Linux native AIO context (io_setup/io_submit, QEMU's
/// `aio=native`): submissions are queued and started by `commit()` (one `io_submit`); each
/// completion signals the queue's eventfd (`IOCB_FLAG_RESFD`), which is `completionDescriptor`,
/// and is read from the completion ring the kernel maps into the process (no system call but the
/// eventfd's reset per reap). Space operations, which Linux AIO lacks, run synchronously in
/// `submit` and complete at the next reap; an fdatasync the file cannot do asynchronously
/// (`IOCB_CMD_FDSYNC` refused with `EINVAL`) runs synchronously in `commit`.
///
/// Asynchronous only with `O_DIRECT`: on a cached file `io_submit` performs the transfer itself.
///
/// Thread-safety: as `AsyncFileQueue` (one owner thread).
final class LinuxAIOFileQueue: AsyncFileQueue {
    let capacity: Int
    private let context: OpaquePointer
    private var inFlight = 0
    private let chunk = ShimCompletionChunk()

    let completionDescriptor: Int32

    init(capacity: Int) throws(AsyncFileEngineError) {
        let capacity = max(1, min(capacity, 32768))
        var code: Int32 = 0
        guard let made = vmm_aio_create(UInt32(capacity), &code) else {
            throw .linuxAIORefused(Errno(rawValue: code))
        }
        context = made
        completionDescriptor = vmm_aio_fd(made)
        self.capacity = capacity
    }

    deinit {
        vmm_aio_destroy(context)
    }

    func submit(
        _ operation: AsyncFileOperation, descriptor: Int32, vectors: UnsafePointer<iovec>?, count: Int,
        offset: UInt64, tag: UInt64
    ) throws(SystemCallError) {
        guard !operation.isSpaceOperation else { throw SystemCallError("io_submit", Errno(rawValue: EINVAL)) }
        let code = IOUringFileQueue.code(of: operation)
        try queueEntry { vmm_aio_prepare(context, code, descriptor, vectors, UInt32(count), offset, tag) }
    }

    func submit(
        _ operation: AsyncFileOperation, descriptor: Int32, offset: UInt64, length: UInt64, tag: UInt64
    ) throws(SystemCallError) {
        guard operation.isSpaceOperation else { throw SystemCallError("io_submit", Errno(rawValue: EINVAL)) }
        let code = IOUringFileQueue.code(of: operation)
        try queueEntry { vmm_aio_space(context, code, descriptor, offset, length, tag) }
    }

    /// Queues one entry with `prepare` (a `vmm_aio_*` call returning 0 or -errno), at most
    /// `capacity` in flight.
    @inline(__always)
    private func queueEntry(_ prepare: () -> Int32) throws(SystemCallError) {
        guard inFlight < capacity else { throw SystemCallError("io_submit", Errno(rawValue: EBUSY)) }
        let rc = prepare()
        guard rc == 0 else { throw SystemCallError("io_submit", Errno(rawValue: -rc)) }
        inFlight += 1
    }

    func commit() throws(SystemCallError) {
        let rc = vmm_aio_submit(context)
        if rc < 0 { throw SystemCallError("io_submit", Errno(rawValue: -rc)) }
    }

    func reap(into buffer: UnsafeMutableBufferPointer<AsyncFileCompletion>) -> Int {
        let stored = chunk.reap(into: buffer) { vmm_aio_reap(context, $0, $1, $2) }
        inFlight -= stored
        return stored
    }

    /// Whether Linux AIO works here: built in, and the kernel creates a context (probed once).
    static let isUsable: Bool = (try? checkUsable()) != nil

    /// Throws why Linux AIO cannot be used here.
    static func checkUsable() throws(AsyncFileEngineError) {
        var code: Int32 = 0
        guard let probe = vmm_aio_create(2, &code) else { throw .linuxAIORefused(Errno(rawValue: code)) }
        vmm_aio_destroy(probe)
    }
}
