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

@Suite("VhostUserSession: rings, data path, inflight recovery")
struct RingTests {
    @Test(.isolatedDescriptors) func servesAKickedChainAndReportsTheBase() throws {
        let before = openFileDescriptorCount()
        do {
            let device = PatternDevice(pattern: 0x3C)
            let session = try VhostUserSession(device: device)
            defer { session.close() }
            let rig = try GuestRig()
            try rig.start(session)
            #expect(session.isStarted(ring: 0))
            #expect(session.isEnabled(ring: 0))
            let id = try rig.postWritable(slot: 0, length: 100)
            try rig.kick.notify()
            let used = try #require(try reapWaiting(rig))
            #expect(used.id == id)
            #expect(used.length == 100)
            #expect(rig.bytes(slot: 0, count: 100) == [UInt8](repeating: 0x3C, count: 100))
            #expect(rig.bytes(slot: 0, count: 101).last == 0)
            let base = try #require(try session.handle(message(.getVringBase(VringState(index: 0, num: 0)))))
            #expect(base.payload == .vringState(VringState(index: 0, num: 1)))
            #expect(!session.isStarted(ring: 0))
            // Stopped: a new chain and a kick are not served.
            _ = try rig.call.tryConsume()
            try rig.postWritable(slot: 1)
            try rig.kick.notify()
            #expect(!waitForSignal(rig.call, milliseconds: 100))
            #expect(try rig.reap() == nil)
        }
        #expect(openFileDescriptorCount() == before)
    }

    @Test func ringConfigurationIsRefusedWhileStarted() throws {
        let session = try VhostUserSession(device: PatternDevice())
        defer { session.close() }
        let rig = try GuestRig()
        try rig.start(session)
        #expect(throws: VhostUserError.self) {
            _ = try session.handle(message(.setVringNum(VringState(index: 0, num: 4))))
        }
        #expect(throws: VhostUserError.self) {
            _ = try session.handle(message(.setVringBase(VringState(index: 0, num: 3))))
        }
        // Changing the ring format of a started ring is refused too.
        #expect(throws: VhostUserError.self) {
            _ = try session.handle(message(.setFeatures(VirtioFeatures([.version1, .protocolFeatures]))))
        }
    }

    @Test func ringOutsideMemoryIsRefused() throws {
        let session = try VhostUserSession(device: PatternDevice())
        defer { session.close() }
        let rig = try GuestRig()
        _ = try session.handle(message(.setFeatures(VirtioFeatures(rawValue: drivenFeatures))))
        _ = try session.handle(message(.setMemTable(MemoryTable(regions: [rig.region])), fds: [rig.memory.descriptor]))
        _ = try session.handle(message(.setVringNum(VringState(index: 0, num: 8))))
        _ = try session.handle(
            message(.setVringKick(VringFileIndex(index: 0, hasFile: true)), fds: [rig.kick.waitDescriptor]))
        let outside = VringAddress(
            index: 0, descriptorTable: GuestRig.userBase + UInt64(GuestRig.memorySize) - 64,
            usedRing: GuestRig.userBase + 0x3000, availableRing: GuestRig.userBase + 0x2000)
        #expect(throws: VhostUserError.self) { _ = try session.handle(message(.setVringAddr(outside))) }
        #expect(!session.isStarted(ring: 0))
        let misaligned = VringAddress(
            index: 0, descriptorTable: GuestRig.userBase + 0x1008,
            usedRing: GuestRig.userBase + 0x3000, availableRing: GuestRig.userBase + 0x2000)
        #expect(throws: VhostUserError.self) { _ = try session.handle(message(.setVringAddr(misaligned))) }
        // Removing the memory under a started ring is refused.
        _ = try session.handle(message(.setVringAddr(rig.vringAddress())))
        #expect(session.isStarted(ring: 0))
        _ = try session.handle(message(.setProtocolFeatures([.configureMemorySlots])))
        #expect(throws: VhostUserError.self) {
            _ = try session.handle(message(.remMemReg(SingleMemoryRegion(region: rig.region))))
        }
    }

    @Test func newMemoryTableKeepsTheRingPosition() throws {
        let session = try VhostUserSession(device: PatternDevice())
        defer { session.close() }
        let rig = try GuestRig()
        try rig.start(session)
        try rig.postWritable(slot: 0)
        try rig.kick.notify()
        #expect(try reapWaiting(rig) != nil)
        // Same memory again (a new mapping of the same fd): the ring goes on where it was.
        _ = try session.handle(message(.setMemTable(MemoryTable(regions: [rig.region])), fds: [rig.memory.descriptor]))
        try rig.postWritable(slot: 1)
        try rig.kick.notify()
        #expect(try reapWaiting(rig) != nil)
        #expect(
            try session.handle(message(.getVringBase(VringState(index: 0, num: 0))))?.payload
                == .vringState(VringState(index: 0, num: 2)))
    }

    /// With `bursts`, the devices pop with `pop(into:)`, which takes chains one at a time (each
    /// recorded in flight) while an inflight region is set or resubmissions are pending.
    @Test(.isolatedDescriptors, arguments: [false, true])
    func inflightRequestsAreResubmittedOnceInOrder(bursts: Bool) throws {
        let before = openFileDescriptorCount()
        do {
            let rig = try GuestRig()
            let description = InflightDescription(
                mmapSize: 0, mmapOffset: 0, queueCount: 1, queueSize: UInt16(GuestRig.queueSize))
            var posted: [UInt16] = []
            var keptAnswer: InflightDescription?
            // The front-end keeps its own copy of the buffer's fd across back-end restarts.
            var keptFD: Int32 = -1
            defer { if keptFD >= 0 { close(keptFD) } }
            // First back-end: pops three chains, completes only the second, dies.
            do {
                let device = PatternDevice(pattern: 1, bursts: bursts)
                let session = try VhostUserSession(device: device)
                defer { session.close() }
                _ = try session.handle(message(.setProtocolFeatures(session.offeredProtocolFeatures)))
                let reply = try #require(try session.handle(message(.getInflightFD(description))))
                guard case .inflight(let answer) = reply.payload, let fd = reply.descriptor else {
                    Issue.record("no inflight buffer")
                    return
                }
                #expect(answer.mmapSize >= UInt64(16 + 16 * GuestRig.queueSize))
                keptAnswer = answer
                keptFD = fcntl(fd, F_DUPFD_CLOEXEC, 0)
                // Chains and plan in place before the ring starts, so the first `process`
                // (right after the start, or after the kick) sees all three.
                device.crashNextTime(pop: 3, complete: 1)
                for slot in 0..<3 { posted.append(try rig.postWritable(slot: slot)) }
                try rig.start(session, inflight: (answer, fd))
                try rig.kick.notify()
                let completed = try #require(try reapWaiting(rig))
                #expect(completed.id == posted[1])
                #expect(device.completed == [posted[1]])
            }
            #expect(try rig.reap() == nil)
            let answer = try #require(keptAnswer)
            #expect(keptFD >= 0)
            // Second back-end: gets the buffer back, base = used index (QEMU after a crash).
            let device = PatternDevice(pattern: 2, bursts: bursts)
            let session = try VhostUserSession(device: device)
            defer { session.close() }
            try rig.start(session, base: 1, inflight: (answer, keptFD))
            posted.append(try rig.postWritable(slot: 3))
            try rig.kick.notify()
            var reaped: [UInt16] = [posted[1]]
            while reaped.count < 4, let used = try reapWaiting(rig) { reaped.append(used.id) }
            // The two left in flight come first, in their original order, then the new one (which
            // reuses the completed chain's descriptor); nothing is completed twice.
            #expect(reaped == [posted[1], posted[0], posted[2], posted[3]])
            #expect(try rig.reap() == nil)
            #expect(device.completed == [posted[0], posted[2], posted[3]])
            // Each resubmitted buffer holds the second back-end's bytes.
            #expect(rig.bytes(slot: 0, count: 64) == [UInt8](repeating: 2, count: 64))
            #expect(rig.bytes(slot: 1, count: 64) == [UInt8](repeating: 1, count: 64))
            #expect(rig.bytes(slot: 2, count: 64) == [UInt8](repeating: 2, count: 64))
            #expect(rig.bytes(slot: 3, count: 64) == [UInt8](repeating: 2, count: 64))
            #expect(
                try session.handle(message(.getVringBase(VringState(index: 0, num: 0))))?.payload
                    == .vringState(VringState(index: 0, num: 4)))
        }
        #expect(openFileDescriptorCount() == before)
    }

    @Test func inflightRecordsArePrunedAndValidated() throws {
        let buffer = try InflightBuffer(queueCount: 1, queueSize: 8)
        var queue = try #require(buffer.queue(0))
        #expect(try queue.recover(queueIndex: 0, queueSize: 8, deviceUsedIndex: 10) == ([], false))
        // Pop 2, 5, 7; complete 5 and 2 in one batch, published (used 10 -> 12) but "killed" before clearing.
        queue.recordPop(2)
        queue.recordPop(5)
        queue.recordPop(7)
        queue.beginBatch([5, 2])
        var restarted = try #require(buffer.queue(0))
        let recovered = try restarted.recover(queueIndex: 0, queueSize: 8, deviceUsedIndex: 12)
        #expect(recovered.heads == [7])
        #expect(recovered.wasInitialized)
        // Not published: all three come back, oldest first.
        let other = try InflightBuffer(queueCount: 1, queueSize: 8)
        var fresh = try #require(other.queue(0))
        _ = try fresh.recover(queueIndex: 0, queueSize: 8, deviceUsedIndex: 0)
        fresh.recordPop(6)
        fresh.recordPop(1)
        fresh.recordPop(3)
        fresh.beginBatch([1])
        var again = try #require(other.queue(0))
        #expect(try again.recover(queueIndex: 0, queueSize: 8, deviceUsedIndex: 0).heads == [6, 1, 3])
        // A different ring size, or a hostile used index, is refused.
        var mismatch = try #require(other.queue(0))
        #expect(throws: VhostUserError.self) {
            _ = try mismatch.recover(queueIndex: 0, queueSize: 4, deviceUsedIndex: 0)
        }
        var hostile = try #require(other.queue(0))
        #expect(throws: VhostUserError.self) {
            _ = try hostile.recover(queueIndex: 0, queueSize: 8, deviceUsedIndex: 100)
        }
    }

    @Test(.isolatedDescriptors) func inflightGeometryIsValidated() throws {
        let before = openFileDescriptorCount()
        do {
            let session = try VhostUserSession(device: PatternDevice())
            defer { session.close() }
            _ = try session.handle(message(.setProtocolFeatures([.inflightSharedMemory])))
            for (count, size) in [(0, 8), (2, 8), (1, 0), (1, 512)] {
                #expect(throws: VhostUserError.self) {
                    _ = try session.handle(
                        message(
                            .getInflightFD(
                                InflightDescription(
                                    mmapSize: 0, mmapOffset: 0, queueCount: UInt16(count), queueSize: UInt16(size)))))
                }
            }
            let small = try SharedMemory(size: 64)
            #expect(throws: VhostUserError.self) {
                _ = try session.handle(
                    message(
                        .setInflightFD(
                            InflightDescription(
                                mmapSize: 64, mmapOffset: 0, queueCount: 1, queueSize: 8)), fds: [small.descriptor]))
            }
            // mmap_size claims enough, but the fd is smaller.
            #expect(throws: VhostUserError.self) {
                _ = try session.handle(
                    message(
                        .setInflightFD(
                            InflightDescription(
                                mmapSize: 4096, mmapOffset: 0, queueCount: 1, queueSize: 8)), fds: [small.descriptor]))
            }
        }
        #expect(openFileDescriptorCount() == before)
    }
}

@Suite("VhostUserSession: polling, enabling, several queues")
struct RingModeTests {
    @Test func ringWithoutKickFdIsPolled() throws {
        let session = try VhostUserSession(device: PatternDevice(pattern: 7))
        defer { session.close() }
        let rig = try GuestRig()
        for (body, fds) in rig.startRequests(
            features: drivenFeatures, protocolFeatures: session.offeredProtocolFeatures)
        {
            if case .setVringKick = body {
                _ = try session.handle(message(.setVringKick(VringFileIndex(index: 0, hasFile: false))))
            } else {
                _ = try session.handle(message(body, fds: fds))
            }
        }
        #expect(session.isStarted(ring: 0))
        try rig.postWritable(slot: 0, length: 10)
        // No kick: the worker finds the chain by polling.
        let used = try #require(try reapWaiting(rig))
        #expect(used.length == 10)
        #expect(rig.bytes(slot: 0, count: 10) == [UInt8](repeating: 7, count: 10))
    }

    @Test func withoutProtocolFeaturesEveryRingIsEnabledBySetFeatures() throws {
        let session = try VhostUserSession(device: PatternDevice(queueCount: 3))
        defer { session.close() }
        #expect(!session.isEnabled(ring: 0))
        _ = try session.handle(message(.setFeatures(VirtioFeatures([.version1, .ringEventIndex]))))
        #expect((0..<3).allSatisfy { session.isEnabled(ring: $0) })
        // With bit 30, rings wait for SET_VRING_ENABLE.
        let other = try VhostUserSession(device: PatternDevice(queueCount: 3))
        defer { other.close() }
        _ = try other.handle(message(.setFeatures(VirtioFeatures([.version1, .protocolFeatures]))))
        #expect(!other.isEnabled(ring: 1))
        _ = try other.handle(message(.setVringEnable(VringState(index: 1, num: 1))))
        #expect(other.isEnabled(ring: 1) && !other.isEnabled(ring: 2))
    }

    @Test func disabledRingIsNotServedUntilEnabled() throws {
        let session = try VhostUserSession(device: PatternDevice())
        defer { session.close() }
        let rig = try GuestRig()
        try rig.start(session)
        _ = try session.handle(message(.setVringEnable(VringState(index: 0, num: 0))))
        _ = try rig.call.tryConsume()
        try rig.postWritable(slot: 0)
        try rig.kick.notify()
        #expect(!waitForSignal(rig.call, milliseconds: 100))
        #expect(try rig.reap() == nil)
        _ = try session.handle(message(.setVringEnable(VringState(index: 0, num: 1))))
        #expect(try reapWaiting(rig) != nil)
    }

    /// Rings per thread: `queuesPerThread`, raised so the threads stay within `maxThreads`.
    @Test func threadCapSpreadsRingsOverTheAllowedThreads() {
        #expect(VhostUserSessionOptions().ringsPerThread(ringCount: 4) == 1)
        #expect(VhostUserSessionOptions(maxThreads: 1).ringsPerThread(ringCount: 4) == 4)
        #expect(VhostUserSessionOptions(maxThreads: 2).ringsPerThread(ringCount: 4) == 2)
        #expect(VhostUserSessionOptions(maxThreads: 3).ringsPerThread(ringCount: 4) == 2)
        #expect(VhostUserSessionOptions(maxThreads: 8).ringsPerThread(ringCount: 4) == 1)
        #expect(VhostUserSessionOptions(queuesPerThread: 3, maxThreads: 8).ringsPerThread(ringCount: 4) == 3)
        #expect(VhostUserSessionOptions(maxThreads: 0).ringsPerThread(ringCount: 4) == 4)
        #expect(VhostUserSessionOptions.daemon.maxThreads ?? 0 >= 1)
    }

    @Test(arguments: [VhostUserSessionOptions(queuesPerThread: 2), VhostUserSessionOptions(maxThreads: 1)])
    func twoQueuesOnOneWorkerThread(options: VhostUserSessionOptions) throws {
        let device = PatternDevice(queueCount: 2)
        let session = try VhostUserSession(device: device, options: options)
        defer { session.close() }
        let first = try GuestRig()
        try first.start(session)
        // The second ring lives in the same memory, 0x8000 further on, with its own kick and call.
        let secondAddresses = RingAddresses(descriptorTable: 0x8000, driverArea: 0x9000, deviceArea: 0xA000)
        let driver = try DriverSplitQueue(
            memory: first.guest, size: 8, addresses: secondAddresses,
            features: [.ringEventIndex, .ringIndirectDescriptors])
        let kick = try EventNotifier()
        let call = try EventNotifier()
        for body in [
            FrontendMessage.setVringNum(VringState(index: 1, num: 8)),
            .setVringBase(VringState(index: 1, num: 0)),
            .setVringAddr(
                VringAddress(
                    index: 1, descriptorTable: GuestRig.userBase + 0x8000,
                    usedRing: GuestRig.userBase + 0xA000, availableRing: GuestRig.userBase + 0x9000)),
            .setVringEnable(VringState(index: 1, num: 1)),
        ] { _ = try session.handle(message(body)) }
        _ = try session.handle(
            message(.setVringKick(VringFileIndex(index: 1, hasFile: true)), fds: [kick.waitDescriptor]))
        _ = try session.handle(
            message(.setVringCall(VringFileIndex(index: 1, hasFile: true)), fds: [call.notifyDescriptor]))
        #expect(session.isStarted(ring: 1))
        _ = try driver.post([DriverBuffer(address: 0x20000, length: 16, isWritable: true)])
        try first.postWritable(slot: 0, length: 8)
        try kick.notify()
        try first.kick.notify()
        #expect(try reapWaiting(first)?.length == 8)
        var second: UsedBuffer?
        for _ in 0..<3 where second == nil {
            second = try driver.reap()
            if second == nil { _ = waitForSignal(call) }
        }
        #expect(second?.length == 16)
    }
}
