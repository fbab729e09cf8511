import PropertyBased
import Testing
import Virtio
import VMMTestSupport

/// Random (mostly invalid) descriptor tables: pop either throws a typed error (and the queue is
/// broken) or returns chains whose every piece lies inside guest memory.
@Suite struct HostileRingTests {
    static let addresses: [UInt64] = [
        dataBase, dataBase + 0x100, memoryBase, memoryBase + (1 << 20) - 16, memoryBase + (1 << 20) - 1,
        memoryBase + (1 << 20), 0, UInt64.max - 8, dataBase + 0x2000,
    ]
    static let lengths: [UInt32] = [0, 1, 16, 32, 48, 4096, 0xFFFF_FFFF, 17]

    @Test(arguments: RingLayout.allCases)
    func randomRingsNeverEscapeMemory(layout: RingLayout) async {
        // Address: one of the table's edges (0...8) or random (9...11, from the seed); length;
        // flags (bit 3, packed: available in this lap or not); next / id.
        let descriptor = zip(Gen.int(in: 0...11), Gen.int(in: 0...7), Gen.int(in: 0...15), Gen.int(in: 0...15))
        await propertyCheck(
            count: 300, input: descriptor.array(of: 8), Gen.int(in: 0...15).array(of: 8), Gen.int(in: 0...12),
            Gen.int(in: 0...Int(Int32.max))
        ) { table, heads, availIndex, seed in
            do {
                try check(
                    layout: layout, table: table, heads: heads, availIndex: UInt16(availIndex), seed: UInt64(seed))
            } catch {
                Issue.record(error, "table \(table) heads \(heads) avail \(availIndex) seed \(seed)")
            }
        }
    }

    func check(
        layout: RingLayout, table: [(Int, Int, Int, Int)], heads: [Int], availIndex: UInt16,
        seed: UInt64
    ) throws {
        var random = SplitMix(seed: seed)
        let memory = try standardMemory()
        let features: VirtioFeatures = [.ringIndirectDescriptors, .ringEventIndex]
        func address(_ choice: Int) -> UInt64 {
            choice < Self.addresses.count
                ? Self.addresses[choice]
                : memoryBase &+ random.next(below: 1 << 21) &- (1 << 19)  // around and across the region's ends
        }
        var queue: any DeviceQueue & ~Copyable
        switch layout {
        case .split:
            var split = try SplitQueue(memory: memory, size: 8, addresses: standardAddresses(), features: features)
            // Any start: the avail index the driver has published is counted from there.
            let start = UInt16(truncatingIfNeeded: random.next())
            try split.setNextAvailIndex(UInt32(start))
            queue = consume split
            for (i, (a, l, f, n)) in table.enumerated() {
                try writeDescriptor(
                    memory, at: memoryBase + UInt64(i) * 16, addr: address(a),
                    len: Self.lengths[l], flags: UInt16(f & 7), next: UInt16(n))
            }
            for (i, head) in heads.enumerated() {
                try memory.store(
                    UInt16(head), guestPhysical: standardAddresses().driverArea + 4 + UInt64((Int(start) + i) % 8) * 2)
            }
            try memory.store(start &+ availIndex, guestPhysical: standardAddresses().driverArea + 2)
        case .packed:
            var packed = try PackedQueue(
                memory: memory, size: 8, addresses: standardAddresses(), features: features.union(.ringPacked))
            // Any slot, any lap: the driver's wrap counter there decides what "available" means.
            let slot = UInt32(random.next(below: 8))
            let wrap = random.next(below: 2) == 1
            try packed.setNextAvailIndex(slot | (wrap ? 0x8000 : 0))
            queue = consume packed
            for (i, (a, l, f, n)) in table.enumerated() {
                // A slot before the start is in the next lap: available with the other wrap counter.
                let lapWrap = i < Int(slot) ? !wrap : wrap
                let availableNow = f & 8 == 0
                let availBit: UInt16 = (lapWrap == availableNow) ? 0x80 : 0
                let usedBit: UInt16 = (lapWrap == availableNow) ? 0 : 0x8000
                try writePackedDescriptor(
                    memory, at: memoryBase + UInt64(i) * 16, addr: address(a),
                    len: Self.lengths[l], flags: UInt16(f & 7) | availBit | usedBit, id: UInt16(n))
            }
        }
        // Indirect tables point at the descriptor table or data: seed data with more garbage.
        try writeDescriptor(memory, at: dataBase, addr: dataBase + 0x100, len: 16, flags: 1, next: 1)
        for _ in 0..<20 {
            let chain: Chain?
            do {
                chain = try queue.pop()
            } catch {
                #expect(queue.brokenReason == error)
                #expect(throws: error) { try queue.pop() }
                return
            }
            guard let chain else {
                // Nothing (more) available: not an error, and asking again changes nothing.
                #expect(queue.brokenReason == nil)
                #expect(try queue.pop() == nil)
                return
            }
            var readable: UInt64 = 0
            var writable: UInt64 = 0
            var buffers = chain.buffers()
            while let piece = try buffers.next() {
                // A zero-length buffer is refused when the chain is popped; none is ever yielded.
                try #require(piece.bytes.count > 0, "an empty buffer piece")
                let base = try #require(piece.bytes.baseAddress)
                let start = try #require(guestAddress(of: base, in: memory))
                let end = try #require(guestAddress(of: base + (piece.bytes.count - 1), in: memory))
                #expect(end - start == UInt64(piece.bytes.count - 1))
                if piece.isWritable {
                    writable += UInt64(piece.bytes.count)
                } else {
                    readable += UInt64(piece.bytes.count)
                }
            }
            #expect(readable == UInt64(chain.readableLength) && writable == UInt64(chain.writableLength))
            // Complete with a random written length, sometimes more than the chain can take.
            let written = UInt32(truncatingIfNeeded: random.next(below: UInt64(chain.writableLength) + 2))
            if written > chain.writableLength {
                #expect(throws: VirtqueueError.writtenExceedsWritable(written: written, writable: chain.writableLength))
                {
                    try queue.push(chain, written: written)
                }
                return
            }
            try queue.push(chain, written: written)
        }
    }
}
