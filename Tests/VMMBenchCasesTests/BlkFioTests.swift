#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import Testing
@testable import vmm_bench

/// fio's column of `vmm-bench blk --direct`: its command line per slice, its `json+` output
/// parsed, and a case's slices combined the way the daemons' are.
@Suite("vmm-bench blk fio slices")
struct BlkFioTests {
    /// One job of fio's `json+` report: `read` with the given figures, `write` empty.
    static func job(runtime: Int, ios: Int, usr: Double, sys: Double, bins: [UInt64: Int], error: Int = 0) -> String {
        let binText = bins.sorted { $0.key < $1.key }.map { "\"\($0.key)\" : \($0.value)" }.joined(separator: ", ")
        let empty = #"{ "iops" : 0.000000, "runtime" : 0, "total_ios" : 0, "clat_ns" : { "min" : 0, "N" : 0 } }"#
        return """
            { "jobname" : "vmm-bench", "error" : \(error), "job options" : { "runtime" : "333333us" },
              "read" : { "io_bytes" : \(ios * 4096), "iops" : 1.5, "runtime" : \(runtime), "total_ios" : \(ios),
                "clat_ns" : { "min" : 1, "N" : \(ios), "percentile" : { "50.000000" : 7 }, "bins" : { \(binText) } } },
              "write" : \(empty), "trim" : \(empty), "usr_cpu" : \(usr), "sys_cpu" : \(sys) }
            """
    }

    static func report(_ jobs: [String]) -> String {
        #"{ "fio version" : "fio-3.33", "jobs" : [ "# + jobs.joined(separator: ", ") + " ] }"
    }

    @Test func jobsOfOneRunAreSummedOverTheLongestRuntime() throws {
        let text = Self.report([
            Self.job(runtime: 300, ios: 30_000, usr: 10, sys: 20, bins: [1000: 20_000, 2000: 10_000]),
            Self.job(runtime: 250, ios: 10_000, usr: 4, sys: 6, bins: [2000: 4_000, 3000: 6_000]),
        ])
        let slice = try #require(BlkFioSlice.parse(text, read: true))
        #expect(slice.requests == 40_000)
        #expect(slice.seconds == 0.3)
        // 30% of 300 ms and 10% of 250 ms.
        #expect(abs(slice.cpuNanoseconds - 115e6) < 1)
        #expect(slice.latencyBins == [1000: 20_000, 2000: 14_000, 3000: 6_000])
        // Not fio's own per-job percentile (7): the merged histogram's.
        #expect(slice.medianLatency == 1000)
        // Nothing was written: no figure for writes.
        #expect(BlkFioSlice.parse(text, read: false) == nil)
    }

    @Test func failedOrForeignOutputGivesNoSlice() {
        #expect(BlkFioSlice.parse("fio: pid=1, err=22/file:filesetup.c", read: true) == nil)
        #expect(BlkFioSlice.parse(Self.report([]), read: true) == nil)
        let failed = Self.report([Self.job(runtime: 300, ios: 5, usr: 1, sys: 1, bins: [10: 5], error: 5)])
        #expect(BlkFioSlice.parse(failed, read: true) == nil)
    }

    /// IOPS over the summed requests and time (not the mean of the slices' IOPS), the median of
    /// the merged histograms (not the median or mean of the slices' medians), CPU summed.
    @Test func slicesCombineAsTheDaemonsSlicesDo() throws {
        let slices = [
            BlkFioSlice(requests: 1000, seconds: 1, cpuNanoseconds: 2e6, latencyBins: [100: 10]),
            BlkFioSlice(requests: 3000, seconds: 0.5, cpuNanoseconds: 3e6, latencyBins: [200: 3, 300: 4]),
            BlkFioSlice(requests: 4000, seconds: 0.5, cpuNanoseconds: 5e6, latencyBins: [300: 5]),
        ]
        #expect(slices.map(\.medianLatency) == [100, 300, 300])
        var total = BlkFioSlice()
        for slice in slices { total.add(slice) }
        let result = total.result
        #expect(result.iops == 8000 / 2.0)
        // 22 requests: the 11th is in the 200 bin.
        #expect(result.p50 == 200)
        #expect(result.cpuPerRequest == 10e6 / 8000)
    }

    /// fio's rule: the first bin at which the cumulative count reaches half.
    @Test func medianTakesTheBinThatReachesHalf() {
        #expect(BlkFioSlice(latencyBins: [10: 2, 20: 2]).medianLatency == 10)
        #expect(BlkFioSlice(latencyBins: [10: 2, 20: 3]).medianLatency == 20)
        #expect(BlkFioSlice().medianLatency == 0)
    }

    @Test func eachSliceRunsForTheDaemonsTimeWithItsOwnSeed() {
        let blkCase = BlkCase(kind: .write, depth: 32, queues: 4)
        func arguments(_ seed: UInt64) -> [String] {
            BlkFio.arguments(
                fio: "fio", image: "disk.img", output: "out.json", blkCase: blkCase, warmup: 50_000_000,
                duration: 333_333_333, seed: seed)
        }
        let first = arguments(1), second = arguments(2)
        for expected in [
            "--rw=randwrite", "--iodepth=32", "--numjobs=4", "--direct=1", "--runtime=333333us",
            "--ramp_time=50000us", "--output-format=json+", "--output=out.json", "--filename=disk.img",
        ] {
            #expect(first.contains(expected), "\(expected) in \(first)")
        }
        // One report per job: the parser merges them itself.
        #expect(!first.contains("--group_reporting"))
        #expect(first.contains("--randseed=1") && second.contains("--randseed=2"))
        // fio refuses seeds above Int64.max (the daemons' start at 0x9E37_79B9_7F4A_7C15).
        #expect(arguments(0x9E37_79B9_7F4A_7C15 &+ 3).contains("--randseed=\(0x1E37_79B9_7F4A_7C18)"))
    }

    /// fio itself accepts the slice's command line, and the median of its bins is fio's own p50.
    @Test(.enabled(if: BlkFio.executable != nil))
    func fioAcceptsTheSliceAndAgreesOnTheMedian() throws {
        let scratch = try BlkScratch(cleanupOnSignal: false)
        defer { scratch.remove() }
        try scratch.createImage(size: 4 << 20, cached: true)
        let output = scratch.file("fio.json")
        let fio = try #require(BlkFio.executable)
        // Through the page cache with plain reads: wherever the tests run (tmpfs, no io_uring).
        let arguments =
            BlkFio.arguments(
                fio: fio, image: scratch.image, output: output, blkCase: BlkCase(kind: .read, depth: 1, queues: 1),
                warmup: 10_000_000, duration: 50_000_000,
                seed: 0x9E37_79B9_7F4A_7C15) + ["--direct=0", "--ioengine=psync"]
        let child = try BlkDaemon.spawn(arguments, log: scratch.file("fio.log"), cpu: nil, restoreCPU: nil)
        #expect(try child.waitForExit() == .exited(0))
        let text = try #require(readTextFile(output))
        let slice = try #require(BlkFioSlice.parse(text, read: true))
        struct Percentiles: Decodable {
            struct Job: Decodable {
                struct Read: Decodable {
                    struct Clat: Decodable { let percentile: [String: Double] }
                    let clat: Clat
                    let totalIOs: Int
                    enum CodingKeys: String, CodingKey {
                        case clat = "clat_ns", totalIOs = "total_ios"
                    }
                }
                let read: Read
            }
            let jobs: [Job]
        }
        let own = try JSONDecoder().decode(Percentiles.self, from: Data(text.utf8)).jobs[0].read
        #expect(slice.requests == own.totalIOs)
        #expect(slice.medianLatency == own.clat.percentile["50.000000"])
        #expect(slice.seconds > 0.03 && slice.seconds < 1)
    }
}
