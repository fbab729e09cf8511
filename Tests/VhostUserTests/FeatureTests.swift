import Testing
import VhostUserProtocol
import Virtio

/// Feature bit numbers against the vhost-user specification ("Protocol features") and VIRTIO 1.2
/// §6 "Reserved Feature Bits".
@Suite struct FeatureTests {
    @Test func protocolFeatureBits() {
        let bits: [(ProtocolFeatures, Int)] = [
            (.multiqueue, 0), (.logSharedMemory, 1), (.rarp, 2), (.replyAck, 3), (.netMTU, 4),
            (.backendRequest, 5), (.crossEndian, 6), (.cryptoSession, 7), (.pagefault, 8), (.config, 9),
            (.backendSendFD, 10), (.hostNotifier, 11), (.inflightSharedMemory, 12), (.resetDevice, 13),
            (.inbandNotifications, 14), (.configureMemorySlots, 15), (.status, 16), (.xenMmap, 17),
            (.sharedObject, 18), (.deviceState, 19),
        ]
        for (feature, bit) in bits {
            #expect(feature.rawValue == 1 << UInt64(bit), "bit \(bit)")
        }
        #expect(ProtocolFeatures.known.rawValue == 0xF_FFFF)
        // QEMU 7.2's trace: 0x209 is MQ | REPLY_ACK | CONFIG; 0x8f2b is qemu-storage-daemon's set.
        #expect(ProtocolFeatures([.multiqueue, .replyAck, .config]).rawValue == 0x209)
        #expect(
            ProtocolFeatures([
                .multiqueue, .logSharedMemory, .replyAck, .backendRequest, .pagefault, .config, .backendSendFD,
                .hostNotifier, .configureMemorySlots,
            ]).rawValue == 0x8f2b)
    }

    @Test func virtioFeatureBits() {
        let bits: [(VirtioFeatures, Int)] = [
            (.notifyOnEmpty, 24), (.logAll, 26), (.anyLayout, 27), (.ringIndirectDescriptors, 28),
            (.ringEventIndex, 29), (.protocolFeatures, 30), (.version1, 32), (.accessPlatform, 33),
            (.ringPacked, 34), (.inOrder, 35), (.orderPlatform, 36), (.singleRootIOV, 37),
            (.notificationData, 38), (.notificationConfigData, 39), (.ringReset, 40), (.adminVirtqueue, 41),
        ]
        for (feature, bit) in bits {
            #expect(feature.rawValue == 1 << UInt64(bit), "bit \(bit)")
        }
        #expect(VirtioFeatures(bit: 64).isEmpty)
        #expect(VirtioFeatures(bit: -1).isEmpty)
        // The trace's fake blk backend: SEG_MAX(2) BLK_SIZE(6) FLUSH(9) MQ(12) + 28 29 30 32.
        let offered: VirtioFeatures = [
            VirtioFeatures(bit: 2), VirtioFeatures(bit: 6), VirtioFeatures(bit: 9), VirtioFeatures(bit: 12),
            .ringIndirectDescriptors, .ringEventIndex, .protocolFeatures, .version1,
        ]
        #expect(offered.rawValue == 0x1_7000_1244)
    }

    @Test func requestNumbersMatchTheTables() {
        #expect(FrontendRequest.allCases.map(\.rawValue) == Array(1...43))
        #expect(BackendRequest.allCases.map(\.rawValue) == Array(1...8))
        #expect(FrontendRequest.setBackendRequestFD.rawValue == 21)
        #expect(FrontendRequest.addMemReg.description == "ADD_MEM_REG")
        #expect(BackendRequest.vringHostNotifier.description == "BACKEND_VRING_HOST_NOTIFIER_MSG")
    }
}
