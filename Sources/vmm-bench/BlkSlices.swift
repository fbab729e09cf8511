// How a case of `vmm-bench blk` is cut into slices, and in which order the daemons run in each.

/// The slices of one case: how many, and which daemon runs when in each.
///
/// Every daemon reads or writes the same sectors in a slice, one after the other. On a disk
/// behind a host cache the daemon that runs second finds the first one's writes still cached, or
/// still being written back, so a fixed order biases the ratios: measured on
/// `randwrite-4k/qd32/4q`, four sets of runs gave ours / qsd 1.02, 0.95, 1.03 and 0.97x
/// depending only on which daemon ran first. The order therefore rotates by one each slice, and
/// there are as many slices as it takes for each daemon to take each position equally often.
///
/// Thread-safety: a value type.
struct BlkSlices: Equatable {
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
