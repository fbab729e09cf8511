#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import VMMBenchCases
import VhostUserDaemon

/// What `--json` prints: `{"placement":..,"cases":[...],"skipped":[...]}`, one line.
struct JSONReport: Encodable {
    let placement: String
    let cases: [JSONCase]
    let skipped: [JSONSkipped]

    func text() throws -> String {
        String(decoding: try programJSONEncoder().encode(self), as: UTF8.self)
    }
}

/// One measured case: `{group,name,backend,unit,median,p99,raw_median,raw_p99,ratio,placement,samples}`,
/// and for blk also `iops,raw_iops,kicks_per_request,calls_per_request,cpu_ns_per_request,
/// driver_cpu_ns_per_request,fio_iops,fio_median,peak_rss_kib,guest_rss_kib,driver_poll_us`.
/// Times in ns with one decimal, ratios with three; a value that is missing (or not finite) is null.
struct JSONCase: Encodable {
    var group: String
    var name: String
    var backend: String
    var median: Double?
    var p99: Double?
    var rawMedian: Double?
    var rawP99: Double?
    var ratio: Double?
    var placement: String
    var samples: Int
    var block: Block?

    /// The blk fields.
    struct Block {
        var iops: Double?
        var rawIOPS: Double?
        var kicksPerRequest: Double?
        var callsPerRequest: Double?
        /// The daemon's CPU time per request (ns).
        var cpuPerRequest: Double?
        /// The front-end's (the benchmark's driving threads') CPU time per request (ns).
        var driverCPUPerRequest: Double?
        /// fio's figures for the same pattern (`--direct`).
        var fioIOPS: Double?
        var fioMedian: Double?
        var peakKiB: Int?
        var guestKiB: Int?
        /// The front-end's polling window (µs; 0: none) the figures were taken with.
        var driverPollMicroseconds: Int?
    }

    enum CodingKeys: String, CodingKey {
        case group, name, backend, unit, median, p99, ratio, placement, samples, iops
        case rawMedian = "raw_median", rawP99 = "raw_p99", rawIOPS = "raw_iops"
        case kicksPerRequest = "kicks_per_request", callsPerRequest = "calls_per_request"
        case cpuPerRequest = "cpu_ns_per_request", driverCPUPerRequest = "driver_cpu_ns_per_request", fioIOPS =
            "fio_iops", fioMedian = "fio_median"
        case peakKiB = "peak_rss_kib", guestKiB = "guest_rss_kib", driverPollMicroseconds = "driver_poll_us"
    }

    /// Written by hand so that a missing value is `null` rather than an absent key.
    func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(group, forKey: .group)
        try container.encode(name, forKey: .name)
        try container.encode(backend, forKey: .backend)
        try container.encode("ns", forKey: .unit)
        try container.encode(rounded(median, 1), forKey: .median)
        try container.encode(rounded(p99, 1), forKey: .p99)
        try container.encode(rounded(rawMedian, 1), forKey: .rawMedian)
        try container.encode(rounded(rawP99, 1), forKey: .rawP99)
        try container.encode(rounded(ratio, 3), forKey: .ratio)
        try container.encode(placement, forKey: .placement)
        try container.encode(samples, forKey: .samples)
        guard let block else { return }
        try container.encode(rounded(block.iops, 1), forKey: .iops)
        try container.encode(rounded(block.rawIOPS, 1), forKey: .rawIOPS)
        try container.encode(rounded(block.kicksPerRequest, 4), forKey: .kicksPerRequest)
        try container.encode(rounded(block.callsPerRequest, 4), forKey: .callsPerRequest)
        try container.encode(rounded(block.cpuPerRequest, 1), forKey: .cpuPerRequest)
        try container.encode(rounded(block.driverCPUPerRequest, 1), forKey: .driverCPUPerRequest)
        try container.encode(rounded(block.fioIOPS, 1), forKey: .fioIOPS)
        try container.encode(rounded(block.fioMedian, 1), forKey: .fioMedian)
        try container.encode(block.peakKiB, forKey: .peakKiB)
        try container.encode(block.guestKiB, forKey: .guestKiB)
        try container.encode(block.driverPollMicroseconds, forKey: .driverPollMicroseconds)
    }
}

/// A case that did not run: `{group,name,backend,reason}`.
struct JSONSkipped: Encodable {
    let group: String
    let name: String
    let backend: String
    let reason: String
}

/// `value` rounded to `decimals` places; nil for nil, NaN or an infinity (JSON has no such numbers).
func rounded(_ value: Double?, _ decimals: Int) -> Double? {
    guard let value, value.isFinite else { return nil }
    var scale = 1.0
    for _ in 0..<decimals { scale *= 10 }
    return (value * scale).rounded() / scale
}

/// The `--json` text of the cases run by `vmm-bench [GROUP...]`.
func renderJSON(_ results: [CaseResult], skipped: [(BenchCase, String)], context: BenchContext) throws -> String {
    let cases = results.map { result in
        JSONCase(
            group: result.benchCase.group, name: result.benchCase.name, backend: result.benchCase.backend,
            median: result.median, p99: result.p99, rawMedian: result.rawMedian, rawP99: result.rawP99,
            ratio: result.ratio, placement: result.placement, samples: result.samples)
    }
    let skippedCases = skipped.map { benchCase, reason in
        JSONSkipped(group: benchCase.group, name: benchCase.name, backend: benchCase.backend, reason: reason)
    }
    return try JSONReport(placement: context.placementDescription, cases: cases, skipped: skippedCases).text()
}

/// The `--json` text of `vmm-bench blk`: one case per back-end and load; `median`/`p99` are request
/// latencies; on ours' rows the raw values and `ratio` (IOPS) are the better qsd configuration's of
/// the row; with `--direct`, `fio_*` are fio's figures for the same pattern.
func renderBlkJSON(
    _ runs: [BlkBackendRun], placement: String, fio: [String: BlkLoadResult] = [:], driverPollMicroseconds: Int = 0
) throws -> String {
    var cases: [JSONCase] = []
    for run in runs {
        for blkCase in BlkBench.cases(queues: run.queueCount) {
            guard let r = run.results[blkCase.name] else { continue }
            let other = run.backend.kind == .ours ? bestQSD(runs, blkCase.name) : nil
            let ratio = other.flatMap { $0.iops > 0 ? r.iops / $0.iops : nil }
            let f = fio[blkCase.name]
            cases.append(
                JSONCase(
                    group: "blk", name: blkCase.name, backend: run.backend.name, median: r.p50, p99: r.p99,
                    rawMedian: other?.p50, rawP99: other?.p99, ratio: ratio, placement: placement, samples: r.requests,
                    block: .init(
                        iops: r.iops, rawIOPS: other?.iops, kicksPerRequest: r.kicksPerRequest,
                        callsPerRequest: r.callsPerRequest, cpuPerRequest: r.cpuPerRequest,
                        driverCPUPerRequest: r.driverPerRequest, fioIOPS: f?.iops,
                        fioMedian: f?.p50, peakKiB: run.peakKiB, guestKiB: run.guestKiB,
                        driverPollMicroseconds: driverPollMicroseconds)))
        }
    }
    return try JSONReport(placement: placement, cases: cases, skipped: []).text()
}
