#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import CVMMPlatform

/// Space management and queries on files and block devices (image files of block back-ends).
/// Where a call does not exist on this OS or file system, the space calls report `false` so the
/// caller can write zeroes instead.
///
/// Thread-safety: stateless; each call is one system call on the caller's descriptor.
public enum FileSpace {
    /// Deallocates `[offset, offset + length)` of a file, keeping its size; reads then return
    /// zeroes (Linux `fallocate(PUNCH_HOLE | KEEP_SIZE)`). An empty range succeeds at once.
    ///
    /// - Returns: `false` if this OS or file system cannot do it.
    /// - Throws: `SystemCallError` (`fallocate`) for any other failure.
    public static func punchHole(_ fd: Int32, offset: UInt64, length: UInt64) throws(SystemCallError) -> Bool {
        try allocate(fd, .punchHole, offset: offset, length: length)
    }

    /// Zeroes `[offset, offset + length)` without writing data, keeping the space allocated and
    /// the size unchanged (Linux `fallocate(ZERO_RANGE | KEEP_SIZE)`).
    ///
    /// - Returns: `false` if this OS or file system cannot do it.
    /// - Throws: `SystemCallError` (`fallocate`) for any other failure.
    public static func zeroRange(_ fd: Int32, offset: UInt64, length: UInt64) throws(SystemCallError) -> Bool {
        try allocate(fd, .zeroRange, offset: offset, length: length)
    }

    /// A block device's logical block size (Linux `ioctl(BLKSSZGET)`), or `nil` if it cannot be
    /// queried here or is not a power of two of at least 512.
    public static func logicalBlockSize(ofBlockDevice fd: Int32) -> UInt32? {
        #if os(Linux)
        var size: Int32 = 0
        guard vmm_block_logical_size(fd, &size) == 0, size >= 512, size & (size - 1) == 0 else { return nil }
        return UInt32(size)
        #else
        return nil
        #endif
    }

    /// Makes written data durable: `fdatasync`, or `fsync` where there is none (Darwin).
    ///
    /// - Throws: `SystemCallError` (`fdatasync`), EINTR retried.
    public static func dataSync(_ fd: Int32) throws(SystemCallError) {
        #if canImport(Darwin)
        _ = try systemCall("fdatasync") { fsync(fd) }
        #else
        _ = try systemCall("fdatasync") { fdatasync(fd) }
        #endif
    }

    private enum SpaceOperation { case punchHole, zeroRange }

    /// One `fallocate` with KEEP_SIZE; `false` where the OS or file system lacks the operation.
    private static func allocate(
        _ fd: Int32, _ operation: SpaceOperation, offset: UInt64, length: UInt64
    ) throws(SystemCallError) -> Bool {
        #if os(Linux)
        guard length > 0 else { return true }
        let mode =
            VMM_FALLOC_FL_KEEP_SIZE
            | (operation == .punchHole ? VMM_FALLOC_FL_PUNCH_HOLE : VMM_FALLOC_FL_ZERO_RANGE)
        do {
            _ = try systemCall("fallocate") { vmm_fallocate(fd, mode, Int64(offset), Int64(length)) }
            return true
        } catch {
            // Not every file system (or kernel) implements every mode: let the caller fall back.
            switch error.errno.rawValue {
            case EOPNOTSUPP, ENOSYS, ENODEV: return false
            default: throw error
            }
        }
        #else
        return false
        #endif
    }
}
