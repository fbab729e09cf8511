#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import Testing
@testable import vmm_bench

@Suite("vmm-bench blk scratch image")
struct BlkScratchTests {
    /// Three whole 1 MiB chunks and a partial one of two pages: the last write is shorter than
    /// the others and must still be aligned for direct I/O.
    static let size = 3 << 20 + 8192

    /// The image is `size` bytes of allocated zeroes in both modes: written through the page
    /// cache (`cached`), or with direct I/O where the file system has it (else through the cache).
    @Test(arguments: [true, false])
    func imageIsAllocatedZeroes(cached: Bool) throws {
        let scratch = try BlkScratch(cleanupOnSignal: false)
        defer { scratch.remove() }
        try scratch.createImage(size: Self.size, cached: cached)
        var info = stat()
        #expect(stat(scratch.image, &info) == 0)
        #expect(Int(info.st_size) == Self.size)
        // Not sparse: every block is allocated before the measurement writes to it.
        #expect(Int(info.st_blocks) * 512 >= Self.size)
        let fd = open(scratch.image, O_RDONLY | O_CLOEXEC)
        #expect(fd >= 0)
        defer { close(fd) }
        var buffer = [UInt8](repeating: 0xA5, count: Self.size)
        let read = buffer.withUnsafeMutableBytes { pread(fd, $0.baseAddress, Self.size, 0) }
        #expect(read == Self.size)
        #expect(buffer.allSatisfy { $0 == 0 })
    }
}
