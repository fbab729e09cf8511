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

/// A device that holds what it pops inside `process`, as a paced device does: it completes and
/// publishes the first chain at once, then waits until the framework asks it to yield (bounded:
/// 30 s, then it records the failure), then completes the rest.
final class HoldingDevice: VhostUserDevice, @unchecked Sendable {
    let deviceType = VirtioDeviceType.entropy
    let deviceFeatures: VirtioFeatures = .version1
    let queueCount = 1
    let maxQueueSize = 256
    let configSize = 0
    private let lock = ConditionLock()
    private var yielded = false
    private var timedOut = false

    var sawYield: Bool { lock.withLock { yielded } }
    var waitedTooLong: Bool { lock.withLock { timedOut } }

    func readConfig(offset: Int, into buffer: UnsafeMutableRawBufferPointer) {}

    func process(_ queue: inout VhostUserQueue) throws {
        var held: [Chain] = []
        while let chain = try queue.pop() { held.append(chain) }
        guard let first = held.first else { return }
        try queue.complete(first, written: 0)
        try queue.publish()
        var waited = 0
        while !queue.shouldYield {
            guard waited < 30_000 else {
                lock.withLock { timedOut = true }
                break
            }
            usleep(1000)
            waited += 1
        }
        if queue.shouldYield { lock.withLock { yielded = true } }
        for chain in held.dropFirst() { try queue.complete(chain, written: 0) }
    }
}

@Suite("Pacing: devices that wait inside process")
struct PacingTests {
    /// `publish()` reaches the driver while `process` still runs, and `GET_VRING_BASE` gets the
    /// worker back through `shouldYield` with every popped chain completed.
    @Test func heldChainsArePublishedEarlyAndYieldedOnStop() throws {
        let device = HoldingDevice()
        let session = try VhostUserSession(device: device)
        defer { session.close() }
        let rig = try GuestRig()
        // Both chains are in the ring before it starts: a worker that wakes as the ring is enabled
        // pops both in one `process`, so GET_VRING_BASE must report 2 (posting after the start
        // raced it: the worker could hold the first chain before the second was posted).
        let first = try rig.postWritable(slot: 0)
        try rig.postWritable(slot: 1)
        try rig.start(session)
        try rig.kick.notify()
        // Only publish() can have made this visible: the device is still inside process.
        let used = try #require(try reapWaiting(rig))
        #expect(used.id == first)
        let base = try #require(try session.handle(message(.getVringBase(VringState(index: 0, num: 0)))))
        #expect(base.payload == .vringState(VringState(index: 0, num: 2)))
        #expect(device.sawYield)
        #expect(!device.waitedTooLong)
        #expect(try rig.reap() != nil)
    }

    @Test func tokenBucketGrantsItsBurstThenMakesWait() {
        let bucket = TokenBucket(rate: 1, burst: 3)
        #expect(bucket.rate == 1)
        #expect(bucket.burst == 3)
        for _ in 0..<3 { #expect(bucket.tryTake() == 0) }
        let wait = bucket.tryTake()
        #expect(wait > 0)
        #expect(wait <= 1_000_000_000)
        bucket.refund()
        #expect(bucket.tryTake() == 0)
    }

    @Test func tokenBucketClampsItsParameters() {
        let bucket = TokenBucket(rate: 0, burst: 0)
        #expect(bucket.rate == 1)
        #expect(bucket.burst == 1)
        #expect(TokenBucket(rate: 100).burst == 10)
    }
}
