/// The block device's own command-line options (after the common vhost-user ones).
///
/// Thread-safety: a value type.
struct BlockOptions {
    var file: String?
    var readOnly = false
    var queueCount = 1
    var queueSize = 128
    /// Requests per second over all queues (token bucket, bursts of a tenth of a second); nil: none.
    var iopsLimit: Int?

    static let usage = """
          --blk-file=PATH        raw disk image (regular file or block device) to serve (required)
          --read-only            open the image read-only; the guest sees a read-only disk
          --num-queues=N         request queues, 1...256 (default 1)
          --queue-size=N         largest queue size, a power of two 4...32768 (default 128)
          --iops-limit=N         serve at most N requests per second, 1...1000000 (default: no limit)
        SIGHUP: measure the image again; a larger image is served at once and the front-end is told
        (config change), so the guest sees the new capacity. The image is not locked: two daemons may
        serve it at once (live migration between two back-ends needs that).
        """

    /// Parses `arguments` (`--name VALUE` or `--name=VALUE`).
    ///
    /// - Throws: `BlockOptionsError` for an unknown option, a missing or invalid value, or no `--blk-file`.
    static func parse(_ arguments: [String]) throws(BlockOptionsError) -> BlockOptions {
        var options = BlockOptions()
        var index = 0
        func value(_ name: String, _ argument: String) throws(BlockOptionsError) -> String {
            if let equals = argument.firstIndex(of: "=") { return String(argument[argument.index(after: equals)...]) }
            index += 1
            guard index < arguments.count else { throw BlockOptionsError("\(name) needs a value") }
            return arguments[index]
        }
        func number(_ name: String, _ argument: String, _ range: ClosedRange<Int>) throws(BlockOptionsError) -> Int {
            let text = try value(name, argument)
            guard let n = Int(text), range.contains(n) else {
                throw BlockOptionsError("\(name): '\(text)' is not a number in \(range.lowerBound)...\(range.upperBound)")
            }
            return n
        }
        while index < arguments.count {
            let argument = arguments[index]
            let name = argument.split(separator: "=", maxSplits: 1).first.map(String.init) ?? argument
            switch name {
            case "--blk-file": options.file = try value(name, argument)
            case "--read-only":
                guard !argument.contains("=") else { throw BlockOptionsError("--read-only takes no value") }
                options.readOnly = true
            case "--num-queues": options.queueCount = try number(name, argument, 1...256)
            case "--queue-size":
                options.queueSize = try number(name, argument, 4...32768)
                guard options.queueSize & (options.queueSize - 1) == 0 else {
                    throw BlockOptionsError("--queue-size: \(options.queueSize) is not a power of two")
                }
            case "--iops-limit": options.iopsLimit = try number(name, argument, 1...1_000_000)
            default: throw BlockOptionsError("unknown option '\(argument)' (see --help)")
            }
            index += 1
        }
        guard options.file != nil else { throw BlockOptionsError("--blk-file is required") }
        return options
    }
}

/// A bad block-device command line.
struct BlockOptionsError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
