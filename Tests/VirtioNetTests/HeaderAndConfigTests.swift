import Testing
import VirtioNet

@Suite struct HeaderAndConfigTests {
    @Test func headerRoundTripsLittleEndian() {
        var header = NetHeader(bufferCount: 3)
        header.flags = NetHeader.needsChecksum
        header.gsoType = NetHeader.gsoTCPv4
        header.headerLength = 0x0102
        header.gsoSize = 0x0304
        header.checksumStart = 0x0506
        header.checksumOffset = 0x0708
        let bytes = headerBytes(header)
        #expect(bytes == [1, 1, 2, 1, 4, 3, 6, 5, 8, 7, 3, 0])
        #expect(bytes.withUnsafeBytes { NetHeader($0) } == header)
        #expect([UInt8](repeating: 0, count: 11).withUnsafeBytes { NetHeader($0) } == nil)
    }

    @Test func transmitHeaderChecks() {
        let plain = NetHeader()
        #expect(plain.transmitProblem(features: modern, packetLength: 60) == nil)
        var checksum = NetHeader()
        checksum.flags = NetHeader.needsChecksum
        checksum.checksumStart = 34
        checksum.checksumOffset = 16
        #expect(checksum.transmitProblem(features: modern, packetLength: 100) == .offloadNotNegotiated)
        let withChecksum = modern | NetFeature.checksum
        #expect(checksum.transmitProblem(features: withChecksum, packetLength: 52) == nil)
        #expect(checksum.transmitProblem(features: withChecksum, packetLength: 51) == .checksumOutsidePacket)
        var tso = checksum
        tso.gsoType = NetHeader.gsoTCPv4
        tso.gsoSize = 1448
        tso.headerLength = 54
        #expect(tso.transmitProblem(features: withChecksum, packetLength: 3000) == .offloadNotNegotiated)
        #expect(tso.transmitProblem(features: withChecksum | NetFeature.hostTSO4, packetLength: 3000) == nil)
        tso.gsoSize = 0
        #expect(
            tso.transmitProblem(features: withChecksum | NetFeature.hostTSO4, packetLength: 3000) == .badSegmentation)
        var udp = NetHeader()
        udp.gsoType = NetHeader.gsoUDP
        #expect(udp.transmitProblem(features: ~0, packetLength: 3000) == .unknownGSOType)
        // Unknown flag bits are ignored (VIRTIO 1.2 section 5.1.6.2.2).
        var flags = NetHeader()
        flags.flags = 0x40 | NetHeader.dataValid
        #expect(flags.transmitProblem(features: modern, packetLength: 60) == nil)
    }

    @Test func configSpaceLayout() {
        let config = NetConfiguration(mac: macA, maxQueuePairs: 4, mtu: 9000)
        var bytes = [UInt8](repeating: 0xAA, count: NetConfiguration.size)
        #expect(bytes.withUnsafeMutableBytes { config.read(offset: 0, into: $0) })
        #expect(bytes == [0x52, 0x54, 0, 0, 0, 0x0a, 1, 0, 4, 0, 0x28, 0x23])
        var tail = [UInt8](repeating: 0, count: 2)
        #expect(tail.withUnsafeMutableBytes { config.read(offset: 8, into: $0) })
        #expect(tail == [4, 0])
        #expect(!tail.withUnsafeMutableBytes { config.read(offset: 11, into: $0) })
        #expect(!tail.withUnsafeMutableBytes { config.read(offset: -1, into: $0) })
    }

    @Test func macAddresses() {
        #expect(MacAddress("52:54:00:12:34:56")?.description == "52:54:00:12:34:56")
        #expect(MacAddress("52-54-00-12-34-5f")?.description == "52:54:00:12:34:5f")
        for bad in ["", "52:54:00:12:34", "52:54:00:12:34:567", "zz:54:00:12:34:56", "52:54:00:12:34:56:00"] {
            #expect(MacAddress(bad) == nil, "\(bad)")
        }
        #expect(MacAddress.broadcast.isBroadcast && MacAddress.broadcast.isMulticast)
        #expect(MacAddress("01:00:5e:00:00:01")!.isMulticast)
        #expect(!macA.isMulticast)
        let stable = MacAddress.stable(seed: "/tmp/net.sock")
        #expect(stable == MacAddress.stable(seed: "/tmp/net.sock"))
        #expect(stable != MacAddress.stable(seed: "/tmp/other.sock"))
        #expect(stable.isLocallyAdministered && !stable.isMulticast)
    }
}
