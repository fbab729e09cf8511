import VirtioBlock
@testable import vmm_bench

extension BlkSession {
    /// `drive` for a test: a short load whose latency samples go to a scratch buffer freed after.
    func driveBriefly(
        _ kind: BlockRequestType, depth: Int, queues: Range<Int>, warmup: UInt64, duration: UInt64
    ) throws -> BlkLoadResult {
        let capacity = 1 << 16
        let samples = UnsafeMutablePointer<UInt32>.allocate(capacity: capacity)
        defer { samples.deallocate() }
        return try drive(
            kind, depth: depth, queues: queues, warmup: warmup, duration: duration, seed: 1, samples: samples,
            capacity: capacity
        ).0
    }
}
