import CVMMPlatform
import CVMMFileIO
import VMMSysUtil
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

// Space management and device queries that differ per platform. Where a call does not exist the
// method reports `false` and the caller writes zeroes instead.
extension BlockBackingFile {
    /// Deallocates `[offset, offset + length)`; reads then return zeroes. False if unsupported here
    /// (platform or file system).
    ///
    /// - Throws: `SystemCallError` for failures other than "not supported".
    func punchHole(offset: UInt64, length: UInt64) throws(SystemCallError) -> Bool {
        guard usesSpaceCalls else { return false }
        #if os(Linux)
        return try fallocate(VMM_FALLOC_FL_PUNCH_HOLE | VMM_FALLOC_FL_KEEP_SIZE, offset: offset, length: length)
        #else
        return false
        #endif
    }

    /// Zeroes `[offset, offset + length)` without writing data (space stays allocated). False if
    /// unsupported here.
    ///
    /// - Throws: `SystemCallError` for failures other than "not supported".
    func zeroRange(offset: UInt64, length: UInt64) throws(SystemCallError) -> Bool {
        guard usesSpaceCalls else { return false }
        #if os(Linux)
        return try fallocate(VMM_FALLOC_FL_ZERO_RANGE | VMM_FALLOC_FL_KEEP_SIZE, offset: offset, length: length)
        #else
        return false
        #endif
    }

    #if os(Linux)
    private func fallocate(_ mode: Int32, offset: UInt64, length: UInt64) throws(SystemCallError) -> Bool {
        guard length > 0 else { return true }
        do {
            _ = try systemCall("fallocate") {
                vmm_fallocate(descriptor.rawValue, mode, Int64(offset), Int64(length))
            }
            return true
        } catch {
            // Not every file system (or kernel) implements every mode: let the caller fall back.
            switch error.errno.rawValue {
            case EOPNOTSUPP, ENOSYS, ENODEV: return false
            default: throw error
            }
        }
    }
    #endif

    /// A block device's logical block size, or 512 if it cannot be queried.
    static func blockDeviceLogicalSize(_ fd: Int32) -> UInt32 {
        #if os(Linux)
        var size: Int32 = 0
        guard vmm_block_logical_size(fd, &size) == 0, size >= 512, size & (size - 1) == 0 else { return 512 }
        return UInt32(size)
        #else
        return 512
        #endif
    }

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

    /// `fdatasync` where it exists, else `fsync`.
    static func dataSync(_ fd: Int32) -> Int32 { fileDataSync(fd) }
}
