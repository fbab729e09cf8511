import Testing
import Virtio
import VirtioBlock
import VMMSysUtil

/// Every malformed request is answered (IOERR = 1, UNSUPP = 2) and leaves the image unchanged.
@Suite("virtio-blk malformed requests")
struct MalformedRequestTests {
    static let sectors = 32
    static let ioError: UInt8 = 1
    static let unsupported: UInt8 = 2

    /// Runs `body` against a fresh image and checks the image did not change.
    func withRig(
        _ layout: Layout, configuration: ((UInt64) -> BlockConfiguration)? = nil,
        _ body: (BlockRig) throws -> Void
    ) throws {
        let image = try TestImage(sectors: Self.sectors)
        let file = try BlockBackingFile(path: image.path)
        let rig = try BlockRig(layout: layout, file: file, configuration: configuration?(file.capacity))
        let before = try image.contents()
        try body(rig)
        #expect(try image.contents() == before, "a failed request changed the image")
    }

    @Test("no writable byte: completed with nothing written", arguments: Layout.allCases)
    func noStatusByte(layout: Layout) throws {
        try withRig(layout) { (rig: BlockRig) throws in
            let c = try rig.submit(
                readable: header(1, sector: 0) + [UInt8](repeating: 1, count: 512), writableSplit: [])
            #expect(c.used == 0)
            let d = try rig.submit(readable: header(0), writableSplit: [])
            #expect(d.used == 0)
        }
    }

    @Test("header shorter than 16 bytes", arguments: Layout.allCases)
    func shortHeader(layout: Layout) throws {
        try withRig(layout) { (rig: BlockRig) throws in
            let c = try rig.submit(
                readable: Array(header(0).prefix(15)), readableSplit: [7, 8], writableSplit: [512, 1])
            #expect(c.status == Self.ioError && c.used == 513)
            #expect(c.data.allSatisfy { $0 == BlockRig.canary })
            // Only writable buffers: the "header" is not in the readable part.
            let w = try rig.submit(readable: [], writableSplit: [16, 1])
            #expect(w.status == Self.ioError)
        }
    }

    @Test("data length not a multiple of 512", arguments: Layout.allCases)
    func partialSector(layout: Layout) throws {
        try withRig(layout) { (rig: BlockRig) throws in
            #expect(try rig.read(sector: 0, bytes: 500, split: [500, 1]).status == Self.ioError)
            #expect(try rig.write(sector: 0, data: [UInt8](repeating: 9, count: 513)).status == Self.ioError)
            #expect(try rig.write(sector: 0, data: [UInt8](repeating: 9, count: 1)).status == Self.ioError)
        }
    }

    @Test("sector range beyond the capacity or overflowing", arguments: Layout.allCases)
    func outOfRange(layout: Layout) throws {
        let capacity = UInt64(Self.sectors)
        try withRig(layout) { (rig: BlockRig) throws in
            let data = [UInt8](repeating: 3, count: 1024)
            for sector in [
                capacity, capacity - 1, capacity + 1, UInt64.max, UInt64.max / 512, UInt64.max / 512 + 1, 1 << 63,
            ] {
                #expect(try rig.read(sector: sector, bytes: 1024).status == Self.ioError, "IN at \(sector)")
                #expect(try rig.write(sector: sector, data: data).status == Self.ioError, "OUT at \(sector)")
            }
            // Empty request just past the end.
            #expect(try rig.read(sector: capacity + 1, bytes: 0, split: [1]).status == Self.ioError)
        }
    }

    @Test("IN with readable data, OUT with writable data, FLUSH with data", arguments: Layout.allCases)
    func wrongDirection(layout: Layout) throws {
        try withRig(layout) { (rig: BlockRig) throws in
            let inWithData = try rig.submit(
                readable: header(0, sector: 1) + [UInt8](repeating: 4, count: 512),
                writableSplit: [512, 1])
            #expect(inWithData.status == Self.ioError)
            let outWithWritable = try rig.submit(
                readable: header(1, sector: 1) + [UInt8](repeating: 4, count: 512),
                writableSplit: [512, 1])
            #expect(outWithWritable.status == Self.ioError)
            #expect(try rig.submit(readable: header(4) + [0], writableSplit: [1]).status == Self.ioError)
            #expect(try rig.submit(readable: header(4), writableSplit: [512, 1]).status == Self.ioError)
            #expect(try rig.submit(readable: header(8) + [0], writableSplit: [20, 1]).status == Self.ioError)
            #expect(
                try rig.submit(readable: header(11) + rangeSegment(sector: 0, sectors: 1), writableSplit: [16, 1])
                    .status
                    == Self.ioError)
        }
    }

    @Test("more data segments than seg_max, or a segment larger than size_max", arguments: Layout.allCases)
    func segmentLimits(layout: Layout) throws {
        try withRig(layout, configuration: { BlockConfiguration(capacity: $0, segmentMax: 4, sizeMax: 1024) }) {
            (rig: BlockRig) throws in
            // Four segments pass, five fail: in both directions, status in its own buffer or not.
            #expect(try rig.read(sector: 0, bytes: 2048, split: [512, 512, 512, 512, 1]).status == 0)
            #expect(try rig.read(sector: 0, bytes: 2048, split: [512, 512, 512, 512, 1], indirect: true).status == 0)
            #expect(try rig.read(sector: 0, bytes: 2048, split: [512, 512, 512, 513]).status == 0)
            #expect(try rig.read(sector: 0, bytes: 2560, split: [512, 512, 512, 512, 512, 1]).status == Self.ioError)
            #expect(try rig.read(sector: 0, bytes: 2560, split: [512, 512, 512, 512, 513]).status == Self.ioError)
            let data = [UInt8](repeating: 8, count: 2560)
            #expect(try rig.write(sector: 0, data: data, split: [16, 512, 512, 512, 512, 512]).status == Self.ioError)
            #expect(try rig.write(sector: 0, data: data, split: [20, 508, 512, 512, 512, 512]).status == Self.ioError)
            // Far more pieces than the scratch space holds.
            #expect(
                try rig.read(
                    sector: 0, bytes: 512, split: [UInt8](repeating: 0, count: 12).map { _ in 16 } + [320, 1],
                    indirect: true
                ).status == Self.ioError)
            // size_max: a 1025-byte data piece fails; a 1024-byte one (plus status) passes.
            #expect(try rig.read(sector: 0, bytes: 1536, split: [1025, 511, 1]).status == Self.ioError)
            #expect(try rig.read(sector: 0, bytes: 1024, split: [1024, 1]).status == 0)
        }
    }

    @Test("unknown and unsupported types answer UNSUPP", arguments: Layout.allCases)
    func unknownTypes(layout: Layout) throws {
        try withRig(layout) { (rig: BlockRig) throws in
            for type: UInt32 in [2, 3, 5, 10, 14, 15, 99, 0x8000_0000, 0x8000_0001, UInt32.max] {
                let c = try rig.submit(
                    readable: header(type) + [UInt8](repeating: 0, count: 16), writableSplit: [512, 1])
                #expect(c.status == Self.unsupported, "type \(type)")
                #expect(c.used == 513)
            }
        }
    }

    @Test(
        "DISCARD / WRITE_ZEROES: bad flags UNSUPP; bad lengths, counts and ranges IOERR; nothing partial",
        arguments: Layout.allCases)
    func rangeRules(layout: Layout) throws {
        let capacity = UInt64(Self.sectors)
        try withRig(
            layout,
            configuration: { c in
                var configuration = BlockConfiguration(capacity: c)
                configuration.maxDiscardSegments = 2
                configuration.maxWriteZeroesSegments = 2
                configuration.maxDiscardSectors = 8
                configuration.maxWriteZeroesSectors = 8
                return configuration
            }
        ) { (rig: BlockRig) throws in
            for type: UInt32 in [11, 13] {
                // Flags: unmap on discard, reserved bits on either.
                if type == 11 {
                    #expect(
                        try rig.ranges(type, [rangeSegment(sector: 0, sectors: 1, flags: 1)]).status == Self.unsupported
                    )
                }
                #expect(
                    try rig.ranges(type, [rangeSegment(sector: 0, sectors: 1, flags: 2)]).status == Self.unsupported)
                #expect(
                    try rig.ranges(type, [rangeSegment(sector: 0, sectors: 1, flags: 1 << 31)]).status
                        == Self.unsupported)
                // Lengths and counts.
                #expect(try rig.ranges(type, []).status == Self.ioError)
                #expect(
                    try rig.ranges(type, [Array(rangeSegment(sector: 0, sectors: 1).prefix(15))]).status == Self.ioError
                )
                #expect(try rig.ranges(type, [rangeSegment(sector: 0, sectors: 1), [0]]).status == Self.ioError)
                #expect(
                    try rig.ranges(type, (0..<3).map { rangeSegment(sector: UInt64($0), sectors: 1) }).status
                        == Self.ioError)
                // Sector limits and ranges.
                #expect(try rig.ranges(type, [rangeSegment(sector: 0, sectors: 9)]).status == Self.ioError)
                #expect(try rig.ranges(type, [rangeSegment(sector: capacity, sectors: 1)]).status == Self.ioError)
                #expect(try rig.ranges(type, [rangeSegment(sector: capacity - 1, sectors: 2)]).status == Self.ioError)
                #expect(try rig.ranges(type, [rangeSegment(sector: UInt64.max, sectors: 8)]).status == Self.ioError)
                #expect(
                    try rig.ranges(type, [rangeSegment(sector: UInt64.max / 512 + 1, sectors: 1)]).status
                        == Self.ioError)
                // A valid first segment is not performed when the second is bad.
                #expect(
                    try rig.ranges(
                        type, [rangeSegment(sector: 0, sectors: 4), rangeSegment(sector: capacity, sectors: 1)]
                    )
                    .status == Self.ioError)
                #expect(
                    try rig.ranges(
                        type, [rangeSegment(sector: 0, sectors: 4), rangeSegment(sector: 8, sectors: 1, flags: 4)]
                    )
                    .status == Self.unsupported)
            }
        }
    }

    @Test("a queue keeps working after malformed requests", arguments: Layout.allCases)
    func keepsWorking(layout: Layout) throws {
        let image = try TestImage(sectors: Self.sectors)
        let file = try BlockBackingFile(path: image.path)
        let rig = try BlockRig(layout: layout, file: file, queueSize: 4)
        let expected = try image.contents()
        for i in 0..<12 {
            #expect(
                try rig.submit(readable: Array(header(0).prefix(i % 16)), writableSplit: [1]).status == Self.ioError)
            #expect(try rig.submit(readable: header(77), writableSplit: [1]).status == Self.unsupported)
            let c = try rig.read(sector: UInt64(i), bytes: 512)
            #expect(c.status == 0 && c.data == sectorRange(expected, i, 1))
        }
    }
}
