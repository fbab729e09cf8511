import Testing
import VMMSysUtil
import VMMTestSupport
import Virtio
@testable import VhostUserProtocol
@testable import VhostUserBackend

/// A device that postpones every chain it pops and hands the tokens to the test; optionally it
/// also watches a notifier (an event source) and pops one chain per signal.
final class PostponingDevice: VhostUserDevice, @unchecked Sendable {
    let deviceType = VirtioDeviceType.entropy
    let deviceFeatures: VirtioFeatures
    let queueCount = 1
    let maxQueueSize = 256
    let configSize = 0
    /// When set, chains are popped only on this source's signals, not on kicks.
    let source: EventNotifier?
    private let lock = ConditionLock()
    private var held: [DeferredChain] = []
    private var starts = 0

    init(source: EventNotifier? = nil, packed: Bool = false) {
        self.source = source
        deviceFeatures = packed ? [.version1, .ringPacked] : .version1
    }

    var startCount: Int { lock.withLock { starts } }

    /// Takes the tokens held so far, waiting (bounded, 10 s) until there are `count`.
    func take(_ count: Int) -> [DeferredChain] {
        for _ in 0..<1000 {
            let taken: [DeferredChain]? = lock.withLock {
                guard held.count >= count else { return nil }
                defer { held.removeAll() }
                return held
            }
            if let taken { return taken }
            usleepMilliseconds(10)
        }
        return []
    }

    func queueStarted(_ queue: inout VhostUserQueue) throws {
        lock.withLock { starts += 1 }
        if let source { try queue.watch(source.waitDescriptor, token: 42) }
    }

    func process(_ queue: inout VhostUserQueue) throws {
        guard source == nil else { return }
        while let chain = try queue.pop() { keep(queue.postpone(chain)) }
    }

    func handle(_ event: PollEvent, on queue: inout VhostUserQueue) throws {
        #expect(event.token == 42)
        _ = try source?.tryConsume()
        if let chain = try queue.pop() { keep(queue.postpone(chain)) }
    }

    private func keep(_ token: DeferredChain) { lock.withLock { held.append(token) } }
}

func usleepMilliseconds(_ milliseconds: Int) {
    let clock = ContinuousClock()
    let deadline = clock.now + .milliseconds(milliseconds)
    while clock.now < deadline { yieldThread() }
}

@Suite("Deferred completion and device event sources")
struct DeferredCompletionTests {
    static let shortTimeout = VhostUserSessionOptions(completionTimeout: .milliseconds(50))

    /// Starts ring 0, posts and kicks one writable chain, and returns the device's token for it.
    static func holdOneChain(_ session: VhostUserSession, _ device: PostponingDevice, _ rig: GuestRig) throws
        -> [DeferredChain]
    {
        try rig.start(session)
        try rig.postWritable(slot: 0)
        try rig.kick.notify()
        let held = device.take(1)
        try #require(held.count == 1)
        return held
    }

    @Test(.isolatedDescriptors) func chainsCompletedOnOtherThreadsReachTheDriver() throws {
        let before = openFileDescriptorCount()
        do {
            let device = PostponingDevice()
            let session = try VhostUserSession(device: device)
            defer { session.close() }
            let rig = try GuestRig()
            try rig.start(session)
            for slot in 0..<4 { try rig.postWritable(slot: slot, length: 32) }
            try rig.kick.notify()
            let held = device.take(4)
            try #require(held.count == 4)
            #expect(try rig.reap() == nil)
            // Completed out of order, from four threads.
            let failures = Failures()
            let threads = held.reversed().map { token in
                startThread {
                    failures.record { try token.complete(written: try fill(token.chain, with: 0x5A)) }
                }
            }
            for thread in threads { thread.join() }
            #expect(failures.errors.isEmpty)
            var ids: Set<UInt16> = []
            for _ in 0..<4 {
                let used = try #require(try reapWaiting(rig))
                #expect(used.length == 32)
                ids.insert(used.id)
            }
            #expect(ids == Set(held.map { $0.chain.id }))
            #expect(rig.bytes(slot: 2, count: 32) == [UInt8](repeating: 0x5A, count: 32))
            // A second completion of the same token is refused.
            #expect(throws: CompletionError.notOutstanding(ring: 0, id: held[0].chain.id)) {
                try held[0].complete(written: 0)
            }
            #expect(throws: CompletionError.self) { try held[1].complete(written: 33) }
        }
        #expect(openFileDescriptorCount() == before)
    }

    @Test func getVringBaseWaitsForPostponedChains() throws {
        let device = PostponingDevice()
        let session = try VhostUserSession(device: device)
        defer { session.close() }
        let rig = try GuestRig()
        let held = try Self.holdOneChain(session, device, rig)
        let failures = Failures()
        let completer = startThread {
            usleepMilliseconds(50)
            failures.record { try held[0].complete(written: 8) }
        }
        // Answered only after the completion landed: the base counts it and the driver has it.
        let base = try #require(try session.handle(message(.getVringBase(VringState(index: 0, num: 0)))))
        completer.join()
        #expect(failures.errors.isEmpty)
        #expect(base.payload == .vringState(VringState(index: 0, num: 1)))
        let used = try #require(try rig.reap())
        #expect(used.length == 8)
    }

    /// RESET_DEVICE, a new memory table and disconnect each stop or rebuild the ring; a chain held
    /// past the completion timeout is then refused, and guest memory is left alone.
    @Test(arguments: ["reset", "memory table", "disconnect", "vring base"])
    func completionAfterTheRingStoppedIsRefused(_ event: String) throws {
        let device = PostponingDevice()
        let session = try VhostUserSession(device: device, options: Self.shortTimeout)
        defer { session.close() }
        let rig = try GuestRig()
        let held = try Self.holdOneChain(session, device, rig)
        let usedIndex = rig.usedIndexInMemory
        switch event {
        case "reset": _ = try session.handle(message(.resetDevice))
        case "memory table":
            _ = try session.handle(
                message(.setMemTable(MemoryTable(regions: [rig.region])), fds: [rig.memory.descriptor]))
        case "vring base": _ = try session.handle(message(.getVringBase(VringState(index: 0, num: 0))))
        default: session.close()
        }
        // The device may still be using the chain's buffers: they stay mapped (and its translated
        // buffers valid) while it holds the token, even after a new table or a disconnect.
        #expect(try fill(held[0].chain, with: 0x77) == 64)
        #expect(throws: CompletionError.ringStopped(ring: 0, id: held[0].chain.id)) {
            try held[0].complete(written: 4)
        }
        usleepMilliseconds(20)
        #expect(rig.usedIndexInMemory == usedIndex)
        if event == "memory table" {
            // The split ring gives the refused chain to the device again (its descriptors are
            // still the driver's): completing that one works.
            try rig.kick.notify()
            let again = device.take(1)
            try #require(again.count == 1)
            #expect(again[0].chain.id == held[0].chain.id)
            try again[0].complete(written: 4)
            let used = try #require(try reapWaiting(rig))
            #expect(used.id == held[0].chain.id)
        }
    }

    @Test(.isolatedDescriptors) func deviceEventSourceDrivesTheQueue() throws {
        let before = openFileDescriptorCount()
        do {
            let source = try EventNotifier()
            let device = PostponingDevice(source: source)
            let session = try VhostUserSession(device: device)
            defer { session.close() }
            let rig = try GuestRig()
            try rig.start(session)
            try rig.postWritable(slot: 0)
            try rig.postWritable(slot: 1)
            try rig.kick.notify()
            // Kicks do not pop for this device; its own source does, one chain per signal.
            usleepMilliseconds(20)
            #expect(device.take(0).isEmpty)
            try source.notify()
            let first = device.take(1)
            try #require(first.count == 1)
            try first[0].complete(written: 1)
            #expect(try reapWaiting(rig)?.id == first[0].chain.id)
            try source.notify()
            let second = device.take(1)
            try #require(second.count == 1)
            try second[0].complete(written: 2)
            #expect(try reapWaiting(rig)?.length == 2)
            #expect(device.startCount == 1)
            // Reset removes the source before the device's reset, and the ring restarts fresh.
            _ = try session.handle(message(.resetDevice))
            try source.notify()
            usleepMilliseconds(50)
            #expect(device.take(0).isEmpty)
        }
        #expect(openFileDescriptorCount() == before)
    }
}

/// Errors thrown on helper threads, checked by the test afterwards.
final class Failures: @unchecked Sendable {
    private let lock = ConditionLock()
    private var recorded: [String] = []
    var errors: [String] { lock.withLock { recorded } }
    func record(_ body: () throws -> Void) {
        do { try body() } catch { lock.withLock { recorded.append("\(error)") } }
    }
}

extension GuestRig {
    /// `used->idx` as the device last published it.
    var usedIndexInMemory: UInt16 {
        memory.mapping.base.load(fromByteOffset: Int(Self.addresses.deviceArea) + 2, as: UInt16.self)
    }
}
