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

/// The requests a front-end sends, and how it reads the answers, checked against a fake back-end.
@Suite(.isolatedDescriptors) struct FrontendSessionTests {
    static let wanted: VirtioFeatures = [.version1, .ringEventIndex, .ringPacked]

    /// Runs `body` against a fake with `backend`'s answers (overridden by `override` when it
    /// returns non-nil); returns what the fake saw. Checks no fd leaked.
    func session(
        _ backend: WellBehaved = WellBehaved(),
        override: @escaping @Sendable (inout Message) -> FakeReply? = { _ in nil },
        sourceLocation: SourceLocation = #_sourceLocation,
        _ body: (VhostUserFrontend) throws -> Void
    ) throws -> [SeenRequest] {
        let before = openFileDescriptorCount()
        let seen: [SeenRequest]
        do {
            let (frontend, fake) = try connectedToFake { message in
                override(&message) ?? backend.reply(&message)
            }
            try body(frontend)
            _ = consume frontend
            fake.join()
            #expect(fake.failure == nil, "fake back-end: \(fake.failure ?? "")", sourceLocation: sourceLocation)
            seen = fake.seen
        }
        #expect(openFileDescriptorCount() == before, "descriptors leaked", sourceLocation: sourceLocation)
        return seen
    }

    @Test func negotiationFollowsQEMUsOrderWithAcks() throws {
        var result: NegotiatedFeatures?
        let seen = try session { frontend in
            result = try frontend.negotiate(features: Self.wanted)
        }
        #expect(
            seen.map(\.request) == [
                .getFeatures, .getProtocolFeatures, .setProtocolFeatures, .getQueueNum, .setOwner, .setFeatures,
                .setStatus, .getStatus,
            ])
        // Requests without a reply of their own carry NEED_REPLY once REPLY_ACK is on, and only they.
        #expect(seen.map(\.needsReply) == [false, false, false, false, true, true, true, false])
        let acked: VirtioFeatures = [.version1, .ringEventIndex, .protocolFeatures]
        #expect(seen[2].body == .setProtocolFeatures([.multiqueue, .replyAck, .config, .status]))
        #expect(seen[5].body == .setFeatures(acked))
        #expect(seen[6].body == .setStatus(0x0B))
        let negotiated = try #require(result)
        #expect(negotiated.features == acked)
        #expect(negotiated.protocolFeatures == [.multiqueue, .replyAck, .config, .status])
        #expect(negotiated.queueCount == 1)
        #expect(negotiated.memorySlots == nil)
    }

    @Test func protocolFeaturesAreTheIntersection() throws {
        var backend = WellBehaved()
        backend.protocolFeatures = ProtocolFeatures([.multiqueue, .backendRequest, .hostNotifier, .config]).rawValue
        let seen = try session(backend) { frontend in
            let negotiated = try frontend.negotiate(
                features: Self.wanted, protocolFeatures: [.config, .hostNotifier, .status])
            #expect(negotiated.protocolFeatures == [.config])
        }
        // No MQ, no REPLY_ACK: no GET_QUEUE_NUM, no NEED_REPLY anywhere.
        #expect(
            seen.map(\.request) == [.getFeatures, .getProtocolFeatures, .setProtocolFeatures, .setOwner, .setFeatures])
        #expect(seen.allSatisfy { !$0.needsReply })
    }

    @Test func backendWithoutProtocolFeaturesIsNegotiatedWithout() throws {
        var backend = WellBehaved()
        backend.features = 1 << 32
        let seen = try session(backend) { frontend in
            let negotiated = try frontend.negotiate(features: Self.wanted)
            #expect(negotiated.features == [.version1])
            #expect(negotiated.protocolFeatures.isEmpty)
            #expect(throws: FrontendError.notNegotiated(.config)) { try frontend.readConfig(size: 8) }
        }
        #expect(seen.map(\.request) == [.getFeatures, .setOwner, .setFeatures])
    }

    @Test func nonZeroAckIsRequestFailed() throws {
        _ = try session(override: { message in
            message.request == .setOwner ? .raw(replyBytes(to: .setOwner, .u64(5))) : nil
        }) { frontend in
            #expect(throws: FrontendError.requestFailed(.setOwner, status: 5)) {
                try frontend.negotiate(features: Self.wanted)
            }
        }
    }

    @Test func clearedFeaturesOKIsFeaturesRejected() throws {
        _ = try session(override: { message in
            message.request == .getStatus ? .raw(replyBytes(to: .getStatus, .u64(0x3))) : nil
        }) { frontend in
            #expect(throws: FrontendError.featuresRejected(status: [.acknowledge, .driver])) {
                try frontend.negotiate(features: Self.wanted)
            }
        }
    }

    @Test func statusAboveOneByteIsRefused() throws {
        _ = try session(override: { message in
            message.request == .getStatus ? .raw(replyBytes(to: .getStatus, .u64(0x10B))) : nil
        }) { frontend in
            #expect(
                throws: FrontendError.protocolViolation(.reservedBits(request: .frontend(.getStatus), value: 0x10B))
            ) {
                try frontend.negotiate(features: Self.wanted)
            }
        }
    }

    @Test func configIsReadAndItsReplyChecked() throws {
        _ = try session { frontend in
            try frontend.negotiate(features: Self.wanted)
            #expect(try frontend.readConfig(offset: 4, size: 8) == Array(4..<12))
        }
        _ = try session(override: { message in
            message.request == .getConfig ? .raw(wire(24, flags: 0x5)) : nil
        }) { frontend in
            try frontend.negotiate(features: Self.wanted)
            #expect(
                throws: FrontendError.protocolViolation(
                    .payloadSize(request: .frontend(.getConfig), size: 0, expected: 20))
            ) {
                try frontend.readConfig(size: 8)
            }
        }
        _ = try session(override: { message in
            message.request == .getConfig
                ? .raw(
                    replyBytes(to: .getConfig, .config(ConfigSpace(offset: 16, data: [UInt8](repeating: 0, count: 8)))))
                : nil
        }) { frontend in
            try frontend.negotiate(features: Self.wanted)
            #expect(throws: FrontendError.configOffsetMismatch(expected: 0, received: 16)) {
                try frontend.readConfig(size: 8)
            }
        }
    }

    @Test func requestsBeforeNegotiationAreRefused() throws {
        let seen = try session { frontend in
            let memory = try SharedMemory(size: 65536)
            #expect(throws: FrontendError.negotiationState(negotiated: false)) {
                try frontend.setMemory([FrontendMemoryRegion(memory)])
            }
            #expect(throws: FrontendError.negotiationState(negotiated: false)) {
                try frontend.startQueue(index: 0, size: 8, ringAddress: 0)
            }
            try frontend.negotiate(features: Self.wanted)
            #expect(throws: FrontendError.negotiationState(negotiated: true)) {
                try frontend.negotiate(features: Self.wanted)
            }
            #expect(throws: FrontendError.noGuestMemory) {
                try frontend.startQueue(index: 0, size: 8, ringAddress: 0)
            }
        }
        #expect(seen.count == 8)
    }

    @Test func memoryTableAndRingSetupCarryOurAddressesAndFds() throws {
        let memory = try SharedMemory(size: 1 << 20)
        let base = UInt64(UInt(bitPattern: memory.mapping.base))
        let ring: UInt64 = 0x4_0000
        let seen = try session(WellBehaved(base: 0x1234)) { frontend in
            try frontend.negotiate(features: Self.wanted)
            try frontend.setMemory([FrontendMemoryRegion(memory, guestPhysicalAddress: 0x10_0000)])
            #expect(throws: FrontendError.queueIndexOutOfRange(index: 1, queueCount: 1)) {
                try frontend.startQueue(index: 1, size: 8, ringAddress: 0x10_0000 + ring)
            }
            let queue = try frontend.startQueue(index: 0, size: 8, ringAddress: 0x10_0000 + ring)
            #expect(!queue.isPacked)
            #expect(throws: FrontendError.queueAlreadyStarted(0)) {
                try frontend.startQueue(index: 0, size: 8, ringAddress: 0x10_0000 + ring)
            }
            #expect(try frontend.stopQueue(queue) == 0x1234)
            try frontend.disconnect()
            #expect(!frontend.isConnected)
        }
        let requests = Array(seen.map(\.request).dropFirst(8))
        #expect(
            requests == [
                .setMemTable, .setVringNum, .setVringBase, .setVringAddr, .setVringCall, .setVringErr, .setVringKick,
                .setVringEnable, .setVringEnable, .getVringBase,
            ])
        let setup = Array(seen.dropFirst(8))
        #expect(
            setup[0].body
                == .setMemTable(
                    MemoryTable(regions: [
                        MemoryRegion(guestPhysicalAddress: 0x10_0000, size: 1 << 20, userAddress: base, mmapOffset: 0)
                    ])))
        #expect(setup[0].descriptorCount == 1)
        #expect(setup[1].body == .setVringNum(VringState(index: 0, num: 8)))
        #expect(setup[2].body == .setVringBase(VringState(index: 0, num: 0)))
        // Split layout: descriptors (16 × 8), avail ring right after, used ring 64-byte aligned.
        #expect(
            setup[3].body
                == .setVringAddr(
                    VringAddress(
                        index: 0, descriptorTable: base + ring, usedRing: base + ring + 192,
                        availableRing: base + ring + 128,
                        logGuestAddress: 0x10_0000 + ring + 192)))
        #expect(setup[4...6].allSatisfy { $0.descriptorCount == 1 && $0.needsReply })
        #expect(setup[7].body == .setVringEnable(VringState(index: 0, num: 1)))
        #expect(setup[8].body == .setVringEnable(VringState(index: 0, num: 0)))
        #expect(setup[9].body == .getVringBase(VringState(index: 0, num: 0)))
    }

    @Test func memorySlotsUseAddMemReg() throws {
        var backend = WellBehaved()
        backend.protocolFeatures |= ProtocolFeatures.configureMemorySlots.rawValue
        backend.memorySlots = 2
        let first = try SharedMemory(size: 65536)
        let second = try SharedMemory(size: 65536)
        let third = try SharedMemory(size: 65536)
        let seen = try session(backend) { frontend in
            let negotiated = try frontend.negotiate(features: Self.wanted)
            #expect(negotiated.memorySlots == 2)
            try frontend.setMemory([
                FrontendMemoryRegion(first), FrontendMemoryRegion(second, guestPhysicalAddress: 65536),
            ])
            #expect(throws: FrontendError.tooManyRegions(count: 3, limit: 2)) {
                try frontend.setMemory([
                    FrontendMemoryRegion(first), FrontendMemoryRegion(second, guestPhysicalAddress: 1 << 16),
                    FrontendMemoryRegion(third, guestPhysicalAddress: 1 << 17),
                ])
            }
            try frontend.setMemory([FrontendMemoryRegion(third)])
            #expect(frontend.guestMemory?.regions.count == 1)
        }
        #expect(seen.map(\.request).dropFirst(4).prefix(1) == [.getMaxMemSlots])
        let memoryRequests = seen.filter { [.addMemReg, .remMemReg, .setMemTable].contains($0.request) }
        #expect(memoryRequests.map(\.request) == [.addMemReg, .addMemReg, .remMemReg, .remMemReg, .addMemReg])
        #expect(memoryRequests.map(\.descriptorCount) == [1, 1, 0, 0, 1])
        #expect(memoryRequests.allSatisfy { $0.needsReply })
    }

    @Test func packedRingStartsAtTheWrapBase() throws {
        var backend = WellBehaved()
        backend.features |= 1 << 34
        let memory = try SharedMemory(size: 65536)
        let seen = try session(backend) { frontend in
            try frontend.negotiate(features: Self.wanted)
            try frontend.setMemory([FrontendMemoryRegion(memory)])
            let queue = try frontend.startQueue(index: 0, size: 16, ringAddress: 4096, startIndex: 7)
            #expect(queue.isPacked)
        }
        #expect(seen.contains { $0.body == .setVringBase(VringState(index: 0, num: 0x8000_8000)) })
        #expect(
            seen.contains { $0.body == .setFeatures([.version1, .ringEventIndex, .ringPacked, .protocolFeatures]) })
    }

    @Test func wrongRingInGetVringBaseIsRefused() throws {
        let memory = try SharedMemory(size: 65536)
        _ = try session(override: { message in
            message.request == .getVringBase
                ? .raw(replyBytes(to: .getVringBase, .vringState(VringState(index: 3, num: 0)))) : nil
        }) { frontend in
            try frontend.negotiate(features: Self.wanted)
            try frontend.setMemory([FrontendMemoryRegion(memory)])
            let queue = try frontend.startQueue(index: 0, size: 8, ringAddress: 0)
            #expect(throws: FrontendError.vringStateMismatch(expectedIndex: 0, receivedIndex: 3)) {
                try frontend.stopQueue(queue)
            }
            #expect(!frontend.isConnected)
        }
    }

    @Test func inflightBufferIsMappedKeptAndHandedBack() throws {
        var backend = WellBehaved()
        backend.protocolFeatures |= ProtocolFeatures.inflightSharedMemory.rawValue
        let seen = try session(
            backend,
            override: { message in
                guard case .getInflightFD(let request) = message.body else { return nil }
                // 8 KiB of which the front-end maps [4096, 8192): mark both halves differently.
                guard let buffer = try? SharedMemory(size: 8192) else { return .hangUp }
                buffer.mapping.bytes.initializeMemory(as: UInt8.self, repeating: 0x11)
                buffer.mapping.bytes[4096] = 0x42
                let description = InflightDescription(
                    mmapSize: 4096, mmapOffset: 4096, queueCount: request.queueCount, queueSize: request.queueSize)
                let copy = fcntl(buffer.descriptor, F_DUPFD_CLOEXEC, 0)
                return .raw(replyBytes(to: .getInflightFD, .inflight(description)), fds: [copy])
            }
        ) { frontend in
            try frontend.negotiate(features: Self.wanted)
            let inflight = try frontend.getInflight(queueCount: 1, queueSize: 128)
            #expect(inflight.description.queueSize == 128)
            #expect(inflight.mapping.size == 4096)
            #expect(inflight.mapping.bytes[0] == 0x42)
            #expect(frontend.inflight === inflight)
            try frontend.setInflight(inflight)
        }
        let inflightRequests = seen.filter { $0.request == .getInflightFD || $0.request == .setInflightFD }
        #expect(inflightRequests.map(\.descriptorCount) == [0, 1])
        #expect(
            inflightRequests[0].body
                == .getInflightFD(InflightDescription(mmapSize: 0, mmapOffset: 0, queueCount: 1, queueSize: 128)))
        #expect(
            inflightRequests[1].body
                == .setInflightFD(InflightDescription(mmapSize: 4096, mmapOffset: 4096, queueCount: 1, queueSize: 128)))
    }

    @Test func inflightReplyWithoutDescriptorIsRefused() throws {
        var backend = WellBehaved()
        backend.protocolFeatures |= ProtocolFeatures.inflightSharedMemory.rawValue
        _ = try session(
            backend,
            override: { message in
                guard message.request == .getInflightFD else { return nil }
                return .raw(
                    replyBytes(
                        to: .getInflightFD,
                        .inflight(InflightDescription(mmapSize: 4096, mmapOffset: 0, queueCount: 1, queueSize: 8))))
            }
        ) { frontend in
            try frontend.negotiate(features: Self.wanted)
            #expect(
                throws: FrontendError.protocolViolation(
                    .missingDescriptors(request: .frontend(.getInflightFD), expected: 1, received: 0))
            ) {
                try frontend.getInflight(queueCount: 1, queueSize: 8)
            }
        }
        _ = try session(
            backend,
            override: { message in
                guard message.request == .getInflightFD else { return nil }
                return .raw(
                    replyBytes(
                        to: .getInflightFD,
                        .inflight(InflightDescription(mmapSize: 0, mmapOffset: 0, queueCount: 1, queueSize: 8))))
            }
        ) { frontend in
            try frontend.negotiate(features: Self.wanted)
            #expect(
                throws: FrontendError.invalidInflightBuffer(
                    InflightDescription(mmapSize: 0, mmapOffset: 0, queueCount: 1, queueSize: 8))
            ) {
                try frontend.getInflight(queueCount: 1, queueSize: 8)
            }
        }
    }

    @Test func badRingSizeOrPlacementIsRefusedBeforeAnythingIsSent() throws {
        let memory = try SharedMemory(size: 65536)
        let seen = try session { frontend in
            try frontend.negotiate(features: Self.wanted)
            try frontend.setMemory([FrontendMemoryRegion(memory)])
            for size in [0, 3, 65536] {
                #expect(throws: FrontendError.driverQueue(.configuration(.invalidQueueSize(size)))) {
                    try frontend.startQueue(index: 0, size: size, ringAddress: 0)
                }
            }
            #expect(throws: FrontendError.driverQueue(.configuration(.misalignedRing(.descriptorTable, address: 32)))) {
                try frontend.startQueue(index: 0, size: 8, ringAddress: 32)
            }
            #expect(
                throws: FrontendError.driverQueue(
                    .configuration(.ringOutsideMemory(.descriptorTable, address: 0x1_0000, length: 128)))
            ) {
                try frontend.startQueue(index: 0, size: 8, ringAddress: 0x1_0000)
            }
            #expect(
                throws: FrontendError.driverQueue(
                    .configuration(.ringOutsideMemory(.descriptorTable, address: UInt64.max & ~63, length: 128)))
            ) {
                try frontend.startQueue(index: 0, size: 8, ringAddress: UInt64.max & ~63)
            }
            #expect(frontend.isConnected)
        }
        #expect(seen.last?.request == .setMemTable)
    }
}
