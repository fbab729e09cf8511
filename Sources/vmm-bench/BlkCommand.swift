import ArgumentParser

/// `vmm-bench blk`: vhost-user-blk back-ends (ours, qemu-storage-daemon) driven by our front-end.
struct BlkCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "blk",
        abstract: "vhost-user-blk back-ends (ours, qemu-storage-daemon) driven by this package's front-end.",
        discussion: """
            Serves a 1 GiB raw image (in the page cache, in a temp dir) with each back-end (both \
            daemons run side by side on the same image; each case alternates them in 3 slices) and \
            drives them over vhost-user with this package's front-end (guest memory shared with \
            SET_MEM_TABLE, EVENT_IDX): 4 KiB random reads and writes at queue depth 1 and 32 per \
            queue, on one queue and on as many as the back-end offers (at most --queues). Prints \
            IOPS, p50/p99 latency, kicks and calls per request, and each daemon's peak RSS without \
            guest memory. Needs vhost-user-blk built beside vmm-bench and /usr/bin/qemu-storage-daemon. \
            Runs only when named.
            """)

    /// Which back-ends to measure.
    enum Backends: String, ExpressibleByArgument, CaseIterable {
        case ours, qsd, both

        var kinds: [BlkBackendKind] {
            switch self {
            case .ours: [.ours]
            case .qsd: [.qsd]
            case .both: BlkBackendKind.allCases
            }
        }
    }

    @Option(help: "Back-ends to measure; both: side by side, with the ours/qsd IOPS ratio.")
    var backend = Backends.both

    @Option(help: ArgumentHelp("Most queues to use, 1...4.", valueName: "n"))
    var queues = 4

    @Flag(name: .customLong("dirty-log"),
          help: "Dirty logging on (VHOST_F_LOG_ALL, LOG_SHMFD) in both back-ends, as during a live migration.")
    var dirtyLog = false

    @OptionGroup var output: BenchOutputOptions

    mutating func validate() throws {
        guard (1...4).contains(queues) else { throw ValidationError("--queues: \(queues) is not in 1...4") }
    }

    func run() throws {
        let status = BlkBench.main(self)
        if status != 0 { throw ExitCode(status) }
    }
}
