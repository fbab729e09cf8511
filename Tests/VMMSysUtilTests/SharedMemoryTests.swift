import Testing
import VMMSysUtil
import VMMTestSupport
import CVMMPlatform
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

private func fillPattern(_ bytes: UnsafeMutableRawBufferPointer, seed: Int) {
    for index in 0..<bytes.count { bytes[index] = UInt8(truncatingIfNeeded: index &* 13 &+ seed) }
}

private func matchesPattern(_ bytes: UnsafeMutableRawBufferPointer, seed: Int, from start: Int = 0) -> Bool {
    for index in 0..<bytes.count where bytes[index] != UInt8(truncatingIfNeeded: (start + index) &* 13 &+ seed) {
        return false
    }
    return true
}

/// The permission field ("rw-s") of the /proc/self/maps line containing `address`, or nil.
private func mappingPermissions(containing address: UnsafeMutableRawPointer) -> String? {
    #if os(Linux)
    guard let file = fopen("/proc/self/maps", "r") else { return nil }
    defer { fclose(file) }
    let target = UInt(bitPattern: address)
    var line = [CChar](repeating: 0, count: 4096)
    while fgets(&line, Int32(line.count), file) != nil {
        let text = String(decoding: line.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        let fields = text.split(separator: " ", omittingEmptySubsequences: true)
        guard fields.count >= 2 else { continue }
        let range = fields[0].split(separator: "-")
        guard range.count == 2, let low = UInt(range[0], radix: 16), let high = UInt(range[1], radix: 16) else {
            continue
        }
        if low <= target && target < high { return String(fields[1]) }
    }
    return nil
    #else
    return nil
    #endif
}

@Suite(.serialized) struct SharedMemoryTests {
    static let size = 3 * 4096 + 123

    @Test(.isolatedDescriptors, arguments: SharedMemoryBackend.availableBackends)
    func createWriteAndMapAgain(backend: SharedMemoryBackend) throws {
        let leaked = try descriptorsLeaked {
            let memory = try SharedMemory(size: Self.size, backend: backend)
            #expect(memory.backend == backend)
            #expect(memory.size == Self.size)
            #expect(memory.mapping.isWritable)
            #expect(SocketTesting.isCloseOnExec(memory.descriptor))
            fillPattern(memory.mapping.bytes, seed: 5)

            // A second, independent mapping of the same descriptor sees the same bytes, both ways.
            let second = try MemoryMapping(fd: memory.descriptor, size: UInt64(Self.size))
            #expect(second.base != memory.mapping.base)
            #expect(matchesPattern(second.bytes, seed: 5))
            second.bytes[Self.size - 1] = 0xA5
            #expect(memory.mapping.bytes[Self.size - 1] == 0xA5)
        }
        #expect(leaked.leaked == 0)
    }

    @Test(arguments: SharedMemoryBackend.availableBackends)
    func leavesNoNameBehind(backend: SharedMemoryBackend) throws {
        let memory = try SharedMemory(size: 4096, backend: backend)
        var info = stat()
        #expect(fstat(memory.descriptor, &info) == 0)
        #expect(info.st_nlink == 0, "the \(backend) object still has a name")
        #expect(info.st_mode & 0o777 == 0o600 || backend == .memfd)
        #if os(Linux)
        var target = [CChar](repeating: 0, count: 4096)
        let length = readlink("/proc/self/fd/\(memory.descriptor)", &target, target.count - 1)
        try #require(length > 0)
        let name = String(decoding: target[0..<length].map { UInt8(bitPattern: $0) }, as: UTF8.self)
        #expect(name.hasSuffix(" (deleted)"), "\(name)")
        if backend != .memfd {
            let path = String(name.dropLast(" (deleted)".count))
            #expect(access(path, F_OK) == -1 && errno == ENOENT, "\(path) still exists")
        }
        #endif
    }

    #if os(Linux)
    @Test func memfdIsSealedAgainstResizing() throws {
        let memory = try SharedMemory(size: 2 * 4096, backend: .memfd)
        let fd = memory.descriptor
        // errno read in the same expression as the call that set it (nothing runs in between).
        #expect(ftruncate(fd, 4096) == -1 && errno == EPERM)
        #expect(ftruncate(fd, 4 * 4096) == -1 && errno == EPERM)
        let seals = fcntl(fd, VMM_F_GET_SEALS)
        #expect(seals & VMM_F_SEAL_SHRINK != 0)
        #expect(seals & VMM_F_SEAL_GROW != 0)
        #expect(seals & VMM_F_SEAL_SEAL != 0)
        // The size both sides check with fstat is still the size we asked for.
        var info = stat()
        #expect(fstat(fd, &info) == 0)
        #expect(info.st_size == 2 * 4096)
    }
    #endif

    @Test func defaultBackendFollowsEnvironment() throws {
        let memory = try SharedMemory(size: 4096)
        let expected = try SharedMemoryBackend.fromEnvironment()
        #expect(try SharedMemory.defaultBackend == expected)
        #expect(memory.backend == expected)
    }

    @Test func refusesInvalidSizesAndBackends() {
        #expect(throws: SharedMemoryError.invalidSize(0)) { try SharedMemory(size: 0, backend: .file) }
        #expect(throws: SharedMemoryError.invalidSize(-4096)) { try SharedMemory(size: -4096, backend: .file) }
        #expect(throws: BackendSelectionError.self) { try SharedMemoryBackend.named("sysv") }
        for backend in SharedMemoryBackend.allCases where !backend.isAvailable {
            #expect(throws: SharedMemoryError.self) { try SharedMemory(size: 4096, backend: backend) }
        }
    }

    @Test(.isolatedDescriptors, arguments: SharedMemoryBackend.availableBackends)
    func receivedRegionsAreChecked(backend: SharedMemoryBackend) throws {
        let memory = try SharedMemory(size: 4 * 4096, backend: backend)
        fillPattern(memory.mapping.bytes, seed: 9)
        let size = UInt64(memory.size)
        let leaked = try descriptorsLeaked {
            let received = FileDescriptor(adopting: fcntl(memory.descriptor, F_DUPFD_CLOEXEC, 0))
            try #require(received.rawValue >= 0)
            #expect(throws: MappingError.rangeOverflow(offset: UInt64.max - 1, size: 4096)) {
                try SharedMemory.map(received: received, size: 4096, offset: UInt64.max - 1)
            }
            #expect(throws: MappingError.beyondEndOfFile(offset: 0, size: size + 1, fileSize: size)) {
                try SharedMemory.map(received: received, size: size + 1, offset: 0)
            }
            #expect(throws: MappingError.beyondEndOfFile(offset: 4097, size: size - 4096, fileSize: size)) {
                try SharedMemory.map(received: received, size: size - 4096, offset: 4097)
            }
            #expect(throws: MappingError.emptyRegion) {
                try SharedMemory.map(received: received, size: 0, offset: 0)
            }
            // An unaligned offset inside the file maps, and `base` points at that offset.
            let region = try SharedMemory.map(received: received, size: 4096, offset: 4096 + 100)
            #expect(matchesPattern(region.bytes, seed: 9, from: 4096 + 100))
            let readOnly = try SharedMemory.map(received: received, size: 100, offset: 0, writable: false)
            #expect(!readOnly.isWritable)
            #if os(Linux)
            #expect(mappingPermissions(containing: region.base) == "rw-s")
            #expect(mappingPermissions(containing: readOnly.base) == "r--s")
            #expect(mappingPermissions(containing: memory.mapping.base) == "rw-s")
            #endif
        }
        #expect(leaked.leaked == 0)
    }

    @Test(.isolatedDescriptors) func explicitPathIsCreatedMappedAndReopenedWithoutTruncation() throws {
        var template = Array("/tmp/vmm-shm-test-XXXXXX".utf8CString)
        let directory = try #require(mkdtemp(&template).map { String(cString: $0) })
        defer { rmdir(directory) }
        let path = directory + "/memory"
        defer { unlink(path) }

        #expect(throws: SharedMemoryError.sizeRequired(path)) { try SharedMemory(path: path, create: true) }
        #expect(throws: SharedMemoryError.system(SystemCallError("open(\(path))", .noSuchFile))) {
            try SharedMemory(path: path, size: 4096, create: false)
        }
        #expect(throws: SharedMemoryError.notARegularFile(directory)) {
            try SharedMemory(path: directory, create: false)
        }
        let fifo = directory + "/fifo"
        try #require(mkfifo(fifo, 0o600) == 0)
        defer { unlink(fifo) }
        #expect(throws: SharedMemoryError.notARegularFile(fifo)) { try SharedMemory(path: fifo, create: true) }

        let leaked = try descriptorsLeaked {
            do {
                let created = try SharedMemory(path: path, size: 2 * 4096, create: true)
                #expect(created.backend == nil)
                #expect(SocketTesting.isCloseOnExec(created.descriptor))
                fillPattern(created.mapping.bytes, seed: 1)
            }
            var info = stat()
            #expect(stat(path, &info) == 0)
            #expect(info.st_size == 2 * 4096)
            #expect(info.st_mode & 0o777 == 0o600)

            // Reopening maps the existing bytes; a smaller size neither truncates nor grows the file.
            let whole = try SharedMemory(path: path, create: false)
            #expect(whole.size == 2 * 4096)
            #expect(matchesPattern(whole.mapping.bytes, seed: 1))
            let part = try SharedMemory(path: path, size: 4096, create: true)
            #expect(part.size == 4096)
            #expect(stat(path, &info) == 0)
            #expect(info.st_size == 2 * 4096)
            #expect(throws: SharedMemoryError.fileTooSmall(path: path, fileSize: 2 * 4096, requested: 3 * 4096)) {
                try SharedMemory(path: path, size: 3 * 4096, create: false)
            }
        }
        #expect(leaked.leaked == 0)
    }
}
