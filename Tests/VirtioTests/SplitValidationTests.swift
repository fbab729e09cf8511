import Testing
import Virtio

/// One corrupted split ring per validation rule: the typed error, and the queue broken afterwards.
@Suite struct SplitValidationTests {
    let data = dataBase

    @Test func loopInChain() throws {
        var rig = try SplitRig()
        try rig.descriptor(0, addr: data, len: 16, flags: Flag.next, next: 1)
        try rig.descriptor(1, addr: data, len: 16, flags: Flag.next, next: 0)
        try rig.publish(0)
        let broken = rig.expectBroken(.chainTooLong(limit: 8))
        #expect(broken)
    }

    @Test func loopInsideIndirectTable() throws {
        var rig = try SplitRig()
        let table = data + 0x1000
        try writeDescriptor(rig.memory, at: table, addr: data, len: 8, flags: Flag.next, next: 1)
        try writeDescriptor(rig.memory, at: table + 16, addr: data, len: 8, flags: Flag.next, next: 0)
        try rig.descriptor(0, addr: table, len: 32, flags: Flag.indirect)
        try rig.publish(0)
        let broken = rig.expectBroken(.chainTooLong(limit: 2))
        #expect(broken)
    }

    @Test func headIndexOutOfRange() throws {
        var rig = try SplitRig()
        try rig.publish(8)
        let broken = rig.expectBroken(.descriptorIndexOutOfRange(index: 8, limit: 8))
        #expect(broken)
    }

    @Test func nextIndexOutOfRange() throws {
        var rig = try SplitRig()
        try rig.descriptor(0, addr: data, len: 16, flags: Flag.next, next: 0xFFFF)
        try rig.publish(0)
        let broken = rig.expectBroken(.descriptorIndexOutOfRange(index: 0xFFFF, limit: 8))
        #expect(broken)
    }

    @Test func indirectNextOutOfTable() throws {
        var rig = try SplitRig()
        let table = data + 0x1000
        try writeDescriptor(rig.memory, at: table, addr: data, len: 8, flags: Flag.next, next: 2)
        try writeDescriptor(rig.memory, at: table + 16, addr: data, len: 8, flags: 0, next: 0)
        try rig.descriptor(0, addr: table, len: 32, flags: Flag.indirect)
        try rig.publish(0)
        let broken = rig.expectBroken(.descriptorIndexOutOfRange(index: 2, limit: 2))
        #expect(broken)
    }

    @Test func nestedIndirect() throws {
        var rig = try SplitRig()
        let table = data + 0x1000
        try writeDescriptor(rig.memory, at: table, addr: table, len: 16, flags: Flag.indirect, next: 0)
        try rig.descriptor(0, addr: table, len: 16, flags: Flag.indirect)
        try rig.publish(0)
        let broken = rig.expectBroken(.nestedIndirect)
        #expect(broken)
    }

    @Test(arguments: [UInt32(0), 8, 24, 17])
    func badIndirectLength(length: UInt32) throws {
        var rig = try SplitRig()
        try rig.descriptor(0, addr: data + 0x1000, len: length, flags: Flag.indirect)
        try rig.publish(0)
        let broken = rig.expectBroken(.invalidIndirectLength(length))
        #expect(broken)
    }

    @Test func indirectWithNext() throws {
        var rig = try SplitRig()
        try rig.descriptor(0, addr: data + 0x1000, len: 16, flags: Flag.indirect | Flag.next, next: 1)
        try rig.publish(0)
        let broken = rig.expectBroken(.misplacedIndirect)
        #expect(broken)
    }

    @Test func indirectNotNegotiated() throws {
        var rig = try SplitRig(features: [])
        try rig.descriptor(0, addr: data + 0x1000, len: 16, flags: Flag.indirect)
        try rig.publish(0)
        let broken = rig.expectBroken(.indirectNotNegotiated)
        #expect(broken)
    }

    @Test func indirectTableOutsideMemory() throws {
        var rig = try SplitRig()
        try rig.descriptor(0, addr: 0x4000_0000, len: 32, flags: Flag.indirect)
        try rig.publish(0)
        let broken = rig.expectBroken(.bufferOutsideMemory(address: 0x4000_0000, length: 32))
        #expect(broken)
    }

    @Test func bufferOutsideMemory() throws {
        var rig = try SplitRig()
        let end = memoryBase + (1 << 20)
        try rig.descriptor(0, addr: end - 8, len: 16)
        try rig.publish(0)
        let broken = rig.expectBroken(.bufferOutsideMemory(address: end - 8, length: 16))
        #expect(broken)
    }

    @Test func bufferBelowMemory() throws {
        var rig = try SplitRig()
        try rig.descriptor(0, addr: 0, len: 16)
        try rig.publish(0)
        let broken = rig.expectBroken(.bufferOutsideMemory(address: 0, length: 16))
        #expect(broken)
    }

    @Test func addressPlusLengthOverflows() throws {
        var rig = try SplitRig()
        try rig.descriptor(0, addr: UInt64.max - 3, len: 16)
        try rig.publish(0)
        let broken = rig.expectBroken(.addressOverflow(address: UInt64.max - 3, length: 16))
        #expect(broken)
    }

    @Test func zeroLengthDescriptor() throws {
        var rig = try SplitRig()
        try rig.descriptor(0, addr: data, len: 0)
        try rig.publish(0)
        let broken = rig.expectBroken(.zeroLengthDescriptor)
        #expect(broken)
    }

    @Test func availIndexTooFarAhead() throws {
        var rig = try SplitRig()
        try rig.memory.store(UInt16(9), guestPhysical: standardAddresses().driverArea + 2)
        let broken = rig.expectBroken(.availIndexTooFarAhead(availIndex: 9, nextAvail: 0, queueSize: 8))
        #expect(broken)
    }

    @Test func readableAfterWritable() throws {
        var rig = try SplitRig()
        try rig.descriptor(0, addr: data, len: 16, flags: Flag.write | Flag.next, next: 1)
        try rig.descriptor(1, addr: data + 16, len: 16)
        try rig.publish(0)
        let broken = rig.expectBroken(.readableAfterWritable)
        #expect(broken)
    }

    @Test func readableAfterWritableInsideIndirectTable() throws {
        var rig = try SplitRig()
        let table = data + 0x1000
        try writeDescriptor(rig.memory, at: table, addr: data, len: 8, flags: Flag.write | Flag.next, next: 1)
        try writeDescriptor(rig.memory, at: table + 16, addr: data, len: 8, flags: 0, next: 0)
        try rig.descriptor(0, addr: table, len: 32, flags: Flag.indirect)
        try rig.publish(0)
        let broken = rig.expectBroken(.readableAfterWritable)
        #expect(broken)
    }

    @Test func headStillInFlight() throws {
        var rig = try SplitRig()
        try rig.descriptor(0, addr: data, len: 16)
        try rig.publish(0)
        try rig.publish(0)
        #expect(try rig.queue.pop()?.id == 0)
        let broken = rig.expectBroken(.bufferInUse(id: 0))
        #expect(broken)
    }

    @Test func ringsOutsideMemoryOrMisaligned() throws {
        let memory = try standardMemory()
        let good = standardAddresses()
        let cases: [(RingAddresses, VirtqueueError)] = [
            (
                RingAddresses(descriptorTable: 0x100, driverArea: good.driverArea, deviceArea: good.deviceArea),
                .ringOutsideMemory(.descriptorTable, address: 0x100, length: 128)
            ),
            (
                RingAddresses(
                    descriptorTable: memoryBase + (1 << 20) - 64, driverArea: good.driverArea,
                    deviceArea: good.deviceArea),
                .ringOutsideMemory(.descriptorTable, address: memoryBase + (1 << 20) - 64, length: 128)
            ),
            (
                RingAddresses(
                    descriptorTable: good.descriptorTable, driverArea: memoryBase + (1 << 20) - 8,
                    deviceArea: good.deviceArea),
                .ringOutsideMemory(.driverArea, address: memoryBase + (1 << 20) - 8, length: 22)
            ),
            (
                RingAddresses(
                    descriptorTable: good.descriptorTable, driverArea: good.driverArea,
                    deviceArea: memoryBase + (1 << 20) - 32),
                .ringOutsideMemory(.deviceArea, address: memoryBase + (1 << 20) - 32, length: 70)
            ),
            (
                RingAddresses(
                    descriptorTable: good.descriptorTable + 8, driverArea: good.driverArea, deviceArea: good.deviceArea),
                .misalignedRing(.descriptorTable, address: good.descriptorTable + 8)
            ),
            (
                RingAddresses(
                    descriptorTable: good.descriptorTable, driverArea: good.driverArea + 1, deviceArea: good.deviceArea),
                .misalignedRing(.driverArea, address: good.driverArea + 1)
            ),
            (
                RingAddresses(
                    descriptorTable: good.descriptorTable, driverArea: good.driverArea, deviceArea: good.deviceArea + 2),
                .misalignedRing(.deviceArea, address: good.deviceArea + 2)
            ),
        ]
        for (addresses, error) in cases {
            #expect(throws: error) { _ = try SplitQueue(memory: memory, size: 8, addresses: addresses, features: []) }
        }
        for size in [0, 3, 6, 65536, 32768 * 2] {
            #expect(throws: VirtqueueError.invalidQueueSize(size)) {
                _ = try SplitQueue(memory: memory, size: size, addresses: good, features: [])
            }
        }
    }

    @Test func frontendAddressesTranslate() throws {
        let memory = try standardMemory()
        let good = standardAddresses()
        let user: UInt64 = 0x7f00_0000_0000
        let addresses = RingAddresses(
            descriptorTable: user + good.descriptorTable, driverArea: user + good.driverArea,
            deviceArea: user + good.deviceArea, space: .frontendUser)
        _ = try SplitQueue(memory: memory, size: 8, addresses: addresses, features: [])
        // Guest-physical values are not front-end addresses here.
        let wrongSpace = RingAddresses(
            descriptorTable: good.descriptorTable, driverArea: good.driverArea,
            deviceArea: good.deviceArea, space: .frontendUser)
        #expect(throws: VirtqueueError.ringOutsideMemory(.descriptorTable, address: good.descriptorTable, length: 128))
        {
            _ = try SplitQueue(memory: memory, size: 8, addresses: wrongSpace, features: [])
        }
    }

    @Test func pushRejectsDeviceMistakes() throws {
        var rig = try SplitRig()
        try rig.descriptor(0, addr: data, len: 16, flags: Flag.write)
        try rig.publish(0)
        let chain = try #require(try rig.queue.pop())
        #expect(throws: VirtqueueError.writtenExceedsWritable(written: 17, writable: 16)) {
            try rig.queue.push(chain, written: 17)
        }
        try rig.queue.push(chain, written: 16)
        #expect(throws: VirtqueueError.notInFlight(id: 0)) { try rig.queue.push(chain, written: 0) }
        #expect(try rig.memory.load(UInt16.self, guestPhysical: standardAddresses().deviceArea + 2) == 1)
        #expect(try rig.memory.load(UInt32.self, guestPhysical: standardAddresses().deviceArea + 8) == 16)
        let broken = rig.queue.isBroken
        #expect(!broken)
    }

    @Test func shortChainIteratesWhatPopValidated() throws {
        var rig = try SplitRig()
        try rig.descriptor(0, addr: data, len: 16)
        try rig.publish(0)
        let chain = try #require(try rig.queue.pop())
        try rig.descriptor(0, addr: UInt64.max - 1, len: 4096)  // rewritten after pop
        #expect(try describe(chain, in: rig.memory) == [DriverBuffer(address: data, length: 16, isWritable: false)])
    }

    @Test func longChainRewrittenAfterPopIsRefusedOnIteration() throws {
        var rig = try SplitRig()
        for i in 0..<UInt16(5) {
            try rig.descriptor(
                UInt64(i), addr: data + UInt64(i) * 64, len: 16, flags: i < 4 ? Flag.next : 0, next: i + 1)
        }
        try rig.publish(0)
        let chain = try #require(try rig.queue.pop())
        #expect(try describe(chain, in: rig.memory).count == 5)
        try rig.descriptor(4, addr: data, len: 4096)
        #expect(throws: VirtqueueError.chainChanged) { try describe(chain, in: rig.memory) }
        try rig.descriptor(4, addr: UInt64.max - 1, len: 16)
        #expect(throws: VirtqueueError.addressOverflow(address: UInt64.max - 1, length: 16)) {
            try describe(chain, in: rig.memory)
        }
        try rig.descriptor(4, addr: data, len: 16, flags: Flag.next, next: 0)
        // A loop: the bytes outgrow what pop saw.
        #expect(throws: VirtqueueError.chainChanged) { try describe(chain, in: rig.memory) }
    }

    @Test func ringBaseRoundTripsAndRejectsHighBits() throws {
        var rig = try SplitRig()
        try rig.queue.setNextAvailIndex(65534)
        #expect(rig.queue.nextAvailIndex == 65534)
        #expect(throws: VirtqueueError.invalidRingBase(0x1_0000)) { try rig.queue.setNextAvailIndex(0x1_0000) }
    }
}
