#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import ArgumentParser
import VMMBenchCases

/// `vmm-bench [GROUP...]`: the sys-util and ring cases, each beside its raw twin.
struct CasesCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cases",
        abstract: "Run the cases (default; every group unless some are named).",
        discussion: """
            Runs each case and its raw-syscall twin alternately and prints median, p99, the twin's \
            median and the ratio. Cross-thread and cross-process cases run with both sides pinned to \
            one CPU (Linux); --spread puts the peer on the next CPU.
            """)

    @Argument(
        help: ArgumentHelp(
            "Groups to run: \(BenchCatalog.groups.joined(separator: ", ")) (default: all).", valueName: "group"))
    var groups: [String] = []

    @OptionGroup var output: BenchOutputOptions

    @Flag(help: "List the selected cases and exit.")
    var list = false

    mutating func validate() throws {
        for group in groups where !BenchCatalog.groups.contains(group) {
            throw ValidationError("unknown group '\(group)' (groups: \(BenchCatalog.groups.joined(separator: ", ")))")
        }
    }

    func run() throws {
        let context = BenchContext.standard(
            spread: output.spread, cpu: output.cpu, childExecutable: currentExecutablePath())
        let selected = BenchCatalog.all().filter { benchCase in
            (groups.isEmpty || groups.contains(benchCase.group))
                && (output.filter.isEmpty || output.filter.contains { benchCase.identifier.contains($0) })
        }
        if list {
            for benchCase in selected { print(benchCase.identifier) }
            return
        }
        do {
            try pinCurrentThread(context.mainCPU)
        } catch {
            throw BenchFailure("cannot pin to CPU \(output.cpu): \(error)")
        }
        let budget = (output.milliseconds ?? 500) * 1_000_000
        let progress = Progress()
        var results: [CaseResult] = []
        var skipped: [(BenchCase, String)] = []
        var failed = false
        let started = monotonicNanoseconds()
        for (index, benchCase) in selected.enumerated() {
            progress.show("[\(index + 1)/\(selected.count)] \(benchCase.identifier)")
            if let reason = benchCase.unavailableReason {
                skipped.append((benchCase, reason))
                continue
            }
            do {
                results.append(try measure(benchCase, context: context, budget: budget))
            } catch let skip as BenchSkipped {
                skipped.append((benchCase, skip.reason))
            } catch {
                progress.show("vmm-bench: \(benchCase.identifier) failed: \(error)", final: true)
                failed = true
            }
        }
        let elapsed = Double(monotonicNanoseconds() - started) / 1e9
        progress.show("\(results.count) cases in \(formatFixed(elapsed, decimals: 1)) s", final: true)

        if output.json {
            print(try renderJSON(results, skipped: skipped, context: context))
        } else {
            print(renderTable(results, skipped: skipped, context: context, markdown: output.markdown), terminator: "")
        }
        if failed { throw ExitCode.failure }
    }
}

/// A failure that ends vmm-bench with status 1 and this message.
struct BenchFailure: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// One progress line on stderr: rewritten in place on a terminal, one line per step otherwise.
struct Progress {
    let isTerminal = isatty(2) == 1

    func show(_ text: String, final: Bool = false) {
        if isTerminal {
            writeError("\r\u{1B}[K" + text + (final ? "\n" : ""))
        } else {
            writeError(text + "\n")
        }
    }
}
