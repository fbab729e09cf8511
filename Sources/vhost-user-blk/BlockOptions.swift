import ArgumentParser

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
    @Option(help: ArgumentHelp("Serve at most <n> requests per second, 1...1000000 (default: no limit).", valueName: "n"))
    var iopsLimit: Int?

    /// Every number in its range, the queue size a power of two.
    ///
    /// - Throws: `ValidationError` naming the option.
    mutating func validate() throws {
        guard (1...256).contains(queueCount) else { throw ValidationError("--num-queues: \(queueCount) is not in 1...256") }
        guard (4...32768).contains(queueSize), queueSize & (queueSize - 1) == 0 else {
            throw ValidationError("--queue-size: \(queueSize) is not a power of two in 4...32768")
        }
        if let iopsLimit, !(1...1_000_000).contains(iopsLimit) {
            throw ValidationError("--iops-limit: \(iopsLimit) is not in 1...1000000")
        }
    }
}
