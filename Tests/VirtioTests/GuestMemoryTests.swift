import Testing
import Virtio

@Suite struct GuestMemoryTests {
    @Test func translatesInsideRegionsOnly() throws {
        let memory = try makeMemory([(0x1000, 0x2000), (0x10000, 0x1000)])
        let region = memory.regions[0]
        #expect(memory.pointer(guestPhysical: 0x1000, length: 0x2000) == region.mapping.base)
        #expect(memory.pointer(guestPhysical: 0x2fff, length: 1) == region.mapping.base + 0x1fff)
        #expect(memory.pointer(guestPhysical: 0x2fff, length: 2) == nil)
        #expect(memory.pointer(guestPhysical: 0xfff, length: 1) == nil)
        #expect(memory.pointer(guestPhysical: 0x3000, length: 1) == nil)
        #expect(memory.pointer(guestPhysical: UInt64.max, length: 2) == nil)
        #expect(!memory.contains(guestPhysical: 0x2000, length: 0x1001))
        #expect(!memory.contains(guestPhysical: 0x1000, length: 0))
        #expect(!memory.contains(guestPhysical: UInt64.max - 1, length: 4))
        #expect(memory.contains(guestPhysical: 0x10000, length: 0x1000))
        // Front-end addresses translate through their own key.
        #expect(
            memory.pointer(userAddress: 0x7f00_0000_0000 + 0x10010, length: 16) == memory.regions[1].mapping.base + 0x10
        )
        #expect(memory.pointer(userAddress: 0x10010, length: 16) == nil)
        #expect(memory.guestPhysicalAddress(userAddress: 0x7f00_0000_0000 + 0x1234) == 0x1234)
    }

    @Test func regionsAreSortedAndValidated() throws {
        let memory = try makeMemory([(0x10000, 0x1000), (0x1000, 0x1000)])
        #expect(memory.regions.map(\.guestPhysicalAddress) == [0x1000, 0x10000])
        let mapping = try makeMapping(size: 0x1000)
        #expect(throws: GuestMemoryError.overlappingRegions(first: 0x1000, second: 0x1800)) {
            try GuestMemory(regions: [
                GuestMemoryRegion(guestPhysicalAddress: 0x1000, mapping: mapping),
                GuestMemoryRegion(guestPhysicalAddress: 0x1800, size: 0x800, userAddress: 0x100000, mapping: mapping),
            ])
        }
        #expect(throws: GuestMemoryError.overlappingRegions(first: 0x1000, second: 0x8000)) {
            try GuestMemory(regions: [
                GuestMemoryRegion(guestPhysicalAddress: 0x1000, size: 0x1000, userAddress: 0x5000, mapping: mapping),
                GuestMemoryRegion(guestPhysicalAddress: 0x8000, size: 0x1000, userAddress: 0x5800, mapping: mapping),
            ])
        }
        #expect(throws: GuestMemoryError.emptyRegion(guestPhysicalAddress: 0)) {
            try GuestMemory(regions: [
                GuestMemoryRegion(guestPhysicalAddress: 0, size: 0, userAddress: 0, mapping: mapping)
            ])
        }
        #expect(throws: GuestMemoryError.regionOverflow(address: UInt64.max - 0xff, size: 0x1000)) {
            try GuestMemory(regions: [
                GuestMemoryRegion(
                    guestPhysicalAddress: UInt64.max - 0xff, size: 0x1000,
                    userAddress: 0, mapping: mapping)
            ])
        }
        #expect(throws: GuestMemoryError.mappingTooSmall(guestPhysicalAddress: 0, size: 0x2000, mappingSize: 0x1000)) {
            try GuestMemory(regions: [
                GuestMemoryRegion(guestPhysicalAddress: 0, size: 0x2000, userAddress: 0, mapping: mapping)
            ])
        }
    }

    @Test func copiesAcrossAdjacentRegionsAndRefusesGaps() throws {
        let memory = try makeMemory([(0x1000, 0x1000), (0x2000, 0x1000), (0x4000, 0x1000)])
        let bytes: [UInt8] = Array(0..<32)
        try bytes.withUnsafeBytes { try memory.write(guestPhysical: 0x1ff0, bytes: $0) }
        #expect(try readGuest(memory, 0x1ff0, 32) == bytes)
        // Each half landed in its own mapping.
        #expect(memory.regions[0].mapping.base.load(fromByteOffset: 0xff0, as: UInt8.self) == 0)
        #expect(memory.regions[1].mapping.base.load(fromByteOffset: 0xf, as: UInt8.self) == 31)
        #expect(try memory.load(UInt32.self, guestPhysical: 0x1ffe) == 0x1110_0f0e)
        #expect(throws: GuestMemoryError.outsideMemory(address: 0x2ff0, length: 32)) {
            try bytes.withUnsafeBytes { try memory.write(guestPhysical: 0x2ff0, bytes: $0) }
        }
        #expect(!memory.contains(guestPhysical: 0x2fff, length: 2))
    }

    @Test(arguments: RingLayout.allCases)
    func chainBufferCrossingAdjacentRegions(layout: RingLayout) throws {
        // Rings in the first region; one buffer runs from the first region into the second, and the
        // indirect table (second pass) straddles the boundary between the second and the third.
        let memory = try makeMemory([
            (memoryBase, 0x10000), (memoryBase + 0x10000, 0x10000), (memoryBase + 0x20000, 0x1000),
        ])
        let buffer = DriverBuffer(address: memoryBase + 0x10000 - 100, length: 300, isWritable: false)
        let table = memoryBase + 0x20000 - 8
        for indirect in [false, true] {
            var device = try makeDevice(layout, memory)
            let driver = try makeDriver(layout, memory)
            let payload = (0..<300).map { UInt8(truncatingIfNeeded: $0 * 3) }
            try payload.withUnsafeBytes { try memory.write(guestPhysical: buffer.address, bytes: $0) }
            let id = try driver.post([buffer], indirectTable: indirect ? table : nil)
            let chain = try #require(try device.pop())
            #expect(chain.id == id)
            #expect(
                try describe(chain, in: memory) == [
                    DriverBuffer(address: buffer.address, length: 100, isWritable: false),
                    DriverBuffer(address: memoryBase + 0x10000, length: 200, isWritable: false),
                ])
            var read = [UInt8](repeating: 0, count: 300)
            #expect(try read.withUnsafeMutableBytes { try chain.readReadable(into: $0) } == 300)
            #expect(read == payload)
            var tail = [UInt8](repeating: 0, count: 10)
            #expect(try tail.withUnsafeMutableBytes { try chain.readReadable(into: $0, fromOffset: 95) } == 10)
            #expect(tail == Array(payload[95..<105]))
            try device.push(chain, written: 0)
            #expect(try driver.reap()?.id == id)
        }
    }

    @Test(arguments: RingLayout.allCases)
    func chainBufferAcrossAGapIsRefused(layout: RingLayout) throws {
        let memory = try makeMemory([(memoryBase, 0x10000), (memoryBase + 0x11000, 0x10000)])
        var device = try makeDevice(layout, memory)
        let driver = try makeDriver(layout, memory)
        let address = memoryBase + 0x10000 - 100
        try driver.post(
            [DriverBuffer(address: address, length: 300, isWritable: true)],
            indirectTable: nil)
        #expect(throws: VirtqueueError.bufferOutsideMemory(address: address, length: 300)) { try device.pop() }
        #expect(device.brokenReason == .bufferOutsideMemory(address: address, length: 300))
    }

    func makeDevice(_ layout: RingLayout, _ memory: GuestMemory) throws -> any DeviceQueue & ~Copyable {
        let features: VirtioFeatures = [.ringIndirectDescriptors]
        switch layout {
        case .split: return try SplitQueue(memory: memory, size: 8, addresses: standardAddresses(), features: features)
        case .packed:
            return try PackedQueue(memory: memory, size: 8, addresses: standardAddresses(), features: features)
        }
    }

    func makeDriver(_ layout: RingLayout, _ memory: GuestMemory) throws -> any DriverQueue {
        let features: VirtioFeatures = [.ringIndirectDescriptors]
        switch layout {
        case .split:
            return try DriverSplitQueue(memory: memory, size: 8, addresses: standardAddresses(), features: features)
        case .packed:
            return try DriverPackedQueue(memory: memory, size: 8, addresses: standardAddresses(), features: features)
        }
    }
}
