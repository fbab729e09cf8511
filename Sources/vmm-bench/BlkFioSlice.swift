// What fio reported for one slice of `vmm-bench blk --direct` (its `--output-format=json+`
// output), and how a case's slices add up to the figures the table prints.
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// One fio run's figures for one direction (reads or writes), its jobs (one per queue) summed.
struct BlkFioSlice: Equatable {
    /// Requests completed in the measured run (ramp excluded), over all jobs.
    var requests = 0
    /// Measured time: the longest job's runtime within one run (the jobs run side by side, as the
    /// front-end's driving threads do), summed over slices.
    var seconds = 0.0
    /// The jobs' own CPU time over their measured run (fio's `usr_cpu` + `sys_cpu`, percentages
    /// of each job's runtime); fio's start-up and ramp are not in it.
    var cpuNanoseconds = 0.0
    /// Completion latency (fio's `clat_ns`) histogram: fio's bin value (ns) to request count,
    /// merged over jobs and slices.
    var latencyBins: [UInt64: Int] = [:]

    /// Adds another slice: requests, time and CPU summed, histograms merged, so IOPS is requests
    /// over the summed time as for the daemons' slices (not a mean of the slices' IOPS).
    mutating func add(_ other: BlkFioSlice) {
        requests += other.requests
        seconds += other.seconds
        cpuNanoseconds += other.cpuNanoseconds
        latencyBins.merge(other.latencyBins, uniquingKeysWith: +)
    }

    /// The median of the merged histogram by fio's own percentile rule: the value of the first
    /// bin (ascending) at which the cumulative count reaches half the requests. On one run this
    /// is fio's `percentile["50.000000"]`; on merged slices it is the median of every request of
    /// the case, as the daemons' p50 is of their pooled samples. 0 without samples.
    var medianLatency: Double {
        let total = latencyBins.values.reduce(0, +)
        guard total > 0 else { return 0 }
        var cumulative = 0
        for (value, count) in latencyBins.sorted(by: { $0.key < $1.key }) {
            cumulative += count
            if Double(cumulative) >= Double(total) * 0.5 { return Double(value) }
        }
        return 0
    }

    /// The case's figures in the daemons' form (CPU per request over the measured requests).
    var result: BlkLoadResult {
        var result = BlkLoadResult()
        result.requests = requests
        result.seconds = seconds
        result.p50 = medianLatency
        result.completed = requests
        result.cpuNanoseconds = UInt64(cpuNanoseconds.rounded())
        return result
    }

    /// Parses fio's `json+` output (no group reporting: one entry per job) for reads or writes.
    /// Returns nil when the text is not fio's JSON, a job reports an error, or nothing completed.
    static func parse(_ text: String, read: Bool) -> BlkFioSlice? {
        guard let report = try? JSONDecoder().decode(FioReport.self, from: Data(text.utf8)), !report.jobs.isEmpty
        else { return nil }
        var slice = BlkFioSlice()
        for job in report.jobs {
            guard job.error == 0 else { return nil }
            let direction = read ? job.read : job.write
            let seconds = direction.runtime / 1000
            slice.requests += direction.totalIOs
            slice.seconds = max(slice.seconds, seconds)
            slice.cpuNanoseconds += (job.usrCPU + job.sysCPU) / 100 * seconds * 1e9
            for (key, count) in direction.clat.bins ?? [:] {
                guard let value = UInt64(key) else { return nil }
                slice.latencyBins[value, default: 0] += count
            }
        }
        return slice.requests > 0 && slice.seconds > 0 ? slice : nil
    }
}

/// The part of fio's JSON report read here.
private struct FioReport: Decodable {
    struct Job: Decodable {
        let error: Int
        let read: Direction
        let write: Direction
        let usrCPU: Double
        let sysCPU: Double
        enum CodingKeys: String, CodingKey {
            case error, read, write
            case usrCPU = "usr_cpu", sysCPU = "sys_cpu"
        }
    }
    struct Direction: Decodable {
        /// Milliseconds.
        let runtime: Double
        let totalIOs: Int
        let clat: Latency
        enum CodingKeys: String, CodingKey {
            case runtime
            case totalIOs = "total_ios"
            case clat = "clat_ns"
        }
    }
    struct Latency: Decodable {
        /// Only with `--output-format=json+`, absent without samples.
        let bins: [String: Int]?
    }
    let jobs: [Job]
}
