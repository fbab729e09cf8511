// `vmm-bench net`: DPDK testpmd's virtio_user front-end against our vhost-user-net (--sink /
// --source) and against DPDK's own vhost back-end, in one run.
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import VMMBenchCases
import VMMSysUtil
import VhostUserDaemon

/// One measured combination.
struct NetCase {
    /// tx: the front-end transmits (ours --sink); rx: it receives (ours --source).
    let direction: String
    let packed: Bool
    let mergeable: Bool
    /// Whether the front-end offers VIRTIO_F_IN_ORDER (virtio_user's default). DPDK's virtio PMD
    /// has an in-order receive path for split rings only, so turning it off puts both layouts on
    /// the same (mergeable-buffer) receive path.
    var inOrder = true
    var name: String {
        "\(direction)/\(packed ? "packed" : "split")/\(mergeable ? "mrg" : "nomrg")" + (inOrder ? "" : "/in_order=0")
    }
    var frontendMode: String { direction == "tx" ? "txonly" : "rxonly" }
    var devargs: String {
        ([packed ? "packed_vq=1" : nil, mergeable ? nil : "mrg_rxbuf=0", inOrder ? nil : "in_order=0"] as [String?])
            .compactMap { $0 }.joined(separator: ",")
    }

    /// Every direction, layout and mergeable setting, with the front-end's in-order feature as given.
    static func all(inOrder: Bool = true) -> [NetCase] {
        ["tx", "rx"].flatMap { direction in
            [false, true].flatMap { packed in
                [true, false].map { NetCase(direction: direction, packed: packed, mergeable: $0, inOrder: inOrder) }
            }
        }
    }
}

/// What one back-end did in one case.
struct NetResult {
    let mpps: Double
    /// CPU seconds the back-end used per second of the run (ours only).
    let cpuLoad: Double?
}

enum NetBench {
    /// Runs the cases `command` selects and prints; returns the exit status.
    static func main(_ command: NetCommand) -> Int32 {
        guard let daemon = siblingExecutable("vhost-user-net") else {
            writeError(
                "vmm-bench net: vhost-user-net is not built beside vmm-bench (swift build -c release --product vhost-user-net)\n"
            )
            return 1
        }
        let peers = command.peers ?? getenv("VMM_PEERS").map { String(cString: $0) } ?? "../shared/peers"
        guard access(peers + "/dpdk-vhost-reference.sh", X_OK) == 0 else {
            writeError("vmm-bench net: no DPDK scripts in \(peers) (--peers DIR or VMM_PEERS)\n")
            return 1
        }
        let filters = command.filter
        let cases = NetCase.all(inOrder: command.inOrder == .on).filter { netCase in
            filters.isEmpty || filters.contains { netCase.name.contains($0) }
        }
        var rows: [(NetCase, [String: NetResult])] = []
        for (index, netCase) in cases.enumerated() {
            writeError("[\(index + 1)/\(cases.count)] \(netCase.name)\n")
            var results: [String: NetResult] = [:]
            results["dpdk"] = reference(netCase, peers: peers, seconds: command.seconds)
            results["ours"] = ours(
                netCase, daemon: daemon, peers: peers, seconds: command.seconds, pollMicros: command.pollMicroseconds)
            if !command.noSleep {
                results["ours-sleep"] = ours(
                    netCase, daemon: daemon, peers: peers, seconds: command.seconds, pollMicros: 0)
            }
            rows.append((netCase, results))
        }
        if command.json {
            do {
                print(try renderNetJSON(rows))
            } catch {
                writeError("vmm-bench net: \(error)\n")
                return 1
            }
        } else {
            print(
                renderNetTable(rows, markdown: command.markdown, pollMicros: command.pollMicroseconds), terminator: "")
        }
        return rows.contains { $0.1["ours"] == nil } ? 1 : 0
    }

    /// DPDK's vhost back-end against DPDK's front-end (the peers' reference script).
    static func reference(_ netCase: NetCase, peers: String, seconds: Int) -> NetResult? {
        let output = runScript(
            [peers + "/dpdk-vhost-reference.sh", String(seconds), netCase.direction],
            environment: ["DPDK_VU_ARGS": netCase.devargs], seconds: seconds + 60)
        return frontendMpps(output, mode: netCase.frontendMode, prefix: "frontend: ").map {
            NetResult(mpps: $0, cpuLoad: nil)
        }
    }

    /// Our daemon (pinned to CPU 0) against DPDK's front-end.
    static func ours(_ netCase: NetCase, daemon: String, peers: String, seconds: Int, pollMicros: Int) -> NetResult? {
        guard let directory = mkdtemp(strdup("/tmp/vmm-bench-net-XXXXXX")).map({ String(cString: $0) }) else {
            return nil
        }
        let socket = directory + "/net.sock", log = directory + "/net.log"
        defer {
            unlink(socket)
            unlink(log)
            rmdir(directory)
        }
        let port = netCase.direction == "tx" ? "--sink" : "--source"
        let process: BlkDaemon
        do {
            process = try BlkDaemon(
                [daemon, "--socket-path", socket, port, "--poll-us", String(pollMicros)],
                socket: socket, log: log, cpu: 0, restoreCPU: nil)
        } catch {
            writeError("vmm-bench net: \(error)\n")
            return nil
        }
        defer { process.stop() }
        let before = cpuTicks(process.pid)
        let start = monotonicNanoseconds()
        let output = runScript(
            [peers + "/dpdk-virtio-user.sh", socket, String(seconds), netCase.frontendMode],
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
        for line in output.split(separator: "\n")
        where line.hasPrefix(prefix + "MPPS") && line.contains("virtio_user-\(mode)") {
            let key = mode == "txonly" ? "tx=" : "rx="
            for field in line.split(separator: " ") where field.hasPrefix(key) { return Double(field.dropFirst(3)) }
        }
        writeError(
            "vmm-bench net: no \(mode) rate in:\n\(output.split(separator: "\n").suffix(12).joined(separator: "\n"))\n")
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
        guard let directory = mkdtemp(strdup("/tmp/vmm-bench-run-XXXXXX")).map({ String(cString: $0) }) else {
            return ""
        }
        let log = directory + "/out"
        defer {
            unlink(log)
            rmdir(directory)
        }
        // env(1) adds the variables: the spawn helper passes our environment as it is.
        let settings = environment.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }
        guard
            let child = try? ChildProcess.spawn(
                "/usr/bin/env",
                arguments: settings + [
                    "/usr/bin/timeout", "--kill-after=10",
                    String(seconds),
                ] + arguments,
                outputPath: log)
        else { return "" }
        _ = try? child.waitForExit()
        return readTextFile(log) ?? ""
    }
}

/// One row per case: DPDK, ours (poll), ratio, ours sleeping and its CPU per Mpps.
func renderNetTable(_ rows: [(NetCase, [String: NetResult])], markdown: Bool, pollMicros: Int) -> String {
    let header = [
        "case", "dpdk Mpps", "ours Mpps", "ours/dpdk", "ours CPU", "sleep Mpps", "sleep CPU", "sleep CPU/Mpps",
    ]
    func mpps(_ r: NetResult?) -> String { r.map { formatFixed($0.mpps, decimals: 2) } ?? "-" }
    func cpu(_ r: NetResult?) -> String { r?.cpuLoad.map { formatFixed($0 * 100, decimals: 0) + "%" } ?? "-" }
    var table: [[String]] = [header]
    for (netCase, results) in rows {
        let dpdk = results["dpdk"], ours = results["ours"], sleep = results["ours-sleep"]
        let ratio =
            (ours?.mpps).flatMap { o in (dpdk?.mpps).flatMap { $0 > 0 ? formatFixed(o / $0, decimals: 2) + "x" : nil } }
            ?? "-"
        let perMpps =
            sleep.flatMap { s in
                s.cpuLoad.flatMap { s.mpps > 0 ? formatFixed($0 * 100 / s.mpps, decimals: 0) + "%" : nil }
            } ?? "-"
        table.append([netCase.name, mpps(dpdk), mpps(ours), ratio, cpu(ours), mpps(sleep), cpu(sleep), perMpps])
    }
    let title =
        "vmm-bench net: 64-byte packets, testpmd virtio_user front-end; ours polls for \(pollMicros) us (sleep: --poll-us 0).\n"
    return (markdown ? "" : title) + formatTable(table, markdown: markdown)
}

/// One `vmm-bench net --json` case: `{group,name,backend,unit:"Mpps",mpps,raw_mpps,ratio,cpu_load,placement}`;
/// `raw_mpps` is DPDK's vhost in the same combination, `ratio` = mpps / raw_mpps (null for dpdk's
/// own rows), `cpu_load` the back-end's CPU seconds per second (ours only).
struct NetJSONCase: Encodable {
    var name: String
    var backend: String
    var mpps: Double?
    var rawMpps: Double?
    var ratio: Double?
    var cpuLoad: Double?
    var placement: String

    enum CodingKeys: String, CodingKey {
        case group, name, backend, unit, mpps, ratio, placement
        case rawMpps = "raw_mpps", cpuLoad = "cpu_load"
    }

    /// Written by hand so that a missing value is `null` rather than an absent key.
    func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode("net", forKey: .group)
        try container.encode(name, forKey: .name)
        try container.encode(backend, forKey: .backend)
        try container.encode("Mpps", forKey: .unit)
        try container.encode(rounded(mpps, 3), forKey: .mpps)
        try container.encode(rounded(rawMpps, 3), forKey: .rawMpps)
        try container.encode(rounded(ratio, 3), forKey: .ratio)
        try container.encode(rounded(cpuLoad, 3), forKey: .cpuLoad)
        try container.encode(placement, forKey: .placement)
    }
}

/// `{"placement":..,"cases":[NetJSONCase...],"skipped":[]}`, one line.
struct NetJSONReport: Encodable {
    let placement: String
    let cases: [NetJSONCase]
    let skipped: [JSONSkipped]
}

/// The `--json` text of `vmm-bench net`.
func renderNetJSON(_ rows: [(NetCase, [String: NetResult])]) throws -> String {
    let placement = "back-end CPU 0, front-end forwarding lcore CPU 1"
    var cases: [NetJSONCase] = []
    for (netCase, results) in rows {
        let dpdk = results["dpdk"]?.mpps
        for backend in ["dpdk", "ours", "ours-sleep"] {
            guard let result = results[backend] else { continue }
            let raw = backend == "dpdk" ? nil : dpdk
            cases.append(
                NetJSONCase(
                    name: netCase.name, backend: backend, mpps: result.mpps, rawMpps: raw,
                    ratio: raw.flatMap { $0 > 0 ? result.mpps / $0 : nil }, cpuLoad: result.cpuLoad,
                    placement: placement))
        }
    }
    return String(
        decoding: try programJSONEncoder().encode(NetJSONReport(placement: placement, cases: cases, skipped: [])),
        as: UTF8.self)
}
