#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import CVMMPlatform

#if os(Linux)
extension SharedMemoryBackend {
    static var memfdIsAvailable: Bool { true }
}

/// The `memfd` backend: an anonymous, close-on-exec memfd, sized, then sealed.
///
/// Seals: SHRINK so no holder of the descriptor (a peer we sent it to) can truncate it under our
/// mapping and make our accesses SIGBUS; GROW so the size both sides checked with `fstat` stays the
/// size; SEAL so nobody can add seals later (e.g. FUTURE_WRITE, which would stop new writable
/// mappings). WRITE is not sealed: the point is that both sides write.
func makeMemfd(size: Int) throws(SharedMemoryError) -> FileDescriptor {
    let fd: Int32
    do {
        fd = try systemCall("memfd_create") {
            vmm_memfd_create("vmm-shared-memory", VMM_MFD_CLOEXEC | VMM_MFD_ALLOW_SEALING)
        }
    } catch { throw .system(error) }
    let file = FileDescriptor(adopting: fd)
    try resize(file, to: size)
    do {
        _ = try systemCall("fcntl(F_ADD_SEALS)") {
            fcntl(fd, VMM_F_ADD_SEALS, VMM_F_SEAL_SHRINK | VMM_F_SEAL_GROW | VMM_F_SEAL_SEAL)
        }
    } catch { throw .system(error) }
    return file
}
#else
extension SharedMemoryBackend {
    static var memfdIsAvailable: Bool { false }
}

/// memfd does not exist here; `SharedMemoryBackend.memfd.isAvailable` is false, so this is never
/// reached through `SharedMemory(size:backend:)`.
func makeMemfd(size: Int) throws(SharedMemoryError) -> FileDescriptor {
    throw .system(SystemCallError("memfd_create", .noSystemCall))
}
#endif
