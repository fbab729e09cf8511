#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import CVMMPlatform
import VMMSysUtil

let shmCaseSize = 1 << 20
let receivedRegionSize = 256 << 20

/// `SharedMemory(size: 1 MiB, backend:)` then release (munmap + close).
final class OursShmCreate: BenchRunner {
    let backend: SharedMemoryBackend
    init(_ backend: SharedMemoryBackend) { self.backend = backend }
    func run(_ iterations: Int) throws {
        for _ in 0..<iterations {
            let memory = try SharedMemory(size: shmCaseSize, backend: backend)
            _ = memory.mapping.base
        }
    }
}

/// Raw twin: the same syscalls the backend makes (create, name removal, size, seal), then
/// `fstat` + `mmap` + `munmap` + `close`.
final class RawShmCreate: BenchRunner {
    let backend: SharedMemoryBackend
    // A C-style name buffer refilled per iteration ("/vmm-" + 16 hex digits, or a /dev/shm path).
    let name = UnsafeMutablePointer<CChar>.allocate(capacity: 64)
    var counter: UInt64

    init(_ backend: SharedMemoryBackend) {
        self.backend = backend
        counter = UInt64(UInt32(bitPattern: getpid())) << 32
    }
    deinit { name.deallocate() }

    private func fillName(prefix: StaticString) {
        counter &+= 1
        var length = 0
        prefix.withUTF8Buffer { bytes in
            for byte in bytes {
                name[length] = CChar(bitPattern: byte)
                length += 1
            }
        }
        let digits: StaticString = "0123456789abcdef"
        for shift in stride(from: 60, through: 0, by: -4) {
            name[length] = CChar(bitPattern: digits.utf8Start[Int((counter >> UInt64(shift)) & 0xf)])
            length += 1
        }
        name[length] = 0
    }

    private func openBackend() throws -> Int32 {
        switch backend {
        case .memfd:
            #if os(Linux)
            let fd = try check(
                "memfd_create", vmm_memfd_create("vmm-shared-memory", VMM_MFD_CLOEXEC | VMM_MFD_ALLOW_SEALING))
            _ = try check("ftruncate", ftruncate(fd, off_t(shmCaseSize)))
            _ = try check(
                "fcntl(F_ADD_SEALS)", fcntl(fd, VMM_F_ADD_SEALS, VMM_F_SEAL_SHRINK | VMM_F_SEAL_GROW | VMM_F_SEAL_SEAL))
            return fd
            #else
            throw BenchSkipped("no memfd here")
            #endif
        case .shm:
            fillName(prefix: "/vmm-")
            let fd = try check("shm_open", vmm_shm_open(name, O_RDWR | O_CREAT | O_EXCL, mode_t(0o600)))
            _ = try check("shm_unlink", shm_unlink(name))
            _ = try check("fcntl(F_GETFD)", fcntl(fd, F_GETFD))
            _ = try check("ftruncate", ftruncate(fd, off_t(shmCaseSize)))
            return fd
        case .file:
            fillName(prefix: "/dev/shm/vmm-shm-")
            let fd = try check("open", open(name, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, mode_t(0o600)))
            _ = try check("unlink", unlink(name))
            _ = try check("ftruncate", ftruncate(fd, off_t(shmCaseSize)))
            return fd
        }
    }

    func run(_ iterations: Int) throws {
        for _ in 0..<iterations {
            let fd = try openBackend()
            var info = stat()
            _ = try check("fstat", fstat(fd, &info))
            guard let base = mmap(nil, shmCaseSize, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0), base != MAP_FAILED
            else {
                throw SystemCallError("mmap", Errno.current)
            }
            munmap(base, shmCaseSize)
            _ = systemClose(fd)
        }
    }
}

/// `SharedMemory.map(received:size:offset:)` of a 256 MiB memfd, then unmap.
final class OursMapReceived: BenchRunner {
    let memory: SharedMemory
    let received: FileDescriptor
    init() throws {
        memory = try SharedMemory(size: receivedRegionSize)
        received = FileDescriptor(
            adopting: try check("fcntl(F_DUPFD_CLOEXEC)", fcntl(memory.descriptor, F_DUPFD_CLOEXEC, 0)))
    }
    func run(_ iterations: Int) throws {
        for _ in 0..<iterations {
            let mapping = try SharedMemory.map(received: received, size: UInt64(receivedRegionSize), offset: 0)
            _ = mapping.base
        }
    }
}

/// Raw twin: `fstat` + `mmap` + `munmap` of the same 256 MiB fd.
final class RawMapReceived: BenchRunner {
    let memory: SharedMemory
    init() throws { memory = try SharedMemory(size: receivedRegionSize) }
    func run(_ iterations: Int) throws {
        let fd = memory.descriptor
        for _ in 0..<iterations {
            var info = stat()
            _ = try check("fstat", fstat(fd, &info))
            guard let base = mmap(nil, receivedRegionSize, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0),
                base != MAP_FAILED
            else {
                throw SystemCallError("mmap", Errno.current)
            }
            munmap(base, receivedRegionSize)
        }
    }
}

enum ShmCases {
    static func all() -> [BenchCase] {
        var cases = SharedMemoryBackend.allCases.map { backend in
            BenchCase(
                group: "shm", name: "create-map-unmap-1MiB", backend: backend.rawValue,
                unavailableReason: unavailable(backend)
            ) { implementation, _ in
                guard backend.isAvailable else { throw BenchSkipped("\(backend.rawValue) is not available here") }
                switch implementation {
                case .ours: return OursShmCreate(backend)
                case .raw: return RawShmCreate(backend)
                }
            }
        }
        cases.append(
            BenchCase(group: "shm", name: "map-received-256MiB", backend: SharedMemoryBackend.native.rawValue) {
                implementation, _ in
                switch implementation {
                case .ours: return try OursMapReceived()
                case .raw: return try RawMapReceived()
                }
            })
        return cases
    }
}
