import PropertyBased
import Testing
import Virtio

/// Driver → device → driver round trips with random chains, both layouts.
@Suite struct RoundTripTests {
    static let features: VirtioFeatures = [.ringIndirectDescriptors, .ringEventIndex, .version1]

    @Test(arguments: RingLayout.allCases)
    func randomChainsRoundTrip(layout: RingLayout) async throws {
        await propertyCheck(
            count: 60,
            input: Gen.int(in: 1...3000).array(of: 1...8), Gen.int(in: 0...8), Gen.bool, Gen.int(in: 0...40)
        ) { lengths, splitPoint, indirect, startBack in
            // PropertyBased drops errors thrown by the body, so record them as issues explicitly.
            do {
                try roundTrip(
                    layout: layout, lengths: lengths, splitPoint: splitPoint, indirect: indirect,
                    start: UInt16(truncatingIfNeeded: 65536 - startBack))
            } catch {
                Issue.record(error, "lengths \(lengths) split \(splitPoint) indirect \(indirect) start -\(startBack)")
            }
        }
    }

    func roundTrip(
        layout: RingLayout, lengths: [Int], splitPoint: Int, indirect: Bool,
        start: UInt16
    ) throws {
        let memory = try standardMemory()
        let size = 16
        var device: any DeviceQueue & ~Copyable
        let driver: any DriverQueue
        switch layout {
        case .split:
            driver = try DriverSplitQueue(
                memory: memory, size: size, addresses: standardAddresses(),
                features: Self.features, startIndex: start)
            var queue = try SplitQueue(
                memory: memory, size: size, addresses: standardAddresses(), features: Self.features)
            try queue.setNextAvailIndex(UInt32(start))
            device = consume queue
        case .packed:
            driver = try DriverPackedQueue(
                memory: memory, size: size, addresses: standardAddresses(), features: Self.features)
            device = try PackedQueue(
                memory: memory, size: size, addresses: standardAddresses(), features: Self.features)
        }
        for round in 0..<12 {
            // Two chains per round (different data areas), completed in reverse order.
            var posted: [(id: UInt16, buffers: [DriverBuffer])] = []
            for copy in 0..<2 {
                let area = dataBase + UInt64(copy) * 0x20000
                let chain = lengths.enumerated().map { i, length in
                    DriverBuffer(address: area + UInt64(i) * 4096, length: UInt32(length), isWritable: i >= splitPoint)
                }
                for (i, buffer) in chain.enumerated() where !buffer.isWritable {
                    let bytes = (0..<Int(buffer.length)).map {
                        UInt8(truncatingIfNeeded: round &* 31 &+ i &+ copy &+ $0)
                    }
                    try bytes.withUnsafeBytes { try memory.write(guestPhysical: buffer.address, bytes: $0) }
                }
                let table: UInt64? = indirect ? memoryBase + 0xC000 + UInt64(copy) * 0x1000 : nil
                let id = try driver.post(chain, indirectTable: table)
                posted.append((id, chain))
            }
            var chains: [Chain] = []
            for expected in posted {
                let chain = try #require(try device.pop())
                #expect(chain.id == expected.id)
                #expect(try describe(chain, in: memory) == expected.buffers)
                let readable = expected.buffers.filter { !$0.isWritable }.reduce(0) { $0 + Int($1.length) }
                let writable = expected.buffers.filter(\.isWritable).reduce(0) { $0 + Int($1.length) }
                #expect(Int(chain.readableLength) == readable)
                #expect(Int(chain.writableLength) == writable)
                // The readable bytes come back in order across buffer boundaries.
                var expectedBytes: [UInt8] = []
                for buffer in expected.buffers where !buffer.isWritable {
                    expectedBytes += try readGuest(memory, buffer.address, Int(buffer.length))
                }
                var bytes = [UInt8](repeating: 0, count: readable + 5)
                let read = try bytes.withUnsafeMutableBytes { try chain.readReadable(into: $0) }
                #expect(read == readable)
                #expect(Array(bytes[0..<readable]) == expectedBytes)
                let pattern = (0..<writable).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ round) }
                let written = try pattern.withUnsafeBytes { try chain.writeWritable($0) }
                #expect(written == writable)
                chains.append(chain)
            }
            #expect(try device.pop()?.id == nil)
            for chain in chains.reversed() {
                try device.push(chain, written: chain.writableLength)
            }
            var reaped: [UsedBuffer] = []
            while let used = try driver.reap() { reaped.append(used) }
            #expect(reaped.map(\.id) == posted.reversed().map(\.id))
            for (used, chain) in zip(reaped, posted.reversed()) {
                let writable = chain.buffers.filter(\.isWritable)
                #expect(Int(used.length) == writable.reduce(0) { $0 + Int($1.length) })
                var received: [UInt8] = []
                for buffer in writable { received += try readGuest(memory, buffer.address, Int(buffer.length)) }
                #expect(received == (0..<received.count).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ round) })
            }
            #expect(driver.freeDescriptors == size)
        }
        #expect(device.brokenReason == nil)
    }
}
