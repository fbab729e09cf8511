import Testing
import Virtio

/// VIRTIO_F_IN_ORDER on packed rings (VIRTIO 1.2 section 2.8.8): a run of completions with
/// nothing writable is published as one used descriptor at the run's first slot carrying the last
/// Buffer ID; every other descriptor of the ring is left as the driver wrote it.
@Suite struct InOrderTests {
    static let size = 8
    static let usedFlags: UInt16 = 0x8080  // AVAIL | USED, device wrap counter 1
    let readable = [DriverBuffer(address: dataBase, length: 64, isWritable: false)]
    let writable = [DriverBuffer(address: dataBase + 0x1000, length: 64, isWritable: true)]

    // Device queues are non-copyable (no tuples of them): the driver first, the device over its memory.
    func driver(_ features: VirtioFeatures) throws -> DriverPackedQueue {
        try DriverPackedQueue(
            memory: try standardMemory(), size: Self.size, addresses: standardAddresses(), features: features)
    }

    func device(_ driver: DriverPackedQueue, _ features: VirtioFeatures) throws -> PackedQueue {
        try PackedQueue(memory: driver.memory, size: Self.size, addresses: standardAddresses(), features: features)
    }

    /// A ring slot's length, id and flags.
    struct Slot: Equatable {
        var length: UInt32
        var id: UInt16
        var flags: UInt16
        init(_ length: UInt32, _ id: UInt16, _ flags: UInt16) {
            self.length = length
            self.id = id
            self.flags = flags
        }
    }

    /// Ring slot `slot` as the driver reads it.
    func slot(_ memory: GuestMemory, _ slot: Int) throws -> Slot {
        let address = memoryBase + UInt64(slot) * 16
        return Slot(
            try memory.load(UInt32.self, guestPhysical: address + 8),
            try memory.load(UInt16.self, guestPhysical: address + 12),
            try memory.load(UInt16.self, guestPhysical: address + 14))
    }

    /// Pops every available chain and stages each with its entry of `written` (0 if absent).
    func completeAll(_ device: inout PackedQueue, written: [UInt32] = []) throws -> [UInt16] {
        var ids: [UInt16] = []
        while let chain = try device.pop() {
            try device.stage(chain, written: ids.count < written.count ? written[ids.count] : 0)
            ids.append(chain.id)
        }
        device.publishUsed()
        return ids
    }

    func reapAll(_ driver: DriverPackedQueue) throws -> [UsedBuffer] {
        var used: [UsedBuffer] = []
        while let buffer = try driver.reap() { used.append(buffer) }
        return used
    }

    @Test func zeroLengthCompletionsShareOneUsedDescriptor() throws {
        let driver = try driver([.inOrder])
        var device = try device(driver, [.inOrder])
        var ids: [UInt16] = []
        for _ in 0..<4 { ids.append(try driver.post(readable)) }
        // A chain of two descriptors in the run moves it by two slots.
        ids.append(try driver.post(readable + readable))
        let before = try (0..<Self.size).map { try slot(driver.memory, $0) }
        let completed = try completeAll(&device)
        #expect(completed == ids)
        #expect(try slot(driver.memory, 0) == Slot(0, ids[4], Self.usedFlags))
        for index in 1..<Self.size {
            #expect(try slot(driver.memory, index) == before[index], "slot \(index) untouched")
        }
        // The used position moved past the whole run (six slots).
        #expect(device.nextUsedPosition == 6 | 0x8000)
        #expect(try reapAll(driver) == ids.map { UsedBuffer(id: $0, length: 0) })
        #expect(driver.freeDescriptors == Self.size)
    }

    @Test func withoutInOrderEachChainHasItsUsedDescriptor() throws {
        let driver = try driver([])
        var device = try device(driver, [])
        var ids: [UInt16] = []
        for _ in 0..<4 { ids.append(try driver.post(readable)) }
        let completed = try completeAll(&device)
        #expect(completed == ids)
        for (index, id) in ids.enumerated() {
            #expect(try slot(driver.memory, index) == Slot(0, id, Self.usedFlags))
        }
        #expect(try reapAll(driver) == ids.map { UsedBuffer(id: $0, length: 0) })
    }

    @Test func aRunAcrossTheRingsEndKeepsItsFirstSlotsWrapCounter() throws {
        let driver = try driver([.inOrder])
        var device = try device(driver, [.inOrder])
        // Six chains completed one publication each: six used descriptors, slots 0-5.
        for _ in 0..<6 {
            let id = try driver.post(readable)
            let completed = try completeAll(&device)
            #expect(completed == [id])
            #expect(try driver.reap() == UsedBuffer(id: id, length: 0))
        }
        // Five more take slots 6, 7 (wrap counter 1), 0, 1, 2 (wrap counter 0).
        var ids: [UInt16] = []
        for _ in 0..<5 { ids.append(try driver.post(readable)) }
        let before = try (0..<Self.size).map { try slot(driver.memory, $0) }
        let completed = try completeAll(&device)
        #expect(completed == ids)
        #expect(try slot(driver.memory, 6) == Slot(0, ids[4], Self.usedFlags))
        for index in [7, 0, 1, 2] { #expect(try slot(driver.memory, index) == before[index]) }
        #expect(device.nextUsedPosition == 3)
        #expect(try reapAll(driver) == ids.map { UsedBuffer(id: $0, length: 0) })
        // The next used descriptor, at slot 3 of the second lap, carries wrap counter 0.
        let id = try driver.post(readable)
        let last = try completeAll(&device)
        #expect(last == [id])
        #expect(try slot(driver.memory, 3) == Slot(0, id, 0))
        #expect(try driver.reap() == UsedBuffer(id: id, length: 0))
        #expect(try driver.reap() == nil)
    }

    /// A written length, or a chain with writable bytes even left unwritten (the driver would
    /// take a skipped one as written completely), gets a used descriptor of its own.
    @Test func aChainWithWritableBytesEndsTheRun() throws {
        let driver = try driver([.inOrder])
        var device = try device(driver, [.inOrder])
        let a = try driver.post(readable)
        let b = try driver.post(readable)
        let c = try driver.post(writable)
        let d = try driver.post(readable)
        let e = try driver.post(readable)
        let f = try driver.post(writable)
        let g = try driver.post(readable)
        let before = try (0..<Self.size).map { try slot(driver.memory, $0) }
        let completed = try completeAll(&device, written: [0, 0, 10, 0, 0, 0, 0])
        #expect(completed == [a, b, c, d, e, f, g])
        #expect(try slot(driver.memory, 0) == Slot(0, b, Self.usedFlags))
        #expect(try slot(driver.memory, 1) == before[1])
        #expect(try slot(driver.memory, 2) == Slot(10, c, Self.usedFlags | 2))  // VIRTQ_DESC_F_WRITE
        #expect(try slot(driver.memory, 3) == Slot(0, e, Self.usedFlags))
        #expect(try slot(driver.memory, 4) == before[4])
        #expect(try slot(driver.memory, 5) == Slot(0, f, Self.usedFlags))
        #expect(try slot(driver.memory, 6) == Slot(0, g, Self.usedFlags))
        #expect(
            try reapAll(driver) == [
                UsedBuffer(id: a, length: 0), UsedBuffer(id: b, length: 0), UsedBuffer(id: c, length: 10),
                UsedBuffer(id: d, length: 0), UsedBuffer(id: e, length: 0), UsedBuffer(id: f, length: 0),
                UsedBuffer(id: g, length: 0),
            ])
    }

    /// Nothing of a run is visible before publication: the run's descriptor is the first staged
    /// one, whose flags are stored last. A run that is not the first staged is closed (flagged)
    /// at publication too.
    @Test func aRunIsPublishedWithTheBatch() throws {
        let driver = try driver([.inOrder])
        var device = try device(driver, [.inOrder])
        let ids = [try driver.post(writable), try driver.post(readable), try driver.post(readable)]
        let chains = [try #require(try device.pop()), try #require(try device.pop()), try #require(try device.pop())]
        try device.stage(chains[0], written: 1)
        try device.stage(chains[1], written: 0)
        try device.stage(chains[2], written: 0)
        #expect(try driver.reap() == nil)
        #expect(try slot(driver.memory, 1).flags != Self.usedFlags, "the open run is not flagged before publication")
        device.publishUsed()
        #expect(try slot(driver.memory, 1) == Slot(0, ids[2], Self.usedFlags))
        #expect(
            try reapAll(driver) == [
                UsedBuffer(id: ids[0], length: 1), UsedBuffer(id: ids[1], length: 0), UsedBuffer(id: ids[2], length: 0),
            ])
    }

    /// EVENT_IDX: the driver's event offset is compared against the used position, which moves
    /// over the skipped chains too: an offset inside a run asks for the notification.
    @Test func usedEventInsideARunStillSignals() throws {
        let features: VirtioFeatures = [.inOrder, .ringEventIndex]
        let driver = try driver(features)
        var device = try device(driver, features)
        let warmUp = try driver.post(readable)
        let completed = try completeAll(&device)
        #expect(completed == [warmUp])
        _ = device.needsNotification()  // the first decision is always true
        #expect(try driver.reap() != nil)
        // A run over slots 1-4; the driver wants to hear once slot 3 is used.
        for _ in 0..<4 { try driver.post(readable) }
        driver.setDriverEvent(flags: 2, offWrap: 3 | 0x8000)
        _ = try completeAll(&device)
        let decision = device.needsNotification()
        #expect(decision)
        #expect(try reapAll(driver).count == 4)
        // A run over slots 5-6 with the event at slot 7: no notification.
        for _ in 0..<2 { try driver.post(readable) }
        driver.setDriverEvent(flags: 2, offWrap: 7 | 0x8000)
        _ = try completeAll(&device)
        let quiet = device.needsNotification()
        #expect(!quiet)
        // The run over slot 7 and slot 0 of the next lap reaches it.
        for _ in 0..<2 { try driver.post(readable) }
        _ = try completeAll(&device)
        let reached = device.needsNotification()
        #expect(reached)
        #expect(try reapAll(driver).count == 4)
    }

    /// A vring base set while a run is staged and unpublished drops the run: the next completion
    /// starts a used descriptor of its own at the new position.
    @Test func aNewRingBaseForgetsTheOpenRun() throws {
        let driver = try driver([.inOrder])
        var device = try device(driver, [.inOrder])
        try driver.post(readable)
        let chain = try #require(try device.pop())
        try device.stage(chain, written: 0)
        // Resume at slot 1 (both positions, wrap counter 1), where the driver posts next.
        try device.setNextAvailIndex(1 | 0x8000)
        let id = try driver.post(readable)
        let next = try #require(try device.pop())
        #expect(next.id == id)
        try device.push(next, written: 0)
        #expect(try slot(driver.memory, 1) == Slot(0, id, Self.usedFlags))
        #expect(device.nextUsedPosition == 2 | 0x8000)
    }

    // MARK: split rings (VIRTIO 1.2 section 2.7.9)

    func splitDriver(_ features: VirtioFeatures) throws -> DriverSplitQueue {
        try DriverSplitQueue(
            memory: try standardMemory(), size: Self.size, addresses: standardAddresses(), features: features,
            startIndex: 0xFFFD)
    }

    func splitDevice(_ driver: DriverSplitQueue, _ features: VirtioFeatures) throws -> SplitQueue {
        var queue = try SplitQueue(
            memory: driver.memory, size: Self.size, addresses: standardAddresses(), features: features)
        try queue.setNextAvailIndex(0xFFFD)
        return queue
    }

    /// Used-ring entry `index` (masked): (id, len) as one comparable pair.
    func usedEntry(_ memory: GuestMemory, _ index: UInt16) throws -> [UInt32] {
        let address = standardAddresses().deviceArea + 4 + UInt64(index & UInt16(Self.size - 1)) * 8
        return [
            try memory.load(UInt32.self, guestPhysical: address),
            try memory.load(UInt32.self, guestPhysical: address + 4),
        ]
    }

    /// Split, in order: a run of empty completions is one used entry at the run's first index
    /// (with the last head), the used index moves by the whole run, a written chain or one with
    /// writable bytes has its own entry; the driver reaps every buffer in order. The used index
    /// starts near the 16-bit wrap and crosses it.
    @Test func splitRunsShareOneUsedEntry() throws {
        let driver = try splitDriver([.inOrder])
        var device = try splitDevice(driver, [.inOrder])
        let heads = [
            try driver.post(readable), try driver.post(readable), try driver.post(readable),
            try driver.post(writable), try driver.post(writable), try driver.post(readable),
        ]
        let entries = [UInt16](0..<8).map { 0xFFFD &+ $0 }
        // Mark the ring so untouched entries show.
        for index in entries {
            let address = standardAddresses().deviceArea + 4 + UInt64(index & UInt16(Self.size - 1)) * 8
            try driver.memory.store(UInt32(0xEEEE), guestPhysical: address)
        }
        var written: [UInt32] = [0, 0, 0, 9, 0, 0]
        while let chain = try device.pop() { try device.stage(chain, written: written.removeFirst()) }
        device.publishUsed()
        #expect(try driver.memory.load(UInt16.self, guestPhysical: standardAddresses().deviceArea + 2) == 0xFFFD &+ 6)
        #expect(try usedEntry(driver.memory, entries[0]) == [UInt32(heads[2]), 0])
        #expect(try usedEntry(driver.memory, entries[1])[0] == 0xEEEE)
        #expect(try usedEntry(driver.memory, entries[2])[0] == 0xEEEE)
        #expect(try usedEntry(driver.memory, entries[3]) == [UInt32(heads[3]), 9])
        #expect(try usedEntry(driver.memory, entries[4]) == [UInt32(heads[4]), 0])
        #expect(try usedEntry(driver.memory, entries[5]) == [UInt32(heads[5]), 0])
        var reaped: [UsedBuffer] = []
        while let used = try driver.reap() { reaped.append(used) }
        #expect(reaped == zip(heads, [0, 0, 0, 9, 0, 0]).map { UsedBuffer(id: $0, length: $1) })
        #expect(driver.freeDescriptors == Self.size)
    }

    @Test func splitWithoutInOrderEachChainHasItsEntry() throws {
        let driver = try splitDriver([])
        var device = try splitDevice(driver, [])
        let heads = [try driver.post(readable), try driver.post(readable)]
        while let chain = try device.pop() { try device.stage(chain, written: 0) }
        device.publishUsed()
        #expect(try usedEntry(driver.memory, 0xFFFD) == [UInt32(heads[0]), 0])
        #expect(try usedEntry(driver.memory, 0xFFFE) == [UInt32(heads[1]), 0])
    }
}
