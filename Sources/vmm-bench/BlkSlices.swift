// How a case of `vmm-bench blk` is cut into slices, and in which order the daemons run in each.

/// The slices of one case: how many, and which daemon runs when in each.
///
/// Every daemon reads or writes the same sectors in a slice, one after the other, so each finds
/// the disk (and any cache behind it) in the state the previous one left. A fixed order biased
/// the ratios: measured on `randwrite-4k/qd32/4q`, four sets of runs gave ours / qsd 1.02, 0.95,
/// 1.03 and 0.97x depending only on which daemon ran first. The order therefore rotates by one each slice, and
/// there are as many slices as it takes for each daemon to take each position equally often.
///
/// Thread-safety: a value type.
struct BlkSlices {
    /// Slices per case: the least multiple of `daemons` that is at least `minimum`.
    let count: Int
    /// Daemons measured in each slice.
    let daemons: Int

    /// The plan for `daemons` daemons (at least 1) and at least `minimum` slices.
    init(daemons: Int, minimum: Int = 3) {
        self.daemons = max(1, daemons)
        let rounds = (max(1, minimum) + self.daemons - 1) / self.daemons
        count = rounds * self.daemons
    }

    /// The daemons' indices in the order they run in `slice`: rotated by one per slice.
    func order(slice: Int) -> [Int] {
        (0..<daemons).map { (slice + $0) % daemons }
    }
}
