// `vmm-bench blk`: vhost-user-blk back-ends (ours, qemu-storage-daemon) driven by our front-end.
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import ArgumentParser
import VMMBenchCases

/// One measured case of one back-end.
struct BlkCase {
    let kind: VhostUserBlkKind
    let depth: Int
    let queues: Int
    var name: String { "rand\(kind.label)-4k/qd\(depth)/\(queues)q" }
}

/// Reads or writes.
enum VhostUserBlkKind {
    case read, write
    var label: String { self == .read ? "read" : "write" }
}

/// Everything one back-end produced.
struct BlkBackendRun {
    let backend: BlkBackend
    var results: [String: BlkLoadResult] = [:]
    var queueCount = 0
    var peakKiB: Int?
    var guestKiB: Int?
}

enum BlkBench {
    static let imageSize = 1 << 30

    /// The back-ends `options` asks for, in the order they are measured: ours (each engine, and
    /// beside each with `--poll-us` that window), then qsd (with `--direct` its io_uring and native
    /// engines; with `--qsd-iothread` also each in an iothread).
    static func backends(_ options: BlkCommand) -> [BlkBackend] {
        let direct = options.direct
        return options.backend.kinds.flatMap { kind -> [BlkBackend] in
            guard kind == .ours else {
                // With --qsd-iothread, qsd in an iothread beside qsd in its main loop.
                let places = options.qsdIOThread ? [false, true] : [false]
                return places.flatMap { iothread in
                    direct
                        ? ["io_uring", "native"].map {
                            BlkBackend(kind: kind, aio: $0, direct: true, iothread: iothread)
                        }
                        : [BlkBackend(kind: kind, aio: nil, direct: false, iothread: iothread)]
                }
            }
            // With --poll-us, ours with that window beside ours without (same engine, same run).
            let engines: [String?] =
                direct
                ? (options.engines
                    ?? (options.pollMicroseconds == nil ? ["io_uring", "threads"] : ["io_uring"]))
                : options.engines ?? [nil]
            return engines.flatMap { engine in
                [BlkBackend(kind: .ours, aio: engine, direct: direct)]
                    + (options.pollMicroseconds.map {
                        [BlkBackend(kind: .ours, aio: engine, direct: direct, pollMicroseconds: String($0))]
                    } ?? [])
            }
        }
    }

    /// Runs the cases and prints the table or JSON; returns the exit status.
    static func main(_ options: BlkCommand) -> Int32 {
        let direct = options.direct
        let backends = Self.backends(options)
        let json = options.output.json, markdown = options.output.markdown, spread = options.output.spread
        let cpu = options.output.cpu
        let milliseconds = options.output.milliseconds ?? 1000
        let maxQueues = options.queues
        let filters = options.output.filter
        let context = BenchContext.standard(spread: spread, cpu: cpu, childExecutable: nil)
        do {
            try pinCurrentThread(context.mainCPU)
        } catch {
            writeError("vmm-bench blk: cannot pin to CPU \(cpu): \(error)\n")
            return 1
        }
        let scratch: BlkScratch
        do {
            scratch = try BlkScratch(in: direct ? options.directory : "/tmp")
        } catch {
            writeError("vmm-bench blk: \(error)\n")
            return 1
        }
        defer { scratch.remove() }
        var runs: [BlkBackendRun] = []
        let fio =
            direct
            ? BlkFio(image: scratch.image, scratch: scratch, cpu: context.peerCPU, restoreCPU: context.mainCPU)
            : nil
        do {
            writeError("vmm-bench blk: creating a 1 GiB image in \(scratch.path)\n")
            try scratch.createImage(size: imageSize, cached: !direct)
            runs = try run(
                backends, scratch: scratch, context: context, maxQueues: maxQueues,
                duration: milliseconds * 1_000_000, filters: filters, dirtyLog: options.dirtyLog, fio: fio,
                driverPollMicroseconds: options.driverPollMicroseconds)
        } catch {
            writeError("vmm-bench blk: \(error)\n")
            return 1
        }
        let driverPoll = options.driverPollMicroseconds
        let placement =
            context.mainCPU == nil
            ? "not pinned"
            : context.mainCPU == context.peerCPU
                ? "front-end and back-end on CPU \(context.mainCPU ?? 0)"
                : "front-end on CPU \(context.mainCPU ?? 0), back-end on CPU \(context.peerCPU ?? 0)"
        if json {
            do {
                print(
                    try renderBlkJSON(
                        runs, placement: placement, fio: fio?.results ?? [:], driverPollMicroseconds: driverPoll))
            } catch {
                writeError("vmm-bench blk: cannot encode the JSON: \(error)\n")
                return 1
            }
        } else if direct {
            print(
                renderBlkDirectTable(
                    runs, fio: fio?.results ?? [:], fioNote: fio?.note, placement: placement,
                    driverPollMicroseconds: driverPoll, markdown: markdown),
                terminator: "")
        } else {
            print(
                renderBlkTable(runs, placement: placement, driverPollMicroseconds: driverPoll, markdown: markdown),
                terminator: "")
        }
        return 0
    }

    /// The cases for a back-end offering `queues` queues: one queue, then all of them.
    static func cases(queues: Int) -> [BlkCase] {
        var out: [BlkCase] = []
        for q in queues > 1 ? [1, queues] : [1] {
            for kind in [VhostUserBlkKind.read, .write] {
                for depth in [1, 32] { out.append(BlkCase(kind: kind, depth: depth, queues: q)) }
            }
        }
        return out
    }

    /// Starts every back-end on the image, then measures each case in alternating slices (every
    /// back-end, in an order that rotates per slice, then `fio` if given, for the same time each,
    /// so all see the same machine and disk state; see `BlkSlices`); records each daemon's memory,
    /// stops them. The front-end drives every back-end with the polling window
    /// `driverPollMicroseconds` (see `BlkSession.drive`).
    static func run(
        _ backends: [BlkBackend], scratch: BlkScratch, context: BenchContext, maxQueues: Int,
        duration: UInt64, filters: [String], dirtyLog: Bool = false, fio: BlkFio? = nil,
        driverPollMicroseconds: Int = 0
    ) throws -> [BlkBackendRun] {
        var daemons: [BlkDaemon] = []
        defer { for daemon in daemons { daemon.stop() } }
        var sessions: [BlkSession] = []
        defer { for session in sessions { session.close() } }
        var runs: [BlkBackendRun] = []
        for backend in backends {
            let socket = scratch.file("\(backend.name).sock")
            let log = scratch.file("\(backend.name).log")
            daemons.append(
                try BlkDaemon(
                    try backend.command(image: scratch.image, socket: socket, queues: maxQueues),
                    socket: socket, log: log, cpu: context.peerCPU, restoreCPU: context.mainCPU))
            sessions.append(
                try BlkSession(
                    socket: socket, maxQueues: maxQueues, dirtyLog: dirtyLog,
                    idlePollMicroseconds: driverPollMicroseconds))
            var run = BlkBackendRun(backend: backend)
            run.queueCount = sessions[sessions.count - 1].queues.count
            runs.append(run)
        }
        let plan = BlkSlices(daemons: sessions.count)
        let slices = plan.count
        let warmup = duration / 20
        for (index, blkCase) in cases(queues: runs.map(\.queueCount).max() ?? 1).enumerated()
        where filters.isEmpty || filters.contains(where: { blkCase.name.contains($0) }) {
            writeError("vmm-bench blk: \(blkCase.name)\n")
            for session in sessions where session.queues.count >= blkCase.queues { session.beginCase() }
            fio?.beginCase()
            var cpu = [UInt64](repeating: 0, count: sessions.count)
            var driver = [UInt64](repeating: 0, count: sessions.count)
            for slice in 0..<slices {
                // Every back-end reads or writes the same sectors in a slice; fio its own (see
                // `BlkFio.arguments`).
                let seed = 0x9E37_79B9_7F4A_7C15 &+ UInt64(index * slices + slice)
                for i in plan.order(slice: slice) where sessions[i].queues.count >= blkCase.queues {
                    let session = sessions[i]
                    let before = daemons[i].cpuNanoseconds()
                    let driverBefore = driverCPUNanoseconds()
                    do {
                        try session.run(
                            blkCase.kind == .read ? .read : .write, depth: blkCase.depth,
                            queueCount: blkCase.queues, warmup: warmup, duration: duration / UInt64(slices),
                            seed: seed)
                    } catch {
                        throw BlkLoadError(description: "\(runs[i].backend.name), \(blkCase.name): \(error)")
                    }
                    if let before, let after = daemons[i].cpuNanoseconds() { cpu[i] += after &- before }
                    driver[i] += driverCPUNanoseconds() &- driverBefore
                }
                fio?.runSlice(blkCase, warmup: warmup, duration: duration / UInt64(slices), seed: seed)
            }
            for (i, session) in sessions.enumerated() where session.queues.count >= blkCase.queues {
                var result = session.finishCase()
                result.cpuNanoseconds = cpu[i]
                result.driverNanoseconds = driver[i]
                runs[i].results[blkCase.name] = result
            }
            fio?.finishCase(blkCase)
        }
        for (i, daemon) in daemons.enumerated() {
            if let usage = daemon.memoryUsage(guestInodes: [sessions[i].guestInode]) {
                runs[i].peakKiB = usage.peakKiB
                runs[i].guestKiB = usage.guestKiB
            }
        }
        return runs
    }
}

/// CPU time (ns) this process (the front-end: its driving threads) has run so far.
func driverCPUNanoseconds() -> UInt64 {
    var now = timespec()
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &now)
    return UInt64(now.tv_sec) * 1_000_000_000 + UInt64(now.tv_nsec)
}

/// The side-by-side table (or one back-end's), with placement and memory below.
func renderBlkTable(_ runs: [BlkBackendRun], placement: String, driverPollMicroseconds: Int, markdown: Bool) -> String {
    let names = BlkBench.cases(queues: runs.map(\.queueCount).max() ?? 1).map(\.name)
        .filter { name in runs.contains { $0.results[name] != nil } }
    var header = ["case"]
    for run in runs {
        let b = run.backend.name
        header += ["\(b) IOPS", "\(b) p50", "\(b) p99", "\(b) kicks/req", "\(b) calls/req"]
    }
    let pair = runs.count == 2
    if pair { header += ["IOPS ratio", "p99 ratio"] }
    var rows: [[String]] = [header]
    for name in names {
        var row = [name]
        for run in runs {
            if let r = run.results[name] {
                row += [
                    formatFixed(r.iops / 1000, decimals: 1) + "k", formatDuration(r.p50), formatDuration(r.p99),
                    formatFixed(r.kicksPerRequest, decimals: 3), formatFixed(r.callsPerRequest, decimals: 3),
                ]
            } else {
                row += ["-", "-", "-", "-", "-"]
            }
        }
        if pair {
            if let a = runs[0].results[name], let b = runs[1].results[name], b.iops > 0, b.p99 > 0 {
                row += [formatFixed(a.iops / b.iops, decimals: 2) + "x", formatFixed(a.p99 / b.p99, decimals: 2) + "x"]
            } else {
                row += ["-", "-"]
            }
        }
        rows.append(row)
    }
    var out =
        markdown
        ? ""
        : "vmm-bench blk: 4 KiB random I/O on a 1 GiB image in the page cache; qd = requests in flight per queue.\n"
    out += formatTable(rows, markdown: markdown)
    out +=
        (markdown ? "\n" : "") + "Placement: \(placement). " + driverPollNote(driverPollMicroseconds)
        + (pair ? " Ratios: \(runs[0].backend.name) / \(runs[1].backend.name)." : "") + "\n"
    for run in runs {
        if let peak = run.peakKiB, let guest = run.guestKiB {
            out +=
                "\(run.backend.name): \(run.queueCount) queues; peak RSS (VmHWM) \(peak) KiB, guest memory resident "
                + "\(guest) KiB, peak without guest memory \(peak - guest) KiB\n"
        }
    }
    return out
}

/// The qsd configuration with the most IOPS on case `name`.
func bestQSD(_ runs: [BlkBackendRun], _ name: String) -> BlkLoadResult? {
    runs.filter { $0.backend.kind == .qsd }.compactMap { $0.results[name] }.max { $0.iops < $1.iops }
}

/// The front-end's polling window as the tables print it, so figures taken with one are never
/// mistaken for the default's.
func driverPollNote(_ microseconds: Int) -> String {
    microseconds > 0
        ? "Front-end polling window (--driver-poll-us): \(microseconds) µs before it blocks."
        : "Front-end polling window (--driver-poll-us): none, it blocks at once."
}
