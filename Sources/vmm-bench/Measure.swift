import VMMBenchCases

/// Figures for one case: the package's median and p99, the raw twin's median.
struct CaseResult {
    let benchCase: BenchCase
    let placement: String
    let median: Double
    let p99: Double
    let samples: Int
    let rawMedian: Double?
    let rawP99: Double?
    let rawNote: String?

    var ratio: Double? { rawMedian.map { median / $0 } }
}

/// Runs one case: warm-up, then rounds that alternate the package runner and its raw twin, so
/// both see the same machine noise. `budget` is the total measuring time in nanoseconds.
func measure(_ benchCase: BenchCase, context: BenchContext, budget: UInt64) throws -> CaseResult {
    let ours = try benchCase.make(.ours, context)
    defer { ours.tearDown() }
    var raw: (any BenchRunner)?
    var rawNote: String?
    do {
        raw = try benchCase.make(.raw, context)
    } catch let skipped as BenchSkipped {
        rawNote = skipped.reason
    }
    defer { raw?.tearDown() }

    let rounds = 6
    let perSlice = budget / UInt64(2 * rounds)
    let capacity = 400_000
    var oursSamples = SampleSet(capacity: capacity)
    var rawSamples = SampleSet(capacity: capacity)
    var scratch = SampleSet(capacity: capacity)

    // Warm-up: page in code and data, let the peer reach its loop, settle the scheduler.
    try sample(ours, batch: benchCase.batch, for: perSlice / 2, into: &scratch)
    if let raw { try sample(raw, batch: benchCase.batch, for: perSlice / 2, into: &scratch) }

    for _ in 0..<rounds {
        try sample(ours, batch: benchCase.batch, for: perSlice, into: &oursSamples)
        if let raw { try sample(raw, batch: benchCase.batch, for: perSlice, into: &rawSamples) }
    }
    guard let mine = oursSamples.summary() else { throw BenchSkipped("no samples") }
    let twin = rawSamples.summary()
    return CaseResult(
        benchCase: benchCase, placement: benchCase.usesPlacement ? context.placementDescription : "-",
        median: mine.median, p99: mine.p99, samples: oursSamples.count,
        rawMedian: twin?.median, rawP99: twin?.p99, rawNote: rawNote)
}

/// Times batches of `batch` operations for `duration` ns (at least one batch).
private func sample(_ runner: any BenchRunner, batch: Int, for duration: UInt64, into samples: inout SampleSet) throws {
    let end = monotonicNanoseconds() &+ duration
    let divisor = Double(batch)
    repeat {
        let start = monotonicNanoseconds()
        try runner.run(batch)
        let stop = monotonicNanoseconds()
        if samples.isFull { break }
        samples.append(Double(stop &- start) / divisor)
        if stop >= end { break }
    } while true
}
