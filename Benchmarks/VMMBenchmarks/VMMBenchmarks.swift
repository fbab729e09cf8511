// package-benchmark suites: the same cases as vmm-bench (VMMBenchCases), each beside its raw twin,
// measured with wall clock and malloc counters. Hot paths must show 0 mallocs per iteration.
//
//   swift package benchmark --target VMMBenchmarks
//   swift package benchmark --target VMMBenchmarks --filter 'notify/.*'
//   VMM_BENCH_MAX_MS=200 swift package benchmark ...   (shorter runs; default 1000 ms per benchmark)
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Benchmark
import VMMBenchCases

/// Holds the prepared runner between setup and teardown (package-benchmark gives teardown no state).
final class RunnerHolder: @unchecked Sendable {
    var runner: (any BenchRunner)?
}

let benchmarks: @Sendable () -> Void = {
    // Cross-thread and cross-process cases run with both sides on one CPU, as vmm-bench does by
    // default; process cases spawn vmm-bench (built beside this binary) in its --child mode.
    let maxMilliseconds = getenv("VMM_BENCH_MAX_MS").flatMap { Int64(String(cString: $0)) } ?? 1000
    let context = BenchContext.standard(spread: false, childExecutable: siblingExecutable("vmm-bench"))
    for benchCase in BenchCatalog.all() where benchCase.unavailableReason == nil {
        for implementation in BenchImplementation.allCases {
            let holder = RunnerHolder()
            let configuration = Benchmark.Configuration(
                metrics: [.wallClock, .mallocCountTotal, .throughput],
                timeUnits: .nanoseconds,
                warmupIterations: 100,
                scalingFactor: benchCase.batch >= 1000 ? .kilo : .one,
                maxDuration: .milliseconds(maxMilliseconds),
                maxIterations: 1_000_000
            )
            Benchmark("\(benchCase.identifier) [\(implementation.rawValue)]", configuration: configuration) {
                benchmark in
                guard let runner = holder.runner else { return }
                // The framework may call us on a thread other than setup's: pin it (not measured).
                _ = try? pinCurrentThread(context.mainCPU)
                let iterations = benchmark.scaledIterations.count
                benchmark.startMeasurement()
                do {
                    try runner.run(iterations)
                } catch {
                    benchmark.error("\(benchCase.identifier) failed: \(error)")
                }
                benchmark.stopMeasurement()
            } setup: {
                do {
                    holder.runner = try benchCase.make(implementation, context)
                } catch let skipped as BenchSkipped {
                    print("skipped \(benchCase.identifier) [\(implementation.rawValue)]: \(skipped.reason)")
                }
            } teardown: {
                holder.runner?.tearDown()
                holder.runner = nil
            }
        }
    }
}
