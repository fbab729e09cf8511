#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Where the `file` backend creates its files: `VMM_SHARED_MEMORY_DIR`, else `/dev/shm` when it is
/// a directory (memory-backed on Linux), else `$TMPDIR`, else `/tmp`. Read once per process.
let sharedMemoryDirectory: String = {
    if let raw = getenv("VMM_SHARED_MEMORY_DIR"), raw.pointee != 0 { return String(cString: raw) }
    var info = stat()
    if stat("/dev/shm", &info) == 0, info.st_mode & S_IFMT == S_IFDIR { return "/dev/shm" }
    if let raw = getenv("TMPDIR"), raw.pointee != 0 { return String(cString: raw) }
    return "/tmp"
}()

/// The `file` backend: a new file with a random name in `directory`, created exclusively with mode
/// 0600 and close-on-exec, unlinked at once (so only descriptors reach it), then sized.
func makeUnlinkedFile(size: Int, directory: String) throws(SharedMemoryError) -> FileDescriptor {
    let prefix = directory.hasSuffix("/") ? directory : directory + "/"
    for _ in 0..<nameAttempts {
        let path = prefix + "vmm-shm-" + randomNameComponent()
        let fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, mode_t(0o600))
        if fd == -1 {
            let error = Errno.current
            if error == .fileExists || error == .interrupted { continue }
            throw .system(SystemCallError("open(\(path))", error))
        }
        let file = FileDescriptor(adopting: fd)
        // Removing the name right away: the memory is reachable only through descriptors, and a
        // crash leaves nothing behind.
        do {
            _ = try systemCall("unlink(\(path))") { unlink(path) }
        } catch { throw .system(error) }
        try resize(file, to: size)
        return file
    }
    throw .nameCollision
}

/// Opens (or creates) a regular file at a caller-chosen path for `SharedMemory(path:size:create:)`.
///
/// An existing file is opened as it is (never truncated or unlinked); a new one is created
/// exclusively (mode 0600), sized, and left in place. A file we created is removed again if sizing
/// it fails, so a failed call leaves nothing behind.
func openExplicitFile(path: String, size: Int?, create: Bool) throws(SharedMemoryError) -> FileDescriptor {
    // Two rounds: a file can appear between our failed open and our exclusive create.
    for _ in 0..<2 {
        // O_NONBLOCK: opening a FIFO someone put there must not hang; it has no effect on regular
        // files. O_NOCTTY: a terminal never becomes our controlling terminal.
        let fd = open(path, O_RDWR | O_CLOEXEC | O_NONBLOCK | O_NOCTTY)
        if fd != -1 {
            let file = FileDescriptor(adopting: fd)
            var info = stat()
            do {
                _ = try systemCall("fstat") { fstat(file.rawValue, &info) }
            } catch { throw .system(error) }
            guard info.st_mode & S_IFMT == S_IFREG else { throw .notARegularFile(path) }
            return file
        }
        let openError = Errno.current
        if openError.rawValue == EISDIR { throw .notARegularFile(path) }
        guard openError == .noSuchFile, create else {
            throw .system(SystemCallError("open(\(path))", openError))
        }
        guard let size else { throw .sizeRequired(path) }
        let created = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, mode_t(0o600))
        if created == -1 {
            let error = Errno.current
            if error == .fileExists { continue }
            throw .system(SystemCallError("open(\(path), O_CREAT)", error))
        }
        let file = FileDescriptor(adopting: created)
        do {
            try resize(file, to: size)
        } catch {
            _ = unlink(path)
            throw error
        }
        return file
    }
    throw .system(SystemCallError("open(\(path))", .fileExists))
}
