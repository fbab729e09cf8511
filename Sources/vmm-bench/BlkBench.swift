// `vmm-bench blk`: vhost-user-blk back-ends (ours, qemu-storage-daemon) driven by our front-end.
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import VMMBenchCases

let blkUsage = """
    usage: vmm-bench blk [--backend ours|qsd|both] [--json|--markdown] [--spread] [--cpu N]
                         [--time-ms MS] [--queues N] [--filter TEXT] [--dirty-log]

      Serves a 1 GiB raw image (in the page cache, in a temp dir) with each back-end (both daemons
      run side by side on the same image; each case alternates them in 3 slices) and drives them over vhost-user with this package's front-end (guest memory shared with
      SET_MEM_TABLE, EVENT_IDX): 4 KiB random reads and writes at queue depth 1 and 32 per queue,
      on one queue and on as many as the back-end offers (at most --queues, default 4). Prints
      IOPS, p50/p99 latency, kicks and calls per request, and each daemon's peak RSS without guest
      memory. Needs vhost-user-blk built beside vmm-bench and /usr/bin/qemu-storage-daemon.

      --backend B   ours, qsd or both (default both: side by side, with ours/qsd IOPS ratio)
      --spread      back-end daemon on the CPU after the front-end's (default: same CPU)
      --cpu N       CPU for the front-end (default 0)
      --time-ms MS  measured time per case and back-end (default 1000; plus 15% warm-up)
      --queues N    most queues to use, 1...4 (default 4)
      --filter TEXT only cases whose name contains TEXT
      --dirty-log   dirty logging on (VHOST_F_LOG_ALL, LOG_SHMFD), as during a live migration

    """

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
    let backend: BlkBackendKind
    var results: [String: BlkLoadResult] = [:]
    var queueCount = 0
    var peakKiB: Int?
    var guestKiB: Int?
}

enum BlkBench {
    static let imageSize = 1 << 30

    /// Parses `arguments` (after `blk`), runs, prints; returns the exit status.
    static func main(_ arguments: [String]) -> Int32 {
        var arguments = arguments
        var backends = BlkBackendKind.allCases
        var json = false, markdown = false, spread = false, dirtyLog = false
        var cpu: Int32 = 0
        var milliseconds: UInt64 = 1000
        var maxQueues = 4
        var filters: [String] = []
        while !arguments.isEmpty {
            let argument = arguments.removeFirst()
            switch argument {
            case "--json": json = true
            case "--markdown": markdown = true
            case "--spread": spread = true
            case "--dirty-log": dirtyLog = true
            case "-h", "--help":
                print(blkUsage, terminator: "")
                return 0
            case "--backend", "--cpu", "--time-ms", "--queues", "--filter":
                guard let value = arguments.first else {
                    writeError("vmm-bench blk: \(argument) needs a value\n" + blkUsage)
                    return 64
                }
                arguments.removeFirst()
                switch argument {
                case "--backend":
                    if value == "both" {
                        backends = BlkBackendKind.allCases
                    } else if let one = BlkBackendKind(rawValue: value) {
                        backends = [one]
                    } else {
                        writeError("vmm-bench blk: --backend must be ours, qsd or both\n")
                        return 64
                    }
                case "--cpu":
                    guard let parsed = Int32(value), parsed >= 0 else {
                        writeError("vmm-bench blk: bad CPU \(value)\n")
                        return 64
                    }
                    cpu = parsed
                case "--time-ms":
                    guard let parsed = UInt64(value), parsed > 0 else {
                        writeError("vmm-bench blk: bad time \(value)\n")
                        return 64
                    }
                    milliseconds = parsed
                case "--queues":
                    guard let parsed = Int(value), (1...4).contains(parsed) else {
                        writeError("vmm-bench blk: --queues must be 1...4\n")
                        return 64
                    }
                    maxQueues = parsed
                default: filters.append(value)
                }
            default:
                writeError("vmm-bench blk: unknown argument \(argument)\n" + blkUsage)
                return 64
            }
        }
        let context = BenchContext.standard(spread: spread, cpu: cpu, childExecutable: nil)
        do {
            try pinCurrentThread(context.mainCPU)
        } catch {
            writeError("vmm-bench blk: cannot pin to CPU \(cpu): \(error)\n")
            return 1
        }
        let scratch: BlkScratch
        do {
            scratch = try BlkScratch()
        } catch {
            writeError("vmm-bench blk: \(error)\n")
            return 1
        }
        defer { scratch.remove() }
        var runs: [BlkBackendRun] = []
        do {
            writeError("vmm-bench blk: creating a 1 GiB image in \(scratch.path)\n")
            try scratch.createImage(size: imageSize)
            runs = try run(backends, scratch: scratch, context: context, maxQueues: maxQueues,
                           duration: milliseconds * 1_000_000, filters: filters,
                           dirtyLog: dirtyLog)
        } catch {
            writeError("vmm-bench blk: \(error)\n")
            return 1
        }
        let placement = context.mainCPU == nil ? "not pinned"
            : context.mainCPU == context.peerCPU ? "front-end and back-end on CPU \(context.mainCPU ?? 0)"
            : "front-end on CPU \(context.mainCPU ?? 0), back-end on CPU \(context.peerCPU ?? 0)"
        if json {
            print(renderBlkJSON(runs, placement: placement))
        } else {
            print(renderBlkTable(runs, placement: placement, markdown: markdown), terminator: "")
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

    /// Starts every back-end on the image, then measures each case in `slices` alternating slices
    /// per back-end (so both see the same machine noise), records each daemon's memory, stops them.
    static func run(_ backends: [BlkBackendKind], scratch: BlkScratch, context: BenchContext, maxQueues: Int,
                    duration: UInt64, filters: [String], dirtyLog: Bool = false) throws -> [BlkBackendRun] {
        var daemons: [BlkDaemon] = []
        defer { for daemon in daemons { daemon.stop() } }
        var sessions: [BlkSession] = []
        defer { for session in sessions { session.close() } }
        var runs: [BlkBackendRun] = []
        for backend in backends {
            let socket = scratch.file("\(backend.rawValue).sock")
            let log = scratch.file("\(backend.rawValue).log")
            daemons.append(try BlkDaemon(try backend.command(image: scratch.image, socket: socket, queues: maxQueues),
                                         socket: socket, log: log, cpu: context.peerCPU, restoreCPU: context.mainCPU))
            sessions.append(try BlkSession(socket: socket, maxQueues: maxQueues, dirtyLog: dirtyLog))
            var run = BlkBackendRun(backend: backend)
            run.queueCount = sessions[sessions.count - 1].queues.count
            runs.append(run)
        }
        let slices = 3
        let warmup = duration / 20
        for (index, blkCase) in cases(queues: runs.map(\.queueCount).max() ?? 1).enumerated()
            where filters.isEmpty || filters.contains(where: { blkCase.name.contains($0) }) {
            writeError("vmm-bench blk: \(blkCase.name)\n")
            for session in sessions where session.queues.count >= blkCase.queues { session.beginCase() }
            for slice in 0..<slices {
                for session in sessions where session.queues.count >= blkCase.queues {
                    try session.run(blkCase.kind == .read ? .read : .write, depth: blkCase.depth,
                                    queueCount: blkCase.queues, warmup: warmup, duration: duration / UInt64(slices),
                                    seed: 0x9E37_79B9_7F4A_7C15 &+ UInt64(index * slices + slice))
                }
            }
            for (i, session) in sessions.enumerated() where session.queues.count >= blkCase.queues {
                runs[i].results[blkCase.name] = session.finishCase()
            }
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

/// The side-by-side table (or one back-end's), with placement and memory below.
func renderBlkTable(_ runs: [BlkBackendRun], placement: String, markdown: Bool) -> String {
    let names = BlkBench.cases(queues: runs.map(\.queueCount).max() ?? 1).map(\.name)
        .filter { name in runs.contains { $0.results[name] != nil } }
    var header = ["case"]
    for run in runs {
        let b = run.backend.rawValue
        header += ["\(b) IOPS", "\(b) p50", "\(b) p99", "\(b) kicks/req", "\(b) calls/req"]
    }
    let pair = runs.count == 2
    if pair { header += ["IOPS ratio", "p99 ratio"] }
    var rows: [[String]] = [header]
    for name in names {
        var row = [name]
        for run in runs {
            if let r = run.results[name] {
                row += [formatFixed(r.iops / 1000, decimals: 1) + "k", formatDuration(r.p50), formatDuration(r.p99),
                        formatFixed(r.kicksPerRequest, decimals: 3), formatFixed(r.callsPerRequest, decimals: 3)]
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
    var out: String
    if markdown {
        out = "| " + header.joined(separator: " | ") + " |\n|---|" + String(repeating: "---:|", count: header.count - 1) + "\n"
        for row in rows.dropFirst() { out += "| " + row.joined(separator: " | ") + " |\n" }
    } else {
        var widths = header.map { _ in 0 }
        for row in rows { for (i, cell) in row.enumerated() { widths[i] = max(widths[i], cell.count) } }
        func line(_ row: [String]) -> String {
            row.enumerated().map { i, cell in
                let pad = String(repeating: " ", count: widths[i] - cell.count)
                return i == 0 ? cell + pad : pad + cell
            }.joined(separator: "  ")
        }
        out = "vmm-bench blk: 4 KiB random I/O on a 1 GiB image in the page cache; qd = requests in flight per queue.\n"
        out += line(rows[0]) + "\n" + widths.map { String(repeating: "-", count: $0) }.joined(separator: "  ") + "\n"
        for row in rows.dropFirst() { out += line(row) + "\n" }
    }
    out += (markdown ? "\n" : "") + "Placement: \(placement)." + (pair ? " Ratios: \(runs[0].backend.rawValue) / \(runs[1].backend.rawValue)." : "") + "\n"
    for run in runs {
        if let peak = run.peakKiB, let guest = run.guestKiB {
            out += "\(run.backend.rawValue): \(run.queueCount) queues; peak RSS (VmHWM) \(peak) KiB, guest memory resident "
                + "\(guest) KiB, peak without guest memory \(peak - guest) KiB\n"
        }
    }
    return out
}

/// `{"placement":..,"cases":[{group,name,backend,unit,median,p99,...,iops,...}]}`: one case per
/// back-end and load; `median`/`p99` are request latencies; `ratio` is ours/qsd IOPS on ours' rows.
func renderBlkJSON(_ runs: [BlkBackendRun], placement: String) -> String {
    func number(_ value: Double?, _ decimals: Int = 1) -> String { value.map { formatFixed($0, decimals: decimals) } ?? "null" }
    var cases: [String] = []
    let qsd = runs.first { $0.backend == .qsd }
    for run in runs {
        for blkCase in BlkBench.cases(queues: run.queueCount) {
            guard let r = run.results[blkCase.name] else { continue }
            let other = run.backend == .ours ? qsd?.results[blkCase.name] : nil
            let ratio = other.flatMap { $0.iops > 0 ? r.iops / $0.iops : nil }
            cases.append("{\"group\":\"blk\",\"name\":\"\(blkCase.name)\",\"backend\":\"\(run.backend.rawValue)\","
                + "\"unit\":\"ns\",\"median\":\(number(r.p50)),\"p99\":\(number(r.p99)),"
                + "\"raw_median\":\(number(other?.p50)),\"raw_p99\":\(number(other?.p99)),"
                + "\"ratio\":\(number(ratio, 3)),\"placement\":\"\(placement)\",\"samples\":\(r.requests),"
                + "\"iops\":\(number(r.iops)),\"raw_iops\":\(number(other?.iops)),"
                + "\"kicks_per_request\":\(number(r.kicksPerRequest, 4)),\"calls_per_request\":\(number(r.callsPerRequest, 4)),"
                + "\"peak_rss_kib\":\(run.peakKiB.map(String.init) ?? "null"),"
                + "\"guest_rss_kib\":\(run.guestKiB.map(String.init) ?? "null")}")
        }
    }
    return "{\"placement\":\"\(placement)\",\"cases\":[" + cases.joined(separator: ",") + "],\"skipped\":[]}"
}
