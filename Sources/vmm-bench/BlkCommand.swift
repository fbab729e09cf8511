import ArgumentParser

/// `vmm-bench blk`: vhost-user-blk back-ends (ours, qemu-storage-daemon) driven by our front-end.
struct BlkCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "blk",
        abstract: "vhost-user-blk back-ends (ours, qemu-storage-daemon) driven by this package's front-end.",
        discussion: """
            Serves a 1 GiB raw image (in the page cache, in a temp dir) with each back-end (both \
            daemons run side by side on the same image; each case alternates them in at least 3 slices, \
            the order rotating per slice so that each runs first equally often) and \
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

    @Option(
        help: ArgumentHelp(
            "Our daemon's --aio: io_uring, native, threads or sync, or several separated by commas, each measured "
                + "in the same run (default: its own default; with --direct io_uring and threads).",
            valueName: "engine"))
    var aio: String?

    @Option(
        name: .customLong("poll-us"),
        help: ArgumentHelp(
            "Also run ours with --poll-us <n> (a polling window after serving), beside ours without it.", valueName: "n"
        ))
    var pollMicroseconds: Int?

    @Flag(
        name: .customLong("qsd-iothread"),
        help: ArgumentHelp(
            "Also run qsd with its export in an iothread, whose loop polls adaptively (up to QEMU's default "
                + "poll-max-ns, 32 µs) before it sleeps, beside qsd in its main loop, which does not poll."))
    var qsdIOThread = false

    @Option(
        name: .customLong("driver-poll-us"),
        help: ArgumentHelp(
            "The front-end's polling window for every back-end measured (not fio): when a pass over its queues "
                + "reaps nothing it re-checks the used rings (yielding the CPU between checks) for up to <n> µs before it "
                + "asks for a call and blocks, "
                + "as a KVM guest's halt polling does; 0 (default): it blocks at once.",
            valueName: "n"))
    var driverPollMicroseconds = 0

    @Flag(
        help: """
            The page cache bypassed, on this machine's disk: the image (in --dir) is read and written \
            with O_DIRECT only, so every request reaches the disk. Ours with --cache none and each \
            --aio (io_uring, threads) against qemu-storage-daemon with cache.direct=on and aio=io_uring \
            and aio=native, and fio's figure for the same pattern (O_DIRECT, io_uring, the same depth, \
            one job per queue) as the disk's own limit, run in each slice after the daemons (skipped \
            with a message without fio). Adds each daemon's CPU time per request.
            """)
    var direct = false

    @Option(
        name: .customLong("dir"),
        help: ArgumentHelp("Directory for the --direct image (on the disk to measure).", valueName: "path"))
    var directory = "/var/tmp"

    @Flag(
        name: .customLong("dirty-log"),
        help: "Dirty logging on (VHOST_F_LOG_ALL, LOG_SHMFD) in both back-ends, as during a live migration.")
    var dirtyLog = false

    @OptionGroup var output: BenchOutputOptions

    /// `--aio` split at its commas (nil: not given).
    var engines: [String]? { aio.map { $0.split(separator: ",").map(String.init) } }

    mutating func validate() throws {
        guard (1...4).contains(queues) else { throw ValidationError("--queues: \(queues) is not in 1...4") }
        for engine in engines ?? [] where !["io_uring", "native", "threads", "sync"].contains(engine) {
            throw ValidationError("--aio: '\(engine)' is not io_uring, native, threads or sync")
        }
        if let pollMicroseconds, !(1...1_000_000).contains(pollMicroseconds) {
            throw ValidationError("--poll-us: \(pollMicroseconds) is not in 1...1000000")
        }
        guard (0...1_000_000).contains(driverPollMicroseconds) else {
            throw ValidationError("--driver-poll-us: \(driverPollMicroseconds) is not in 0...1000000")
        }
    }

    func run() throws {
        let status = BlkBench.main(self)
        if status != 0 { throw ExitCode(status) }
    }
}
