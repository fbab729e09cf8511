import Testing
import VMMSysUtil
import VMMTestSupport
import Virtio
@testable import VhostUserProtocol
@testable import VhostUserBackend

@Suite("VhostUserSession: negotiation and validation")
struct SessionNegotiationTests {
    @Test func offersFrameworkAndDeviceFeatures() throws {
        let session = try VhostUserSession(device: PatternDevice())
        defer { session.close() }
        let features = try #require(try session.handle(message(.getFeatures)))
        guard case .u64(let bits) = features.payload else {
            Issue.record("not a u64")
            return
        }
        let expected: VirtioFeatures = [
            .version1, .protocolFeatures, .ringEventIndex, .ringIndirectDescriptors, .logAll,
        ]
        #expect(bits == expected.rawValue)
        let protocolReply = try #require(try session.handle(message(.getProtocolFeatures)))
        guard case .u64(let protocolBits) = protocolReply.payload else {
            Issue.record("not a u64")
            return
        }
        let offered = ProtocolFeatures(rawValue: protocolBits)
        #expect(
            offered == [
                .multiqueue, .replyAck, .configureMemorySlots, .inflightSharedMemory, .resetDevice, .status,
                .logSharedMemory, .backendRequest,
            ])
        // CONFIG only for a device with config space.
        let withConfig = try VhostUserSession(device: PatternDevice(configSize: 16))
        defer { withConfig.close() }
        #expect(withConfig.offeredProtocolFeatures.contains(.config))
    }

    @Test func refusesUnofferedFeatures() throws {
        let session = try VhostUserSession(device: PatternDevice())
        defer { session.close() }
        #expect(throws: VhostUserError.self) {
            _ = try session.handle(message(.setFeatures(VirtioFeatures([.version1, .ringPacked]))))
        }
        #expect(throws: VhostUserError.self) {
            _ = try session.handle(message(.setProtocolFeatures([.replyAck, .hostNotifier])))
        }
        // Gated requests need their protocol feature acked first.
        do {
            _ = try session.handle(message(.getQueueNum))
            Issue.record("GET_QUEUE_NUM accepted without MQ")
        } catch let error as VhostUserError {
            guard case .notNegotiated(.getQueueNum) = error else {
                Issue.record("\(error)")
                return
            }
        }
    }

    @Test func toleratesRingBitsQEMUAcksWithoutOffer() throws {
        // QEMU 7.2 rng acks EVENT_IDX and INDIRECT_DESC; both are offered anyway, and accepted.
        let session = try VhostUserSession(device: PatternDevice())
        defer { session.close() }
        #expect(try session.handle(message(.setFeatures(VirtioFeatures(rawValue: drivenFeatures)))) == nil)
        #expect(session.ackedFeatures == drivenFeatures)
    }

    @Test func replyAckOnlyWhenNegotiated() throws {
        let session = try VhostUserSession(device: PatternDevice())
        defer { session.close() }
        #expect(try session.handle(message(.setOwner, needsReply: true)) == nil)
        _ = try session.handle(message(.setProtocolFeatures([.replyAck, .multiqueue])))
        let ack = try #require(try session.handle(message(.setOwner, needsReply: true)))
        #expect(ack.request == .setOwner)
        #expect(ack.payload == .u64(0))
        // A request with its own reply is answered once, with that reply.
        let queues = try #require(try session.handle(message(.getQueueNum, needsReply: true)))
        #expect(queues.payload == .u64(1))
    }

    @Test(.isolatedDescriptors) func refusesBadRingRequestsWithoutLeaking() throws {
        let before = openFileDescriptorCount()
        do {
            let session = try VhostUserSession(device: PatternDevice(queueCount: 2))
            defer { session.close() }
            func refused(_ body: FrontendMessage, fds: [Int32] = [], _ check: (VhostUserError) -> Bool) {
                do {
                    _ = try session.handle(message(body, fds: fds))
                    Issue.record("\(body) accepted")
                } catch let error as VhostUserError {
                    #expect(check(error), "\(error)")
                } catch {
                    Issue.record("\(error)")
                }
            }
            refused(.setVringNum(VringState(index: 2, num: 8))) {
                if case .queueIndexOutOfRange(_, 2, 2) = $0 { true } else { false }
            }
            refused(.setVringNum(VringState(index: 0, num: 3))) {
                if case .invalidQueueSize(0, 3, 256) = $0 { true } else { false }
            }
            refused(.setVringNum(VringState(index: 0, num: 512))) {
                if case .invalidQueueSize = $0 { true } else { false }
            }
            refused(.setVringNum(VringState(index: 0, num: 0))) {
                if case .invalidQueueSize = $0 { true } else { false }
            }
            refused(.setVringBase(VringState(index: 0, num: 0x10000))) {
                if case .invalidRingBase = $0 { true } else { false }
            }
            refused(.setVringEnable(VringState(index: 1, num: 2))) {
                if case .invalidEnable = $0 { true } else { false }
            }
            refused(.getVringBase(VringState(index: 200, num: 0))) {
                if case .queueIndexOutOfRange = $0 { true } else { false }
            }
            let notifier = try EventNotifier()
            refused(.setVringKick(VringFileIndex(index: 9, hasFile: true)), fds: [notifier.waitDescriptor]) {
                if case .queueIndexOutOfRange = $0 { true } else { false }
            }
            // A kick fd that is not an eventfd, pipe or socket.
            let memory = try SharedMemory(size: 4096)
            refused(.setVringKick(VringFileIndex(index: 0, hasFile: true)), fds: [memory.descriptor]) {
                if case .invalidNotifier = $0 { true } else { false }
            }
            refused(
                .setVringAddr(VringAddress(index: 0, flags: .log, descriptorTable: 0, usedRing: 0, availableRing: 0))
            ) {
                if case .ringLoggingNotNegotiated = $0 { true } else { false }
            }
            refused(.setBackendRequestFD, fds: [notifier.waitDescriptor]) {
                if case .notNegotiated(.setBackendRequestFD) = $0 { true } else { false }
            }
        }
        #expect(openFileDescriptorCount() == before)
    }

    @Test func refusesConfigOutsideConfigSpace() throws {
        let session = try VhostUserSession(device: PatternDevice(configSize: 8))
        defer { session.close() }
        _ = try session.handle(message(.setProtocolFeatures([.config])))
        let reply = try #require(try session.handle(message(.getConfig(ConfigSpace(offset: 2, data: [0, 0, 0])))))
        #expect(reply.payload == .config(ConfigSpace(offset: 2, data: [2, 3, 4])))
        for (offset, size) in [(4, 8), (8, 1), (0, 9), (UInt32.max, 1)] {
            #expect(throws: VhostUserError.self) {
                _ = try session.handle(
                    message(.getConfig(ConfigSpace(offset: offset, data: [UInt8](repeating: 0, count: size)))))
            }
        }
        #expect(throws: VhostUserError.self) {
            _ = try session.handle(message(.getConfig(ConfigSpace(offset: 0, flags: 2, data: [0]))))
        }
        // The default writeConfig refuses.
        #expect(throws: VhostUserError.self) {
            _ = try session.handle(message(.setConfig(ConfigSpace(offset: 0, data: [1]))))
        }
    }

    @Test(.isolatedDescriptors) func memoryRegionsAreCheckedAgainstTheirFds() throws {
        let before = openFileDescriptorCount()
        do {
            let session = try VhostUserSession(device: PatternDevice())
            defer { session.close() }
            _ = try session.handle(message(.setProtocolFeatures([.configureMemorySlots, .replyAck])))
            let small = try SharedMemory(size: 4096)
            // Region larger than the fd.
            #expect(throws: VhostUserError.self) {
                _ = try session.handle(
                    message(
                        .setMemTable(
                            MemoryTable(regions: [
                                MemoryRegion(
                                    guestPhysicalAddress: 0, size: 8192, userAddress: 0x1000_0000, mmapOffset: 0)
                            ])), fds: [small.descriptor]))
            }
            // Offset past the end.
            #expect(throws: VhostUserError.self) {
                _ = try session.handle(
                    message(
                        .addMemReg(
                            SingleMemoryRegion(
                                region:
                                    MemoryRegion(
                                        guestPhysicalAddress: 0, size: 4096, userAddress: 0x1000_0000, mmapOffset: 4096)
                            )),
                        fds: [small.descriptor]))
            }
            // Overflowing address range.
            #expect(throws: VhostUserError.self) {
                _ = try session.handle(
                    message(
                        .setMemTable(
                            MemoryTable(regions: [
                                MemoryRegion(
                                    guestPhysicalAddress: UInt64.max - 100, size: 4096, userAddress: 0, mmapOffset: 0)
                            ])), fds: [small.descriptor]))
            }
            // Overlapping regions.
            let large = try SharedMemory(size: 8192)
            #expect(throws: VhostUserError.self) {
                _ = try session.handle(
                    message(
                        .setMemTable(
                            MemoryTable(regions: [
                                MemoryRegion(
                                    guestPhysicalAddress: 0, size: 8192, userAddress: 0x1000_0000, mmapOffset: 0),
                                MemoryRegion(
                                    guestPhysicalAddress: 4096, size: 4096, userAddress: 0x2000_0000, mmapOffset: 0),
                            ])), fds: [large.descriptor, small.descriptor]))
            }
            // Valid add, then remove; removing again fails.
            let region = MemoryRegion(guestPhysicalAddress: 0, size: 4096, userAddress: 0x1000_0000, mmapOffset: 0)
            let ack = try session.handle(
                message(
                    .addMemReg(SingleMemoryRegion(region: region)), needsReply: true,
                    fds: [small.descriptor]))
            #expect(ack?.payload == .u64(0))
            #expect(session.memory?.regions.count == 1)
            _ = try session.handle(message(.remMemReg(SingleMemoryRegion(region: region))))
            #expect(session.memory?.regions.count == 0)
            #expect(throws: VhostUserError.self) {
                _ = try session.handle(message(.remMemReg(SingleMemoryRegion(region: region))))
            }
        }
        #expect(openFileDescriptorCount() == before)
    }

    @Test func statusAndReset() throws {
        let device = PatternDevice()
        let session = try VhostUserSession(device: device)
        defer { session.close() }
        _ = try session.handle(message(.setProtocolFeatures([.status, .resetDevice])))
        _ = try session.handle(message(.setStatus(0x0B)))
        #expect(try session.handle(message(.getStatus))?.payload == .u64(0x0B))
        #expect(throws: VhostUserError.self) { _ = try session.handle(message(.setStatus(0x100))) }
        #expect(throws: VhostUserError.self) { _ = try session.handle(message(.setStatus(0x10))) }
        _ = try session.handle(message(.resetDevice))
        #expect(try session.handle(message(.getStatus))?.payload == .u64(0))
        #expect(device.resetCount == 1)
    }
}
