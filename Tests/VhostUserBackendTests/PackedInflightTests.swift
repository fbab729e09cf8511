import Testing
import VMMSysUtil
import VMMTestSupport
import Virtio
@testable import VhostUserProtocol
@testable import VhostUserBackend

/// A packed ring (driver and device halves) over shared memory, with a packed inflight region: the
/// device half can be "killed" and re-created over the same memory and region.
struct PackedInflightRig: ~Copyable {
    static let size = 8
    static let addresses = RingAddresses(descriptorTable: 0x1000, driverArea: 0x2000, deviceArea: 0x2100)
    let memory: SharedMemory
    let guest: GuestMemory
    let driver: DriverPackedQueue
    let buffer: InflightBuffer
    var device: PackedQueue
    var record: InflightPackedQueue
    let features: VirtioFeatures

    /// - Parameter inOrder: negotiate VIRTIO_F_IN_ORDER (runs of empty completions share a used descriptor).
    init(inOrder: Bool = false) throws {
        let memory = try SharedMemory(size: 1 << 20)
        let guest = try GuestMemory(regions: [GuestMemoryRegion(guestPhysicalAddress: 0, mapping: memory.mapping)])
        var features: VirtioFeatures = [.version1, .ringPacked, .ringEventIndex]
        if inOrder { features.insert(.inOrder) }
        let driver = try DriverPackedQueue(
            memory: guest, size: Self.size, addresses: Self.addresses, features: features)
        let device = try PackedQueue(memory: guest, size: Self.size, addresses: Self.addresses, features: features)
        let buffer = try InflightBuffer(queueCount: 1, queueSize: Self.size)
        var record = try #require(buffer.packedQueue(0))
        #expect(try record.recover(queueIndex: 0, queueSize: Self.size, isAvailable: { _, _ in false }) == nil)
        (self.memory, self.guest, self.driver, self.buffer, self.record) = (memory, guest, driver, buffer, record)
        self.device = device
        self.features = features
    }

    /// Posts a chain of `count` buffers (the last writable unless `readOnly`) at slot `slot` of
    /// the buffer area.
    func post(_ count: Int, slot: Int, readOnly: Bool = false) throws -> UInt16 {
        let buffers = (0..<count).map { i in
            DriverBuffer(
                address: 0x10000 + UInt64(slot * 0x1000 + i * 0x100), length: 64,
                isWritable: !readOnly && i == count - 1)
        }
        return try driver.post(buffers)
    }

    mutating func pop() throws -> Chain {
        let chain = try #require(try device.pop())
        record.recordPop(chain, descriptors: device.ringDescriptors(of: chain))
        return chain
    }

    /// Completes `chains` in one batch; `stop` cuts the commit short after that step.
    enum Stop { case none, beforePublish, afterPublish }
    mutating func complete(_ chains: [Chain], stop: Stop = .none) throws {
        for chain in chains {
            try device.stage(chain, written: chain.writableLength == 0 ? 0 : 1)
            record.recordCompletion(chain.id)
        }
        record.beginCommit(usedAfter: device.nextUsedPosition)
        if stop == .beforePublish { return }
        device.publishUsed()
        if stop == .afterPublish { return }
        record.endCommit()
    }

    /// A new back-end process: a fresh device queue and record over the same memory and region.
    mutating func restart() throws -> InflightPackedQueue.Recovery? {
        let fresh = try PackedQueue(memory: guest, size: Self.size, addresses: Self.addresses, features: features)
        record = try #require(buffer.packedQueue(0))
        let recovery = try record.recover(queueIndex: 0, queueSize: Self.size) { slot, wrap in
            fresh.isAvailable(slot: slot, wrapCounter: wrap)
        }
        device = fresh
        return recovery
    }
}

extension InflightPackedQueue.Recovery: Equatable {
    public static func == (a: Self, b: Self) -> Bool {
        a.base == b.base && a.resubmit.map(\.id) == b.resubmit.map(\.id)
    }
}

@Suite("Packed rings: inflight records and restarts")
struct PackedInflightTests {
    @Test func restartResumesPositionsAndResubmitsOldestFirst() throws {
        var rig = try PackedInflightRig()
        let a = try rig.post(2, slot: 0)
        let b = try rig.post(1, slot: 1)
        let c = try rig.post(3, slot: 2)
        let chainA = try rig.pop(), chainB = try rig.pop(), chainC = try rig.pop()
        #expect([chainA.id, chainB.id, chainC.id] == [a, b, c])
        try rig.complete([chainB])
        #expect(try rig.driver.reap()?.id == b)
        let recovery = try #require(try rig.restart())
        // Used resumes after B's one slot; available after the 2 + 3 slots A and C hold.
        #expect(recovery.base == (6 | 0x8000) | (1 | 0x8000) << 16)
        #expect(recovery.resubmit.map(\.id) == [a, c])
        #expect(recovery.resubmit.map { $0.descriptors.count } == [32, 48])
        try rig.device.setNextAvailIndex(recovery.base)
        for expected in [chainA, chainC] {
            let copy = recovery.resubmit.first { $0.id == expected.id }!
            let chain = try copy.descriptors.withUnsafeBytes { try rig.device.resubmit(descriptors: $0) }
            #expect(chain.id == expected.id)
            #expect(chain.readableLength == expected.readableLength)
            #expect(chain.writableLength == expected.writableLength)
            #expect(chain.descriptorCount == expected.descriptorCount)
        }
        // The resubmitted chains complete normally and the driver gets both back.
        let d = try rig.post(1, slot: 3)
        #expect(try rig.device.pop()?.id == d)
    }

    @Test func interruptedBatchIsDecidedByTheRing() throws {
        // Published, not cleared: the batch is complete; only C is resubmitted.
        var published = try PackedInflightRig()
        _ = try published.post(2, slot: 0)
        _ = try published.post(1, slot: 1)
        let c = try published.post(1, slot: 2)
        let a = try published.pop(), b = try published.pop()
        _ = try published.pop()
        try published.complete([b, a], stop: .afterPublish)
        let kept = try #require(try published.restart())
        #expect(kept.resubmit.map(\.id) == [c])
        #expect(kept.base == (4 | 0x8000) | (3 | 0x8000) << 16)
        // Not published: the batch never happened; all three come back, oldest first.
        var cut = try PackedInflightRig()
        let x = try cut.post(2, slot: 0)
        let y = try cut.post(1, slot: 1)
        let z = try cut.post(1, slot: 2)
        let cx = try cut.pop(), cy = try cut.pop()
        _ = try cut.pop()
        try cut.complete([cy, cx], stop: .beforePublish)
        let rolledBack = try #require(try cut.restart())
        #expect(rolledBack.resubmit.map(\.id) == [x, y, z])
        #expect(rolledBack.base == (4 | 0x8000) | (0 | 0x8000) << 16)
    }

    /// VIRTIO_F_IN_ORDER: a run of empty completions is one used descriptor at the run's first
    /// slot, flagged last, so the ring decides an interrupted batch as it does without runs.
    @Test func anInOrderRunIsDecidedByItsFirstSlot() throws {
        // Published, not cleared: the run (A, B) is complete; only C is resubmitted.
        var published = try PackedInflightRig(inOrder: true)
        _ = try published.post(2, slot: 0, readOnly: true)
        _ = try published.post(1, slot: 1, readOnly: true)
        let c = try published.post(1, slot: 2, readOnly: true)
        let a = try published.pop(), b = try published.pop()
        _ = try published.pop()
        try published.complete([a, b], stop: .afterPublish)
        // One used descriptor (slot 0, B's id); B's slot 2 still holds the driver's descriptor.
        #expect(try published.guest.load(UInt16.self, guestPhysical: 0x1000 + 12) == b.id)
        #expect(try published.guest.load(UInt16.self, guestPhysical: 0x1000 + 2 * 16 + 14) == 0x0080)
        #expect(try published.driver.reap()?.id == a.id)
        #expect(try published.driver.reap()?.id == b.id)
        let kept = try #require(try published.restart())
        #expect(kept.resubmit.map(\.id) == [c])
        #expect(kept.base == (4 | 0x8000) | (3 | 0x8000) << 16)
        // Not published: the run never happened; all three come back, oldest first.
        var cut = try PackedInflightRig(inOrder: true)
        let x = try cut.post(2, slot: 0, readOnly: true)
        let y = try cut.post(1, slot: 1, readOnly: true)
        let z = try cut.post(1, slot: 2, readOnly: true)
        let cx = try cut.pop(), cy = try cut.pop()
        _ = try cut.pop()
        try cut.complete([cx, cy], stop: .beforePublish)
        let rolledBack = try #require(try cut.restart())
        #expect(rolledBack.resubmit.map(\.id) == [x, y, z])
        #expect(rolledBack.base == (4 | 0x8000) | (0 | 0x8000) << 16)
    }

    @Test func wrapCountersSurviveLaps() throws {
        var rig = try PackedInflightRig()
        // Three laps of 3-descriptor chains, completed at once; then one held across a restart.
        for round in 0..<8 {
            _ = try rig.post(3, slot: round % 4)
            let chain = try rig.pop()
            try rig.complete([chain])
            _ = try rig.driver.reap()
        }
        let held = try rig.post(2, slot: 0)
        _ = try rig.pop()
        let recovery = try #require(try rig.restart())
        // 24 slots used: slot 0 after three laps (wrap counters 1 -> 0 -> 1 -> 0); the held chain adds 2.
        #expect(recovery.base == 2 | 0 << 16)
        #expect(recovery.resubmit.map(\.id) == [held])
    }

    @Test func corruptRecordsAreRefused() throws {
        var rig = try PackedInflightRig()
        _ = try rig.post(2, slot: 0)
        _ = try rig.pop()
        let region = rig.buffer.mapping.base
        // The head's descriptor count beyond the ring, then a link out of range, then a bad used index.
        for (offset, value) in [(32 + 6, UInt16(9)), (32 + 2, UInt16(200)), (16, UInt16(8))] {
            var copy = try PackedInflightRig()
            _ = try copy.post(2, slot: 0)
            _ = try copy.pop()
            copy.buffer.mapping.base.storeBytes(of: value, toByteOffset: offset, as: UInt16.self)
            #expect(throws: VhostUserError.self) { _ = try copy.restart() }
        }
        // A different ring size.
        var record = try #require(rig.buffer.packedQueue(0))
        #expect(throws: VhostUserError.self) {
            _ = try record.recover(queueIndex: 0, queueSize: 4, isAvailable: { _, _ in false })
        }
        _ = region
    }
}
