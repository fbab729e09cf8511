import Testing
import VMMSysUtil
import VMMTestSupport
import Virtio
@testable import VhostUserProtocol
@testable import VhostUserBackend

/// A device whose first `process` call makes a chain available itself (as a driver would just
/// after the device looked, seeing notifications off and so not kicking) and pops nothing; later
/// calls complete what they pop with 0x5A bytes.
final class LateArrivalDevice: VhostUserDevice, @unchecked Sendable {
    let deviceType = VirtioDeviceType.entropy
    let deviceFeatures: VirtioFeatures = .version1
    let queueCount = 1
    let maxQueueSize = 256
    let configSize = 0
    private let lock = ConditionLock()
    // Guarded by `lock`.
    private var arrive: (() throws -> Void)?
    private var calls = 0

    /// `arrive` runs (once) inside the next `process` call, on the worker thread.
    func onNextProcess(_ arrive: @escaping () throws -> Void) { lock.withLock { self.arrive = arrive } }

    var processCalls: Int { lock.withLock { calls } }

    func process(_ queue: inout VhostUserQueue) throws {
        let arrival: (() throws -> Void)? = lock.withLock {
            calls += 1
            defer { arrive = nil }
            return arrive
        }
        if let arrival {
            try arrival()
            return
        }
        while let chain = try queue.pop() { try queue.complete(chain, written: try fill(chain, with: 0x5A)) }
    }
}

@Suite("Chains that arrive while the device looks")
struct LateArrivalTests {
    /// The worker called the device with nothing available; meanwhile a chain arrived and the
    /// driver did not kick. The worker must offer it again before it sleeps, or it is lost.
    @Test func aChainArrivingAfterTheDeviceLookedIsServed() throws {
        let device = LateArrivalDevice()
        let session = try VhostUserSession(device: device)
        defer { session.close() }
        let rig = try GuestRig()
        try rig.start(session)
        // The worker serves the ring once when it starts: wait until that is over.
        for _ in 0..<1000 where device.processCalls == 0 { usleepMilliseconds(1) }
        let posted = ConditionLock()
        var id: UInt16?
        device.onNextProcess {
            let made = try rig.postWritable(slot: 0, length: 16)
            posted.withLock { id = made }
        }
        // A kick with nothing available wakes the worker; the chain appears during its call.
        try rig.kick.notify()
        // The driver is the test's again once the worker has posted (the lock orders the two).
        for _ in 0..<1000 where posted.withLock({ id }) == nil { usleepMilliseconds(1) }
        let used = try reapWaiting(rig)
        #expect(used?.id == posted.withLock { id })
        #expect(used?.length == 16)
        #expect(rig.bytes(slot: 0, count: 16) == [UInt8](repeating: 0x5A, count: 16))
    }
}
