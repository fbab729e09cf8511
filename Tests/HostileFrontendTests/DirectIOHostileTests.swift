#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Testing
import VMMSysUtil
import VMMTestSupport
import Virtio
import VhostUserProtocol

/// vhost-user-blk with the page cache bypassed (`--cache none`, O_DIRECT) gets the buffers a
/// hostile or careless driver may post: odd addresses, odd-sized pieces, lengths that are not
/// whole sectors, ranges past the end. Aligned or not, every well-formed request is served
/// (bounced through an aligned buffer, not refused) with the right bytes; every malformed one
/// gets IOERR and changes nothing; the daemon survives with its fd count.
@Suite("Hostile front-end: unaligned and odd-sized buffers under O_DIRECT", .serialized)
struct DirectIOHostileTests {
    static let engines: [String] = AsyncFileEngineKind.allCases.filter(\.isUsable).map(\.rawValue)
    static let sectors = 128
    static let header: UInt64 = Guest.bufferBase
    static let status: UInt64 = Guest.bufferBase + 0x1000
    static let table: UInt64 = 0x5000
    /// Data pieces start here, each at an odd address 3 bytes after the previous one's end.
    static let data: UInt64 = Guest.bufferBase + 0x2001

    /// The image as the daemon should have it, and the session serving it.
    final class Rig {
        let guest: Guest
        let imagePath: String
        var model: [UInt8]

        init(guest: Guest, imagePath: String, model: [UInt8]) {
            self.guest = guest
            self.imagePath = imagePath
            self.model = model
        }

        /// Posts a request (header, data pieces of `pieces` bytes at odd addresses, status) as one
        /// indirect chain; returns the status byte and, for reads, the bytes landed in the pieces.
        func request(type: UInt32, sector: UInt64, pieces: [Int], payload: [UInt8] = []) throws -> (UInt8, [UInt8])? {
            let isRead = type == 0
            let header = guest.pointer(DirectIOHostileTests.header)
            header.storeBytes(of: type.littleEndian, toByteOffset: 0, as: UInt32.self)
            header.storeBytes(of: UInt32(0), toByteOffset: 4, as: UInt32.self)
            header.storeBytes(of: sector.littleEndian, toByteOffset: 8, as: UInt64.self)
            guest.pointer(DirectIOHostileTests.status).storeBytes(of: UInt8(0xEE), as: UInt8.self)
            var buffers = [DriverBuffer(address: DirectIOHostileTests.header, length: 16, isWritable: false)]
            var address = DirectIOHostileTests.data
            var offset = 0
            for size in pieces {
                if !isRead {
                    for i in 0..<size {
                        guest.pointer(address).storeBytes(of: payload[offset + i], toByteOffset: i, as: UInt8.self)
                    }
                } else {
                    guest.pointer(address).initializeMemory(as: UInt8.self, repeating: 0xCC, count: size)
                }
                buffers.append(DriverBuffer(address: address, length: UInt32(size), isWritable: isRead))
                address += UInt64(size) + 3
                offset += size
            }
            buffers.append(DriverBuffer(address: DirectIOHostileTests.status, length: 1, isWritable: true))
            _ = try guest.driver.post(buffers, indirectTable: DirectIOHostileTests.table)
            try guest.kick.notify()
            guard try guest.awaitUsed() != nil else { return nil }
            var landed: [UInt8] = []
            address = DirectIOHostileTests.data
            for size in pieces where isRead {
                landed += UnsafeRawBufferPointer(start: guest.pointer(address), count: size)
                address += UInt64(size) + 3
            }
            return (guest.pointer(DirectIOHostileTests.status).load(as: UInt8.self), landed)
        }

        func imageContents() -> [UInt8] {
            var bytes = [UInt8](repeating: 0, count: model.count)
            let fd = open(imagePath, O_RDONLY | O_CLOEXEC)
            defer { close(fd) }
            _ = bytes.withUnsafeMutableBytes { pread(fd, $0.baseAddress, $0.count, 0) }
            return bytes
        }
    }

    @Test(
        "odd addresses and odd-sized pieces are served through a bounce buffer; bad lengths get IOERR",
        arguments: engines)
    func unalignedBuffers(engine: String) throws {
        let directory = "/tmp/hostile-direct-\(getpid())-\(engine)"
        #expect(mkdir(directory, 0o700) == 0)
        defer { rmdir(directory) }
        let path = directory + "/sock"
        let image = directory + "/image"
        var generator = SystemRandomNumberGenerator()
        let initial = (0..<(Self.sectors * 512)).map { _ in UInt8.random(in: 0...255, using: &generator) }
        let fd = open(image, O_CREAT | O_RDWR | O_CLOEXEC, 0o600)
        _ = initial.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        close(fd)
        defer { unlink(image) }
        let child = try ListeningDaemon(
            "vhost-user-blk",
            arguments: [
                "--socket-path", path, "--blk-file", image, "--cache", "none", "--aio", engine,
            ], path: path)
        let wire = Wire(try child.connect())
        let guest = try Guest()
        try #require(try guest.start(wire))
        #if os(Linux)
        let descriptors = try countEntries("/proc/\(child.pid)/fd")
        #endif
        let rig = Rig(guest: guest, imagePath: image, model: initial)
        func expectRead(_ sector: Int, _ pieces: [Int], _ comment: Comment) throws {
            let length = pieces.reduce(0, +)
            let result = try rig.request(type: 0, sector: UInt64(sector), pieces: pieces)
            #expect(result?.0 == 0, comment)
            #expect(result?.1 == Array(rig.model[(sector * 512)..<(sector * 512 + length)]), comment)
        }
        func expectWrite(_ sector: Int, _ pieces: [Int], _ comment: Comment) throws {
            let payload = (0..<pieces.reduce(0, +)).map { _ in UInt8.random(in: 0...255, using: &generator) }
            #expect(try rig.request(type: 1, sector: UInt64(sector), pieces: pieces, payload: payload)?.0 == 0, comment)
            rig.model.replaceSubrange((sector * 512)..<(sector * 512 + payload.count), with: payload)
        }
        func expectError(_ type: UInt32, _ sector: Int, _ pieces: [Int], _ comment: Comment) throws {
            let payload = [UInt8](repeating: 0xAB, count: pieces.reduce(0, +))
            #expect(
                try rig.request(type: type, sector: UInt64(sector), pieces: pieces, payload: payload)?.0 == 1, comment)
        }

        try expectRead(1, [4096], "one piece at an odd address")
        try expectRead(8, [1, 511, 3, 2048, 1533], "odd-sized pieces")
        try expectRead(Self.sectors - 1, [100, 412], "the last sector, split")
        try expectRead(20, Array(repeating: 32, count: 64), "64 pieces of 32 bytes")
        try expectWrite(9, [7, 1017], "a write from odd pieces")
        try expectWrite(40, [4096], "one unaligned piece")
        try expectWrite(Self.sectors - 2, [1, 1, 1022], "the last two sectors")
        try expectRead(9, [1024], "reads back what was written")
        try expectError(0, 2, [513], "a read of 513 bytes")
        try expectError(1, 2, [100], "a write of 100 bytes")
        try expectError(1, 2, [511, 2], "a write of 513 bytes in two pieces")
        try expectError(0, Self.sectors - 1, [1024], "a read past the end")
        try expectError(1, Self.sectors, [3, 509], "a write past the end")
        #expect(rig.imageContents() == rig.model, "the image holds exactly the successful writes")
        #expect(kill(child.pid, 0) == 0)
        #if os(Linux)
        #expect(try countEntries("/proc/\(child.pid)/fd") == descriptors)
        #endif
    }
}
