// fio's figure for `vmm-bench blk --direct`: the same 4 KiB random pattern straight on the image
// (O_DIRECT, io_uring, depth per job, one job per queue), the disk's own limit. fio runs in the
// daemons' slice rotation (each slice: every daemon, then fio for the same time), because this
// disk's rate swings within minutes: a figure taken once, after the daemons, measured when it ran.
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import VMMBenchCases

/// Runs fio's slices of each case and adds them up.
///
/// Thread-safety: used by the one thread that runs the cases.
final class BlkFio {
    /// fio on PATH, or nil.
    static var executable: String? {
        let path = getenv("PATH").map { String(cString: $0) } ?? "/usr/bin:/bin"
        for directory in path.split(separator: ":") where access("\(directory)/fio", X_OK) == 0 {
            return "\(directory)/fio"
        }
        return nil
    }

    /// Each case's figures over all its slices (cases where fio ran every slice).
    private(set) var results: [String: BlkLoadResult] = [:]
    /// Why fio gave no (more) figures: absent, or failed (then it is not run again).
    private(set) var note: String?

    private let fio: String?
    private let image: String
    private let scratch: BlkScratch
    private let cpu: Int32?
    private let restoreCPU: Int32?
    /// The current case's slices so far (nil after a failure).
    private var pending: BlkFioSlice?

    /// fio on `image`, pinned to `cpu` (where the daemons run), this thread back to `restoreCPU`.
    init(image: String, scratch: BlkScratch, cpu: Int32?, restoreCPU: Int32?) {
        fio = Self.executable
        self.image = image
        self.scratch = scratch
        self.cpu = cpu
        self.restoreCPU = restoreCPU
        if fio == nil { note = "fio is not installed (apt-get install fio): no disk limit column" }
    }

    /// fio's command line for one slice: `warmup` ns of ramp (not reported), then `duration` ns
    /// measured, as each daemon's slice. `seed` seeds fio's own generator (tausworthe, mixed with
    /// each job's number), so its offsets are unrelated to the daemons' (xorshift) and differ from
    /// slice to slice and case to case; fio's default (`randrepeat`) would replay one sequence in
    /// every slice and case, the later slices re-reading sectors a host cache may still hold.
    /// fio parses the seed as a signed 64-bit number: the top bit is dropped.
    static func arguments(
        fio: String, image: String, output: String, blkCase: BlkCase, warmup: UInt64, duration: UInt64, seed: UInt64
    ) -> [String] {
        [
            fio, "--name=vmm-bench", "--filename=\(image)", "--direct=1",
            "--rw=\(blkCase.kind == .read ? "randread" : "randwrite")", "--bs=4k", "--ioengine=io_uring",
            "--iodepth=\(blkCase.depth)", "--numjobs=\(blkCase.queues)", "--time_based",
            "--runtime=\(max(1, duration / 1000))us", "--ramp_time=\(warmup / 1000)us",
            "--randseed=\(seed & UInt64(Int64.max))",
            "--output-format=json+", "--output=\(output)",
        ]
    }

    /// Starts a case: forgets any slices of the previous one.
    func beginCase() {
        pending = note == nil ? BlkFioSlice() : nil
    }

    /// Runs one slice of `blkCase` (see `arguments`) and adds it to the case; on failure sets
    /// `note` and runs no more.
    func runSlice(_ blkCase: BlkCase, warmup: UInt64, duration: UInt64, seed: UInt64) {
        guard let fio, pending != nil else { return }
        let output = scratch.file("fio.json")
        let log = scratch.file("fio.log")
        let arguments = Self.arguments(
            fio: fio, image: image, output: output, blkCase: blkCase, warmup: warmup, duration: duration, seed: seed)
        // A slice that writes nothing must not be read as the previous slice's report.
        unlink(output)
        do {
            let child = try BlkDaemon.spawn(arguments, log: log, cpu: cpu, restoreCPU: restoreCPU)
            let status = try child.waitForExit()
            guard status == .exited(0), let text = readTextFile(output),
                let slice = BlkFioSlice.parse(text, read: blkCase.kind == .read)
            else {
                fail("fio failed on \(blkCase.name) (\(status)); see \(output) and \(log)")
                return
            }
            pending?.add(slice)
        } catch {
            fail("fio could not run: \(error)")
        }
    }

    /// Records the case's figures over its slices (none if a slice failed).
    func finishCase(_ blkCase: BlkCase) {
        if let pending, pending.requests > 0 { results[blkCase.name] = pending.result }
        pending = nil
    }

    private func fail(_ reason: String) {
        note = reason
        pending = nil
    }
}
