import Testing
import Virtio
import VMMTestSupport

/// Chains the device holds while later chains complete before them (out of order), then reads and
/// writes: the chains pop cannot keep translated (a buffer across a region boundary, more buffers
/// than pop caches, a large indirect table) are walked again at that point. In a packed ring the
/// completions meanwhile write used descriptors into the held chain's ring slots and the driver
/// puts new chains there (VIRTIO 1.2 §2.8); a split ring's descriptor table stays the driver's
/// until the chain is used (§2.7), so both layouts must walk the held chain as it was popped.
@Suite struct HeldChainTests {
    static let size = 16
    static let regionB: UInt64 = 0x20_0000
    static let regionC: UInt64 = 0x22_0000
    static let regionSize = 0x2_0000
    static let features: VirtioFeatures = [.ringEventIndex, .ringIndirectDescriptors, .version1]

    enum Kind: String, CaseIterable, CustomTestStringConvertible {
        /// Two buffers, the writable one across the B/C boundary.
        case spanning
        /// Seven buffers in one region (more than pop keeps translated).
        case long
        /// One indirect descriptor whose table holds seven buffers.
        case indirect
        var testDescription: String { rawValue }
    }

    /// Guest memory with the rings at `memoryBase` and two adjacent data regions B and C.
    static func memory() throws -> GuestMemory {
        try makeMemory([(memoryBase, 1 << 20), (regionB, regionSize), (regionC, regionSize)])
    }

    /// The held chain's buffers: readable ones first (filled with a pattern), then writable ones.
    static func heldBuffers(_ kind: Kind) -> [DriverBuffer] {
        switch kind {
        case .spanning:
            return [
                DriverBuffer(address: regionB + 0x100, length: 24, isWritable: false),
                DriverBuffer(address: regionC - 100, length: 200, isWritable: true),
            ]
        case .long, .indirect:
            return (0..<7).map { i in
                DriverBuffer(address: regionB + 0x1000 + UInt64(i) * 0x100, length: 48, isWritable: i >= 3)
            }
        }
    }

    static func makeDevice(_ layout: RingLayout, memory: GuestMemory) throws -> any DeviceQueue & ~Copyable {
        switch layout {
        case .split:
            return try SplitQueue(memory: memory, size: size, addresses: standardAddresses(), features: features)
        case .packed:
            return try PackedQueue(
                memory: memory, size: size, addresses: standardAddresses(), features: features.union(.ringPacked))
        }
    }

    static func makeDriver(_ layout: RingLayout, memory: GuestMemory) throws -> any DriverQueue {
        switch layout {
        case .split:
            return try DriverSplitQueue(memory: memory, size: size, addresses: standardAddresses(), features: features)
        case .packed:
            return try DriverPackedQueue(
                memory: memory, size: size, addresses: standardAddresses(), features: features.union(.ringPacked))
        }
    }

    /// `buffers` as the device walks them (split at the B/C boundary).
    static func pieces(_ buffers: [DriverBuffer]) -> [DriverBuffer] { EdgeRoundTripTests().pieces(buffers) }

    /// Holds one chain while three ring laps of short chains complete (one or two at a time, the
    /// later one first, some with nothing written); then reads, writes and completes it.
    @Test(arguments: RingLayout.allCases, Kind.allCases)
    func heldChainSurvivesOutOfOrderCompletions(layout: RingLayout, kind: Kind) throws {
        let memory = try Self.memory()
        var device = try Self.makeDevice(layout, memory: memory)
        let driver = try Self.makeDriver(layout, memory: memory)
        let buffers = Self.heldBuffers(kind)
        let readable = buffers.filter { !$0.isWritable }
        let input = (0..<readable.reduce(0) { $0 + Int($1.length) }).map { UInt8(truncatingIfNeeded: $0 &* 13 &+ 5) }
        var offset = 0
        for buffer in readable {
            try Array(input[offset..<offset + Int(buffer.length)]).withUnsafeBytes {
                try memory.write(guestPhysical: buffer.address, bytes: $0)
            }
            offset += Int(buffer.length)
        }
        let heldID = try driver.post(buffers, indirectTable: kind == .indirect ? Self.regionB + 0x8000 : nil)
        let held = try #require(try device.pop())
        #expect(held.id == heldID)

        // Short chains, completed out of order around the held one; every third round two at a
        // time, the second first.
        for round in 0..<(3 * Self.size) {
            let count = round % 3 == 0 ? 2 : 1
            var chains: [Chain] = []
            for i in 0..<count {
                let address = Self.regionB + 0x1_0000 + UInt64(round * 2 + i) * 64
                _ = try driver.post([DriverBuffer(address: address, length: 64, isWritable: true)])
                chains.append(try #require(try device.pop()))
            }
            for chain in chains.reversed() {
                try device.push(chain, written: round % 2 == 0 ? 0 : 8)
                #expect(try driver.reap()?.id == chain.id)
            }
        }

        #expect(try describe(held, in: memory) == Self.pieces(buffers))
        var bytes = [UInt8](repeating: 0, count: input.count)
        #expect(try bytes.withUnsafeMutableBytes { try held.readReadable(into: $0) } == input.count)
        #expect(bytes == input)
        let output = (0..<Int(held.writableLength)).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ 1) }
        #expect(try output.withUnsafeBytes { try held.writeWritable($0) } == output.count)
        try device.push(held, written: held.writableLength)
        let used = try #require(try driver.reap())
        #expect(used.id == heldID && used.length == held.writableLength)
        var received: [UInt8] = []
        for buffer in buffers where buffer.isWritable {
            received += try readGuest(memory, buffer.address, Int(buffer.length))
        }
        #expect(received == output)
        #expect(device.brokenReason == nil)
    }

    /// Several held chains of each kind at once, completed in an order that interleaves them, so
    /// copies are taken and returned out of order and reused.
    @Test(arguments: RingLayout.allCases)
    func heldChainsReuseCopiesOutOfOrder(layout: RingLayout) throws {
        let memory = try Self.memory()
        var device = try Self.makeDevice(layout, memory: memory)
        let driver = try Self.makeDriver(layout, memory: memory)
        var held: [(chain: Chain, buffers: [DriverBuffer])] = []
        for round in 0..<12 {
            // Post what fits (a spanning, a long and an indirect chain take 2 + 7 + 1 slots).
            let kind = Kind.allCases[round % Kind.allCases.count]
            let buffers = Self.heldBuffers(kind).map { buffer in
                DriverBuffer(
                    address: buffer.address - UInt64(round % 4) * 16, length: buffer.length,
                    isWritable: buffer.isWritable)
            }
            let needed = kind == .indirect ? 1 : buffers.count
            while driver.freeDescriptors < needed {
                // Complete the oldest held chain but one (out of order), so slots free up.
                let index = held.count > 1 ? 1 : 0
                let (chain, _) = held.remove(at: index)
                try device.push(chain, written: 0)
                #expect(try driver.reap()?.id == chain.id)
                for (other, otherBuffers) in held {
                    #expect(try describe(other, in: memory) == Self.pieces(otherBuffers))
                }
            }
            let table = Self.regionB + 0x8000 + UInt64(round % 4) * 0x200
            let id = try driver.post(buffers, indirectTable: kind == .indirect ? table : nil)
            let chain = try #require(try device.pop())
            #expect(chain.id == id)
            held.append((chain, buffers))
        }
        for (chain, buffers) in held.reversed() {
            #expect(try describe(chain, in: memory) == Self.pieces(buffers))
            try device.push(chain, written: 0)
            #expect(try driver.reap()?.id == chain.id)
        }
        #expect(driver.freeDescriptors == Self.size)
        #expect(device.brokenReason == nil)
    }

    /// `ringDescriptors(of:)` (what vhost-user's inflight region records) gives the ring slots of a
    /// chain walked from a copy, as of a chain walked from the ring.
    @Test func ringDescriptorsOfACopiedChain() throws {
        let memory = try Self.memory()
        let features = Self.features.union(.ringPacked)
        let driver = try DriverPackedQueue(
            memory: memory, size: Self.size, addresses: standardAddresses(), features: features)
        var device = try PackedQueue(
            memory: memory, size: Self.size, addresses: standardAddresses(), features: features)
        _ = try driver.post([DriverBuffer(address: Self.regionB, length: 8, isWritable: true)])
        let short = try #require(try device.pop())
        let buffers = Self.heldBuffers(.long)
        _ = try driver.post(buffers)
        let long = try #require(try device.pop())
        #expect(device.ringDescriptors(of: short).count == 1)
        let descriptors = device.ringDescriptors(of: long)
        #expect(descriptors.count == buffers.count)
        for (index, buffer) in buffers.enumerated() {
            // Slot 1 onwards: the short chain took slot 0.
            let descriptor = descriptors.descriptor(index)
            #expect(descriptor == UnsafeRawPointer(memory.regions[0].mapping.base + (1 + index) * 16))
            #expect(UInt64(littleEndian: descriptor.loadUnaligned(as: UInt64.self)) == buffer.address)
        }
    }
}
