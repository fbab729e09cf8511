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
func renderTable(_ results: [CaseResult], skipped: [(BenchCase, String)], context: BenchContext, markdown: Bool = false) -> String {
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
    out += context.mainCPU != nil && context.mainCPU == context.peerCPU ? " (use --spread to put them on different CPUs).\n" : ".\n"
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

/// The JSON object: `{"placement":..,"cases":[{group,name,backend,unit,median,p99,raw_median,...}]}`.
func renderJSON(_ results: [CaseResult], skipped: [(BenchCase, String)], context: BenchContext) -> String {
    func string(_ text: String) -> String {
        var out = "\""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            default:
                if scalar.value < 0x20 {
                    let hex = String(scalar.value, radix: 16)
                    out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
                } else {
                    out.unicodeScalars.append(scalar)
                }
            }
        }
        return out + "\""
    }
    func number(_ value: Double?) -> String { value.map { formatFixed($0, decimals: 1) } ?? "null" }
    let cases = results.map { result in
        "{\"group\":\(string(result.benchCase.group)),\"name\":\(string(result.benchCase.name)),"
            + "\"backend\":\(string(result.benchCase.backend)),\"unit\":\"ns\","
            + "\"median\":\(number(result.median)),\"p99\":\(number(result.p99)),"
            + "\"raw_median\":\(number(result.rawMedian)),\"raw_p99\":\(number(result.rawP99)),"
            + "\"ratio\":\(result.ratio.map { formatFixed($0, decimals: 3) } ?? "null"),"
            + "\"placement\":\(string(result.placement)),\"samples\":\(result.samples)}"
    }
    let skippedCases = skipped.map { benchCase, reason in
        "{\"group\":\(string(benchCase.group)),\"name\":\(string(benchCase.name)),"
            + "\"backend\":\(string(benchCase.backend)),\"reason\":\(string(reason))}"
    }
    return "{\"placement\":\(string(context.placementDescription)),\"cases\":[" + cases.joined(separator: ",")
        + "],\"skipped\":[" + skippedCases.joined(separator: ",") + "]}"
}
