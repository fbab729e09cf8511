import Testing
import Virtio
import VMMSysUtil

/// `Chain.updateWritable`: the bytes end up in the chain's writable part exactly as
/// `writeWritable` puts them, but bytes the buffer already holds are not stored at all. The
/// "not stored" half is checked on a buffer the device sees through a read-only mapping: a store
/// there would fault.
@Suite struct UpdateWritableTests {
    /// Data through a read/write mapping, and the same pages again read-only.
    static let writableBase: UInt64 = 0x20_0000
    static let readOnlyBase: UInt64 = 0x30_0000
    static let dataSize = 0x1_0000
    /// A 12-byte virtio-net header: zero but for num_buffers = 1.
    static let header: [UInt8] = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0]

    /// Rings at `memoryBase`, a data region, and the same data mapped read-only at `readOnlyBase`.
    struct Rig: ~Copyable {
        let shared: SharedMemory
        let memory: GuestMemory
        let driver: any DriverQueue
        var device: any DeviceQueue & ~Copyable

        init(_ layout: RingLayout) throws {
            let shared = try SharedMemory(size: UpdateWritableTests.dataSize)
            let readOnly = try MemoryMapping(
                fd: shared.descriptor, size: UInt64(UpdateWritableTests.dataSize), writable: false)
            let memory = try GuestMemory(regions: [
                GuestMemoryRegion(guestPhysicalAddress: memoryBase, mapping: try makeMapping(size: 1 << 20)),
                GuestMemoryRegion(guestPhysicalAddress: UpdateWritableTests.writableBase, mapping: shared.mapping),
                GuestMemoryRegion(guestPhysicalAddress: UpdateWritableTests.readOnlyBase, mapping: readOnly),
            ])
            // Every throwing step first: a non-copyable value is initialized all at once.
            let driver = try HeldChainTests.makeDriver(layout, memory: memory)
            let device = try HeldChainTests.makeDevice(layout, memory: memory)
            self.shared = shared
            self.memory = memory
            self.driver = driver
            self.device = device
        }

        /// Posts `buffers` and pops them as one chain.
        mutating func chain(_ buffers: [DriverBuffer]) throws -> Chain {
            _ = try driver.post(buffers)
            return try #require(try device.pop())
        }

        /// The data bytes at guest address `address` (either alias).
        func bytes(_ address: UInt64, _ count: Int) throws -> [UInt8] { try readGuest(memory, address, count) }

        /// Fills the data at offset `offset` (through the writable mapping).
        func fill(_ offset: Int, with bytes: [UInt8]) {
            UnsafeMutableRawBufferPointer(rebasing: shared.mapping.bytes[offset..<offset + bytes.count])
                .copyBytes(from: bytes)
        }
    }

    static func update(_ chain: Chain, _ bytes: [UInt8]) throws -> Int {
        try bytes.withUnsafeBytes { (raw) throws(VirtqueueError) in try chain.updateWritable(raw) }
    }

    /// A buffer holding the header already: nothing is stored (the buffer is read-only to the
    /// device), all of it counts as written. 10- and 16-byte runs too (the two loads overlap).
    @Test(arguments: RingLayout.allCases, [10, 12, 16])
    func unchangedBytesAreNotStored(layout: RingLayout, count: Int) throws {
        var rig = try Rig(layout)
        let bytes = (0..<count).map { UInt8($0 &* 3 &+ 1) }
        rig.fill(0x100, with: bytes + [0x55])
        let chain = try rig.chain([
            DriverBuffer(address: Self.readOnlyBase + 0x100, length: 64, isWritable: true)
        ])
        #expect(try Self.update(chain, bytes) == count)
        #expect(try rig.bytes(Self.readOnlyBase + 0x100, count + 1) == bytes + [0x55])
    }

    /// A buffer holding other bytes (the first word or only the last one differs): all of them
    /// are stored, nothing past them.
    @Test(arguments: RingLayout.allCases, [0, 11])
    func changedBytesAreStored(layout: RingLayout, differingByte: Int) throws {
        var rig = try Rig(layout)
        var old = Self.header
        old[differingByte] ^= 0xff
        rig.fill(0x200, with: old + [0x55])
        let chain = try rig.chain([DriverBuffer(address: Self.writableBase + 0x200, length: 64, isWritable: true)])
        #expect(try Self.update(chain, Self.header) == 12)
        #expect(try rig.bytes(Self.writableBase + 0x200, 13) == Self.header + [0x55])
    }

    /// A first writable buffer shorter than the bytes, readable buffers first, or a chain with
    /// less room than the bytes: written as `writeWritable` writes them.
    @Test(arguments: RingLayout.allCases)
    func otherShapesAreWrittenAsWriteWritable(layout: RingLayout) throws {
        var rig = try Rig(layout)
        let bytes = (0..<12).map { UInt8(0xA0 + $0) }
        let split = try rig.chain([
            DriverBuffer(address: Self.writableBase + 0x300, length: 8, isWritable: true),
            DriverBuffer(address: Self.writableBase + 0x400, length: 64, isWritable: true),
        ])
        #expect(try Self.update(split, bytes) == 12)
        #expect(try rig.bytes(Self.writableBase + 0x300, 8) == Array(bytes[..<8]))
        #expect(try rig.bytes(Self.writableBase + 0x400, 4) == Array(bytes[8...]))

        let readableFirst = try rig.chain([
            DriverBuffer(address: Self.writableBase + 0x500, length: 16, isWritable: false),
            DriverBuffer(address: Self.writableBase + 0x600, length: 64, isWritable: true),
        ])
        #expect(try Self.update(readableFirst, bytes) == 12)
        #expect(try rig.bytes(Self.writableBase + 0x600, 12) == bytes)

        let short = try rig.chain([DriverBuffer(address: Self.writableBase + 0x700, length: 10, isWritable: true)])
        #expect(try Self.update(short, bytes) == 10)
        #expect(try rig.bytes(Self.writableBase + 0x700, 10) == Array(bytes[..<10]))

        let few = (0..<4).map { UInt8(0xC0 + $0) }
        let small = try rig.chain([DriverBuffer(address: Self.writableBase + 0x800, length: 64, isWritable: true)])
        #expect(try Self.update(small, few) == 4)
        #expect(try rig.bytes(Self.writableBase + 0x800, 4) == few)
    }

    /// The receive-buffer hint reads and writes nothing: the chain's buffer (read-only to the
    /// device here) keeps its bytes, whatever the offsets.
    @Test(arguments: RingLayout.allCases)
    func receivePrefetchTouchesNothing(layout: RingLayout) throws {
        var rig = try Rig(layout)
        let pattern = (0..<200).map { UInt8(truncatingIfNeeded: $0) }
        rig.fill(0x900 - 12, with: pattern)
        let chain = try rig.chain([
            DriverBuffer(address: Self.readOnlyBase + 0x900 - 12, length: 200, isWritable: true)
        ])
        for (header, frame) in [(12, 64), (0, 1), (12, 256), (500, 64), (-1, -1), (12, 10_000)] {
            chain.prefetch(header: header, frame: frame)
        }
        #expect(try rig.bytes(Self.readOnlyBase + 0x900 - 12, 200) == pattern)
    }
}
