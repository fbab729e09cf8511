import Testing
import VMMBenchCases
import VMMTestSupport

/// Every benchmark case, ours and its raw twin, must run (the APIs they measure keep working the
/// way the benchmark uses them), stop its peer thread or child process, and close every fd.
@Suite("Benchmark cases")
struct BenchCasesTests {
    static let context = BenchContext.standard(spread: false, childExecutable: builtProductPath("vmm-bench"))

    static var runnableCases: [BenchCase] { BenchCatalog.all().filter { $0.unavailableReason == nil } }

    @Test("the catalog covers every group, with unique identifiers")
    func catalog() {
        let cases = BenchCatalog.all()
        #expect(Set(cases.map(\.group)) == Set(BenchCatalog.groups))
        #expect(Set(cases.map(\.identifier)).count == cases.count)
    }

    @Test(
        "each case and its twin run, stop their peers and leak no fd", .isolatedDescriptors,
        arguments: runnableCases.map(\.identifier))
    func runs(identifier: String) throws {
        let benchCase = try #require(BenchCatalog.all().first { $0.identifier == identifier })
        #expect(Self.context.childExecutable != nil, "vmm-bench must be built beside the tests")
        for implementation in BenchImplementation.allCases {
            let (ran, leaked) = try descriptorsLeaked { () throws -> Bool in
                let runner: any BenchRunner
                do {
                    runner = try benchCase.make(implementation, Self.context)
                } catch is BenchSkipped {
                    // A twin this platform has no raw form of (kqueue through libkqueue on Linux).
                    return false
                }
                // Enough iterations to wrap a 256-entry ring more than once.
                try runner.run(benchCase.group == "vring" ? 600 : 20)
                runner.tearDown()
                return true
            }
            #expect(ran || implementation != .ours, "\(identifier): our implementation must run")
            #expect(leaked == 0, "\(identifier) [\(implementation.rawValue)] leaked \(leaked) fds")
        }
    }
}
