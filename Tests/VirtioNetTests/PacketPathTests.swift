import Testing
import Virtio
import VirtioNet

@Suite struct ReceiveWriterTests {
    /// A 12-byte header (zeros) plus `frame`, in a mutable buffer the writer may patch.
    func withPacket<T>(_ frame: [UInt8], _ body: (UnsafeMutableRawBufferPointer) throws -> T) rethrows -> T {
        var packet = [UInt8](repeating: 0, count: NetHeader.size) + frame
        return try packet.withUnsafeMutableBytes { try body($0) }
    }

    @Test(arguments: Layout.allCases)
    func oneChainPerPacket(layout: Layout) throws {
        let rig = try NetRig(layout: layout, features: modern)
        var writer = ReceiveWriter(features: modern, queueSize: 16)
        let counters = NetCounters()
        let frame = ethernetFrame(to: macA, from: macB, payload: 50)
        // Header split over two descriptors, frame over a third.
        try rig.post(writable: [5, 7, 100])
        #expect(try withPacket(frame) { try writer.deliver($0, to: &rig.device, counters: counters) } == .delivered)
        let used = try #require(try rig.reap())
        #expect(used.bytes == headerBytes(NetHeader(bufferCount: 1)) + frame)
        #expect(counters[.rxFrames] == 1 && counters[.rxBytes] == UInt64(frame.count))
        // No buffers: nothing happens, the packet can be retried.
        #expect(try withPacket(frame) { try writer.deliver($0, to: &rig.device, counters: counters) } == .noBuffers)
    }

    /// A receive buffer that holds the very header the writer would store (a recycled buffer)
    /// gets no store there: its header descriptor is read-only to the device, where a store
    /// would fault. The frame still lands, and the used length counts the header.
    @Test(arguments: Layout.allCases)
    func headerAlreadyInTheBufferIsNotStoredAgain(layout: Layout) throws {
        let rig = try NetRig(layout: layout, features: mergeable | NetFeature.inOrder)
        var writer = ReceiveWriter(features: mergeable | NetFeature.inOrder, queueSize: 16)
        let counters = NetCounters()
        let frame = ethernetFrame(to: macA, from: macB, payload: 50)
        let header = headerBytes(NetHeader(bufferCount: 1))
        for round in 0..<3 {
            let headerAddress = rig.allocate(NetHeader.size)
            try header.withUnsafeBytes { try rig.memory.write(guestPhysical: headerAddress, bytes: $0) }
            let readOnlyHeader = NetRig.readOnlyAlias + (headerAddress - NetRig.base)
            try rig.post(buffers: [
                DriverBuffer(address: readOnlyHeader, length: UInt32(NetHeader.size), isWritable: true),
                DriverBuffer(address: rig.allocate(128), length: 128, isWritable: true),
            ])
            #expect(try withPacket(frame) { try writer.deliver($0, to: &rig.device, counters: counters) } == .delivered)
            let used = try #require(try rig.reap())
            #expect(used.bytes == header + frame, "round \(round)")
        }
        #expect(counters[.rxFrames] == 3)
    }

    @Test(arguments: Layout.allCases)
    func tooLongWithoutMergeableIsDroppedAndTheChainReused(layout: Layout) throws {
        let rig = try NetRig(layout: layout, features: modern)
        var writer = ReceiveWriter(features: modern, queueSize: 16)
        let counters = NetCounters()
        try rig.post(writable: [80])
        let long = ethernetFrame(to: macA, from: macB, payload: 100)
        #expect(
            try withPacket(long) { try writer.deliver($0, to: &rig.device, counters: counters) } == .dropped(.rxTooLong)
        )
        #expect(try rig.reap() == nil)
        #expect(writer.heldCount == 1)
        let short = ethernetFrame(to: macA, from: macB, payload: 40)
        #expect(try withPacket(short) { try writer.deliver($0, to: &rig.device, counters: counters) } == .delivered)
        #expect(try rig.reap()?.bytes == headerBytes(NetHeader(bufferCount: 1)) + short)
        #expect(writer.heldCount == 0)
    }

    @Test(arguments: Layout.allCases)
    func mergeableSpansBuffers(layout: Layout) throws {
        let rig = try NetRig(layout: layout, features: mergeable)
        var writer = ReceiveWriter(features: mergeable, queueSize: 16)
        let counters = NetCounters()
        let frame = ethernetFrame(to: macA, from: macB, payload: 300)
        // A header-only buffer is legal with MRG_RXBUF (section 5.1.6.3.1: at least a header).
        let ids = [
            try rig.post(writable: [12]), try rig.post(writable: [100]), try rig.post(writable: [64, 64]),
            try rig.post(writable: [200]),
        ]
        // Needs 12 + 314 bytes: the first four chains (12 + 100 + 128 + 200).
        #expect(try withPacket(frame) { try writer.deliver($0, to: &rig.device, counters: counters) } == .delivered)
        var received: [UInt8] = []
        for id in ids {
            let used = try #require(try rig.reap())
            #expect(used.id == id)
            received += used.bytes
        }
        #expect(received == headerBytes(NetHeader(bufferCount: 4)) + frame)
    }

    @Test(arguments: Layout.allCases)
    func mergeableWaitsForBuffersWithoutLosingChains(layout: Layout) throws {
        let rig = try NetRig(layout: layout, features: mergeable)
        var writer = ReceiveWriter(features: mergeable, queueSize: 16)
        let counters = NetCounters()
        let frame = ethernetFrame(to: macA, from: macB, payload: 200)
        try rig.post(writable: [100])
        #expect(try withPacket(frame) { try writer.deliver($0, to: &rig.device, counters: counters) } == .noBuffers)
        #expect(writer.heldCount == 1)
        #expect(try rig.reap() == nil)
        try rig.post(writable: [200])
        #expect(try withPacket(frame) { try writer.deliver($0, to: &rig.device, counters: counters) } == .delivered)
        let first = try #require(try rig.reap()), second = try #require(try rig.reap())
        #expect(first.bytes + second.bytes == headerBytes(NetHeader(bufferCount: 2)) + frame)
    }

    /// Before a ring stops or is re-created, held chains go back used and empty, in pop order,
    /// and the writer starts afresh (a later frame takes new chains only).
    @Test(arguments: Layout.allCases)
    func heldChainsAreGivenBackEmptyInOrder(layout: Layout) throws {
        let rig = try NetRig(layout: layout, features: mergeable | NetFeature.inOrder)
        var writer = ReceiveWriter(features: mergeable | NetFeature.inOrder, queueSize: 16)
        let counters = NetCounters()
        let frame = ethernetFrame(to: macA, from: macB, payload: 300)
        // Two short chains held for the frame, then (in order) a bad one behind them: it cannot
        // carry the rest, so the frame is dropped and all three stay held.
        let ids = [try rig.post(writable: [100]), try rig.post(writable: [100]), try rig.post(writable: [4])]
        #expect(
            try withPacket(frame) { try writer.deliver($0, to: &rig.device, counters: counters) }
                == .dropped(.rxTooLong)
        )
        #expect(writer.heldCount == 3)
        try writer.giveBack(to: &rig.device, counters: counters)
        #expect(writer.heldCount == 0)
        for id in ids {
            let used = try #require(try rig.reap())
            #expect(used.id == id && used.bytes.isEmpty)
        }
        #expect(counters[.rxReturnedUnused] == 2 && counters[.rxBadChains] == 1 && counters[.rxFrames] == 0)
        let small = ethernetFrame(to: macA, from: macB, payload: 30)
        let next = try rig.post(writable: [200])
        #expect(try withPacket(small) { try writer.deliver($0, to: &rig.device, counters: counters) } == .delivered)
        let used = try #require(try rig.reap())
        #expect(used.id == next && used.bytes == headerBytes(NetHeader(bufferCount: 1)) + small)
    }

    @Test(arguments: Layout.allCases)
    func mergeableFrameLargerThanTheRingIsDropped(layout: Layout) throws {
        let rig = try NetRig(layout: layout, features: mergeable, queueSize: 4)
        var writer = ReceiveWriter(features: mergeable, queueSize: 4)
        let counters = NetCounters()
        for _ in 0..<4 { try rig.post(writable: [64]) }
        let huge = ethernetFrame(to: macA, from: macB, payload: 1000)
        #expect(
            try withPacket(huge) { try writer.deliver($0, to: &rig.device, counters: counters) } == .dropped(.rxTooLong)
        )
        let small = ethernetFrame(to: macA, from: macB, payload: 30)
        #expect(try withPacket(small) { try writer.deliver($0, to: &rig.device, counters: counters) } == .delivered)
        #expect(try rig.reap()?.bytes == headerBytes(NetHeader(bufferCount: 1)) + small)
    }

    @Test(arguments: Layout.allCases)
    func chainsWithoutRoomForAHeaderAreReturnedEmpty(layout: Layout) throws {
        let rig = try NetRig(layout: layout, features: mergeable)
        var writer = ReceiveWriter(features: mergeable, queueSize: 16)
        let counters = NetCounters()
        let readOnly = try rig.post(readable: [1, 2, 3])
        let tiny = try rig.post(writable: [11])
        let good = try rig.post(writable: [200])
        let frame = ethernetFrame(to: macA, from: macB, payload: 20)
        #expect(try withPacket(frame) { try writer.deliver($0, to: &rig.device, counters: counters) } == .delivered)
        #expect(try rig.reap().map { [$0.id: $0.bytes] } == [readOnly: []])
        #expect(try rig.reap().map { [$0.id: $0.bytes] } == [tiny: []])
        #expect(try rig.reap().map { [$0.id: $0.bytes] } == [good: headerBytes(NetHeader(bufferCount: 1)) + frame])
        #expect(counters[.rxBadChains] == 2)
    }

    /// VIRTIO_F_IN_ORDER: a bad chain popped behind a held one is not returned before it; the
    /// packet that would need to span it is dropped, a packet that fits before it passes, and the
    /// used ring shows every chain in the order it was made available.
    @Test(arguments: Layout.allCases)
    func inOrderKeepsBadChainsInTheirPlace(layout: Layout) throws {
        let features = mergeable | NetFeature.inOrder
        let rig = try NetRig(layout: layout, features: features)
        var writer = ReceiveWriter(features: features, queueSize: 16)
        let counters = NetCounters()
        let small = try rig.post(writable: [40])
        let bad = try rig.post(writable: [4])
        let large = try rig.post(writable: [400])
        let long = ethernetFrame(to: macA, from: macB, payload: 100)
        #expect(
            try withPacket(long) { try writer.deliver($0, to: &rig.device, counters: counters) } == .dropped(.rxTooLong)
        )
        #expect(try rig.reap() == nil)
        // deliver pops a burst: all three are held, the bad one still between the others.
        #expect(writer.heldCount == 3)
        let short = ethernetFrame(to: macA, from: macB, payload: 10)
        #expect(try withPacket(short) { try writer.deliver($0, to: &rig.device, counters: counters) } == .delivered)
        #expect(try withPacket(long) { try writer.deliver($0, to: &rig.device, counters: counters) } == .delivered)
        #expect(try rig.reap().map { [$0.id: $0.bytes] } == [small: headerBytes(NetHeader(bufferCount: 1)) + short])
        #expect(try rig.reap().map { [$0.id: $0.bytes] } == [bad: []])
        #expect(try rig.reap().map { [$0.id: $0.bytes] } == [large: headerBytes(NetHeader(bufferCount: 1)) + long])
        #expect(counters[.rxBadChains] == 1 && counters[.rxFrames] == 2)
    }

    /// `reserve` pops ahead (bad chains returned at once without IN_ORDER), and `deliver` then
    /// uses the held chains first, in order.
    @Test(arguments: Layout.allCases)
    func reservedChainsAreUsedFirst(layout: Layout) throws {
        let rig = try NetRig(layout: layout, features: mergeable)
        var writer = ReceiveWriter(features: mergeable, queueSize: 16)
        let counters = NetCounters()
        let first = try rig.post(writable: [200])
        let bad = try rig.post(readable: [1])
        let second = try rig.post(writable: [200])
        #expect(try writer.reserve(8, from: &rig.device, counters: counters) == 2)
        #expect(writer.heldCount == 2)
        #expect(try rig.reap().map { [$0.id: $0.bytes] } == [bad: []])
        let frame = ethernetFrame(to: macA, from: macB, payload: 20)
        var tally = ReceiveTally()
        for _ in 0..<2 {
            #expect(
                try withPacket(frame) { try writer.deliver($0, to: &rig.device, counters: counters, tally: &tally) }
                    == .delivered)
        }
        #expect(try rig.reap()?.id == first)
        #expect(try rig.reap()?.id == second)
        #expect(counters[.rxFrames] == 0 && tally.frames == 2 && tally.bytes == UInt64(2 * frame.count))
        tally.publish(to: counters)
        #expect(counters[.rxFrames] == 2 && tally.frames == 0)
    }

    @Test(arguments: Layout.allCases)
    func descriptorOutsideMemoryBreaksTheQueueNotTheProcess(layout: Layout) throws {
        let rig = try NetRig(layout: layout, features: modern)
        var writer = ReceiveWriter(features: modern, queueSize: 16)
        try rig.postOutsideMemory(writable: true)
        let frame = ethernetFrame(to: macA, from: macB, payload: 20)
        #expect(throws: VirtqueueError.self) {
            try withPacket(frame) { _ = try writer.deliver($0, to: &rig.device, counters: NetCounters()) }
        }
    }
}

@Suite struct TransmitReaderTests {
    let packet = UnsafeMutableRawBufferPointer.allocate(byteCount: NetHeader.size + 1514, alignment: 8)

    func read(_ rig: NetRig, features: UInt64 = modern, counters: NetCounters = NetCounters()) throws -> (
        TransmitResult, [UInt8]
    ) {
        let chain = try #require(try rig.device.pop())
        let result = try TransmitReader(features: features).read(chain, into: packet, counters: counters)
        try rig.device.complete(chain, written: 0)
        #expect(try rig.reap()?.bytes == [])
        guard case .frame(let length) = result else { return (result, []) }
        return (result, Array(packet[NetHeader.size..<NetHeader.size + length]))
    }

    @Test(arguments: Layout.allCases)
    func gathersAHeaderSpreadOverDescriptors(layout: Layout) throws {
        defer { packet.deallocate() }
        let rig = try NetRig(layout: layout, features: modern)
        let frame = ethernetFrame(to: macB, from: macA, payload: 46)
        let bytes = headerBytes(NetHeader()) + frame
        try rig.post(readable: bytes, readableSplit: [1, 3, 5, 3, 10, bytes.count - 22])
        let (result, received) = try read(rig)
        #expect(result == .frame(length: frame.count))
        #expect(received == frame)
    }

    @Test(arguments: Layout.allCases)
    func refusesBadChains(layout: Layout) throws {
        defer { packet.deallocate() }
        let rig = try NetRig(layout: layout, features: modern)
        let counters = NetCounters()
        let frame = ethernetFrame(to: macB, from: macA, payload: 46)
        // Header only, short frame, too long, writable buffer, checksum offload not negotiated.
        try rig.post(readable: headerBytes(NetHeader()))
        #expect(try read(rig).0 == .dropped(.txTooShort))
        try rig.post(readable: headerBytes(NetHeader()) + [1, 2, 3])
        #expect(try read(rig).0 == .dropped(.txTooShort))
        try rig.post(readable: headerBytes(NetHeader()) + ethernetFrame(to: macB, from: macA, payload: 1501))
        #expect(try read(rig).0 == .dropped(.txTooLong))
        try rig.post(readable: headerBytes(NetHeader()) + frame, writable: [4])
        #expect(try read(rig).0 == .dropped(.txWritableBuffers))
        var checksum = NetHeader()
        checksum.flags = NetHeader.needsChecksum
        try rig.post(readable: headerBytes(checksum) + frame)
        #expect(try read(rig).0 == .dropped(.txBadHeader))
        // A non-zero num_buffers is ignored (and counted).
        try rig.post(readable: headerBytes(NetHeader(bufferCount: 7)) + frame)
        #expect(try read(rig, counters: counters).0 == .frame(length: frame.count))
        #expect(counters[.txNonzeroBufferCount] == 1)
    }

    /// VIRTIO_F_IN_ORDER, packed: a burst of transmit chains completed together shares used
    /// descriptors (VIRTIO 1.2 section 2.8.8), bad chains included (completed empty, in their
    /// place); a chain with a writable buffer (refused) gets one of its own. The driver reaps every
    /// chain in order, and the ring slots of the skipped chains keep what the driver wrote.
    @Test func inOrderBurstWithBadChainsSharesUsedDescriptors() throws {
        defer { packet.deallocate() }
        let features = modern | NetFeature.inOrder
        let rig = try NetRig(layout: .packed, features: features)
        let counters = NetCounters()
        let frame = headerBytes(NetHeader()) + ethernetFrame(to: macB, from: macA, payload: 46)
        let ids = [
            try rig.post(readable: frame),  // slot 0
            try rig.post(readable: headerBytes(NetHeader())),  // slot 1: header only
            try rig.post(readable: frame),  // slot 2
            try rig.post(readable: frame, writable: [4]),  // slots 3-4: writable buffer
            try rig.post(readable: frame),  // slot 5
        ]
        func slotFlags(_ slot: UInt64) throws -> UInt16 {
            try rig.memory.load(UInt16.self, guestPhysical: NetRig.base + slot * 16 + 14)
        }
        func slotID(_ slot: UInt64) throws -> UInt16 {
            try rig.memory.load(UInt16.self, guestPhysical: NetRig.base + slot * 16 + 12)
        }
        let chains = UnsafeMutableBufferPointer<Chain>.allocate(capacity: 8)
        defer { chains.deallocate() }
        let count = try rig.device.queue.pop(into: chains)
        #expect(count == 5)
        var results: [TransmitResult] = []
        for chain in chains[0..<count] {
            results.append(try TransmitReader(features: features).read(chain, into: packet, counters: counters))
            try rig.device.queue.stage(chain, written: 0)
        }
        rig.device.queue.publishUsed()
        #expect(
            results == [
                .frame(length: frame.count - NetHeader.size), .dropped(.txTooShort),
                .frame(length: frame.count - NetHeader.size), .dropped(.txWritableBuffers),
                .frame(length: frame.count - NetHeader.size),
            ])
        let used: UInt16 = 0x8080
        #expect(try slotFlags(0) == used && slotID(0) == ids[2])
        #expect(try slotFlags(3) == used && slotID(3) == ids[3])
        #expect(try slotFlags(5) == used && slotID(5) == ids[4])
        for skipped: UInt64 in [1, 2, 4] { #expect(try slotFlags(skipped) != used, "slot \(skipped) untouched") }
        var reaped: [UInt16] = []
        while let chain = try rig.reap() {
            #expect(chain.bytes == [])
            reaped.append(chain.id)
        }
        #expect(reaped == ids)
    }

    @Test func legacyTenByteHeaderIsWidened() throws {
        defer { packet.deallocate() }
        let rig = try NetRig(layout: .split, features: 0)
        let frame = ethernetFrame(to: macB, from: macA, payload: 46)
        try rig.post(readable: Array(headerBytes(NetHeader()).prefix(10)) + frame)
        let (result, received) = try read(rig, features: 0)
        #expect(result == .frame(length: frame.count) && received == frame)
    }
}
