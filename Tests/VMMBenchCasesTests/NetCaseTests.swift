import Testing
@testable import vmm_bench

/// `vmm-bench net`'s cases: the devargs each hands to testpmd's virtio_user, and `--in-order`.
@Suite("vmm-bench net cases")
struct NetCaseTests {
    @Test func defaultCasesLeaveInOrderToTheFrontEnd() {
        let cases = NetCase.all()
        #expect(cases.count == 8)
        #expect(Set(cases.map(\.name)).count == 8)
        #expect(cases.allSatisfy { !$0.devargs.contains("in_order") && !$0.name.contains("in_order") })
        let packedNoMerge = cases.first { $0.direction == "rx" && $0.packed && !$0.mergeable }
        #expect(packedNoMerge?.devargs == "packed_vq=1,mrg_rxbuf=0")
        #expect(cases.first { $0.direction == "tx" && !$0.packed && $0.mergeable }?.devargs == "")
    }

    @Test func inOrderOffReachesEveryCaseAndItsName() {
        let cases = NetCase.all(inOrder: false)
        #expect(cases.count == 8)
        #expect(cases.allSatisfy { $0.devargs.hasSuffix("in_order=0") && $0.name.hasSuffix("/in_order=0") })
        #expect(cases.first { $0.direction == "rx" && !$0.packed && $0.mergeable }?.devargs == "in_order=0")
        // The usual filters still select them.
        #expect(cases.filter { $0.name.contains("rx/packed/mrg") }.count == 1)
    }

    @Test func commandParsesInOrder() throws {
        #expect(try NetCommand.parse([]).inOrder == .on)
        #expect(try NetCommand.parse(["--in-order", "off"]).inOrder == .off)
        #expect(throws: (any Error).self) { try NetCommand.parse(["--in-order", "sometimes"]) }
    }
}
