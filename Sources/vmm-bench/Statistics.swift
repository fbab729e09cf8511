/// Samples of one implementation of one case, in nanoseconds per operation.
struct SampleSet {
    private(set) var values: [Double] = []

    init(capacity: Int) { values.reserveCapacity(capacity) }

    var isFull: Bool { values.count == values.capacity }
    var count: Int { values.count }

    mutating func append(_ value: Double) { values.append(value) }

    /// Median and 99th percentile (nearest rank), or nil with no samples.
    func summary() -> (median: Double, p99: Double)? {
        guard !values.isEmpty else { return nil }
        let sorted = values.sorted()
        func rank(_ q: Double) -> Double {
            let index = min(sorted.count - 1, max(0, Int((q * Double(sorted.count)).rounded(.up)) - 1))
            return sorted[index]
        }
        let mid = sorted.count / 2
        let median = sorted.count % 2 == 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2
        return (median, rank(0.99))
    }
}

/// Formats a duration in nanoseconds for the table: "812.3 ns" or "3.41 µs".
func formatDuration(_ ns: Double) -> String {
    if ns < 1000 { return formatFixed(ns, decimals: 1) + " ns" }
    if ns < 1_000_000 { return formatFixed(ns / 1000, decimals: 2) + " µs" }
    return formatFixed(ns / 1_000_000, decimals: 2) + " ms"
}

/// `value` with a fixed number of decimals, without Foundation.
func formatFixed(_ value: Double, decimals: Int) -> String {
    guard value.isFinite else { return "null" }
    var scale = 1.0
    for _ in 0..<decimals { scale *= 10 }
    let scaled = (abs(value) * scale).rounded()
    let whole = Int(scaled / scale)
    var text = (value < 0 && scaled != 0 ? "-" : "") + String(whole)
    if decimals > 0 {
        let fraction = Int(scaled - Double(whole) * scale)
        var digits = String(fraction)
        while digits.count < decimals { digits = "0" + digits }
        text += "." + digits
    }
    return text
}
