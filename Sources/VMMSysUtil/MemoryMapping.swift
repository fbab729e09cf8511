#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Why a mapping was refused.
public enum MappingError: Error, Hashable, Sendable, CustomStringConvertible {
    /// A zero-length region was asked for.
    case emptyRegion
    /// `offset + size` does not fit in 64 bits (or in this address space).
    case rangeOverflow(offset: UInt64, size: UInt64)
    /// The region runs past the end of the file (`fstat` size).
    case beyondEndOfFile(offset: UInt64, size: UInt64, fileSize: UInt64)
    /// `fstat` or `mmap` failed.
    case system(SystemCallError)

    public var description: String {
        switch self {
        case .emptyRegion: return "refusing to map an empty region"
        case let .rangeOverflow(offset, size):
            return "region offset \(offset) + size \(size) overflows"
        case let .beyondEndOfFile(offset, size, fileSize):
            return "region [\(offset), \(offset) + \(size)) exceeds the file's \(fileSize) bytes"
        case let .system(error): return error.description
        }
    }
}

/// A shared, never-executable mapping of part of a file, unmapped when the last reference goes.
///
/// Used for memory we create (`SharedMemory`) and regions a peer sends (vhost-user memory tables).
/// `offset` need not be page-aligned: the mapping starts at the page below it and `base` points
/// at `offset` itself, as vhost-user's `mmap_offset` requires.
///
/// Thread-safety: immutable; the bytes behind `base` are shared memory and need the caller's own
/// synchronisation (or atomics) when another thread or process writes them.
public final class MemoryMapping: @unchecked Sendable {
    /// The first byte of the requested range.
    public let base: UnsafeMutableRawPointer
    /// The length of the requested range.
    public let size: Int
    /// Whether the mapping is writable.
    public let isWritable: Bool

    private let mappingStart: UnsafeMutableRawPointer
    private let mappingLength: Int

    /// Maps `[offset, offset + size)` of the file behind `fd`, shared, read-only or read/write.
    ///
    /// The range is checked against the file's size with `fstat` before anything is mapped, so
    /// a peer cannot make us map pages that would fault (SIGBUS) on access. The descriptor is only
    /// borrowed: the mapping stays valid after it is closed.
    ///
    /// - Throws: `MappingError`.
    public init(fd: Int32, size: UInt64, offset: UInt64 = 0, writable: Bool = true) throws(MappingError) {
        guard size > 0 else { throw .emptyRegion }
        let (end, overflow) = offset.addingReportingOverflow(size)
        guard !overflow, end <= UInt64(Int.max) else { throw .rangeOverflow(offset: offset, size: size) }

        var info = stat()
        do {
            _ = try systemCall("fstat") { fstat(fd, &info) }
        } catch { throw .system(error) }
        let fileSize = UInt64(max(0, Int64(info.st_size)))
        guard end <= fileSize else {
            throw .beyondEndOfFile(offset: offset, size: size, fileSize: fileSize)
        }

        let page = UInt64(max(4096, Int(sysconf(Int32(_SC_PAGESIZE)))))
        let alignedOffset = offset & ~(page - 1)
        let lead = Int(offset - alignedOffset)
        let length = Int(size) + lead
        // PROT_EXEC is never requested: guest memory is data.
        let protection = writable ? (PROT_READ | PROT_WRITE) : PROT_READ
        let raw = mmap(nil, length, protection, MAP_SHARED, fd, off_t(alignedOffset))
        guard let raw, raw != MAP_FAILED else {
            throw .system(SystemCallError("mmap", .current))
        }
        self.mappingStart = raw
        self.mappingLength = length
        self.base = raw + lead
        self.size = Int(size)
        self.isWritable = writable
    }

    deinit {
        munmap(mappingStart, mappingLength)
    }

    /// The mapped range as a raw buffer.
    public var bytes: UnsafeMutableRawBufferPointer {
        UnsafeMutableRawBufferPointer(start: base, count: size)
    }
}
