#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Testing
import VMMSysUtil
import VMMTestSupport
import VhostUserProtocol
import VhostUserFrontend
import Virtio

/// Resuming on a restarted back-end.
@Suite struct FrontendReconnectTests {
    @Test(.isolatedDescriptors) func reconnectResendsMemoryInflightAndRingsAtTheUsedIndex() throws {
        var configured = WellBehaved()
        configured.protocolFeatures |= ProtocolFeatures.inflightSharedMemory.rawValue
        let backend = configured
        let inflightOverride: @Sendable (inout Message) -> FakeReply? = { message in
            guard message.request == .getInflightFD, let buffer = try? SharedMemory(size: 4096) else { return nil }
            let copy = fcntl(buffer.descriptor, F_DUPFD_CLOEXEC, 0)
            return .raw(
                replyBytes(
                    to: .getInflightFD,
                    .inflight(
                        InflightDescription(mmapSize: 4096, mmapOffset: 0, queueCount: 1, queueSize: 8))), fds: [copy])
        }
        let before = openFileDescriptorCount()
        let memory = try SharedMemory(size: 65536)
        do {
            let (frontend, first) = try connectedToFake { message in
                inflightOverride(&message) ?? backend.reply(&message)
            }
            try frontend.negotiate(features: [.version1, .ringEventIndex])
            let guest = try frontend.setMemory([FrontendMemoryRegion(memory)])
            try frontend.setInflight(try frontend.getInflight(queueCount: 1, queueSize: 8))
            let queue = try frontend.startQueue(index: 0, size: 8, ringAddress: 0)
            // The old back-end completed 3 chains, then died.
            try guest.store(UInt16(3), guestPhysical: queue.addresses.deviceArea + 2)
            let (front, back) = try ScmSocket.pair()
            let second = FakeBackend(socket: consume back) { message in backend.reply(&message) }
            try frontend.reconnect(socket: consume front)
            #expect(frontend.isConnected)
            #expect(frontend.queue(0) === queue)
            // The old connection is closed: the first fake has stopped.
            first.join()
            _ = consume frontend
            second.join()
            #expect(first.failure == nil && second.failure == nil)
            let seen = second.seen
            #expect(
                seen.map(\.request) == [
                    .getFeatures, .getProtocolFeatures, .setProtocolFeatures, .getQueueNum, .setOwner, .setFeatures,
                    .setStatus, .getStatus, .setMemTable, .setInflightFD, .setVringNum, .setVringBase, .setVringAddr,
                    .setVringCall, .setVringErr, .setVringKick, .setVringEnable,
                ])
            #expect(seen[9].descriptorCount == 1)
            #expect(seen[11].body == .setVringBase(VringState(index: 0, num: 3)))
        }
        _ = consume memory
        #expect(openFileDescriptorCount() == before, "descriptors leaked")
    }

    @Test func reconnectRefusesChangedFeatures() throws {
        let (frontend, first) = try connectedToFake { message in WellBehaved().reply(&message) }
        try frontend.negotiate(features: [.version1, .ringEventIndex])
        var configured = WellBehaved()
        configured.features = (1 << 32) | (1 << 30)
        let fewer = configured
        let (front, back) = try ScmSocket.pair()
        let second = FakeBackend(socket: consume back) { message in fewer.reply(&message) }
        // Not inside #expect's closure: `front` must really be consumed, or the new connection
        // would stay open and the second fake would never stop.
        var thrown: FrontendError?
        do {
            try frontend.reconnect(socket: consume front)
        } catch {
            thrown = error
        }
        #expect(
            thrown
                == .featuresChanged(
                    before: [.version1, .ringEventIndex, .protocolFeatures],
                    after: [.version1, .protocolFeatures]))
        #expect(!frontend.isConnected)
        first.join()
        _ = consume frontend
        second.join()
        #expect(first.failure == nil && second.failure == nil)
    }
}

extension FrontendReconnectTests {
    @Test(.isolatedDescriptors) func failedReconnectCanBeRetried() throws {
        let before = openFileDescriptorCount()
        do {
            let memory = try SharedMemory(size: 65536)
            let (frontend, first) = try connectedToFake { message in WellBehaved().reply(&message) }
            try frontend.negotiate(features: [.version1, .ringEventIndex])
            try frontend.setMemory([FrontendMemoryRegion(memory)])
            let queue = try frontend.startQueue(index: 0, size: 8, ringAddress: 0)
            // A back-end that dies during the handshake.
            let (deadFront, deadBack) = try ScmSocket.pair()
            let dead = FakeBackend(socket: consume deadBack) { _ in .hangUp }
            var thrown: FrontendError?
            do {
                try frontend.reconnect(socket: consume deadFront)
            } catch {
                thrown = error
            }
            #expect(thrown == .socket(.peerClosed))
            #expect(frontend.negotiated == nil)
            let (front, back) = try ScmSocket.pair()
            let second = FakeBackend(socket: consume back) { message in WellBehaved().reply(&message) }
            try frontend.reconnect(socket: consume front)
            #expect(frontend.negotiated?.features == [.version1, .ringEventIndex, .protocolFeatures])
            #expect(frontend.queue(0) === queue)
            _ = consume frontend
            for fake in [first, dead, second] { fake.join() }
            #expect(first.failure == nil && dead.failure == nil && second.failure == nil)
            #expect(
                second.seen.map(\.request).suffix(8) == [
                    .setMemTable, .setVringNum, .setVringBase, .setVringAddr, .setVringCall, .setVringErr,
                    .setVringKick,
                    .setVringEnable,
                ])
        }
        #expect(openFileDescriptorCount() == before, "descriptors leaked")
    }
}
