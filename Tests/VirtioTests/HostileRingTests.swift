import PropertyBased
import Testing
import Virtio

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
        let descriptor = zip(Gen.int(in: 0...8), Gen.int(in: 0...7), Gen.int(in: 0...15), Gen.int(in: 0...9))
        await propertyCheck(count: 300, input: descriptor.array(of: 8), Gen.int(in: 0...12)) { table, availIndex in
            do {
                try check(layout: layout, table: table, availIndex: UInt16(availIndex))
            } catch {
                Issue.record(error, "table \(table) avail \(availIndex)")
            }
        }
    }

    func check(layout: RingLayout, table: [(Int, Int, Int, Int)], availIndex: UInt16) throws {
        let memory = try standardMemory()
        let features: VirtioFeatures = [.ringIndirectDescriptors, .ringEventIndex]
        var queue: any DeviceQueue & ~Copyable
        switch layout {
        case .split:
            queue = try SplitQueue(memory: memory, size: 8, addresses: standardAddresses(), features: features)
            for (i, (a, l, f, n)) in table.enumerated() {
                try writeDescriptor(memory, at: memoryBase + UInt64(i) * 16, addr: Self.addresses[a],
                                    len: Self.lengths[l], flags: UInt16(f & 7), next: UInt16(n))
                try memory.store(UInt16(n), guestPhysical: standardAddresses().driverArea + 4 + UInt64(i) * 2)
            }
            try memory.store(availIndex, guestPhysical: standardAddresses().driverArea + 2)
        case .packed:
            queue = try PackedQueue(memory: memory, size: 8, addresses: standardAddresses(), features: features)
            for (i, (a, l, f, n)) in table.enumerated() {
                // Bit 3 of f picks "available in lap 1" or not.
                let flags = UInt16(f & 7) | (f & 8 == 0 ? 0x80 : 0x8080)
                try writePackedDescriptor(memory, at: memoryBase + UInt64(i) * 16, addr: Self.addresses[a],
                                          len: Self.lengths[l], flags: flags, id: UInt16(n))
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
            guard let chain else { return }
            var total: UInt64 = 0
            var buffers = chain.buffers()
            while let piece = try buffers.next() {
                let base = try #require(piece.bytes.baseAddress)
                let start = try #require(guestAddress(of: base, in: memory))
                let end = try #require(guestAddress(of: base + (piece.bytes.count - 1), in: memory))
                #expect(end - start == UInt64(piece.bytes.count - 1))
                total += UInt64(piece.bytes.count)
            }
            #expect(total == UInt64(chain.readableLength) + UInt64(chain.writableLength))
            try queue.push(chain, written: 0)
        }
    }
}
