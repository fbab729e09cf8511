// vmm-bench: every hot path of the package beside its raw-syscall twin, in one table.
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import VMMBenchCases

let usage = """
    usage: vmm-bench [notify|poller|scm|shm|vring ...] [--json|--markdown] [--spread] [--cpu N]
                     [--time-ms MS] [--filter TEXT] [--list]
           vmm-bench blk [--backend ours|qsd|both] ...   (see vmm-bench blk --help)
           vmm-bench net [--peers DIR] [--seconds N] ... (see vmm-bench net --help)

      Runs each case and its raw-syscall twin alternately and prints median, p99, the twin's
      median and the ratio. Cross-thread and cross-process cases run with both sides pinned to
      one CPU (Linux); --spread puts the peer on the next CPU.

      --markdown    the table as Markdown
      --json        one JSON object {"cases":[{"group","name","backend","unit","median","p99","raw_median",...}]}
      --spread      peer thread/process on a different CPU
      --cpu N       CPU for the measuring thread (default 0)
      --time-ms MS  measuring time per case, both implementations together (default 500)
      --filter TEXT only cases whose group/name/backend contains TEXT
      --list        list the cases and exit

    """

var arguments = Array(CommandLine.arguments.dropFirst())
if arguments.first == "--child", arguments.count >= 2 {
    exit(ChildRole.run(arguments[1], Array(arguments.dropFirst(2))))
}
// The blk group needs back-end daemons and a 1 GiB image, so it runs only when named, alone.
if arguments.first == "blk" {
    exit(BlkBench.main(Array(arguments.dropFirst())))
}
// The net group needs DPDK's testpmd and the peers' scripts; it runs only when named, alone.
if arguments.first == "net" {
    exit(NetBench.main(Array(arguments.dropFirst())))
}

var json = false
var markdown = false
var spread = false
var cpu: Int32 = 0
var budgetMilliseconds: UInt64 = 500
var filters: [String] = []
var groups: [String] = []
var listOnly = false
while !arguments.isEmpty {
    let argument = arguments.removeFirst()
    switch argument {
    case "--json": json = true
    case "--markdown": markdown = true
    case "--spread": spread = true
    case "--list": listOnly = true
    case "-h", "--help":
        print(usage, terminator: "")
        exit(0)
    case "--cpu", "--time-ms", "--filter":
        guard let value = arguments.first else {
            writeError("vmm-bench: \(argument) needs a value\n" + usage)
            exit(64)
        }
        arguments.removeFirst()
        switch argument {
        case "--cpu":
            guard let parsed = Int32(value), parsed >= 0 else {
                writeError("vmm-bench: bad CPU \(value)\n")
                exit(64)
            }
            cpu = parsed
        case "--time-ms":
            guard let parsed = UInt64(value), parsed > 0 else {
                writeError("vmm-bench: bad time \(value)\n")
                exit(64)
            }
            budgetMilliseconds = parsed
        default: filters.append(value)
        }
    default:
        guard BenchCatalog.groups.contains(argument) else {
            writeError("vmm-bench: unknown argument \(argument)\n" + usage)
            exit(64)
        }
        groups.append(argument)
    }
}

let context = BenchContext.standard(spread: spread, cpu: cpu, childExecutable: currentExecutablePath())
let selected = BenchCatalog.all().filter { benchCase in
    (groups.isEmpty || groups.contains(benchCase.group))
        && (filters.isEmpty || filters.contains { benchCase.identifier.contains($0) })
}
if listOnly {
    for benchCase in selected { print(benchCase.identifier) }
    exit(0)
}

do {
    try pinCurrentThread(context.mainCPU)
} catch {
    writeError("vmm-bench: cannot pin to CPU \(cpu): \(error)\n")
    exit(1)
}

/// One progress line on stderr: rewritten in place on a terminal, one line per step otherwise.
let stderrIsTerminal = isatty(2) == 1
func progress(_ text: String, final: Bool = false) {
    if stderrIsTerminal {
        writeError("\r\u{1B}[K" + text + (final ? "\n" : ""))
    } else {
        writeError(text + "\n")
    }
}

var results: [CaseResult] = []
var skipped: [(BenchCase, String)] = []
var failed = false
let started = monotonicNanoseconds()
for (index, benchCase) in selected.enumerated() {
    progress("[\(index + 1)/\(selected.count)] \(benchCase.identifier)")
    if let reason = benchCase.unavailableReason {
        skipped.append((benchCase, reason))
        continue
    }
    do {
        results.append(try measure(benchCase, context: context, budget: budgetMilliseconds * 1_000_000))
    } catch let skip as BenchSkipped {
        skipped.append((benchCase, skip.reason))
    } catch {
        progress("vmm-bench: \(benchCase.identifier) failed: \(error)", final: true)
        failed = true
    }
}
let elapsed = Double(monotonicNanoseconds() - started) / 1e9
progress("\(results.count) cases in \(formatFixed(elapsed, decimals: 1)) s", final: true)

if json {
    print(renderJSON(results, skipped: skipped, context: context))
} else {
    print(renderTable(results, skipped: skipped, context: context, markdown: markdown), terminator: "")
}
exit(failed ? 1 : 0)
