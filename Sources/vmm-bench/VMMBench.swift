// vmm-bench: every hot path of the package beside its raw-syscall twin, in one table.
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import ArgumentParser
import VMMBenchCases
import VhostUserDaemon

@main
struct VMMBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "vmm-bench",
        abstract: "Every hot path of the package beside its raw-syscall twin.",
        version: vhostUserPackageVersion,
        subcommands: [CasesCommand.self, BlkCommand.self, NetCommand.self],
        defaultSubcommand: CasesCommand.self)

    /// `vmm-bench --child ROLE ARGS...` is the peer process of a cross-process case (spawned by
    /// vmm-bench itself or by package-benchmark), not a command line for people: answered before
    /// parsing.
    static func main() {
        let arguments = Array(CommandLine.arguments.dropFirst())
        if arguments.first == "--child", arguments.count >= 2 {
            Self.exit(withError: ExitCode(ChildRole.run(arguments[1], Array(arguments.dropFirst(2)))))
        }
        main(nil)
    }
}

/// The options every vmm-bench group takes.
struct BenchOutputOptions: ParsableArguments {
    @Flag(
        help:
            "Print one JSON object {\"placement\",\"cases\":[{\"group\",\"name\",\"backend\",\"unit\",\"median\",\"p99\",\"raw_median\",...}],\"skipped\"}."
    )
    var json = false

    @Flag(help: "Print the table as Markdown.")
    var markdown = false

    @Flag(help: "Put the peer (thread, process or back-end daemon) on the next CPU instead of the same one.")
    var spread = false

    @Option(help: ArgumentHelp("CPU for the measuring thread.", valueName: "n"))
    var cpu: Int32 = 0

    @Option(
        name: .customLong("time-ms"),
        help: ArgumentHelp(
            "Measuring time per case in milliseconds (default: 500; blk: 1000 per back-end, plus 15% warm-up).",
            valueName: "ms"))
    var milliseconds: UInt64?

    @Option(
        help: ArgumentHelp(
            "Only cases whose name (group/name/backend) contains <text> (repeatable).", valueName: "text"))
    var filter: [String] = []

    mutating func validate() throws {
        if json && markdown { throw ValidationError("--json and --markdown exclude each other") }
        if cpu < 0 { throw ValidationError("--cpu: \(cpu) is not a CPU number") }
        if milliseconds == 0 { throw ValidationError("--time-ms: must be at least 1") }
    }
}
