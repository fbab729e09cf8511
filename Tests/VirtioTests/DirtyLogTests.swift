import Testing
import VMMSysUtil
import Virtio
import VMMTestSupport

/// The dirty-page bitmap: which bits a write sets, bounds, the front-end's read-and-clear.
@Suite struct DirtyLogTests {
    /// A log of `bytes` bytes (8 pages per byte) over fresh shared memory.
    func makeLog(bytes: Int) throws -> DirtyLog {
        let shared = try SharedMemory(size: 4096)
        let mapping = try MemoryMapping(fd: shared.descriptor, size: UInt64(bytes))
        withExtendedLifetime(shared) {}
        return DirtyLog(mapping: mapping)
    }

    @Test func marksExactlyThePagesOfARange() throws {
        let log = try makeLog(bytes: 8)
        log.mark(guestPhysical: 0x1FFF, length: 2)  // last byte of page 1, first of page 2
        log.mark(guestPhysical: 0x9000, length: 0x1000)  // page 9 exactly
        log.mark(guestPhysical: 0x20000, length: 0)  // nothing
        #expect(log.takeDirtyPages() == [1, 2, 9])
        #expect(log.takeDirtyPages() == [])
        log.mark(guestPhysical: 0x3F000, length: 0x1000)  // page 63, the last one of 8 bytes
        #expect(log.isDirty(page: 63))
        #expect(log.takeDirtyPages() == [63])
    }

    @Test func pagesBeyondTheLogAreNeverWritten() throws {
        let shared = try SharedMemory(size: 4096)
        // One byte of log (pages 0-7) at offset 1 of the fd: bytes 0 and 2 must stay untouched.
        let log = DirtyLog(mapping: try MemoryMapping(fd: shared.descriptor, size: 1, offset: 1))
        log.mark(guestPhysical: 0x7000, length: 0x3000)  // pages 7, 8, 9
        log.mark(guestPhysical: UInt64.max - 10, length: 100)  // overflowing range
        log.mark(guestPhysical: 0x100000, length: 1)
        #expect(shared.mapping.bytes[0] == 0)
        #expect(shared.mapping.bytes[1] == 0x80)
        #expect(shared.mapping.bytes[2] == 0)
        #expect(!log.covers(guestPhysical: 0x7000, length: 0x1001))
        #expect(log.covers(guestPhysical: 0, length: 0x8000))
    }

    @Test func requiredSizeCoversTheHighestRegion() throws {
        // 1 MiB at 0x10000: last byte 0x10FFFF is page 0x10F = 271, in byte 33.
        #expect(DirtyLog.requiredSize(for: try standardMemory()) == 34)
        #expect(
            DirtyLog.requiredSize(for: try makeMemory([(0, 4096), (0x8000_0000, 4096)])) == 0x8000_0000 / 4096 / 8 + 1)
        #expect(DirtyLog.requiredSize(lastAddress: 0) == 1)
    }

    @Test func completionMarksOnlyTheWrittenBytesOfWritableBuffers() throws {
        var rig = try SplitRig()
        let header = dataBase + 0x10  // readable: never logged
        let first = dataBase + 0x0F00  // writable, 0x200 bytes across a page boundary
        let second = dataBase + 0x5000  // writable, 0x1000 bytes
        try rig.descriptor(0, addr: header, len: 16, flags: Flag.next, next: 1)
        try rig.descriptor(1, addr: first, len: 0x200, flags: Flag.next | Flag.write, next: 2)
        try rig.descriptor(2, addr: second, len: 0x1000, flags: Flag.write)
        try rig.publish(0)
        let chain = try #require(try rig.queue.pop())
        let log = try makeLog(bytes: 64)
        let page = dataBase / 4096
        log.markWritten(chain, written: 0x100)
        #expect(log.takeDirtyPages() == [page])
        log.markWritten(chain, written: 0x201)
        #expect(log.takeDirtyPages() == [page, page + 1, page + 5])
        log.markWritten(chain, written: 0)
        #expect(log.takeDirtyPages() == [])
    }

    @Test func concurrentMarksAreNeverLostToTheReader() throws {
        let log = try makeLog(bytes: 1)
        let rounds = 20_000
        // Two writers set different bits of the same byte while the reader clears it.
        let writers = (0..<2).map { writer in
            startThread {
                for round in 0..<rounds {
                    log.mark(guestPhysical: UInt64(writer * 4 + round % 4) * 4096, length: 1)
                }
            }
        }
        var seen = Set<UInt64>()
        for _ in 0..<1000 { seen.formUnion(log.takeDirtyPages()) }
        for writer in writers { writer.join() }
        seen.formUnion(log.takeDirtyPages())
        #expect(seen == Set(0..<8))
    }
}
