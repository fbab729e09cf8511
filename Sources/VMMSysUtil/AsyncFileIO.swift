#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// What one asynchronous file operation does.
///
/// Thread-safety: a value type.
public enum AsyncFileOperation: Sendable, Hashable {
    /// `preadv` into the vectors.
    case read
    /// `pwritev` from the vectors.
    case write
    /// `pwritev`, durable when it completes (io_uring, native: `RWF_DSYNC`; threads: followed by
    /// `fdatasync`).
    case durableWrite
    /// `fdatasync` (no vectors).
    case dataSync
    /// Deallocates a range, keeping the file's size (Linux `fallocate(PUNCH_HOLE | KEEP_SIZE)`);
    /// reads of it return zeroes. Submitted with `submit(_:descriptor:offset:length:tag:)`.
    case punchHole
    /// Zeroes a range in place, keeping it allocated (Linux `fallocate(ZERO_RANGE | KEEP_SIZE)`).
    /// Submitted with `submit(_:descriptor:offset:length:tag:)`.
    case zeroRange

    /// Whether it is a space operation (`punchHole`, `zeroRange`): a range, no vectors. These
    /// complete with 0, or `-EOPNOTSUPP` where the OS, file system or kernel lacks them.
    public var isSpaceOperation: Bool { self == .punchHole || self == .zeroRange }
}

/// One finished operation: the tag it was submitted with and its result (bytes transferred, or
/// a negated errno).
///
/// Thread-safety: a value type.
public struct AsyncFileCompletion: Sendable, Hashable {
    /// The tag given to `AsyncFileQueue.submit`.
    public var tag: UInt64
    /// Bytes transferred (0 for `dataSync`), or a negated errno.
    public var result: Int32
    /// A completion of the operation tagged `tag`.
    public init(tag: UInt64, result: Int32) {
        self.tag = tag
        self.result = result
    }
}

/// The engine behind `AsyncFileQueue`s: `io_uring` (Linux with liburing), `native` (Linux AIO)
/// or `threads` (a small pool of threads running `preadv`/`pwritev`, every POSIX system).
///
/// Thread-safety: a value type.
public enum AsyncFileEngineKind: String, Sendable, CaseIterable {
    /// Linux's io_uring through liburing: one ring per queue, whose own descriptor is watched.
    case ioUring = "io_uring"
    /// A pool of threads running the system calls: every POSIX system.
    case threads
    /// Linux native AIO (io_submit; QEMU's `aio=native`): one context per queue with an eventfd.
    /// Asynchronous with `O_DIRECT` only.
    case native

    /// Whether this build and kernel can run it (io_uring and native probed once).
    public var isUsable: Bool {
        switch self {
        case .ioUring: return IOUringFileQueue.isUsable
        case .threads: return true
        case .native: return LinuxAIOFileQueue.isUsable
        }
    }

    /// io_uring where this build has it and the kernel allows it (probed once by creating a
    /// ring), else threads.
    public static var preferred: AsyncFileEngineKind { IOUringFileQueue.isUsable ? .ioUring : .threads }
}

/// A submission and completion queue for asynchronous positioned file I/O, one per thread that
/// submits (a vhost-user queue worker).
///
/// Submit operations (each with a caller-chosen tag), `commit()` them, watch
/// `completionDescriptor` (readable while completions wait, in a `Poller`), then `reap` them.
/// At most `capacity` operations may be in flight (submitted and not yet reaped); the vectors
/// an operation names must stay valid and unchanged until it is reaped.
///
/// Thread-safety: not thread-safe; one owner thread submits and reaps. Completions are produced
/// by the kernel (io_uring) or by pool threads (threads).
public protocol AsyncFileQueue: AnyObject {
    /// Most operations in flight at once.
    var capacity: Int { get }
    /// Readable (level- or edge-triggered once per batch) when completions are ready to reap.
    var completionDescriptor: Int32 { get }
    /// Queues one operation; it starts at the latest at `commit()`. Allocation-free.
    ///
    /// - Throws: `SystemCallError` (`EBUSY` when `capacity` operations are already in flight).
    func submit(
        _ operation: AsyncFileOperation, descriptor: Int32, vectors: UnsafePointer<iovec>?, count: Int,
        offset: UInt64, tag: UInt64) throws(SystemCallError)
    /// Queues one space operation (`punchHole` or `zeroRange`) over `length` bytes at `offset`;
    /// it starts at the latest at `commit()`. Allocation-free. It completes with 0, or a negated
    /// errno (`-EOPNOTSUPP` where this OS, file system or kernel cannot do it: write zeroes
    /// instead).
    ///
    /// - Throws: `SystemCallError` (`EBUSY` when `capacity` operations are already in flight,
    ///   `EINVAL` for an operation that is not a space operation).
    func submit(
        _ operation: AsyncFileOperation, descriptor: Int32, offset: UInt64, length: UInt64, tag: UInt64
    ) throws(SystemCallError)
    /// Starts everything queued since the last commit.
    ///
    /// - Throws: `SystemCallError` if the kernel took none or only part of the batch for now
    ///   (`EAGAIN`, `EBUSY`): the rest stays queued; commit again (after reaping) until it succeeds.
    func commit() throws(SystemCallError)
    /// Takes finished operations (without waiting) into `buffer`, resetting the readiness of
    /// `completionDescriptor` first where it needs a reset (the threads engine's notifier; an
    /// io_uring's own descriptor is readable exactly while completions are left), so a
    /// completion arriving later makes it readable again.
    ///
    /// - Returns: how many were stored; call again while it fills the buffer.
    func reap(into buffer: UnsafeMutableBufferPointer<AsyncFileCompletion>) -> Int
}

/// Errors creating an engine or queue.
public enum AsyncFileEngineError: Error, Hashable, Sendable, CustomStringConvertible {
    /// This build has no io_uring (not Linux, or liburing was not installed when it was built).
    case ioUringNotBuilt
    /// The kernel refused to create a ring (io_uring disabled by sysctl or seccomp, or too old).
    case ioUringRefused(Errno)
    /// The kernel refused a Linux AIO context (not Linux, fs.aio-max-nr exhausted, seccomp).
    case linuxAIORefused(Errno)
    /// The queue's completion notifier could not be created.
    case notifier(PrimitiveCreationError)

    public var description: String {
        switch self {
        case .ioUringNotBuilt: return "io_uring is not available in this build (Linux with liburing-dev only)"
        case let .ioUringRefused(errno): return "the kernel refused io_uring: \(errno)"
        case let .linuxAIORefused(errno): return "Linux AIO is not available: \(errno)"
        case let .notifier(error): return "completion notifier: \(error)"
        }
    }
}

/// Makes the queues of one engine: a daemon holds one and asks it for a queue per worker.
///
/// Thread-safety: `Sendable`; `makeQueue` may be called from any thread.
public final class AsyncFileEngine: Sendable {
    /// The engine's kind.
    public let kind: AsyncFileEngineKind
    private let pool: FileIOPoolOwner?

    /// An engine of `kind`; `threads` runs up to `threadCount` pool threads (shared by every
    /// queue, started as requests need them).
    ///
    /// - Throws: `AsyncFileEngineError` if io_uring or Linux AIO is not built or the kernel
    ///   refuses it.
    public init(kind: AsyncFileEngineKind, threadCount: Int = 64) throws(AsyncFileEngineError) {
        self.kind = kind
        switch kind {
        case .ioUring:
            try IOUringFileQueue.checkUsable()
            pool = nil
        case .native:
            try LinuxAIOFileQueue.checkUsable()
            pool = nil
        case .threads:
            pool = FileIOPoolOwner(FileIOThreadPool(maxThreads: threadCount))
        }
    }

    /// A queue for `capacity` operations in flight.
    ///
    /// - Throws: `AsyncFileEngineError` if the ring, context or notifier cannot be created.
    public func makeQueue(capacity: Int) throws(AsyncFileEngineError) -> any AsyncFileQueue {
        if let pool { return try ThreadPoolFileQueue(pool: pool, capacity: capacity) }
        if kind == .native { return try LinuxAIOFileQueue(capacity: capacity) }
        return try IOUringFileQueue(capacity: capacity)
    }

    /// Stops the pool threads (threads engine) after the work already queued. Queues must not
    /// submit afterwards. Idempotent; also happens when the engine and its queues are released.
    public func shutdown() { pool?.pool.shutdown() }
}

/// Shuts the pool down when the engine and every queue of it are gone (the pool's threads keep
/// the pool itself alive until then).
final class FileIOPoolOwner: Sendable {
    let pool: FileIOThreadPool
    init(_ pool: FileIOThreadPool) { self.pool = pool }
    deinit { pool.shutdown() }
}
