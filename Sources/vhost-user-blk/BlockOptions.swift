import ArgumentParser
import VirtioBlock
import VMMSysUtil

/// The block device's own command-line options (beside the common vhost-user ones); QEMU's
/// contrib vhost-user-blk names where it has them.
///
/// Thread-safety: a value type.
struct BlockOptions: ParsableArguments {
    @Option(help: ArgumentHelp("Raw disk image (regular file or block device) to serve.", valueName: "path"))
    var blkFile: String

    @Flag(help: "Open the image read-only; the guest sees a read-only disk.")
    var readOnly = false

    @Option(name: .customLong("num-queues"), help: ArgumentHelp("Request queues, 1...256.", valueName: "n"))
    var queueCount = 1

    @Option(help: ArgumentHelp("Largest queue size, a power of two 4...32768.", valueName: "n"))
    var queueSize = 128

    /// Requests per second over all queues (token bucket, bursts of a tenth of a second); nil: none.
    @Option(
        help: ArgumentHelp("Serve at most <n> requests per second, 1...1000000 (default: no limit).", valueName: "n"))
    var iopsLimit: Int?

    /// `--cache`: through the page cache (default) or bypassing it.
    @Option(
        help: ArgumentHelp(
            "writeback (through the page cache) or none (bypass it: O_DIRECT on Linux and FreeBSD, F_NOCACHE on macOS; refused on OpenBSD).",
            valueName: "mode"))
    var cache = BlockCacheMode.writeback

    /// `--aio`: how requests are performed; nil: see `engine`.
    @Option(
        help: ArgumentHelp(
            "io_uring (Linux with liburing, when the kernel allows it), native (Linux AIO, as QEMU's aio=native) or threads (up to 64 threads running preadv/pwritev): up to the queue size in flight per queue; or sync (one request at a time per queue, on its worker). Default: with --cache none io_uring where available, else threads; with the page cache, sync.",
            valueName: "engine"))
    var aio: BlockAIO?

    /// The engine to use (nil: synchronous): `--aio` if given; else with `--cache none` io_uring
    /// where the kernel allows it, else threads; with the page cache, synchronous (a cached
    /// `preadv` takes a few microseconds: handing it to an engine costs more than it saves).
    var engine: AsyncFileEngineKind? {
        switch aio {
        case .sync?: return nil
        case .engine(let kind)?: return kind
        case nil: return cache == .none ? .preferred : nil
        }
    }

    /// Every number in its range, the queue size a power of two.
    ///
    /// - Throws: `ValidationError` naming the option.
    mutating func validate() throws {
        guard (1...256).contains(queueCount) else {
            throw ValidationError("--num-queues: \(queueCount) is not in 1...256")
        }
        guard (4...32768).contains(queueSize), queueSize & (queueSize - 1) == 0 else {
            throw ValidationError("--queue-size: \(queueSize) is not a power of two in 4...32768")
        }
        if let iopsLimit, !(1...1_000_000).contains(iopsLimit) {
            throw ValidationError("--iops-limit: \(iopsLimit) is not in 1...1000000")
        }
    }
}

extension BlockCacheMode: ExpressibleByArgument {}

/// `--aio`: an asynchronous engine, or synchronous requests on the queue workers.
enum BlockAIO: Equatable, ExpressibleByArgument {
    case sync
    case engine(AsyncFileEngineKind)

    init?(argument: String) {
        if argument == "sync" {
            self = .sync
        } else if let kind = AsyncFileEngineKind(rawValue: argument) {
            self = .engine(kind)
        } else {
            return nil
        }
    }

    static var allValueStrings: [String] { ["io_uring", "native", "threads", "sync"] }
}
