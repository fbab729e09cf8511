import ArgumentParser

/// `vmm-bench net`: DPDK testpmd's virtio_user front-end against our vhost-user-net and against
/// DPDK's own vhost back-end.
struct NetCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "net",
        abstract: "vhost-user-net (--sink/--source) and DPDK's vhost, both driven by DPDK testpmd's virtio_user.",
        discussion: """
            64-byte packets, one queue pair, one forwarding core per side, pinned as the peers' \
            dpdk-vhost-reference.sh pins them (back-end on CPU 0, the front-end's forwarding lcore on \
            CPU 1). For each direction (tx: the front-end's txonly into the back-end; rx: the back-end \
            to the front-end's rxonly), ring layout (split, packed_vq=1) and mergeable buffers \
            (mrg_rxbuf on/off): dpdk = testpmd net_vhost via dpdk-vhost-reference.sh; ours = \
            vhost-user-net --sink/--source --poll-us N via dpdk-virtio-user.sh; ours-sleep = the same \
            with --poll-us 0, with its CPU use per Mpps. Every figure is testpmd's (the front-end's) \
            rate, so both back-ends are measured by the same instrument; ratio = ours / dpdk. Needs \
            dpdk-testpmd (peers/install-deps.sh dpdk), root, and vhost-user-net built beside \
            vmm-bench. Runs only when named.
            """)

    @Option(
        help: ArgumentHelp(
            "The peers directory with the DPDK scripts (default: $VMM_PEERS, else ../shared/peers).",
            valueName: "dir"))
    var peers: String?

    @Option(help: ArgumentHelp("Seconds per run, 2...600.", valueName: "n"))
    var seconds = 5

    @Option(
        name: .customLong("poll-us"),
        help: ArgumentHelp("Ours' poll window in poll mode, microseconds.", valueName: "n"))
    var pollMicroseconds = 1_000_000

    @Flag(name: .customLong("no-sleep"), help: "Skip the --poll-us 0 runs.")
    var noSleep = false

    @Option(
        name: .customLong("in-order"),
        help: ArgumentHelp(
            "Whether the front-end offers VIRTIO_F_IN_ORDER (virtio_user in_order=1, its default). DPDK's "
                + "virtio PMD receives split rings in order through a faster path and has none for packed "
                + "rings: off puts both layouts on the same receive path (case names end in /in_order=0).",
            valueName: "on|off"))
    var inOrder: Switch = .on

    @Flag(
        help:
            "Print one JSON object {\"placement\",\"cases\":[{\"group\",\"name\",\"backend\",\"unit\",\"mpps\",\"raw_mpps\",\"ratio\",\"cpu_load\",...}],\"skipped\"}."
    )
    var json = false

    @Flag(help: "Print the table as Markdown.")
    var markdown = false

    @Option(
        help: ArgumentHelp("Only cases whose name (e.g. tx/split/mrg) contains <text> (repeatable).", valueName: "text")
    )
    var filter: [String] = []

    mutating func validate() throws {
        if json && markdown { throw ValidationError("--json and --markdown exclude each other") }
        guard (2...600).contains(seconds) else { throw ValidationError("--seconds: \(seconds) is not in 2...600") }
        guard (1...10_000_000).contains(pollMicroseconds) else {
            throw ValidationError("--poll-us: \(pollMicroseconds) is not in 1...10000000")
        }
    }

    /// `on` / `off` on the command line.
    enum Switch: String, ExpressibleByArgument, CaseIterable {
        case on, off
    }

    func run() throws {
        let status = NetBench.main(self)
        if status != 0 { throw ExitCode(status) }
    }
}
