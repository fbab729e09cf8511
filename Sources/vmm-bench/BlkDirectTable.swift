// The `vmm-bench blk --direct` table: every back-end configuration side by side, fio beside them,
// ours as ratios to the better qemu-storage-daemon configuration and to fio.

/// The table (text or markdown) with placement, fio note and memory below.
func renderBlkDirectTable(
    _ runs: [BlkBackendRun], fio: [String: BlkLoadResult], fioNote: String?, placement: String,
    driverPollMicroseconds: Int, markdown: Bool
) -> String {
    let names = BlkBench.cases(queues: runs.map(\.queueCount).max() ?? 1).map(\.name)
        .filter { name in runs.contains { $0.results[name] != nil } }
    let ours = runs.filter { $0.backend.kind == .ours }
    var header = ["case"]
    for run in runs {
        let b = run.backend.name
        header += ["\(b) IOPS", "\(b) p50", "\(b) CPU/req", "\(b) fe/req"]
    }
    if !fio.isEmpty { header += ["fio IOPS", "fio p50", "fio CPU/req"] }
    for run in ours {
        header += ["\(run.backend.name)/qsd"]
        if !fio.isEmpty { header += ["\(run.backend.name)/fio"] }
        header += ["p50/qsd"]
    }
    var rows: [[String]] = [header]
    for name in names {
        var row = [name]
        for run in runs {
            if let r = run.results[name] {
                row += [
                    formatFixed(r.iops / 1000, decimals: 1) + "k", formatDuration(r.p50),
                    r.cpuPerRequest.map(formatDuration) ?? "-", r.driverPerRequest.map(formatDuration) ?? "-",
                ]
            } else {
                row += ["-", "-", "-", "-"]
            }
        }
        if !fio.isEmpty {
            let f = fio[name]
            row += [
                f.map { formatFixed($0.iops / 1000, decimals: 1) + "k" } ?? "-",
                f.map { formatDuration($0.p50) } ?? "-",
                f?.cpuPerRequest.map(formatDuration) ?? "-",
            ]
        }
        let qsd = bestQSD(runs, name)
        for run in ours {
            let r = run.results[name]
            func ratio(_ a: Double?, _ b: Double?) -> String {
                guard let a, let b, b > 0 else { return "-" }
                return formatFixed(a / b, decimals: 2) + "x"
            }
            row += [ratio(r?.iops, qsd?.iops)]
            if !fio.isEmpty { row += [ratio(r?.iops, fio[name]?.iops)] }
            row += [ratio(r?.p50, qsd?.p50)]
        }
        rows.append(row)
    }
    var out =
        markdown
        ? ""
        : "vmm-bench blk --direct: 4 KiB random I/O, page cache bypassed (O_DIRECT), on this machine's disk; "
            + "qd = requests in flight per queue; CPU/req = the daemon's (fio's) CPU time per request, "
            + "fe/req = the front-end's (this benchmark's driving threads, one per queue). "
            + "fio runs in each slice right after the daemons (whose order rotates per slice), for the same time: its IOPS are "
            + "requests over the slices' summed time, its p50 the median of its completion latency (clat) "
            + "histograms merged over the slices (fio's bins, within 1/64 of a power of two), its CPU/req "
            + "its jobs' CPU time (start-up and ramp excluded) over their requests.\n"
    out += formatTable(rows, markdown: markdown)
    out +=
        (markdown ? "\n" : "") + "Placement: \(placement). " + driverPollNote(driverPollMicroseconds)
        + " Ratios: ours / the better qsd configuration of each row" + (fio.isEmpty ? "" : ", ours / fio") + ".\n"
    if let fioNote { out += "fio: \(fioNote)\n" }
    for run in runs {
        if let peak = run.peakKiB, let guest = run.guestKiB {
            out += "\(run.backend.name): \(run.queueCount) queues; peak RSS without guest memory \(peak - guest) KiB\n"
        }
    }
    return out
}
