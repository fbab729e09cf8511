#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import VMMBenchCases

/// Writes `text` to stderr unbuffered (progress and errors).
func writeError(_ text: String) {
    var text = text
    text.withUTF8 { bytes in
        var offset = 0
        while offset < bytes.count {
            let n = write(2, bytes.baseAddress! + offset, bytes.count - offset)
            if n <= 0 { break }
            offset += n
        }
    }
}

/// The table: one row per case; `markdown` renders a Markdown table instead of aligned text.
func renderTable(_ results: [CaseResult], skipped: [(BenchCase, String)], context: BenchContext, markdown: Bool = false)
    -> String
{
    let header = ["group", "case", "backend", "placement", "median", "p99", "raw median", "ratio"]
    var rows: [[String]] = [header]
    for result in results {
        rows.append([
            result.benchCase.group, result.benchCase.name, result.benchCase.backend, result.placement,
            formatDuration(result.median), formatDuration(result.p99),
            result.rawMedian.map(formatDuration) ?? "-",
            result.ratio.map { formatFixed($0, decimals: 2) + "x" } ?? "-",
        ])
    }
    var widths = header.map { _ in 0 }
    for row in rows {
        for (index, cell) in row.enumerated() { widths[index] = max(widths[index], cell.count) }
    }
    let rightAligned: Set<Int> = [4, 5, 6, 7]
    func line(_ row: [String]) -> String {
        row.enumerated().map { index, cell in
            let pad = String(repeating: " ", count: widths[index] - cell.count)
            return rightAligned.contains(index) ? pad + cell : cell + pad
        }.joined(separator: "  ")
    }
    if markdown {
        var out = "| " + header.joined(separator: " | ") + " |\n"
        out += "|" + header.indices.map { rightAligned.contains($0) ? "---:|" : "---|" }.joined() + "\n"
        for row in rows.dropFirst() { out += "| " + row.joined(separator: " | ") + " |\n" }
        return out
    }
    var out = "vmm-bench: time per operation (ping-pong: per round trip); ratio = median / raw median.\n"
    out += "Cross-thread and cross-process cases: \(context.placementDescription)"
    out +=
        context.mainCPU != nil && context.mainCPU == context.peerCPU
        ? " (use --spread to put them on different CPUs).\n" : ".\n"
    out += line(rows[0]) + "\n"
    out += widths.map { String(repeating: "-", count: $0) }.joined(separator: "  ") + "\n"
    for row in rows.dropFirst() { out += line(row) + "\n" }
    for (benchCase, reason) in skipped {
        out += "skipped \(benchCase.identifier): \(reason)\n"
    }
    for result in results where result.rawNote != nil {
        out += "no raw twin for \(result.benchCase.identifier): \(result.rawNote ?? "")\n"
    }
    return out
}

/// `rows` (the first is the header) as a Markdown table, or as aligned text with a rule under the
/// header; the first column is left-aligned, the others (numbers) right-aligned.
func formatTable(_ rows: [[String]], markdown: Bool) -> String {
    guard let header = rows.first else { return "" }
    if markdown {
        var out =
            "| " + header.joined(separator: " | ") + " |\n|---|" + String(repeating: "---:|", count: header.count - 1)
            + "\n"
        for row in rows.dropFirst() { out += "| " + row.joined(separator: " | ") + " |\n" }
        return out
    }
    var widths = header.map { _ in 0 }
    for row in rows {
        for (i, cell) in row.enumerated() where i < widths.count { widths[i] = max(widths[i], cell.count) }
    }
    func line(_ row: [String]) -> String {
        row.enumerated().map { i, cell in
            let pad = String(repeating: " ", count: max(0, widths[min(i, widths.count - 1)] - cell.count))
            return i == 0 ? cell + pad : pad + cell
        }.joined(separator: "  ")
    }
    var out = line(header) + "\n" + widths.map { String(repeating: "-", count: $0) }.joined(separator: "  ") + "\n"
    for row in rows.dropFirst() { out += line(row) + "\n" }
    return out
}
