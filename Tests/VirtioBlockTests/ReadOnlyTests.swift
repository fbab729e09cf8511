import Testing
import Virtio
import VirtioBlock
import VMMSysUtil

@Suite("virtio-blk read-only device")
struct ReadOnlyTests {
    @Test(
        "OUT, DISCARD and WRITE_ZEROES fail with IOERR and write nothing; IN, FLUSH, GET_ID work",
        arguments: Layout.allCases)
    func readOnly(layout: Layout) throws {
        let image = try TestImage(sectors: 16)
        let file = try BlockBackingFile(path: image.path, readOnly: true)
        #expect(file.isReadOnly)
        let rig = try BlockRig(layout: layout, file: file)
        let before = try image.contents()
        #expect(try rig.write(sector: 0, data: [UInt8](repeating: 1, count: 512)).status == 1)
        #expect(try rig.ranges(11, [rangeSegment(sector: 0, sectors: 1)]).status == 1)
        #expect(try rig.ranges(13, [rangeSegment(sector: 0, sectors: 1)]).status == 1)
        #expect(try rig.ranges(13, [rangeSegment(sector: 0, sectors: 1, flags: 1)]).status == 1)
        let read = try rig.read(sector: 2, bytes: 1024)
        #expect(read.status == 0 && read.data == sectorRange(before, 2, 2))
        #expect(try rig.submit(readable: header(4), writableSplit: [1]).status == 0)
        #expect(try rig.submit(readable: header(8), writableSplit: [20, 1]).data == file.identifier)
        #expect(try image.contents() == before)
    }

    @Test("feature bits: RO instead of DISCARD / WRITE_ZEROES")
    func features() {
        let configuration = BlockConfiguration(capacity: 8)
        let writable = configuration.features(readOnly: false)
        let readOnly = configuration.features(readOnly: true)
        let common: UInt64 = 1 << 1 | 1 << 2 | 1 << 6 | 1 << 9 | 1 << 12 | 1 << 32
        #expect(writable == common | 1 << 13 | 1 << 14)
        #expect(readOnly == common | 1 << 5)
    }
}
