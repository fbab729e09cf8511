import Testing
import VirtioBlock

@Suite("virtio-blk config space")
struct ConfigurationTests {
    func bytes(_ configuration: BlockConfiguration, offset: Int = 0, count: Int = BlockConfiguration.size) -> [UInt8]? {
        var buffer = [UInt8](repeating: 0xAA, count: count)
        let ok = buffer.withUnsafeMutableBytes { configuration.read(offset: offset, into: $0) }
        return ok ? buffer : nil
    }

    func le<T: FixedWidthInteger>(_ bytes: [UInt8], _ offset: Int, _: T.Type) -> T {
        var value = T.zero
        for i in 0..<(T.bitWidth / 8) { value |= T(bytes[offset + i]) << (8 * i) }
        return value
    }

    @Test("fields at the virtio_blk_config offsets, little-endian, everything else zero")
    func layout() throws {
        var configuration = BlockConfiguration(
            capacity: 0x0123_4567_89AB, blockSize: 4096, queueCount: 3,
            segmentMax: 126, sizeMax: 65536)
        configuration.maxDiscardSectors = 0x1111
        configuration.maxDiscardSegments = 5
        configuration.maxWriteZeroesSectors = 0x2222
        configuration.maxWriteZeroesSegments = 6
        let b = try #require(bytes(configuration))
        #expect(b.count == 96)
        #expect(le(b, 0, UInt64.self) == 0x0123_4567_89AB)
        #expect(le(b, 8, UInt32.self) == 65536)
        #expect(le(b, 12, UInt32.self) == 126)
        #expect(le(b, 20, UInt32.self) == 4096)
        #expect(le(b, 34, UInt16.self) == 3)
        #expect(le(b, 36, UInt32.self) == 0x1111)
        #expect(le(b, 40, UInt32.self) == 5)
        #expect(le(b, 44, UInt32.self) == 8)  // discard alignment: 4096 / 512 sectors
        #expect(le(b, 48, UInt32.self) == 0x2222)
        #expect(le(b, 52, UInt32.self) == 6)
        #expect(b[56] == 1)
        let fieldBytes = Set([0..<16, 20..<24, 34..<57].flatMap { Array($0) })
        for i in 0..<96 where !fieldBytes.contains(i) { #expect(b[i] == 0, "byte \(i)") }
    }

    @Test("any in-range offset and length reads the same bytes; out of range is refused")
    func slices() throws {
        let configuration = BlockConfiguration(capacity: 131_072)
        let full = try #require(bytes(configuration))
        // QEMU 7.2 reads 57 bytes from offset 0.
        #expect(bytes(configuration, count: 57) == Array(full.prefix(57)))
        for offset in stride(from: 0, through: 96, by: 7) {
            for count in [0, 1, 2, 5, 96 - offset] where offset + count <= 96 {
                #expect(bytes(configuration, offset: offset, count: count) == Array(full[offset..<(offset + count)]))
            }
        }
        #expect(bytes(configuration, offset: 96, count: 0) == [])
        #expect(bytes(configuration, offset: 90, count: 7) == nil)
        #expect(bytes(configuration, offset: 97, count: 0) == nil)
        #expect(bytes(configuration, offset: -1, count: 1) == nil)
        #expect(bytes(configuration, count: 97) == nil)
        #expect(bytes(configuration, offset: Int.max, count: 1) == nil)
    }
}
