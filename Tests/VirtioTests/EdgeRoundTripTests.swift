import PropertyBased
import Testing
import Virtio
import VMMTestSupport

/// Driver → device → driver round trips at the edges: buffers laid out across two adjacent
/// regions (so some span the boundary) in guest memory of four regions, zero-length descriptors
/// (refused: the queue breaks),
/// completion in a random order with random written lengths, rings filled to the last slot, and
/// rings started anywhere: split near the 16-bit wrap, packed in any lap and wrap counter after
/// warm-up laps, and a packed device queue restarted from its vhost-user base mid-stream.
@Suite struct EdgeRoundTripTests {
    static let size = 16
    static let features: VirtioFeatures = [.ringEventIndex, .version1]
    /// Data regions: B and C are adjacent (one buffer may span both), D stands apart.
    static let regionB: UInt64 = 0x20_0000
    static let regionC: UInt64 = 0x22_0000
    static let regionD: UInt64 = 0x40_0000
    static let dataRegionSize = 0x2_0000

    @Test(arguments: RingLayout.allCases)
    func edgesRoundTrip(layout: RingLayout) async {
        await propertyCheck(
            count: 120,
            input: Gen.int(in: 1...2000).array(of: 1...4).array(of: 1...12), Gen.int(in: 0...40),
            Gen.int(in: 0...Int(Int32.max))
        ) { chains, warmUp, seed in
            do {
                try roundTrip(layout: layout, lengths: chains, warmUp: warmUp, seed: UInt64(seed))
            } catch {
                Issue.record(error, "chains \(chains) warm-up \(warmUp) seed \(seed)")
            }
        }
    }

    func roundTrip(layout: RingLayout, lengths: [[Int]], warmUp: Int, seed: UInt64) throws {
        var random = SplitMix(seed: seed)
        let memory = try makeMemory([
            (memoryBase, 1 << 20), (Self.regionB, Self.dataRegionSize),
            (Self.regionC, Self.dataRegionSize), (Self.regionD, 0x1_0000),
        ])
        var device: any DeviceQueue & ~Copyable
        let driver: any DriverQueue
        switch layout {
        case .split:
            // Near the wrap of the 16-bit indices.
            let start = UInt16(truncatingIfNeeded: 65536 - Int(random.next(below: 40)))
            driver = try DriverSplitQueue(
                memory: memory, size: Self.size, addresses: standardAddresses(),
                features: Self.features, startIndex: start)
            var queue = try SplitQueue(
                memory: memory, size: Self.size, addresses: standardAddresses(), features: Self.features)
            try queue.setNextAvailIndex(UInt32(start))
            device = consume queue
        case .packed:
            driver = try DriverPackedQueue(
                memory: memory, size: Self.size, addresses: standardAddresses(),
                features: Self.features.union(.ringPacked))
            let packed = try PackedQueue(
                memory: memory, size: Self.size, addresses: standardAddresses(),
                features: Self.features.union(.ringPacked))
            device = consume packed
        }
        // Warm-up laps: one-buffer round trips move both sides to any slot, lap and wrap counter.
        for _ in 0..<warmUp {
            let id = try driver.post([DriverBuffer(address: Self.regionD, length: 8, isWritable: true)])
            let chain = try #require(try device.pop())
            #expect(chain.id == id)
            try device.push(chain, written: 8)
            #expect(try driver.reap()?.id == id)
        }
        if layout == .packed && random.next(below: 2) == 0 {
            // A new back-end resumes from the old one's vhost-user base (GET/SET_VRING_BASE).
            var resumed = try PackedQueue(
                memory: memory, size: Self.size, addresses: standardAddresses(),
                features: Self.features.union(.ringPacked))
            try resumed.setNextAvailIndex(device.nextAvailIndex)
            device = consume resumed
        }

        // Lay the chains out back to back from just below the B/C boundary, so buffers span it.
        var cursor = Self.regionC - random.next(below: 0x4000) - 1
        var chains: [[DriverBuffer]] = []
        var zeroLengthChain: Int?
        if random.next(below: 6) == 0 {
            zeroLengthChain = Int(random.next(below: UInt64(lengths.count)))
        }
        for (index, chainLengths) in lengths.enumerated() {
            let splitPoint = Int(random.next(below: UInt64(chainLengths.count + 1)))
            var buffers: [DriverBuffer] = []
            for (i, length) in chainLengths.enumerated() {
                let zero = index == zeroLengthChain && i == chainLengths.count - 1
                buffers.append(
                    DriverBuffer(address: cursor, length: zero ? 0 : UInt32(length), isWritable: i >= splitPoint))
                cursor += UInt64(length) + random.next(below: 32)
            }
            chains.append(buffers)
        }
        // Post what fits; then, for some cases, one-buffer chains up to the ring's last slot.
        var posted: [(id: UInt16, buffers: [DriverBuffer])] = []
        for (index, buffers) in chains.enumerated() where driver.freeDescriptors >= buffers.count {
            for (i, buffer) in buffers.enumerated() where !buffer.isWritable {
                let bytes = (0..<Int(buffer.length)).map { UInt8(truncatingIfNeeded: index &* 31 &+ i &+ $0) }
                try bytes.withUnsafeBytes { try memory.write(guestPhysical: buffer.address, bytes: $0) }
            }
            posted.append((try driver.post(buffers), buffers))
        }
        if random.next(below: 2) == 0 {
            while driver.freeDescriptors > 0 {
                let filler = [
                    DriverBuffer(
                        address: Self.regionD + 0x100 + UInt64(posted.count) * 64, length: 64, isWritable: true)
                ]
                posted.append((try driver.post(filler), filler))
            }
            #expect(throws: DriverQueueError.queueFull) {
                _ = try driver.post([DriverBuffer(address: Self.regionD, length: 1, isWritable: true)])
            }
        }

        var popped: [(chain: Chain, buffers: [DriverBuffer])] = []
        for expected in posted {
            if expected.buffers.contains(where: { $0.length == 0 }) {
                // A zero-length descriptor breaks the queue; nothing of that chain is walked.
                #expect(throws: VirtqueueError.zeroLengthDescriptor) { _ = try device.pop() }
                #expect(device.brokenReason == .zeroLengthDescriptor)
                return
            }
            let chain = try #require(try device.pop())
            #expect(chain.id == expected.id)
            #expect(try describe(chain, in: memory) == pieces(expected.buffers))
            let readable = expected.buffers.filter { !$0.isWritable }.reduce(0) { $0 + Int($1.length) }
            let writable = expected.buffers.filter(\.isWritable).reduce(0) { $0 + Int($1.length) }
            #expect(Int(chain.readableLength) == readable && Int(chain.writableLength) == writable)
            var expectedBytes: [UInt8] = []
            for buffer in expected.buffers where !buffer.isWritable {
                expectedBytes += try readGuest(memory, buffer.address, Int(buffer.length))
            }
            var bytes = [UInt8](repeating: 0, count: readable)
            #expect(try bytes.withUnsafeMutableBytes { try chain.readReadable(into: $0) } == readable)
            #expect(bytes == expectedBytes)
            popped.append((chain, expected.buffers))
        }
        #expect(try device.pop() == nil)

        // Fill and complete the chains one by one in a random order (random written lengths): in
        // a packed ring each completion overwrites a ring slot that may hold a descriptor of a
        // chain still in flight, which must still be written as it was popped.
        var order = Array(popped.indices)
        for i in order.indices.reversed() { order.swapAt(i, Int(random.next(below: UInt64(i + 1)))) }
        var completions: [(id: UInt16, written: Int, buffers: [DriverBuffer])] = []
        for index in order {
            let (chain, buffers) = popped[index]
            let written = Int(random.next(below: UInt64(chain.writableLength) + 1))
            let pattern = (0..<written).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ index) }
            #expect(try pattern.withUnsafeBytes { try chain.writeWritable($0) } == written)
            try device.push(chain, written: UInt32(written))
            completions.append((chain.id, written, buffers))
        }
        for completion in completions {
            let used = try #require(try driver.reap())
            #expect(used.id == completion.id && Int(used.length) == completion.written)
            var received: [UInt8] = []
            for buffer in completion.buffers where buffer.isWritable {
                received += try readGuest(memory, buffer.address, Int(buffer.length))
            }
            let index = popped.firstIndex { $0.chain.id == completion.id } ?? 0
            #expect(
                Array(received.prefix(completion.written))
                    == (0..<completion.written).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ index) })
        }
        #expect(try driver.reap() == nil)
        #expect(driver.freeDescriptors == Self.size)
        #expect(device.brokenReason == nil)
    }

    /// A chain the device cannot keep translated (a buffer spans two regions) is walked again
    /// when it is written. In a packed ring the used element of an earlier completion goes into
    /// the next ring slot (VIRTIO 1.2 §2.8), which here held this chain's descriptor: the walk
    /// must use the descriptor as popped, not the used element (of length zero) now in its slot.
    @Test func packedChainIsWrittenAfterOutOfOrderCompletion() throws {
        let memory = try makeMemory([
            (memoryBase, 1 << 20), (Self.regionB, Self.dataRegionSize),
            (Self.regionC, Self.dataRegionSize),
        ])
        let features = Self.features.union(.ringPacked)
        let driver = try DriverPackedQueue(
            memory: memory, size: Self.size, addresses: standardAddresses(), features: features)
        var device = try PackedQueue(
            memory: memory, size: Self.size, addresses: standardAddresses(), features: features)
        let spanning = [DriverBuffer(address: Self.regionC - 100, length: 200, isWritable: true)]
        _ = try driver.post(spanning)
        _ = try driver.post([DriverBuffer(address: Self.regionB, length: 64, isWritable: true)])
        let first = try #require(try device.pop())
        let second = try #require(try device.pop())
        try device.push(second, written: 0)
        let bytes = [UInt8](repeating: 0xAB, count: 200)
        let written = try bytes.withUnsafeBytes { (raw) throws(VirtqueueError) in try first.writeWritable(raw) }
        #expect(written == 200)
        try device.push(first, written: 200)
        #expect(try readGuest(memory, Self.regionC - 100, 200) == bytes)
    }

    /// `buffers` as the device walks them: a buffer spanning the B/C boundary comes in two pieces.
    func pieces(_ buffers: [DriverBuffer]) -> [DriverBuffer] {
        buffers.flatMap { buffer -> [DriverBuffer] in
            let end = buffer.address + UInt64(buffer.length)
            guard buffer.address < Self.regionC, end > Self.regionC else { return [buffer] }
            return [
                DriverBuffer(
                    address: buffer.address, length: UInt32(Self.regionC - buffer.address),
                    isWritable: buffer.isWritable),
                DriverBuffer(address: Self.regionC, length: UInt32(end - Self.regionC), isWritable: buffer.isWritable),
            ]
        }
    }
}
