import Testing
import VMMTestSupport
import VhostUserProtocol
import Virtio

/// The QEMU 7.2 vhost-user-blk session recorded in peers/qemu-7.2-blk-handshake.txt (section C,
/// plus section D's SET_MEM_TABLE), rebuilt field by field from the trace, must decode message by
/// message to the requests the trace shows.
@Suite struct QEMUTraceTests {
    /// One front-end request as the trace shows it: number, flags, size, fds, payload, meaning.
    struct Line: Sendable, CustomStringConvertible {
        let sequence: Int
        let code: UInt32
        let flags: UInt32
        let size: Int
        let descriptors: Int
        let payload: [UInt8]
        let expected: FrontendMessage
        var description: String { "#\(sequence) \(expected.request)" }

        init(_ sequence: Int, _ code: UInt32, flags: UInt32 = 0x1, size: Int, fds: Int = 0, _ expected: FrontendMessage)
        {
            self.init(sequence, code, flags: flags, size: size, fds: fds, Bytes(), expected)
        }

        init(
            _ sequence: Int, _ code: UInt32, flags: UInt32 = 0x1, size: Int, fds: Int = 0, _ payload: Bytes,
            _ expected: FrontendMessage
        ) {
            self.sequence = sequence
            self.code = code
            self.flags = flags
            self.size = size
            self.descriptors = fds
            self.payload = payload.bytes
            self.expected = expected
        }
    }

    static let region = MemoryRegion(
        guestPhysicalAddress: 0, size: 0x1000_0000, userAddress: 0x7f6d_93ff_f000, mmapOffset: 0)
    static let firstFeatures = VirtioFeatures(rawValue: 0x1_4000_0046)
    static let secondFeatures = VirtioFeatures(rawValue: 0x1_7000_6e46)

    static let sectionC: [Line] = [
        Line(1, 1, size: 0, .getFeatures),
        Line(2, 15, size: 0, .getProtocolFeatures),
        Line(3, 16, size: 8, Bytes().u64(0x8f2b), .setProtocolFeatures(ProtocolFeatures(rawValue: 0x8f2b))),
        Line(4, 17, size: 0, .getQueueNum),
        Line(5, 36, size: 0, .getMaxMemSlots),
        Line(6, 21, flags: 0x9, size: 0, fds: 1, .setBackendRequestFD),
        Line(7, 3, size: 0, .setOwner),
        Line(8, 1, size: 0, .getFeatures),
        Line(9, 13, size: 8, fds: 1, Bytes().u64(0), .setVringCall(VringFileIndex(index: 0, hasFile: true))),
        Line(10, 14, size: 8, fds: 1, Bytes().u64(0), .setVringErr(VringFileIndex(index: 0, hasFile: true))),
        Line(
            11, 24, size: 69, Bytes().u32(0).u32(57).u32(0).zeros(57),
            .getConfig(ConfigSpace(offset: 0, flags: 0, data: [UInt8](repeating: 0, count: 57)))),
        Line(12, 2, size: 8, Bytes().u64(0x1_4000_0046), .setFeatures(firstFeatures)),
        Line(13, 13, size: 8, fds: 1, Bytes().u64(0), .setVringCall(VringFileIndex(index: 0, hasFile: true))),
        Line(14, 2, size: 8, Bytes().u64(0x1_4000_0046), .setFeatures(firstFeatures)),
        Line(
            15, 37, flags: 0x9, size: 40, fds: 1,
            Bytes().u64(0).u64(0).u64(0x1000_0000).u64(0x7f6d_93ff_f000).u64(0),
            .addMemReg(SingleMemoryRegion(region: region))),
        Line(16, 8, size: 8, Bytes().u32(0).u32(128), .setVringNum(VringState(index: 0, num: 128))),
        Line(17, 10, size: 8, Bytes().u32(0).u32(0), .setVringBase(VringState(index: 0, num: 0))),
        Line(
            18, 9, size: 40,
            Bytes().u32(0).u32(0).u64(0x7f6d_a3fd_c000).u64(0x7f6d_a3fd_d000).u64(0x7f6d_a3fd_c800).u64(0xffd_e000),
            .setVringAddr(
                VringAddress(
                    index: 0, descriptorTable: 0x7f6d_a3fd_c000, usedRing: 0x7f6d_a3fd_d000,
                    availableRing: 0x7f6d_a3fd_c800, logGuestAddress: 0xffd_e000))),
        Line(19, 12, size: 8, fds: 1, Bytes().u64(0), .setVringKick(VringFileIndex(index: 0, hasFile: true))),
        Line(20, 18, size: 8, Bytes().u32(0).u32(1), .setVringEnable(VringState(index: 0, num: 1))),
        Line(21, 18, size: 8, Bytes().u32(0).u32(0), .setVringEnable(VringState(index: 0, num: 0))),
        Line(22, 11, size: 8, Bytes().u32(0).u32(0), .getVringBase(VringState(index: 0, num: 0))),
        Line(23, 2, size: 8, Bytes().u64(0x1_7000_6e46), .setFeatures(secondFeatures)),
        Line(24, 13, size: 8, fds: 1, Bytes().u64(0), .setVringCall(VringFileIndex(index: 0, hasFile: true))),
        Line(25, 2, size: 8, Bytes().u64(0x1_7000_6e46), .setFeatures(secondFeatures)),
        Line(26, 8, size: 8, Bytes().u32(0).u32(128), .setVringNum(VringState(index: 0, num: 128))),
        Line(27, 10, size: 8, Bytes().u32(0).u32(0), .setVringBase(VringState(index: 0, num: 0))),
        Line(
            28, 9, size: 40,
            Bytes().u32(0).u32(0).u64(0x7f6d_9695_a000).u64(0x7f6d_9695_a940).u64(0x7f6d_9695_a800).u64(0x295_b940),
            .setVringAddr(
                VringAddress(
                    index: 0, descriptorTable: 0x7f6d_9695_a000, usedRing: 0x7f6d_9695_a940,
                    availableRing: 0x7f6d_9695_a800, logGuestAddress: 0x295_b940))),
        Line(29, 12, size: 8, fds: 1, Bytes().u64(0), .setVringKick(VringFileIndex(index: 0, hasFile: true))),
        Line(30, 18, size: 8, Bytes().u32(0).u32(1), .setVringEnable(VringState(index: 0, num: 1))),
        Line(31, 18, size: 8, Bytes().u32(0).u32(0), .setVringEnable(VringState(index: 0, num: 0))),
        Line(32, 11, size: 8, Bytes().u32(0).u32(0), .getVringBase(VringState(index: 0, num: 0))),
        // Section D, #13: the same start with SET_MEM_TABLE instead of ADD_MEM_REG.
        Line(
            13, 5, flags: 0x9, size: 40, fds: 1,
            Bytes().u32(1).u32(0).u64(0).u64(0x1000_0000).u64(0x7fbe_3fff_f000).u64(0),
            .setMemTable(
                MemoryTable(regions: [
                    MemoryRegion(
                        guestPhysicalAddress: 0, size: 0x1000_0000, userAddress: 0x7fbe_3fff_f000, mmapOffset: 0)
                ]))),
    ]

    @Test(.isolatedDescriptors, arguments: sectionC)
    func frontendRequestDecodes(_ line: Line) throws {
        #expect(line.payload.count == line.size, "trace reconstruction")
        let before = openFileDescriptorCount()
        let (body, count, needsReply) = try decodeBody(
            wire(line.code, flags: line.flags, Bytes().raw(line.payload)), descriptors: line.descriptors)
        #expect(body == line.expected)
        #expect(count == line.descriptors)
        #expect(needsReply == (line.flags & 0x8 != 0))
        #expect(openFileDescriptorCount() == before)
    }

    @Test func backendRepliesDecode() throws {
        #expect(try replyU64(wire(1, flags: 0x5, Bytes().u64(0x1_7500_7e46)), to: .getFeatures) == 0x1_7500_7e46)
        #expect(try replyU64(wire(15, flags: 0x5, Bytes().u64(0x8f2b)), to: .getProtocolFeatures) == 0x8f2b)
        #expect(try replyU64(wire(17, flags: 0x5, Bytes().u64(1)), to: .getQueueNum) == 1)
        #expect(try replyU64(wire(36, flags: 0x5, Bytes().u64(32)), to: .getMaxMemSlots) == 32)
        #expect(try replyU64(wire(21, flags: 0x5, Bytes().u64(0)), to: .setBackendRequestFD) == 0)
        #expect(try replyU64(wire(37, flags: 0x5, Bytes().u64(0)), to: .addMemReg) == 0)

        let (baseHeader, basePayload) = try split(wire(11, flags: 0x5, Bytes().u32(0).u32(356)))
        let base = try withBytes(basePayload) { raw throws(ProtocolError) in
            try Reply.vringState(header: baseHeader, payload: raw, descriptors: MessageDescriptors())
        }
        #expect(base == VringState(index: 0, num: 356))

        let config = hexBytes(
            "0080000000000000000000007e0000000000000000020000000001000100000000000100008000000100000001000000008000000100000000"
        )
        let (configHeader, configPayload) = try split(wire(24, flags: 0x5, Bytes().u32(0).u32(57).u32(0).raw(config)))
        #expect(configHeader.size == 69)
        let space = try withBytes(configPayload) { raw throws(ProtocolError) in
            try Reply.config(requestedSize: 57, header: configHeader, payload: raw, descriptors: MessageDescriptors())
        }
        #expect(space.data == config)
    }
}

private func hexBytes(_ text: String) -> [UInt8] {
    var bytes: [UInt8] = []
    var iterator = text.makeIterator()
    while let high = iterator.next(), let low = iterator.next() {
        bytes.append(UInt8(String([high, low]), radix: 16) ?? 0)
    }
    return bytes
}
