import CVMMFileIO
import VMMSysUtil

// Bypassing the page cache (`BlockCacheMode.none`): the alignment direct I/O needs, and a
// capacity of whole direct-I/O blocks.
extension BlockBackingFile {
    /// The direct-I/O alignment of buffers and of offsets/lengths: what the kernel reports
    /// (statx `STATX_DIOALIGN`, Linux 6.1+), else a block device's logical block size, else a page
    /// for both (always sufficient for O_DIRECT on the file systems that support it). Powers of
    /// two, at most 64 KiB.
    static func directAlignment(_ fd: Int32, blockDevice logicalSize: UInt32?) -> (memory: Int, offset: Int) {
        var memory: UInt32 = 0
        var offset: UInt32 = 0
        func usable(_ value: UInt32) -> Bool { value >= 1 && value <= 65536 && value & (value - 1) == 0 }
        if vmm_direct_io_alignment(fd, &memory, &offset) == 0, usable(memory), usable(offset) {
            return (Int(memory), Int(offset))
        }
        if let logicalSize { return (Int(logicalSize), Int(logicalSize)) }
        return (4096, 4096)
    }

    /// The capacity in sectors of a file ending at byte `end`: whole `blockSize` blocks (direct
    /// I/O cannot reach a partial one at the end), whole sectors at least.
    static func capacity(ofFileEnd end: UInt64, blockSize: Int) -> UInt64 {
        let unit = UInt64(max(blockSize, BlockProtocol.sectorSize))
        return end / unit * unit / UInt64(BlockProtocol.sectorSize)
    }
}
