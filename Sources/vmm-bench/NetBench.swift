// `vmm-bench net`: DPDK testpmd's virtio_user front-end against our vhost-user-net (--sink /
// --source) and against DPDK's own vhost back-end, in one run.
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import VMMBenchCases

let netUsage = """
    usage: vmm-bench net [--peers DIR] [--seconds N] [--poll-us N] [--filter TEXT] [--no-sleep]
                         [--json|--markdown]

      64-byte packets, one queue pair, one forwarding core per side, pinned as the peers'
      dpdk-vhost-reference.sh pins them (back-end on CPU 0, front-end's forwarding lcore on CPU 1).
      For each direction (tx: front-end txonly into the back-end; rx: back-end to front-end
      rxonly), ring layout (split, packed_vq=1) and mergeable buffers (mrg_rxbuf on/off):
        dpdk       testpmd net_vhost (DPDK's vhost library) via dpdk-vhost-reference.sh
        ours       vhost-user-net --sink / --source --poll-us N (poll mode) via dpdk-virtio-user.sh
        ours-sleep the same with --poll-us 0 (sleeps on kicks), with its CPU use per Mpps
      Every figure is the front-end's (testpmd's) packet rate, so both back-ends are measured by
      the same instrument; ratio = ours / dpdk. Needs dpdk-testpmd (peers/install-deps.sh dpdk),
      root, and vhost-user-net built beside vmm-bench.

      --peers DIR   the peers directory with the DPDK scripts (default: $VMM_PEERS, else ../shared/peers)
      --seconds N   seconds per run (default 5)
      --poll-us N   ours' poll window in poll mode (default 1000000)
      --filter TEXT only cases whose name (e.g. tx/split/mrg) contains TEXT
      --no-sleep    skip the --poll-us 0 runs

    """

/// One measured combination.
struct NetCase {
    /// tx: the front-end transmits (ours --sink); rx: it receives (ours --source).
    let direction: String
    let packed: Bool
    let mergeable: Bool
    var name: String { "\(direction)/\(packed ? "packed" : "split")/\(mergeable ? "mrg" : "nomrg")" }
    var frontendMode: String { direction == "tx" ? "txonly" : "rxonly" }
    var devargs: String {
        ([packed ? "packed_vq=1" : nil, mergeable ? nil : "mrg_rxbuf=0"] as [String?]).compactMap { $0 }.joined(separator: ",")
    }

    static let all: [NetCase] = ["tx", "rx"].flatMap { direction in
        [false, true].flatMap { packed in [true, false].map { NetCase(direction: direction, packed: packed, mergeable: $0) } }
    }
}

/// What one back-end did in one case.
struct NetResult {
    let mpps: Double
    /// CPU seconds the back-end used per second of the run (ours only).
    let cpuLoad: Double?
}

enum NetBench {
    /// Parses `arguments` (after `net`), runs, prints; returns the exit status.
    static func main(_ arguments: [String]) -> Int32 {
        var arguments = arguments
        var json = false, markdown = false, sleepMode = true
        var seconds = 5, pollMicros = 1_000_000
        var filters: [String] = []
        var peers = getenv("VMM_PEERS").map { String(cString: $0) } ?? "../shared/peers"
        while !arguments.isEmpty {
            let argument = arguments.removeFirst()
            switch argument {
            case "--json": json = true
            case "--markdown": markdown = true
            case "--no-sleep": sleepMode = false
            case "-h", "--help":
                print(netUsage, terminator: "")
                return 0
            case "--peers", "--seconds", "--poll-us", "--filter":
                guard let value = arguments.first else {
                    writeError("vmm-bench net: \(argument) needs a value\n" + netUsage)
                    return 64
                }
                arguments.removeFirst()
                switch argument {
                case "--peers": peers = value
                case "--seconds":
                    guard let parsed = Int(value), (2...600).contains(parsed) else {
                        writeError("vmm-bench net: --seconds must be 2...600\n")
                        return 64
                    }
                    seconds = parsed
                case "--poll-us":
                    guard let parsed = Int(value), (1...10_000_000).contains(parsed) else {
                        writeError("vmm-bench net: --poll-us must be 1...10000000\n")
                        return 64
                    }
                    pollMicros = parsed
                default: filters.append(value)
                }
            default:
                writeError("vmm-bench net: unknown argument \(argument)\n" + netUsage)
                return 64
            }
        }
        guard let daemon = siblingExecutable("vhost-user-net") else {
            writeError("vmm-bench net: vhost-user-net is not built beside vmm-bench (swift build -c release --product vhost-user-net)\n")
            return 1
        }
        guard access(peers + "/dpdk-vhost-reference.sh", X_OK) == 0 else {
            writeError("vmm-bench net: no DPDK scripts in \(peers) (--peers DIR or VMM_PEERS)\n")
            return 1
        }
        let cases = NetCase.all.filter { netCase in filters.isEmpty || filters.contains { netCase.name.contains($0) } }
        var rows: [(NetCase, [String: NetResult])] = []
        for (index, netCase) in cases.enumerated() {
            writeError("[\(index + 1)/\(cases.count)] \(netCase.name)\n")
            var results: [String: NetResult] = [:]
            results["dpdk"] = reference(netCase, peers: peers, seconds: seconds)
            results["ours"] = ours(netCase, daemon: daemon, peers: peers, seconds: seconds, pollMicros: pollMicros)
            if sleepMode {
                results["ours-sleep"] = ours(netCase, daemon: daemon, peers: peers, seconds: seconds, pollMicros: 0)
            }
            rows.append((netCase, results))
        }
        print(json ? renderNetJSON(rows) : renderNetTable(rows, markdown: markdown, pollMicros: pollMicros), terminator: json ? "\n" : "")
        return rows.contains { $0.1["ours"] == nil } ? 1 : 0
    }

    /// DPDK's vhost back-end against DPDK's front-end (the peers' reference script).
    static func reference(_ netCase: NetCase, peers: String, seconds: Int) -> NetResult? {
        let output = runScript([peers + "/dpdk-vhost-reference.sh", String(seconds), netCase.direction],
                               environment: ["DPDK_VU_ARGS": netCase.devargs], seconds: seconds + 60)
        return frontendMpps(output, mode: netCase.frontendMode, prefix: "frontend: ").map { NetResult(mpps: $0, cpuLoad: nil) }
    }

    /// Our daemon (pinned to CPU 0) against DPDK's front-end.
    static func ours(_ netCase: NetCase, daemon: String, peers: String, seconds: Int, pollMicros: Int) -> NetResult? {
        guard let directory = mkdtemp(strdup("/tmp/vmm-bench-net-XXXXXX")).map({ String(cString: $0) }) else { return nil }
        let socket = directory + "/net.sock", log = directory + "/net.log"
        defer {
            unlink(socket)
            unlink(log)
            rmdir(directory)
        }
        let port = netCase.direction == "tx" ? "--sink" : "--source"
        let process: BlkDaemon
        do {
            process = try BlkDaemon([daemon, "--socket-path", socket, port, "--poll-us", String(pollMicros)],
                                    socket: socket, log: log, cpu: 0, restoreCPU: nil)
        } catch {
            writeError("vmm-bench net: \(error)\n")
            return nil
        }
        defer { process.stop() }
        let before = cpuTicks(process.pid)
        let start = monotonicNanoseconds()
        let output = runScript([peers + "/dpdk-virtio-user.sh", socket, String(seconds), netCase.frontendMode],
                               environment: ["DPDK_VU_ARGS": netCase.devargs, "DPDK_LCORES": "0@0,1@1"], seconds: seconds + 60)
        let elapsed = Double(monotonicNanoseconds() - start) / 1e9
        var load: Double?
        if let before, let after = cpuTicks(process.pid) {
            load = Double(after - before) / Double(sysconf(Int32(_SC_CLK_TCK))) / elapsed
        }
        return frontendMpps(output, mode: netCase.frontendMode, prefix: "").map { NetResult(mpps: $0, cpuLoad: load) }
    }

    /// testpmd's rate in its direction from a `MPPS  virtio_user-MODE rx=R tx=T` line.
    static func frontendMpps(_ output: String, mode: String, prefix: String) -> Double? {
        for line in output.split(separator: "\n") where line.hasPrefix(prefix + "MPPS") && line.contains("virtio_user-\(mode)") {
            let key = mode == "txonly" ? "tx=" : "rx="
            for field in line.split(separator: " ") where field.hasPrefix(key) { return Double(field.dropFirst(3)) }
        }
        writeError("vmm-bench net: no \(mode) rate in:\n\(output.split(separator: "\n").suffix(12).joined(separator: "\n"))\n")
        return nil
    }

    /// utime + stime of `pid` in clock ticks (Linux /proc), nil elsewhere.
    static func cpuTicks(_ pid: pid_t) -> Int? {
        guard let stat = readTextFile("/proc/\(pid)/stat"), let close = stat.lastIndex(of: ")") else { return nil }
        // Fields after "(comm)": state is field 3; utime and stime are fields 14 and 15.
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        guard fields.count > 13, let user = Int(fields[11]), let system = Int(fields[12]) else { return nil }
        return user + system
    }

    /// Runs `arguments` with `environment` added, for at most `seconds`; returns stdout+stderr.
    static func runScript(_ arguments: [String], environment: [String: String], seconds: Int) -> String {
        guard let directory = mkdtemp(strdup("/tmp/vmm-bench-run-XXXXXX")).map({ String(cString: $0) }) else { return "" }
        let log = directory + "/out"
        defer {
            unlink(log)
            rmdir(directory)
        }
        let command = ["/usr/bin/timeout", "--kill-after=10", String(seconds)] + arguments
        let argv = command.map { strdup($0) } + [nil]
        defer { argv.forEach { free($0) } }
        var environ = environmentStrings()
        environ += environment.map { "\($0.key)=\($0.value)" }
        let envp = environ.map { strdup($0) } + [nil]
        defer { envp.forEach { free($0) } }
        #if os(Linux)
        var actions = posix_spawn_file_actions_t()
        #else
        var actions: posix_spawn_file_actions_t? = nil
        #endif
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, log, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        posix_spawn_file_actions_adddup2(&actions, 1, 2)
        var pid: pid_t = 0
        guard posix_spawn(&pid, command[0], &actions, nil, argv, envp) == 0 else { return "" }
        var status: Int32 = 0
        while waitpid(pid, &status, 0) == -1 && errno == EINTR {}
        return readTextFile(log) ?? ""
    }

    /// This process's environment as `NAME=value` strings.
    static func environmentStrings() -> [String] {
        var result: [String] = []
        var entry = environ
        while let pointer = entry.pointee {
            result.append(String(cString: pointer))
            entry += 1
        }
        return result
    }
}

/// One row per case: DPDK, ours (poll), ratio, ours sleeping and its CPU per Mpps.
func renderNetTable(_ rows: [(NetCase, [String: NetResult])], markdown: Bool, pollMicros: Int) -> String {
    let header = ["case", "dpdk Mpps", "ours Mpps", "ours/dpdk", "ours CPU", "sleep Mpps", "sleep CPU", "sleep CPU/Mpps"]
    func mpps(_ r: NetResult?) -> String { r.map { formatFixed($0.mpps, decimals: 2) } ?? "-" }
    func cpu(_ r: NetResult?) -> String { r?.cpuLoad.map { formatFixed($0 * 100, decimals: 0) + "%" } ?? "-" }
    var table: [[String]] = [header]
    for (netCase, results) in rows {
        let dpdk = results["dpdk"], ours = results["ours"], sleep = results["ours-sleep"]
        let ratio = (ours?.mpps).flatMap { o in (dpdk?.mpps).flatMap { $0 > 0 ? formatFixed(o / $0, decimals: 2) + "x" : nil } } ?? "-"
        let perMpps = sleep.flatMap { s in s.cpuLoad.flatMap { s.mpps > 0 ? formatFixed($0 * 100 / s.mpps, decimals: 0) + "%" : nil } } ?? "-"
        table.append([netCase.name, mpps(dpdk), mpps(ours), ratio, cpu(ours), mpps(sleep), cpu(sleep), perMpps])
    }
    var out: String
    if markdown {
        out = "| " + header.joined(separator: " | ") + " |\n|---|" + String(repeating: "---:|", count: header.count - 1) + "\n"
        for row in table.dropFirst() { out += "| " + row.joined(separator: " | ") + " |\n" }
    } else {
        var widths = header.map { _ in 0 }
        for row in table { for (i, cell) in row.enumerated() { widths[i] = max(widths[i], cell.count) } }
        func line(_ row: [String]) -> String {
            row.enumerated().map { i, cell in
                let pad = String(repeating: " ", count: widths[i] - cell.count)
                return i == 0 ? cell + pad : pad + cell
            }.joined(separator: "  ")
        }
        out = "vmm-bench net: 64-byte packets, testpmd virtio_user front-end; ours polls for \(pollMicros) us (sleep: --poll-us 0).\n"
        out += line(table[0]) + "\n" + widths.map { String(repeating: "-", count: $0) }.joined(separator: "  ") + "\n"
        for row in table.dropFirst() { out += line(row) + "\n" }
    }
    return out
}

/// `{"cases":[{group,name,backend,unit:"Mpps",mpps,raw_mpps,ratio,cpu_load}]}`: one case per back-end
/// and combination; `raw_mpps` is DPDK's vhost in the same combination, `ratio` = mpps / raw_mpps.
func renderNetJSON(_ rows: [(NetCase, [String: NetResult])]) -> String {
    func number(_ value: Double?, _ decimals: Int = 3) -> String { value.map { formatFixed($0, decimals: decimals) } ?? "null" }
    var cases: [String] = []
    for (netCase, results) in rows {
        let dpdk = results["dpdk"]?.mpps
        for backend in ["dpdk", "ours", "ours-sleep"] {
            guard let result = results[backend] else { continue }
            let ratio = backend == "dpdk" ? nil : dpdk.flatMap { $0 > 0 ? result.mpps / $0 : nil }
            cases.append("{\"group\":\"net\",\"name\":\"\(netCase.name)\",\"backend\":\"\(backend)\",\"unit\":\"Mpps\","
                + "\"mpps\":\(number(result.mpps)),\"raw_mpps\":\(number(backend == "dpdk" ? nil : dpdk)),"
                + "\"ratio\":\(number(ratio)),\"cpu_load\":\(number(result.cpuLoad))}")
        }
    }
    return "{\"placement\":\"back-end CPU 0, front-end forwarding CPU 1\",\"cases\":[" + cases.joined(separator: ",") + "],\"skipped\":[]}"
}
