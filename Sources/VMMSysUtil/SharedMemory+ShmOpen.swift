#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import CVMMPlatform

/// The `shm` backend: a POSIX shared-memory object with a random name, created exclusively with
/// mode 0600, unlinked at once (so only descriptors reach it), made close-on-exec, then sized.
///
/// The name is short ("/vmm-" + 16 hex digits) because macOS limits it to 31 bytes.
func makeSharedMemoryObject(size: Int) throws(SharedMemoryError) -> FileDescriptor {
    for _ in 0..<nameAttempts {
        let name = "/vmm-" + randomNameComponent()
        let fd = vmm_shm_open(name, O_RDWR | O_CREAT | O_EXCL, mode_t(0o600))
        if fd == -1 {
            let error = Errno.current
            if error == .fileExists || error == .interrupted { continue }
            throw .system(SystemCallError("shm_open", error))
        }
        let file = FileDescriptor(adopting: fd)
        do {
            _ = try systemCall("shm_unlink") { shm_unlink(name) }
            // glibc and the BSDs open shm objects close-on-exec already; POSIX does not promise it,
            // so check (and set if needed). Nothing can exec between shm_open and here on our thread.
            try file.setCloseOnExec()
        } catch { throw .system(error) }
        try resize(file, to: size)
        return file
    }
    throw .nameCollision
}
