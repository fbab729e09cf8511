#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// How `SharedMemory` obtains an anonymous, shareable file to map.
///
/// Chosen process-wide with `VMM_SHARED_MEMORY` (`memfd`, `shm`, `file`), or per instance.
/// Thread-safety: a value type.
public enum SharedMemoryBackend: String, SelectableBackend {
    /// `memfd_create` (Linux): never has a name, sealed against resizing.
    case memfd
    /// `shm_open` with a random name that is unlinked at once (every POSIX system).
    case shm
    /// A file with a random name in `VMM_SHARED_MEMORY_DIR` (else `/dev/shm`, else `$TMPDIR` or
    /// `/tmp`), unlinked at once (every POSIX system).
    case file

    public static let environmentVariable = "VMM_SHARED_MEMORY"

    /// `memfd` where it exists, otherwise `shm`.
    public static var native: SharedMemoryBackend { memfdIsAvailable ? .memfd : .shm }

    public var isAvailable: Bool {
        switch self {
        case .memfd: return Self.memfdIsAvailable
        case .shm, .file: return true
        }
    }
}

/// Why shared memory could not be created or opened.
///
/// Thread-safety: a value type.
public enum SharedMemoryError: Error, Hashable, Sendable, CustomStringConvertible {
    /// The requested size is zero, negative, or larger than a file offset can express.
    case invalidSize(Int)
    /// An explicit path names something other than a regular file (a directory, a device, a socket).
    case notARegularFile(String)
    /// An existing file at an explicit path is smaller than the size asked for (it is never grown).
    case fileTooSmall(path: String, fileSize: UInt64, requested: Int)
    /// A new file at an explicit path needs a size.
    case sizeRequired(String)
    /// A unique name could not be found after several attempts (`shm`, `file`).
    case nameCollision
    /// The backend named by `VMM_SHARED_MEMORY` (or passed in) is unknown or unavailable.
    case backend(BackendSelectionError)
    /// A system call failed.
    case system(SystemCallError)
    /// The file was created but could not be mapped.
    case mapping(MappingError)

    public var description: String {
        switch self {
        case let .invalidSize(size): return "invalid shared memory size \(size)"
        case let .notARegularFile(path): return "\(path) is not a regular file"
        case let .fileTooSmall(path, fileSize, requested):
            return "\(path) holds \(fileSize) bytes, fewer than the \(requested) requested"
        case let .sizeRequired(path): return "creating \(path) needs a size"
        case .nameCollision: return "no unused random name for shared memory after several attempts"
        case let .backend(error): return error.description
        case let .system(error): return error.description
        case let .mapping(error): return error.description
        }
    }
}

/// A block of memory another process can map: an open file (memfd, POSIX shm object or plain file)
/// mapped read/write into this process.
///
/// Pass `descriptor` to a peer (for example over `ScmSocket`) together with `size`; the peer maps it
/// with `SharedMemory.map(received:size:offset:writable:)`. The descriptor is close-on-exec and
/// owned by this object: it is closed, and the memory unmapped, when the last reference goes.
/// The anonymous backends leave no name in any filesystem, so nothing needs cleaning up after a crash.
///
/// Thread-safety: immutable after init; the bytes are shared memory and need the caller's own
/// synchronisation (or atomics) when another thread or process writes them.
public final class SharedMemory: @unchecked Sendable {
    /// The backend that created the memory, or `nil` for an explicit path.
    public let backend: SharedMemoryBackend?
    /// The whole memory, mapped read/write (never executable).
    public let mapping: MemoryMapping

    private let file: FileDescriptor

    /// The descriptor to send to a peer (close-on-exec). Valid while this object is alive.
    public var descriptor: Int32 { file.rawValue }
    /// The size in bytes.
    public var size: Int { mapping.size }

    private static let cachedDefault = Result<SharedMemoryBackend, BackendSelectionError> {
        () throws(BackendSelectionError) in try SharedMemoryBackend.fromEnvironment()
    }

    /// The backend `VMM_SHARED_MEMORY` names, or `native` when it is unset; read once per process.
    ///
    /// - Throws: `BackendSelectionError` if the variable names an unknown or unavailable backend
    ///   (every time it is asked, since the variable is not re-read).
    public static var defaultBackend: SharedMemoryBackend {
        get throws(BackendSelectionError) { try cachedDefault.get() }
    }

    /// Creates `size` bytes of zeroed shared memory with `backend` (default: `defaultBackend`)
    /// and maps it read/write.
    ///
    /// - `memfd`: sealed against shrinking, growing and further sealing once sized, so no peer can
    ///   truncate it under our mapping (which would make our accesses SIGBUS) or change its seals.
    /// - `shm`, `file`: the name is random, created exclusively with mode 0600 and removed right
    ///   after opening, so no other process can open it by name.
    ///
    /// - Throws: `SharedMemoryError`.
    public init(size: Int, backend: SharedMemoryBackend? = nil) throws(SharedMemoryError) {
        guard size > 0, UInt64(size) <= UInt64(Int64.max) else { throw .invalidSize(size) }
        let chosen: SharedMemoryBackend
        do throws(BackendSelectionError) {
            if let backend { chosen = backend } else { chosen = try Self.defaultBackend }
            try chosen.checkAvailable()
        } catch { throw .backend(error) }

        let file: FileDescriptor
        switch chosen {
        case .memfd: file = try makeMemfd(size: size)
        case .shm: file = try makeSharedMemoryObject(size: size)
        case .file: file = try makeUnlinkedFile(size: size, directory: sharedMemoryDirectory)
        }
        do {
            self.mapping = try MemoryMapping(fd: file.rawValue, size: UInt64(size))
        } catch { throw .mapping(error) }
        self.file = file
        self.backend = chosen
    }

    /// Maps a file at an explicit path: memory on hugetlbfs, a named object in `/dev/shm`, or a
    /// disk image.
    ///
    /// - If a regular file exists at `path`, it is opened read/write and mapped as it is: never
    ///   truncated, grown or unlinked. `size` (if given) must not exceed the file's size; `nil`
    ///   maps the whole file.
    /// - If nothing exists there and `create` is true, a new file is created exclusively (mode
    ///   0600), sized to `size` (required) and mapped. It is left in place: the caller chose the
    ///   name, so the caller removes it.
    ///
    /// The descriptor is close-on-exec. `backend` is `nil`.
    ///
    /// - Throws: `SharedMemoryError` (`.system` with ENOENT when nothing is at `path` and `create`
    ///   is false).
    public init(path: String, size: Int? = nil, create: Bool) throws(SharedMemoryError) {
        if let size, size <= 0 || UInt64(size) > UInt64(Int64.max) { throw .invalidSize(size) }
        let file = try openExplicitFile(path: path, size: size, create: create)
        var info = stat()
        do {
            _ = try systemCall("fstat") { fstat(file.rawValue, &info) }
        } catch { throw .system(error) }
        let fileSize = UInt64(max(0, Int64(info.st_size)))
        let wanted = size.map { UInt64($0) } ?? fileSize
        guard wanted > 0, wanted <= UInt64(Int.max) else { throw .invalidSize(Int(clamping: wanted)) }
        if wanted > fileSize {
            throw .fileTooSmall(path: path, fileSize: fileSize, requested: Int(clamping: wanted))
        }
        do {
            self.mapping = try MemoryMapping(fd: file.rawValue, size: wanted)
        } catch { throw .mapping(error) }
        self.file = file
        self.backend = nil
    }

    /// Maps a region a peer sent: `[offset, offset + size)` of `fd`, shared, never executable.
    ///
    /// The range is checked for overflow and against the file's current size (`fstat`) before
    /// anything is mapped, so a hostile size or offset is an error, not a SIGBUS. `offset` need not
    /// be page-aligned. The descriptor is only borrowed; the mapping outlives it.
    ///
    /// - Throws: `MappingError` (`.emptyRegion`, `.rangeOverflow`, `.beyondEndOfFile`, `.system`).
    public static func map(
        received fd: borrowing FileDescriptor, size: UInt64, offset: UInt64, writable: Bool = true
    ) throws(MappingError) -> MemoryMapping {
        try MemoryMapping(fd: fd.rawValue, size: size, offset: offset, writable: writable)
    }
}

/// Sets the size of a freshly created shared-memory file.
func resize(_ file: borrowing FileDescriptor, to size: Int) throws(SharedMemoryError) {
    let fd = file.rawValue
    do {
        _ = try systemCall("ftruncate") { ftruncate(fd, off_t(size)) }
    } catch { throw .system(error) }
}

/// A random name component: 16 hex digits from the system's CSPRNG (no fd opened, no allocation
/// beyond the string).
func randomNameComponent() -> String {
    var generator = SystemRandomNumberGenerator()
    let value: UInt64 = generator.next()
    let digits = String(value, radix: 16)
    return String(repeating: "0", count: 16 - digits.count) + digits
}

/// How many random names to try before giving up on EEXIST.
let nameAttempts = 8
