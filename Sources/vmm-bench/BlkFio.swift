// fio's figure for `vmm-bench blk --direct`: the same 4 KiB random pattern straight on the image
// (O_DIRECT, io_uring, depth per job, one job per queue), the disk's own limit.
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import VMMBenchCases

enum BlkFio {
    /// fio on PATH, or nil.
    static var executable: String? {
        let path = getenv("PATH").map { String(cString: $0) } ?? "/usr/bin:/bin"
        for directory in path.split(separator: ":") where access("\(directory)/fio", X_OK) == 0 {
            return "\(directory)/fio"
        }
        return nil
    }

    /// Measures each case with fio for `milliseconds` (pinned to `cpu`). Returns the results by
    /// case name and, when fio is absent or fails, a note saying why.
    static func measure(
        _ cases: [BlkCase], image: String, scratch: BlkScratch, cpu: Int32?, restoreCPU: Int32?,
        milliseconds: UInt64
    ) -> ([String: BlkLoadResult], String?) {
        guard let fio = executable else {
            return ([:], "fio is not installed (apt-get install fio): no disk limit column")
        }
        var results: [String: BlkLoadResult] = [:]
        let output = scratch.file("fio.json")
        for blkCase in cases {
            writeError("vmm-bench blk: fio \(blkCase.name)\n")
            let rw = blkCase.kind == .read ? "randread" : "randwrite"
            let seconds = max(1, (milliseconds + 999) / 1000)
            let arguments = [
                fio, "--name=vmm-bench", "--filename=\(image)", "--direct=1", "--rw=\(rw)", "--bs=4k",
                "--ioengine=io_uring", "--iodepth=\(blkCase.depth)", "--numjobs=\(blkCase.queues)",
                "--group_reporting", "--time_based", "--runtime=\(seconds)", "--ramp_time=0.2",
                "--output-format=json",
            ]
            do {
                let before = childrenCPUNanoseconds()
                let child = try BlkDaemon.spawn(arguments, log: output, cpu: cpu, restoreCPU: restoreCPU)
                let status = try child.waitForExit()
                guard status == .exited(0), let text = readTextFile(output),
                    var result = parse(text, read: blkCase.kind == .read)
                else {
                    return (results, "fio failed on \(blkCase.name) (\(status)); see \(output)")
                }
                // fio's CPU time (its job processes included, reaped before it exits) over
                // its ramp and run: requests at its measured rate over both.
                result.cpuNanoseconds = childrenCPUNanoseconds() &- before
                result.completed = Int(result.iops * (Double(seconds) + 0.2))
                results[blkCase.name] = result
            } catch {
                return (results, "fio could not run: \(error)")
            }
        }
        return (results, nil)
    }

    /// CPU time (ns) of every child process reaped so far (`RUSAGE_CHILDREN`).
    static func childrenCPUNanoseconds() -> UInt64 {
        var usage = rusage()
        #if canImport(Glibc)
        getrusage(__rusage_who_t(RUSAGE_CHILDREN.rawValue), &usage)
        #else
        getrusage(RUSAGE_CHILDREN, &usage)
        #endif
        func nanoseconds(_ time: timeval) -> UInt64 {
            UInt64(time.tv_sec) * 1_000_000_000 + UInt64(time.tv_usec) * 1000
        }
        return nanoseconds(usage.ru_utime) + nanoseconds(usage.ru_stime)
    }

    /// IOPS and median completion latency from fio's JSON (`jobs[0].read|write.iops` and
    /// `.clat_ns.percentile["50.000000"]`), found by key: no JSON library needed.
    static func parse(_ text: String, read: Bool) -> BlkLoadResult? {
        guard let section = text.firstRange(of: read ? "\"read\" :" : "\"write\" :") else { return nil }
        let rest = text[section.upperBound...]
        func number(after key: String, in body: Substring) -> Double? {
            guard let found = body.firstRange(of: key) else { return nil }
            let value = body[found.upperBound...].drop { $0 == " " || $0 == ":" }
            let digits = value.prefix { (character: Character) -> Bool in
                character.isNumber || ".e+-".contains(character)
            }
            return Double(String(digits))
        }
        guard let iops = number(after: "\"iops\"", in: rest), let clat = rest.firstRange(of: "\"clat_ns\"") else {
            return nil
        }
        var result = BlkLoadResult()
        result.p50 = number(after: "\"50.000000\"", in: rest[clat.upperBound...]) ?? 0
        // Expressed as requests over one second so `iops` reads back fio's figure.
        result.requests = Int(iops.rounded())
        result.seconds = 1
        return result
    }
}
