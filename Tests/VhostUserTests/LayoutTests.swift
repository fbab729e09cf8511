import Testing
import VhostUserProtocol

/// Exact bytes of encoded messages against the layouts of the vhost-user specification's "Message
/// specification" (header and payloads), built field by
/// field without the codec.
@Suite struct LayoutTests {
    @Test func vringAddressIsTwelvePlusFortyBytesAtTheDocumentedOffsets() throws {
        let address = VringAddress(
            index: 1, flags: .log, descriptorTable: 0x7f6d_a3fd_c000, usedRing: 0x7f6d_a3fd_d000,
            availableRing: 0x7f6d_a3fd_c800, logGuestAddress: 0xffd_e000)
        let bytes = try encoded(.setVringAddr(address))
        #expect(bytes.count == 12 + 40)
        let expected = Bytes()
            .u32(9).u32(0x1).u32(40)  // header: SET_VRING_ADDR, version 1, size
            .u32(1)  // @0 index
            .u32(1)  // @4 flags: VHOST_VRING_F_LOG
            .u64(0x7f6d_a3fd_c000)  // @8 desc
            .u64(0x7f6d_a3fd_d000)  // @16 used
            .u64(0x7f6d_a3fd_c800)  // @24 avail
            .u64(0xffd_e000)  // @32 log
        #expect(bytes == expected.bytes)
    }

    @Test func replyHeaderHasFlagsFiveAndEchoesTheRequest() throws {
        var bytes: [UInt8] = []
        try Message.encodeReply(to: .getFeatures, .u64(0x1_7000_1244), into: &bytes)
        #expect(bytes == Bytes().u32(1).u32(0x5).u32(8).u64(0x1_7000_1244).bytes)
        try Message.encodeReply(to: .setMemTable, .u64(0), into: &bytes)
        #expect(bytes == Bytes().u32(5).u32(0x5).u32(8).u64(0).bytes)
    }

    @Test func needReplySetsBitThree() throws {
        let bytes = try encoded(.setBackendRequestFD, needsReply: true)
        #expect(bytes == Bytes().u32(21).u32(0x9).u32(0).bytes)
    }

    @Test func memoryTableIsCountPaddingThenRegions() throws {
        let bytes = try encoded(.setMemTable(MemoryTable(regions: [traceRegion])))
        let expected = Bytes()
            .u32(5).u32(1).u32(40)
            .u32(1).u32(0)  // nregions, padding
            .u64(0).u64(0x1000_0000).u64(0x7f6d_93ff_f000).u64(0)  // gpa, size, uva, mmap_offset
        #expect(bytes == expected.bytes)
    }

    @Test func singleRegionHasEightBytesOfPaddingFirst() throws {
        let bytes = try encoded(.addMemReg(SingleMemoryRegion(region: traceRegion)))
        let expected = Bytes().u32(37).u32(1).u32(40).u64(0)
            .u64(0).u64(0x1000_0000).u64(0x7f6d_93ff_f000).u64(0)
        #expect(bytes == expected.bytes)
    }

    @Test func vringFileIndexPutsNoFileInBitEight() throws {
        #expect(
            try encoded(.setVringKick(VringFileIndex(index: 3, hasFile: false)))
                == Bytes().u32(12).u32(1).u32(8).u64(0x103).bytes)
        #expect(
            try encoded(.setVringCall(VringFileIndex(index: 255, hasFile: true)))
                == Bytes().u32(13).u32(1).u32(8).u64(0xff).bytes)
    }

    @Test func iotlbMessageIsThirtyTwoBytesWithPermAndTypeAtTwentyFour() throws {
        let message = IOTLBMessage(iova: 0x1000, size: 0x2000, userAddress: 0x3000, permissions: 3, type: 2)
        let bytes = try encoded(.iotlbMessage(message))
        let expected = Bytes().u32(22).u32(1).u32(32)
            .u64(0x1000).u64(0x2000).u64(0x3000).u8(3).u8(2).zeros(6)
        #expect(bytes == expected.bytes)
        #expect(message.permission == .readWrite)
        #expect(message.kind == .update)
    }

    @Test func configIsOffsetSizeFlagsThenData() throws {
        let bytes = try encoded(.setConfig(ConfigSpace(offset: 32, flags: 1, data: [1, 2])))
        #expect(bytes == Bytes().u32(25).u32(1).u32(14).u32(32).u32(2).u32(1).u8(1).u8(2).bytes)
    }

    @Test func inflightIsTwentyFourBytesWithTailPadding() throws {
        let description = InflightDescription(mmapSize: 0x1040, mmapOffset: 0x40, queueCount: 2, queueSize: 128)
        let bytes = try encoded(.setInflightFD(description))
        #expect(bytes == Bytes().u32(32).u32(1).u32(24).u64(0x1040).u64(0x40).u16(2).u16(128).zeros(4).bytes)
    }

    @Test func logVringAreaSharedObjectAndDeviceStateLayouts() throws {
        #expect(
            try encoded(.setLogBase(LogDescription(size: 0x100, offset: 0x200)))
                == Bytes().u32(6).u32(1).u32(16).u64(0x100).u64(0x200).bytes)
        let uuid: [UInt8] = (0..<16).map { UInt8($0) }
        #expect(
            try encoded(.getSharedObject(SharedObject(uuid: uuid)!))
                == Bytes().u32(41).u32(1).u32(16).raw(uuid).bytes)
        #expect(SharedObject(uuid: uuid)?.uuid == uuid)
        #expect(SharedObject(uuid: [1, 2, 3]) == nil)
        #expect(
            try encoded(.setDeviceStateFD(DeviceStateTransfer(direction: .save)))
                == Bytes().u32(42).u32(1).u32(8).u32(0).u32(0).bytes)
        var bytes: [UInt8] = []
        let area = VringArea(file: VringFileIndex(index: 2, hasFile: false), size: 4096, offset: 0)
        try Message.encodeRequest(BackendMessage.vringHostNotifier(area), into: &bytes)
        #expect(bytes == Bytes().u32(3).u32(1).u32(24).u64(0x102).u64(4096).u64(0).bytes)
    }

    @Test func payloadSizesMatchTheDigest() {
        #expect(VringState.wireSize == 8)
        #expect(VringAddress.wireSize == 40)
        #expect(MemoryRegion.wireSize == 32)
        #expect(SingleMemoryRegion.wireSize == 40)
        #expect(LogDescription.wireSize == 16)
        #expect(IOTLBMessage.wireSize == 32)
        #expect(VringArea.wireSize == 24)
        #expect(InflightDescription.wireSize == 24)
        #expect(SharedObject.wireSize == 16)
        #expect(DeviceStateTransfer.wireSize == 8)
        #expect(MessageHeader.byteCount == 12)
    }
}
