import Testing
@testable import vmm_bench

/// The slice plan of `vmm-bench blk`: every daemon takes every position in the order equally
/// often, so no daemon always runs right after another's writes.
@Suite("vmm-bench blk slice order")
struct BlkSlicesTests {
    @Test(arguments: [1, 2, 3, 4, 5])
    func everyDaemonTakesEveryPositionEquallyOften(daemons: Int) {
        let plan = BlkSlices(daemons: daemons)
        #expect(plan.count >= 3)
        #expect(plan.count % daemons == 0)
        var seen = [[Int]](repeating: [Int](repeating: 0, count: daemons), count: daemons)
        for slice in 0..<plan.count {
            let order = plan.order(slice: slice)
            #expect(order.sorted() == Array(0..<daemons), "slice \(slice) runs each daemon once")
            for (position, daemon) in order.enumerated() { seen[daemon][position] += 1 }
        }
        let each = plan.count / daemons
        #expect(seen.allSatisfy { $0.allSatisfy { $0 == each } }, "\(seen)")
    }

    @Test func theFewestSlicesThatAreAtLeastTheMinimum() {
        #expect(BlkSlices(daemons: 1).count == 3)
        #expect(BlkSlices(daemons: 2).count == 4)
        #expect(BlkSlices(daemons: 3).count == 3)
        #expect(BlkSlices(daemons: 4).count == 4)
        #expect(BlkSlices(daemons: 2, minimum: 6).count == 6)
        #expect(BlkSlices(daemons: 0).count == 3)
        #expect(BlkSlices(daemons: 2).order(slice: 1) == [1, 0])
    }
}
