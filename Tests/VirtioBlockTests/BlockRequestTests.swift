import Testing
import Virtio
@testable import VirtioBlock
import VMMSysUtil
import VMMTestSupport
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

@Suite("virtio-blk requests over real rings")
struct BlockRequestTests {
    static let sectors = 64

    @Test("IN reads the image into the writable buffers", arguments: Layout.allCases, BlockMode.allCases)
    func read(layout: Layout, mode: BlockMode) throws {
        let image = try TestImage(sectors: Self.sectors)
        let file = try mode.open(image)
        guard let rig = try mode.rig(layout, file) else { return }
        let expected = try image.contents()
        // One buffer; data and status sharing a buffer; data spread over odd-sized buffers.
        let c1 = try rig.read(sector: 3, bytes: 4096)
        #expect(c1.status == 0 && c1.data == sectorRange(expected, 3, 8) && c1.used == 4097)
        let c2 = try rig.read(sector: 0, bytes: 512, split: [513])
        #expect(c2.status == 0 && c2.data == sectorRange(expected, 0, 1) && c2.used == 513)
        let c3 = try rig.read(sector: 60, bytes: 2048, split: [1, 333, 700, 14, 1000, 1])
        #expect(c3.status == 0 && c3.data == sectorRange(expected, 60, 4) && c3.used == 2049)
        // Status byte at the end of a buffer that also carries data.
        let c4 = try rig.read(sector: 10, bytes: 1024, split: [7, 1018])
        #expect(c4.status == 0 && c4.data == sectorRange(expected, 10, 2))
        // The last sector, and an empty read at the very end.
        let c5 = try rig.read(sector: UInt64(Self.sectors - 1), bytes: 512)
        #expect(c5.status == 0 && c5.data == sectorRange(expected, Self.sectors - 1, 1))
        let c6 = try rig.read(sector: UInt64(Self.sectors), bytes: 0, split: [1])
        #expect(c6.status == 0 && c6.used == 1)
        #expect(try image.contents() == expected)
    }

    @Test(
        "OUT writes the readable data into the image; the header may span buffers", arguments: Layout.allCases,
        BlockMode.allCases)
    func write(layout: Layout, mode: BlockMode) throws {
        let image = try TestImage(sectors: Self.sectors)
        let file = try mode.open(image)
        guard let rig = try mode.rig(layout, file) else { return }
        var expected = try image.contents()
        var random = SplitMix(seed: 7)
        let splits: [[Int]] = [
            [16, 1024], [1040], [5, 11, 1024], [1, 2, 3, 4, 5, 1, 300, 212, 500, 12], [20, 1020],
        ]
        for (i, split) in splits.enumerated() {
            let data = random.bytes(1024)
            let sector = i * 5 + 1
            let c = try rig.write(sector: UInt64(sector), data: data, split: split)
            #expect(c.status == 0 && c.used == 1 && c.writable.count == 1)
            expected.replaceSubrange((sector * 512)..<(sector * 512 + 1024), with: data)
            #expect(try image.contents() == expected)
        }
        // Writes read back through the device too.
        let back = try rig.read(sector: 1, bytes: 1024)
        #expect(back.data == sectorRange(expected, 1, 2))
    }

    @Test("indirect descriptor tables", arguments: Layout.allCases, BlockMode.allCases)
    func indirect(layout: Layout, mode: BlockMode) throws {
        let image = try TestImage(sectors: Self.sectors)
        let file = try mode.open(image)
        guard let rig = try mode.rig(layout, file) else { return }
        var random = SplitMix(seed: 11)
        let data = random.bytes(3 * 512)
        let w = try rig.write(sector: 20, data: data, split: [9, 7, 512, 1, 1023], indirect: true)
        #expect(w.status == 0)
        let r = try rig.read(sector: 20, bytes: 3 * 512, split: [100, 1000, 436, 1], indirect: true)
        #expect(r.status == 0 && r.data == data)
        #expect(sectorRange(try image.contents(), 20, 3) == data)
    }

    @Test("FLUSH and GET_ID", arguments: Layout.allCases, BlockMode.allCases)
    func flushAndIdentifier(layout: Layout, mode: BlockMode) throws {
        let image = try TestImage(sectors: Self.sectors)
        let file = try mode.open(image)
        guard let rig = try mode.rig(layout, file) else { return }
        let flush = try rig.submit(readable: header(4), writableSplit: [1])
        #expect(flush.status == 0 && flush.used == 1)
        let id = try rig.submit(readable: header(8), writableSplit: [20, 1])
        #expect(id.status == 0 && id.data == file.identifier && id.used == 21)
        #expect(file.identifier.count == 20 && !file.identifier.contains(0))
        // A shorter buffer gets a prefix; a longer one gets the 20 bytes and untouched rest.
        let short = try rig.submit(readable: header(8), writableSplit: [3, 5, 1])
        #expect(short.status == 0 && short.data == Array(file.identifier.prefix(8)))
        let long = try rig.submit(readable: header(8), writableSplit: [11, 30])
        #expect(long.status == 0 && Array(long.data.prefix(20)) == file.identifier)
        #expect(long.data.dropFirst(20).allSatisfy { $0 == BlockRig.canary })
    }

    @Test("DISCARD and WRITE_ZEROES zero their ranges and nothing else", arguments: Layout.allCases, BlockMode.allCases)
    func discardAndWriteZeroes(layout: Layout, mode: BlockMode) throws {
        let image = try TestImage(sectors: Self.sectors)
        let file = try mode.open(image)
        guard let rig = try mode.rig(layout, file) else { return }
        var expected = try image.contents()
        func zero(_ sector: Int, _ count: Int) {
            expected.replaceSubrange(
                (sector * 512)..<((sector + count) * 512), with: [UInt8](repeating: 0, count: count * 512))
        }
        let d = try rig.ranges(11, [rangeSegment(sector: 8, sectors: 8), rangeSegment(sector: 33, sectors: 3)])
        #expect(d.status == 0 && d.used == 1)
        zero(8, 8)
        zero(33, 3)
        #expect(try image.contents() == expected)
        let z = try rig.ranges(13, [rangeSegment(sector: 1, sectors: 2)])
        #expect(z.status == 0)
        zero(1, 2)
        let u = try rig.ranges(
            13, [rangeSegment(sector: 40, sectors: 9, flags: 1), rangeSegment(sector: 63, sectors: 1)])
        #expect(u.status == 0)
        zero(40, 9)
        zero(63, 1)
        // Zero-length ranges are accepted and change nothing.
        let empty = try rig.ranges(13, [rangeSegment(sector: 64, sectors: 0)])
        #expect(empty.status == 0)
        #expect(try image.contents() == expected)
        // Segments may be split across buffers too.
        let bytes = header(13) + rangeSegment(sector: 50, sectors: 4)
        let split = try rig.submit(readable: bytes, readableSplit: [3, 17, 5, 7], writableSplit: [1])
        #expect(split.status == 0)
        zero(50, 4)
        #expect(try image.contents() == expected)
    }

    @Test("with an engine, DISCARD and WRITE_ZEROES are performed by it", arguments: Layout.allCases)
    func rangesGoThroughTheEngine(layout: Layout) throws {
        for mode in [BlockMode.directThreads, .directIOUring] {
            let image = try TestImage(sectors: Self.sectors)
            let file = try mode.open(image)
            guard let rig = try mode.rig(layout, file) else { continue }
            var expected = try image.contents()
            expected.replaceSubrange((8 * 512)..<(24 * 512), with: [UInt8](repeating: 0, count: 16 * 512))
            expected.replaceSubrange((40 * 512)..<(41 * 512), with: [UInt8](repeating: 0, count: 512))
            #expect(try rig.ranges(11, [rangeSegment(sector: 8, sectors: 8)]).status == 0)
            #expect(
                try rig.ranges(
                    13, [rangeSegment(sector: 16, sectors: 8, flags: 1), rangeSegment(sector: 40, sectors: 1)]
                )
                .status == 0)
            #expect(rig.asynchronous == 2, "\(mode)")
            // A bad range anywhere fails the request before any range is started.
            #expect(
                try rig.ranges(13, [rangeSegment(sector: 2, sectors: 1), rangeSegment(sector: 1 << 40, sectors: 1)])
                    .status == 1)
            #expect(rig.asynchronous == 2)
            #expect(try image.contents() == expected)
        }
    }

    #if os(Linux)
    @Test(
        "an engine whose file system cannot zero a range falls back to writing zeroes, then stays synchronous",
        .enabled(if: access("/dev/shm", W_OK) == 0, "needs /dev/shm"))
    func rangesFallBackWhereUnsupported() throws {
        // tmpfs punches holes but has no zero-range: the engine reports it unsupported.
        let image = try TestImage(sectors: Self.sectors, directory: "/dev/shm")
        let file = try BlockMode.buffered.open(image)
        let io = try AsyncFileEngine(kind: .threads, threadCount: 2).makeQueue(capacity: 32)
        let rig = try BlockRig(layout: .split, file: file, configuration: nil, queueSize: 16, io: io)
        var expected = try image.contents()
        expected.replaceSubrange((4 * 512)..<(12 * 512), with: [UInt8](repeating: 0, count: 8 * 512))
        #expect(try rig.ranges(13, [rangeSegment(sector: 4, sectors: 4)]).status == 0)
        #expect(rig.asynchronous == 1)
        #expect(try rig.ranges(13, [rangeSegment(sector: 8, sectors: 4)]).status == 0)
        #expect(rig.asynchronous == 1, "after the engine said unsupported, ranges are performed synchronously")
        #expect(try image.contents() == expected)
    }
    #endif

    @Test("16-bit ring index wrap-around (split) and wrap counter flips (packed)", arguments: Layout.allCases)
    func wrapAround(layout: Layout) throws {
        let image = try TestImage(sectors: Self.sectors)
        let file = try BlockBackingFile(path: image.path)
        let rig = try BlockRig(layout: layout, file: file, queueSize: 8, startIndex: 0xFFF3)
        var expected = try image.contents()
        var random = SplitMix(seed: 3)
        for i in 0..<40 {
            let sector = (i * 7) % (Self.sectors - 2)
            if i % 2 == 0 {
                let data = random.bytes(1024)
                let c = try rig.write(sector: UInt64(sector), data: data, split: [16, 100, 924])
                #expect(c.status == 0)
                expected.replaceSubrange((sector * 512)..<(sector * 512 + 1024), with: data)
            } else {
                let c = try rig.read(sector: UInt64(sector), bytes: 1024, split: [512, 300, 213], indirect: i % 3 == 0)
                #expect(c.status == 0 && c.data == sectorRange(expected, sector, 2))
            }
        }
        #expect(try image.contents() == expected)
    }

    @Test("random reads and writes with random splits match a model", arguments: Layout.allCases, BlockMode.allCases)
    func randomized(layout: Layout, mode: BlockMode) throws {
        let image = try TestImage(sectors: Self.sectors, seed: 99)
        let file = try mode.open(image)
        guard let rig = try mode.rig(layout, file, queueSize: 32) else { return }
        var model = try image.contents()
        var random = SplitMix(seed: 2024)
        for _ in 0..<150 {
            let count = Int.random(in: 0...8, using: &random)
            let sector = Int.random(in: 0...(Self.sectors - count), using: &random)
            let length = count * 512
            var cuts: [Int] = []
            for _ in 0..<Int.random(in: 0...6, using: &random) { cuts.append(Int.random(in: 1...700, using: &random)) }
            let indirect = Bool.random(using: &random)
            if Bool.random(using: &random) {
                let data = random.bytes(length)
                let c = try rig.write(
                    sector: UInt64(sector), data: data, split: pieces(16 + length, cuts), indirect: indirect)
                #expect(c.status == 0)
                model.replaceSubrange((sector * 512)..<(sector * 512 + length), with: data)
            } else {
                let c = try rig.read(
                    sector: UInt64(sector), bytes: length, split: pieces(length + 1, cuts), indirect: indirect)
                #expect(c.status == 0 && c.data == sectorRange(model, sector, count))
            }
        }
        #expect(try image.contents() == model)
    }

    @Test("write-through mode (FLUSH not negotiated) still completes writes")
    func writeThrough() throws {
        let image = try TestImage(sectors: 8)
        let file = try BlockBackingFile(path: image.path)
        let rig = try BlockRig(layout: .split, file: file)
        rig.processor.writeThrough = true
        let data = [UInt8](repeating: 0x5A, count: 512)
        #expect(try rig.write(sector: 2, data: data).status == 0)
        #expect(try rig.ranges(13, [rangeSegment(sector: 3, sectors: 1)]).status == 0)
        let contents = try image.contents()
        #expect(sectorRange(contents, 2, 1) == data && sectorRange(contents, 3, 1).allSatisfy { $0 == 0 })
    }
}

@Suite("virtio-blk zero-writing fallback")
struct ZeroFallbackTests {
    @Test(
        "DISCARD and WRITE_ZEROES write zeroes where the file system cannot punch or zero ranges",
        arguments: Layout.allCases, [BlockMode.buffered, .direct, .direct4K, .direct4KAsync])
    func fallback(layout: Layout, mode: BlockMode) throws {
        // One pwritev batch is 16 × 64 KiB = 2048 sectors: 4100 sectors take two full batches and a
        // partial one, whose last iovec is shorter than the zero page.
        let image = try TestImage(sectors: 4200)
        let file = try mode.open(image, usesSpaceCalls: false)
        var configuration = BlockConfiguration(capacity: file.capacity)
        configuration.maxDiscardSectors = 4100
        guard let rig = try mode.rig(layout, file, configuration: configuration) else { return }
        var expected = try image.contents()
        func zero(_ sector: Int, _ count: Int) {
            expected.replaceSubrange(
                (sector * 512)..<((sector + count) * 512), with: [UInt8](repeating: 0, count: count * 512))
        }
        #expect(
            try rig.ranges(11, [rangeSegment(sector: 3, sectors: 4100), rangeSegment(sector: 4190, sectors: 1)]).status
                == 0)
        zero(3, 4100)
        zero(4190, 1)
        #expect(try image.contents() == expected)
        #expect(try rig.ranges(13, [rangeSegment(sector: 4130, sectors: 7, flags: 1)]).status == 0)
        #expect(try rig.ranges(13, [rangeSegment(sector: 4140, sectors: 9)]).status == 0)
        zero(4130, 7)
        zero(4140, 9)
        #expect(try image.contents() == expected)
    }
}
