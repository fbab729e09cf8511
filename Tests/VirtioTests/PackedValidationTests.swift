import Testing
import Virtio

/// One corrupted packed ring per validation rule: the typed error, and the queue broken afterwards.
@Suite struct PackedValidationTests {
    let data = dataBase

    @Test func chainLongerThanQueue() throws {
        var rig = try PackedRig()
        for slot in 0..<UInt64(8) { try rig.descriptor(slot, addr: data, len: 16, flags: Flag.next) }
        let broken = rig.expectBroken(.chainTooLong(limit: 8))
        #expect(broken)
    }

    @Test func idOutOfRange() throws {
        var rig = try PackedRig()
        try rig.descriptor(0, addr: data, len: 16, flags: Flag.next, id: 0)
        try rig.descriptor(1, addr: data, len: 16, id: 8)
        let broken = rig.expectBroken(.bufferIDOutOfRange(id: 8, queueSize: 8))
        #expect(broken)
    }

    @Test func idStillInFlight() throws {
        var rig = try PackedRig()
        try rig.descriptor(0, addr: data, len: 16, id: 3)
        try rig.descriptor(1, addr: data, len: 16, id: 3)
        #expect(try rig.queue.pop()?.id == 3)
        let broken = rig.expectBroken(.bufferInUse(id: 3))
        #expect(broken)
    }

    /// A chain of one descriptor (pop's single-descriptor path) with an id past the queue.
    @Test func singleDescriptorIDOutOfRange() throws {
        var rig = try PackedRig()
        try rig.descriptor(0, addr: data, len: 16, flags: Flag.write, id: 8)
        let broken = rig.expectBroken(.bufferIDOutOfRange(id: 8, queueSize: 8))
        #expect(broken)
    }

    /// The single-descriptor path checks in the general walk's order: a bad buffer is reported
    /// before an id in flight, and a buffer outside memory before the id.
    @Test func singleDescriptorErrorOrder() throws {
        var rig = try PackedRig()
        try rig.descriptor(0, addr: data, len: 16, id: 3)
        try rig.descriptor(1, addr: data, len: 0, id: 3)
        #expect(try rig.queue.pop()?.id == 3)
        let broken = rig.expectBroken(.zeroLengthDescriptor)
        #expect(broken)
        var outside = try PackedRig()
        try outside.descriptor(0, addr: UInt64(1) << 40, len: 16, id: 9)
        let refused = outside.expectBroken(.bufferOutsideMemory(address: UInt64(1) << 40, length: 16))
        #expect(refused)
    }

    /// The driver reuses ring slots the device has not marked used: a chain of the whole ring is
    /// in flight (walked from a copy, being longer than pop keeps translated) and five of its
    /// slots come back as a new chain in the next lap.
    @Test func moreDescriptorsInFlightThanSlots() throws {
        var rig = try PackedRig()
        for slot in 0..<UInt64(8) {
            try rig.descriptor(slot, addr: data + slot * 64, len: 16, flags: slot < 7 ? Flag.next : 0, id: 0)
        }
        #expect(try rig.queue.pop()?.descriptorCount == 8)
        for slot in 0..<UInt64(5) {
            // Second lap: AVAIL = 0, USED = 1.
            try writePackedDescriptor(
                rig.memory, at: memoryBase + slot * 16, addr: data + 0x1000 + slot * 64, len: 16,
                flags: (slot < 4 ? Flag.next : 0) | PackedRig.used, id: 1)
        }
        let broken = rig.expectBroken(.tooManyDescriptorsInFlight(limit: 8))
        #expect(broken)
    }

    /// A held chain re-walked after the guest rewrote what it was popped from: ring descriptors
    /// are walked from the copy pop took (a rewrite changes nothing), an indirect table is read
    /// again from guest memory (a longer entry is refused).
    @Test func rewritesUnderAHeldChain() throws {
        var rig = try PackedRig()
        for slot in 0..<UInt64(5) {
            try rig.descriptor(slot, addr: data + slot * 64, len: 16, flags: slot < 4 ? Flag.next : 0, id: 0)
        }
        let table = data + 0x1000
        for entry in 0..<UInt64(5) {
            try writePackedDescriptor(rig.memory, at: table + entry * 16, addr: data + 0x2000, len: 8, flags: 0, id: 0)
        }
        try rig.descriptor(5, addr: table, len: 5 * 16, flags: Flag.indirect, id: 1)
        let direct = try #require(try rig.queue.pop())
        let indirect = try #require(try rig.queue.pop())
        try rig.descriptor(2, addr: data + 0x3000, len: 4096, flags: Flag.next, id: 0)
        try writePackedDescriptor(rig.memory, at: table + 32, addr: data + 0x2000, len: 4096, flags: 0, id: 0)
        #expect(try describe(direct, in: rig.memory).map(\.address) == (0..<5).map { data + UInt64($0) * 64 })
        #expect(throws: VirtqueueError.chainChanged) { try describe(indirect, in: rig.memory) }
    }

    @Test func nestedIndirect() throws {
        var rig = try PackedRig()
        let table = data + 0x1000
        try writePackedDescriptor(rig.memory, at: table, addr: table, len: 16, flags: Flag.indirect, id: 0)
        try rig.descriptor(0, addr: table, len: 16, flags: Flag.indirect)
        let broken = rig.expectBroken(.nestedIndirect)
        #expect(broken)
    }

    @Test(arguments: [UInt32(0), 8, 40, 33])
    func badIndirectLength(length: UInt32) throws {
        var rig = try PackedRig()
        try rig.descriptor(0, addr: data + 0x1000, len: length, flags: Flag.indirect)
        let broken = rig.expectBroken(.invalidIndirectLength(length))
        #expect(broken)
    }

    @Test func indirectWithNext() throws {
        var rig = try PackedRig()
        try rig.descriptor(0, addr: data + 0x1000, len: 16, flags: Flag.indirect | Flag.next)
        let broken = rig.expectBroken(.misplacedIndirect)
        #expect(broken)
    }

    @Test func indirectAfterPlainDescriptor() throws {
        var rig = try PackedRig()
        try writePackedDescriptor(rig.memory, at: data + 0x1000, addr: data, len: 8, flags: 0, id: 0)
        try rig.descriptor(0, addr: data, len: 16, flags: Flag.next)
        try rig.descriptor(1, addr: data + 0x1000, len: 16, flags: Flag.indirect)
        let broken = rig.expectBroken(.misplacedIndirect)
        #expect(broken)
    }

    @Test func indirectNotNegotiated() throws {
        var rig = try PackedRig(features: [.ringPacked])
        try rig.descriptor(0, addr: data + 0x1000, len: 16, flags: Flag.indirect)
        let broken = rig.expectBroken(.indirectNotNegotiated)
        #expect(broken)
    }

    @Test func indirectTableOutsideMemory() throws {
        var rig = try PackedRig()
        try rig.descriptor(0, addr: 0x4000_0000, len: 32, flags: Flag.indirect)
        let broken = rig.expectBroken(.bufferOutsideMemory(address: 0x4000_0000, length: 32))
        #expect(broken)
    }

    @Test func bufferInIndirectTableOutsideMemory() throws {
        var rig = try PackedRig()
        let table = data + 0x1000
        try writePackedDescriptor(rig.memory, at: table, addr: data, len: 8, flags: 0, id: 0)
        try writePackedDescriptor(rig.memory, at: table + 16, addr: 0x4000_0000, len: 8, flags: Flag.write, id: 0)
        try rig.descriptor(0, addr: table, len: 32, flags: Flag.indirect)
        let broken = rig.expectBroken(.bufferOutsideMemory(address: 0x4000_0000, length: 8))
        #expect(broken)
    }

    @Test func bufferOutsideMemory() throws {
        var rig = try PackedRig()
        let end = memoryBase + (1 << 20)
        try rig.descriptor(0, addr: end - 8, len: 16)
        let broken = rig.expectBroken(.bufferOutsideMemory(address: end - 8, length: 16))
        #expect(broken)
    }

    @Test func addressPlusLengthOverflows() throws {
        var rig = try PackedRig()
        try rig.descriptor(0, addr: UInt64.max, len: 1)
        let broken = rig.expectBroken(.addressOverflow(address: UInt64.max, length: 1))
        #expect(broken)
    }

    @Test func zeroLengthDescriptor() throws {
        var rig = try PackedRig()
        try rig.descriptor(0, addr: data, len: 0)
        let broken = rig.expectBroken(.zeroLengthDescriptor)
        #expect(broken)
    }

    @Test func readableAfterWritable() throws {
        var rig = try PackedRig()
        try rig.descriptor(0, addr: data, len: 16, flags: Flag.write | Flag.next)
        try rig.descriptor(1, addr: data, len: 16)
        let broken = rig.expectBroken(.readableAfterWritable)
        #expect(broken)
    }

    @Test func readableAfterWritableInsideIndirectTable() throws {
        var rig = try PackedRig()
        let table = data + 0x1000
        try writePackedDescriptor(rig.memory, at: table, addr: data, len: 8, flags: Flag.write, id: 0)
        try writePackedDescriptor(rig.memory, at: table + 16, addr: data, len: 8, flags: 0, id: 0)
        try rig.descriptor(0, addr: table, len: 32, flags: Flag.indirect)
        let broken = rig.expectBroken(.readableAfterWritable)
        #expect(broken)
    }

    @Test func unavailableSlotIsEmptyNotAnError() throws {
        var rig = try PackedRig()
        // Both bits set = used in lap 1: not available to the device.
        try writePackedDescriptor(
            rig.memory, at: memoryBase, addr: 0, len: 0, flags: PackedRig.avail | PackedRig.used, id: 99)
        #expect(try rig.queue.pop()?.id == nil)
        let broken = rig.queue.isBroken
        #expect(!broken)
    }

    @Test func ringsOutsideMemoryOrMisaligned() throws {
        let memory = try standardMemory()
        let good = standardAddresses()
        let end = memoryBase + (1 << 20)
        let cases: [(RingAddresses, VirtqueueError)] = [
            (
                RingAddresses(descriptorTable: end - 64, driverArea: good.driverArea, deviceArea: good.deviceArea),
                .ringOutsideMemory(.descriptorTable, address: end - 64, length: 128)
            ),
            (
                RingAddresses(descriptorTable: good.descriptorTable, driverArea: end, deviceArea: good.deviceArea),
                .ringOutsideMemory(.driverArea, address: end, length: 4)
            ),
            (
                RingAddresses(descriptorTable: good.descriptorTable, driverArea: good.driverArea, deviceArea: 0),
                .ringOutsideMemory(.deviceArea, address: 0, length: 4)
            ),
            (
                RingAddresses(
                    descriptorTable: good.descriptorTable + 4, driverArea: good.driverArea, deviceArea: good.deviceArea),
                .misalignedRing(.descriptorTable, address: good.descriptorTable + 4)
            ),
            (
                RingAddresses(
                    descriptorTable: good.descriptorTable, driverArea: good.driverArea + 2, deviceArea: good.deviceArea),
                .misalignedRing(.driverArea, address: good.driverArea + 2)
            ),
            (
                RingAddresses(
                    descriptorTable: good.descriptorTable, driverArea: good.driverArea, deviceArea: good.deviceArea + 1),
                .misalignedRing(.deviceArea, address: good.deviceArea + 1)
            ),
        ]
        for (addresses, error) in cases {
            #expect(throws: error) { _ = try PackedQueue(memory: memory, size: 8, addresses: addresses, features: []) }
        }
        for size in [0, 32769] {
            #expect(throws: VirtqueueError.invalidQueueSize(size)) {
                _ = try PackedQueue(memory: memory, size: size, addresses: good, features: [])
            }
        }
        // Packed sizes need not be powers of two.
        _ = try PackedQueue(memory: memory, size: 6, addresses: good, features: [])
    }

    @Test func ringBaseEncoding() throws {
        var rig = try PackedRig()
        #expect(rig.queue.nextAvailIndex == 0x8000_8000)
        try rig.queue.setNextAvailIndex(0x0005)  // slot 5, wrap 0; used follows avail
        #expect(rig.queue.nextAvailIndex == 0x0005_0005)
        try rig.queue.setNextAvailIndex(0x8003_0007)
        #expect(rig.queue.nextAvailIndex == 0x8003_0007)
        #expect(throws: VirtqueueError.invalidRingBase(0x8008)) { try rig.queue.setNextAvailIndex(0x8008) }
        #expect(throws: VirtqueueError.invalidRingBase(0x0009_0001)) { try rig.queue.setNextAvailIndex(0x0009_0001) }
    }

    @Test func pushRejectsDeviceMistakes() throws {
        var rig = try PackedRig()
        try rig.descriptor(0, addr: data, len: 4, flags: Flag.write, id: 5)
        let chain = try #require(try rig.queue.pop())
        #expect(throws: VirtqueueError.writtenExceedsWritable(written: 5, writable: 4)) {
            try rig.queue.push(chain, written: 5)
        }
        try rig.queue.push(chain, written: 4)
        #expect(throws: VirtqueueError.notInFlight(id: 5)) { try rig.queue.push(chain, written: 0) }
        // Used descriptor in slot 0: id 5, len 4, AVAIL|USED|WRITE.
        #expect(try rig.memory.load(UInt16.self, guestPhysical: memoryBase + 12) == 5)
        #expect(try rig.memory.load(UInt32.self, guestPhysical: memoryBase + 8) == 4)
        #expect(
            try rig.memory.load(UInt16.self, guestPhysical: memoryBase + 14) == PackedRig.avail | PackedRig.used
                | Flag.write)
    }
}
