#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Testing
import VMMSysUtil
import VMMTestSupport
import Virtio
@testable import VhostUserProtocol
@testable import VhostUserBackend

/// Keeps every chain it pops on its worker (as net's receive path keeps buffers for a frame that
/// did not fit yet) and, told the ring is about to change, fills each with `0x5A` and completes it.
final class KeepingDevice: VhostUserDevice, @unchecked Sendable {
    let deviceType = VirtioDeviceType.entropy
    let deviceFeatures: VirtioFeatures = .version1
    let queueCount = 1
    let maxQueueSize = 256
    let configSize = 0
    /// Worker only.
    private var kept: [Chain] = []
    private let lock = ConditionLock()
    // Guarded by `lock`.
    private var keptCount = 0
    private var seen: [QueueChange] = []

    /// Chains kept now, and the changes announced so far (read from the test thread).
    var keeping: Int { lock.withLock { keptCount } }
    var changes: [QueueChange] { lock.withLock { seen } }

    func process(_ queue: inout VhostUserQueue) throws {
        while let chain = try queue.pop() { kept.append(chain) }
        let count = kept.count
        lock.withLock { keptCount = count }
    }

    func queueChanging(_ queue: inout VhostUserQueue, to change: QueueChange) throws {
        for chain in kept {
            let bytes = [UInt8](repeating: 0x5A, count: Int(chain.writableLength))
            let written = try bytes.withUnsafeBytes { try chain.writeWritable($0) }
            try queue.complete(chain, written: UInt32(written))
        }
        kept.removeAll()
        lock.withLock {
            keptCount = 0
            seen.append(change)
        }
    }

    func waitUntilKeeping(_ count: Int) -> Bool {
        let deadline = ContinuousClock.now + .seconds(5)
        while keeping < count, ContinuousClock.now < deadline { usleep(1000) }
        return keeping == count
    }
}

/// A device that keeps chains across callbacks is asked to give them back before the ring's queue
/// is re-created (a new memory table) or stopped, so it never writes through a chain of a memory
/// table that is gone, and the driver gets the buffers back, counted in the position
/// `GET_VRING_BASE` reports. A change of the log flag alone keeps the queue and asks nothing.
@Suite struct QueueChangingTests {
    @Test func keptChainsAreGivenBackBeforeTheMemoryTableChangesAndBeforeTheRingStops() throws {
        let session = try VhostUserSession(device: KeepingDevice())
        let device = try #require(session.device as? KeepingDevice)
        defer { session.close() }
        let rig = try GuestRig()
        try rig.start(session)
        try rig.postWritable(slot: 0, length: 0x100)
        try rig.kick.notify()
        try #require(device.waitUntilKeeping(1), "the device did not pop the chain")

        // Logging on (SET_VRING_ADDR with only VHOST_VRING_F_LOG changed): the queue stays.
        _ = try LogTests().startLogging(session, rig, log: try SharedMemory(size: 4096))
        #expect(device.changes.isEmpty && device.keeping == 1)

        // The same memory again, from a new fd: the ring is re-created over it.
        _ = try session.handle(message(.setMemTable(MemoryTable(regions: [rig.region])), fds: [rig.memory.descriptor]))
        #expect(device.changes == [.rebuilding])
        let first = try #require(try rig.reap(), "the kept chain was not completed before the reply")
        #expect(first.length == 0x100 && rig.bytes(slot: 0, count: 0x100).allSatisfy { $0 == 0x5A })

        // The re-created ring goes on: the next chain is popped (and kept), then the ring stops.
        try rig.postWritable(slot: 1, length: 0x80)
        try rig.kick.notify()
        try #require(device.waitUntilKeeping(1), "the re-created ring did not serve the next chain")
        let base = try session.handle(message(.getVringBase(VringState(index: 0, num: 0))))
        #expect(base?.payload == .vringState(VringState(index: 0, num: 2)))
        #expect(device.changes == [.rebuilding, .stopping])
        let second = try #require(try rig.reap(), "the kept chain was not completed before the ring stopped")
        #expect(second.length == 0x80 && rig.bytes(slot: 1, count: 0x80).allSatisfy { $0 == 0x5A })
    }

    /// Requests that park the workers come in bursts (QEMU stops a ring with SET_VRING_ENABLE 0
    /// then GET_VRING_BASE): each one's quiesce must run even when the worker, resumed after the
    /// previous one, has not woken up yet.
    @Test func everyRequestOfABurstQuiescesItsRings() throws {
        let session = try VhostUserSession(device: KeepingDevice())
        let device = try #require(session.device as? KeepingDevice)
        defer { session.close() }
        let rig = try GuestRig()
        try rig.start(session)
        for round in 0..<24 {
            try rig.postWritable(slot: round % 4, length: 0x40)
            try rig.kick.notify()
            try #require(device.waitUntilKeeping(1), "round \(round): the chain was not popped")
            _ = try session.handle(message(.setVringEnable(VringState(index: 0, num: 1))))
            _ = try session.handle(
                message(.setMemTable(MemoryTable(regions: [rig.region])), fds: [rig.memory.descriptor]))
            try #require(device.changes.count == round + 1, "round \(round): the memory table change was not announced")
            let used = try #require(try rig.reap(), "round \(round): the kept chain was not given back")
            #expect(used.length == 0x40)
        }
    }
}
