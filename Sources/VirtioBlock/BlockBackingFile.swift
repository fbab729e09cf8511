import CVMMPlatform
import VMMSysUtil
import CVMMFileIO
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Why a backing file could not be opened.
public enum BlockBackingFileError: Error, Hashable, Sendable, CustomStringConvertible {
    /// `open`, `fstat` or `lseek` failed.
    case system(path: String, SystemCallError)
    /// Neither a regular file nor a block device.
    case unsupportedFileType(path: String)
    /// `--cache none` asked for, but this system cannot bypass the page cache (OpenBSD).
    case directIOUnsupported(path: String)

    public var description: String {
        switch self {
        case let .system(path, error): return "\(path): \(error)"
        case let .unsupportedFileType(path): return "\(path): not a regular file or block device"
        case let .directIOUnsupported(path):
            return "\(path): this system cannot bypass the page cache (no O_DIRECT or F_NOCACHE)"
        }
    }
}

/// How a backing file uses the host's page cache (QEMU's `cache=` names).
///
/// Thread-safety: a value type.
public enum BlockCacheMode: String, Sendable, CaseIterable {
    /// Through the page cache (writes are durable after FLUSH, i.e. `fdatasync`).
    case writeback
    /// Bypassing it: Linux and FreeBSD open with `O_DIRECT` (buffers, offsets and lengths must be
    /// aligned; see `BlockBackingFile.directMemoryAlignment`), macOS sets `F_NOCACHE` (no
    /// alignment rule; the cache is avoided, not forbidden). FLUSH still `fdatasync`s, which
    /// also flushes the disk's own write cache. OpenBSD has neither: refused there.
    case none
}

/// A raw disk image (regular file or block device) that requests read and write directly, with
/// positioned vector I/O between guest memory and the file (no intermediate copy).
///
/// Capacity is measured at open (whole 512-byte sectors, or whole direct-I/O blocks with
/// `cache: .none`; a trailing partial one is not exposed) and grows when `refreshCapacity()` finds
/// the file larger (an image grown while served).
///
/// Thread-safety: `Sendable`; every I/O call is positioned (`preadv`/`pwritev`, `fallocate`), so
/// queue workers may use one file concurrently; `capacity` is an atomic word (hence
/// `@unchecked`), read on every request and grown from any thread.
public final class BlockBackingFile: @unchecked Sendable {
    /// Whether the file was opened read-only (write-class requests then fail with IOERR).
    public let isReadOnly: Bool
    /// Capacity in 512-byte sectors (acquire load: a request sees the size a resize published).
    public var capacity: UInt64 { vmm_load_acquire_u64(capacityWord) }
    /// Where the capacity lives: written only by `init` and `refreshCapacity()`.
    let capacityWord: UnsafeMutablePointer<UInt64>
    /// The logical block size: the device's for a block device, else 512.
    public let logicalBlockSize: UInt32
    /// The 20-byte ASCII id `T_GET_ID` returns: hex of the file's device and inode numbers.
    public let identifier: [UInt8]
    let descriptor: FileDescriptor
    /// How the file uses the page cache.
    public let cacheMode: BlockCacheMode
    /// With `cache: .none`: the alignment direct I/O needs of buffer addresses (1 otherwise).
    public let directMemoryAlignment: Int
    /// With `cache: .none`: the alignment direct I/O needs of file offsets and lengths, which is
    /// also the `logicalBlockSize` offered to the driver (1 otherwise).
    public let directOffsetAlignment: Int
    /// The raw descriptor, for asynchronous I/O engines (valid as long as this object lives).
    public var rawDescriptor: Int32 { descriptor.rawValue }
    /// Whether to try `fallocate`-style calls for discard and write-zeroes (tests turn it off to
    /// exercise the zero-writing fallback every file system must support).
    let usesSpaceCalls: Bool

    /// Opens `path` (`O_RDWR`, or `O_RDONLY` if `readOnly`; always `O_CLOEXEC`; see
    /// `BlockCacheMode` for what `cache: .none` adds).
    ///
    /// - Throws: `BlockBackingFileError` if it cannot be opened or sized, or is not a regular file or
    ///   block device, or the cache cannot be bypassed. No descriptor leaks on failure.
    public convenience init(path: String, readOnly: Bool = false, cache: BlockCacheMode = .writeback)
        throws(BlockBackingFileError)
    {
        try self.init(path: path, readOnly: readOnly, cache: cache, usesSpaceCalls: true)
    }

    /// `directAlignment` replaces what the system reports (tests use a larger one to exercise
    /// the read-modify-write paths of a disk with 4 KiB sectors on any disk).
    init(
        path: String, readOnly: Bool, cache: BlockCacheMode = .writeback, usesSpaceCalls: Bool,
        directAlignment: (memory: Int, offset: Int)? = nil
    ) throws(BlockBackingFileError) {
        self.usesSpaceCalls = usesSpaceCalls
        var flags = (readOnly ? O_RDONLY : O_RDWR) | O_CLOEXEC
        let directFlag = vmm_open_direct_flag()
        if cache == .none { flags |= directFlag }
        let raw: Int32
        do {
            raw = try systemCall("open") { open(path, flags) }
        } catch { throw .system(path: path, error) }
        let file = FileDescriptor(adopting: raw)
        if cache == .none && directFlag == 0 {
            // No O_DIRECT: Darwin's per-descriptor F_NOCACHE, or nothing at all.
            guard vmm_disable_file_cache(file.rawValue) == 0 else { throw .directIOUnsupported(path: path) }
        }
        var status = stat()
        do {
            _ = try systemCall("fstat") { fstat(file.rawValue, &status) }
        } catch { throw .system(path: path, error) }
        let type = status.st_mode & S_IFMT
        let isBlockDevice = type == S_IFBLK
        guard type == S_IFREG || isBlockDevice else { throw .unsupportedFileType(path: path) }
        // lseek sizes block devices too (fstat reports 0 for them).
        let end: off_t
        do {
            end = try systemCall("lseek") { lseek(file.rawValue, 0, SEEK_END) }
        } catch { throw .system(path: path, error) }
        isReadOnly = readOnly
        cacheMode = cache
        let deviceBlockSize = isBlockDevice ? FileSpace.logicalBlockSize(ofBlockDevice: file.rawValue) ?? 512 : 512
        let alignment =
            cache == .none && directFlag != 0
            ? directAlignment ?? Self.directAlignment(file.rawValue, blockDevice: isBlockDevice ? deviceBlockSize : nil)
            : (memory: 1, offset: 1)
        directMemoryAlignment = alignment.memory
        directOffsetAlignment = alignment.offset
        capacityWord = .allocate(capacity: 1)
        capacityWord.initialize(to: Self.capacity(ofFileEnd: UInt64(max(0, end)), blockSize: alignment.offset))
        logicalBlockSize = max(deviceBlockSize, UInt32(alignment.offset))
        identifier = Self.identifier(
            device: UInt64(truncatingIfNeeded: status.st_dev),
            inode: UInt64(truncatingIfNeeded: status.st_ino))
        descriptor = file
    }

    deinit {
        capacityWord.deallocate()
    }

    /// 8 hex digits of the device number and 12 of the inode: exactly 20 bytes, so no NUL.
    static func identifier(device: UInt64, inode: UInt64) -> [UInt8] {
        func hex(_ value: UInt64, digits: Int) -> [UInt8] {
            let text = String(value & ((1 << (4 * UInt64(digits))) - 1), radix: 16)
            return Array(String(repeating: "0", count: digits - text.count).utf8) + Array(text.utf8)
        }
        return hex(device, digits: 8) + hex(inode, digits: 12)
    }

    /// Reads (or writes, if `write`) the bytes `iovecs[0..<count]` describe at byte `offset`,
    /// retrying short transfers. Modifies the iovecs (they end consumed).
    ///
    /// - Returns: false if the file ended before everything was transferred.
    /// - Throws: `SystemCallError` from `preadv`/`pwritev`.
    func transfer(write: Bool, _ iovecs: UnsafeMutablePointer<iovec>, count: Int, offset: UInt64)
        throws(SystemCallError) -> Bool
    {
        var first = 0
        var position = off_t(offset)
        while first < count {
            // Skip empty entries so a zero-byte result below can only mean end of file.
            if iovecs[first].iov_len == 0 {
                first += 1
                continue
            }
            let done: Int
            if write {
                done = try systemCall("pwritev") {
                    pwritev(descriptor.rawValue, iovecs + first, Int32(count - first), position)
                }
            } else {
                done = try systemCall("preadv") {
                    preadv(descriptor.rawValue, iovecs + first, Int32(count - first), position)
                }
            }
            if done == 0 { return false }
            position += off_t(done)
            var left = done
            while left > 0, first < count {
                let length = iovecs[first].iov_len
                if left >= length {
                    left -= length
                    first += 1
                } else {
                    // Safe: advancing within the entry's own `iov_len` bytes.
                    iovecs[first].iov_base = iovecs[first].iov_base.map { $0 + left }
                    iovecs[first].iov_len = length - left
                    left = 0
                }
            }
        }
        return true
    }

    /// Makes completed writes durable (`fdatasync`; `fsync` where that does not exist).
    ///
    /// - Throws: `SystemCallError`.
    func flush() throws(SystemCallError) {
        try FileSpace.dataSync(descriptor.rawValue)
    }
}
