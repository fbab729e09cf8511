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

/// Keeps the first chain of each pair it pops and completes it, filled with `0x6B`, when the
/// second arrives (in a later `process`): a device that holds a chain on its worker across
/// callbacks, as net's receive path holds buffers for a frame that did not fit yet.
final class PairingDevice: VhostUserDevice, @unchecked Sendable {
    let deviceType = VirtioDeviceType.entropy
    let deviceFeatures: VirtioFeatures = .version1
    let queueCount = 1
    let maxQueueSize = 256
    let configSize = 0
    /// Worker only.
    private var held: Chain?
    private let lock = ConditionLock()
    private var holding = false

    /// Whether a chain is held now (read from the test thread).
    var isHolding: Bool { lock.withLock { holding } }

    func process(_ queue: inout VhostUserQueue) throws {
        while let chain = try queue.pop() {
            guard let first = held else {
                held = chain
                lock.withLock { holding = true }
                continue
            }
            let bytes = [UInt8](repeating: 0x6B, count: Int(first.writableLength))
            let written = try bytes.withUnsafeBytes { try first.writeWritable($0) }
            try queue.complete(first, written: UInt32(written))
            try queue.complete(chain, written: 0)
            held = nil
            lock.withLock { holding = false }
        }
    }
}

/// Turning dirty logging on or off (`SET_VRING_ADDR` that changes only `VHOST_VRING_F_LOG`) must
/// not disturb a running ring: a chain a device holds across it is completed afterwards, written
/// and logged, and the ring goes on.
@Suite struct HeldAcrossLoggingTests {
    @Test func aChainHeldWhileLoggingStartsIsCompletedAndLogged() throws {
        let session = try VhostUserSession(device: PairingDevice())
        let device = try #require(session.device as? PairingDevice)
        defer { session.close() }
        let rig = try GuestRig()
        try rig.start(session)
        // A is popped and held.
        try rig.driver.post([DriverBuffer(address: 0x60000, length: 0x200, isWritable: true)])
        try rig.kick.notify()
        let deadline = ContinuousClock.now + .seconds(5)
        while !device.isHolding, ContinuousClock.now < deadline { usleep(1000) }
        try #require(device.isHolding, "the device did not pop the first chain")
        let log = try LogTests().startLogging(session, rig, log: try SharedMemory(size: 4096))
        _ = log.takeDirtyPages()
        // B arrives: A is completed (0x200 bytes written), then B (nothing written).
        try rig.driver.post([DriverBuffer(address: 0x70000, length: 0x100, isWritable: true)])
        try rig.kick.notify()
        let first = try #require(try reapWaiting(rig), "the held chain was not completed")
        #expect(first.length == 0x200)
        let second = try #require(try reapWaiting(rig))
        #expect(second.length == 0)
        var data = [UInt8](repeating: 0, count: 0x200)
        try data.withUnsafeMutableBytes { try rig.guest.read(guestPhysical: 0x60000, into: $0) }
        #expect(data.allSatisfy { $0 == 0x6B })
        #expect(dirtyPages(log, including: [LogTests.usedRingPage, 0x60]) == [LogTests.usedRingPage, 0x60])
    }
}
