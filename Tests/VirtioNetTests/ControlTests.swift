import Testing
import Virtio
import VirtioNet

@Suite struct ControlTests {
    static let controlFeatures =
        modern | NetFeature.controlQueue | NetFeature.controlReceiveMode
        | NetFeature.controlMACAddress | NetFeature.multiQueue

    func command(_ bytes: [UInt8]) -> ControlCommand? { bytes.withUnsafeBytes { ControlCommand($0) } }

    func table(_ macs: [MacAddress]) -> [UInt8] {
        var bytes = withUnsafeBytes(of: UInt32(macs.count).littleEndian) { Array($0) }
        for mac in macs { bytes += (0..<6).map { mac[$0] } }
        return bytes
    }

    @Test func parsesCommands() {
        #expect(command([0, 0, 1]) == .receiveMode(.promiscuous, on: true))
        #expect(command([0, 1, 0]) == .receiveMode(.allMulticast, on: false))
        #expect(command([0, 9, 1]) == .unsupported(class: 0, command: 9))
        #expect(command([0, 0]) == .malformed(class: 0, command: 0))
        #expect(command([0, 0, 1, 1]) == .malformed(class: 0, command: 0))
        #expect(command([1, 1] + (0..<6).map { macB[$0] }) == .macAddress(macB))
        #expect(command([1, 1, 1, 2, 3]) == .malformed(class: 1, command: 1))
        #expect(command([1, 0] + table([macA]) + table([])) == .macTable(unicast: [macA], multicast: []))
        // Entry counts that run past the data, trailing bytes, a missing second table.
        #expect(command([1, 0] + table([macA]) + table([]) + [0]) == .malformed(class: 1, command: 0))
        #expect(command([1, 0, 0xff, 0xff, 0xff, 0xff]) == .malformed(class: 1, command: 0))
        #expect(command([1, 0] + table([macA])) == .malformed(class: 1, command: 0))
        #expect(command([4, 0, 3, 0]) == .queuePairs(3))
        #expect(command([4, 0, 3]) == .malformed(class: 4, command: 0))
        #expect(command([4, 1]) == .unsupported(class: 4, command: 1))
        #expect(command([3, 0]) == .announceAck)
        #expect(command([200, 7]) == .unsupported(class: 200, command: 7))
        #expect(command([0]) == nil)
        #expect(command([]) == nil)
    }

    @Test func appliesOnlyNegotiatedCommandsInRange() {
        var state = NetControlState(mac: macA, maxQueuePairs: 4)
        #expect(state.apply(.queuePairs(4), features: Self.controlFeatures) == ControlCommand.ackOK)
        #expect(state.activeQueuePairs == 4)
        #expect(state.apply(.queuePairs(5), features: Self.controlFeatures) == ControlCommand.ackError)
        #expect(state.apply(.queuePairs(0), features: Self.controlFeatures) == ControlCommand.ackError)
        #expect(state.activeQueuePairs == 4)
        #expect(state.apply(.queuePairs(2), features: modern | NetFeature.controlQueue) == ControlCommand.ackError)
        // CTRL_RX_EXTRA is not negotiated: the extra modes are refused.
        #expect(
            state.apply(.receiveMode(.noBroadcast, on: true), features: Self.controlFeatures) == ControlCommand.ackError
        )
        #expect(
            state.apply(.receiveMode(.promiscuous, on: false), features: Self.controlFeatures) == ControlCommand.ackOK)
        #expect(
            state.apply(.macAddress(MacAddress.broadcast), features: Self.controlFeatures) == ControlCommand.ackError)
        #expect(state.apply(.macAddress(macB), features: Self.controlFeatures) == ControlCommand.ackOK)
        #expect(state.filter.mac == macB)
        // ANNOUNCE_ACK only with GUEST_ANNOUNCE (and the control queue) negotiated.
        #expect(state.apply(.announceAck, features: Self.controlFeatures) == ControlCommand.ackError)
        #expect(state.apply(.announceAck, features: ~0) == ControlCommand.ackOK)
        #expect(state.apply(.announceAck, features: NetFeature.guestAnnounce) == ControlCommand.ackError)
        #expect(state.apply(.unsupported(class: 9, command: 9), features: ~0) == ControlCommand.ackError)
        state.reset(mac: macA)
        #expect(state.activeQueuePairs == 1 && state.filter.mac == macA && state.filter.promiscuous)
    }

    @Test func receiveFilter() {
        var filter = ReceiveFilter(mac: macA)
        let multicast = MacAddress("01:00:5e:00:00:fb")!
        #expect(filter.accepts(macB))
        filter.set(.promiscuous, false)
        #expect(filter.accepts(macA) && !filter.accepts(macB))
        #expect(filter.accepts(.broadcast) && !filter.accepts(multicast))
        filter.setTables(unicast: [macB], multicast: [multicast])
        #expect(filter.accepts(macB) && filter.accepts(multicast))
        filter.setTables(unicast: (0..<65).map { MacAddress(rawValue: 0x0200 + UInt64($0) << 16) }, multicast: [])
        #expect(
            filter.unicastOverflow && filter.accepts(MacAddress("52:54:00:99:99:99")!) && !filter.accepts(multicast))
        filter.set(.allMulticast, true)
        #expect(filter.accepts(multicast))
        filter.set(.noBroadcast, true)
        #expect(!filter.accepts(.broadcast))
    }

    @Test(arguments: Layout.allCases)
    func answersChainsWithAck(layout: Layout) throws {
        let rig = try NetRig(layout: layout, features: Self.controlFeatures)
        var state = NetControlState(mac: macA, maxQueuePairs: 2)
        let scratch = UnsafeMutableRawBufferPointer.allocate(byteCount: ControlCommand.maximumLength, alignment: 8)
        defer { scratch.deallocate() }
        func answer() throws -> (UInt8?, UInt32) {
            let chain = try #require(try rig.device.pop())
            let result = try state.answer(chain, features: Self.controlFeatures, scratch: scratch)
            try rig.device.complete(chain, written: result.written)
            return result
        }
        // Header and data in separate descriptors, ack in a third.
        try rig.post(readable: [4, 0, 2, 0], readableSplit: [2, 2], writable: [1])
        #expect(try answer() == (ControlCommand.ackOK, 1))
        #expect(try rig.reap()?.bytes == [ControlCommand.ackOK])
        #expect(state.activeQueuePairs == 2)
        // Short, unknown, too long: answered ERR.
        for bad: [UInt8] in [[4], [7, 7, 7], [1, 0] + [UInt8](repeating: 0, count: ControlCommand.maximumLength)] {
            try rig.post(readable: bad, writable: [1])
            #expect(try answer() == (ControlCommand.ackError, 1))
            #expect(try rig.reap()?.bytes == [ControlCommand.ackError])
        }
        // No writable byte: nothing to answer with, completed empty.
        try rig.post(readable: [0, 0, 1])
        #expect(try answer() == (nil, 0))
        #expect(try rig.reap()?.bytes == [])
        // No readable bytes at all.
        try rig.post(writable: [4])
        #expect(try answer() == (ControlCommand.ackError, 1))
        #expect(try rig.reap()?.bytes == [ControlCommand.ackError])
        #expect(state.activeQueuePairs == 2)
    }
}
