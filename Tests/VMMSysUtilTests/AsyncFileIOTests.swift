import Testing
import VMMSysUtil
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A temporary file of `blocks` 4 KiB blocks, block i filled with byte i; removed on release.
private final class ScratchFile {
    let path: String
    let fd: Int32
    static let block = 4096

    init(blocks: Int) throws {
        var template = Array("/tmp/async-file-io-XXXXXX".utf8CString)
        fd = template.withUnsafeMutableBufferPointer { mkstemp($0.baseAddress!) }
        path = template.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
        try #require(fd >= 0)
        for i in 0..<blocks {
            let bytes = [UInt8](repeating: UInt8(truncatingIfNeeded: i), count: Self.block)
            let written = bytes.withUnsafeBytes { pwrite(fd, $0.baseAddress, $0.count, off_t(i * Self.block)) }
            try #require(written == Self.block)
        }
    }

    deinit {
        close(fd)
        unlink(path)
    }
}

/// Reaps until `count` completions arrived (at most 10 s, waiting on the completion descriptor).
private func reapAll(_ queue: any AsyncFileQueue, count: Int) -> [AsyncFileCompletion] {
    var out: [AsyncFileCompletion] = []
    let buffer = UnsafeMutableBufferPointer<AsyncFileCompletion>.allocate(capacity: 7)
    defer { buffer.deallocate() }
    for _ in 0..<1000 where out.count < count {
        _ = becomesReadable(queue.completionDescriptor, within: 10)
        let got = queue.reap(into: buffer)
        out += buffer[0..<got]
    }
    return out
}

@Suite("Asynchronous file I/O engines")
struct AsyncFileIOTests {
    static var kinds: [AsyncFileEngineKind] { AsyncFileEngineKind.allCases.filter(\.isUsable) }

    @Test("many reads in flight complete with their tags and the right bytes", arguments: kinds)
    func reads(kind: AsyncFileEngineKind) throws {
        let file = try ScratchFile(blocks: 64)
        let engine = try AsyncFileEngine(kind: kind, threadCount: 4)
        defer { engine.shutdown() }
        let depth = 32
        let queue = try engine.makeQueue(capacity: depth)
        #expect(queue.capacity == depth)
        let buffers = UnsafeMutableRawPointer.allocate(byteCount: depth * ScratchFile.block, alignment: 4096)
        defer { buffers.deallocate() }
        let vectors = UnsafeMutablePointer<iovec>.allocate(capacity: depth)
        defer { vectors.deallocate() }
        for i in 0..<depth {
            vectors[i] = iovec(iov_base: buffers + i * ScratchFile.block, iov_len: ScratchFile.block)
            // Block 2i+1: tags must match the operation, not the order of completion.
            try queue.submit(
                .read, descriptor: file.fd, vectors: vectors + i, count: 1,
                offset: UInt64((2 * i + 1) * ScratchFile.block), tag: UInt64(1000 + i))
        }
        // A full queue refuses more.
        #expect(throws: SystemCallError.self) {
            try queue.submit(.read, descriptor: file.fd, vectors: vectors, count: 1, offset: 0, tag: 0)
        }
        try queue.commit()
        let done = reapAll(queue, count: depth)
        #expect(done.count == depth)
        #expect(Set(done.map(\.tag)) == Set((0..<depth).map { UInt64(1000 + $0) }))
        for completion in done {
            #expect(completion.result == Int32(ScratchFile.block))
            let i = Int(completion.tag) - 1000
            let bytes = UnsafeRawBufferPointer(start: buffers + i * ScratchFile.block, count: ScratchFile.block)
            #expect(bytes.allSatisfy { $0 == UInt8(2 * i + 1) })
        }
        // The queue is reusable once drained, and nothing is left to reap.
        #expect(reapAll(queue, count: 0).isEmpty)
        try queue.submit(.read, descriptor: file.fd, vectors: vectors, count: 1, offset: 0, tag: 7)
        try queue.commit()
        #expect(reapAll(queue, count: 1).map(\.tag) == [7])
    }

    @Test("punch-hole and zero-range zero their ranges and nothing else, or say they are unsupported", arguments: kinds)
    func spaceOperations(kind: AsyncFileEngineKind) throws {
        let file = try ScratchFile(blocks: 4)
        try withQueue(kind) { queue in try spaceOperations(queue, file) }
    }

    /// Runs `body` with a queue of 4 on a new engine of `kind`, shut down afterwards.
    private func withQueue(_ kind: AsyncFileEngineKind, _ body: (any AsyncFileQueue) throws -> Void) throws {
        let engine = try AsyncFileEngine(kind: kind, threadCount: 2)
        defer { engine.shutdown() }
        try body(try engine.makeQueue(capacity: 4))
    }

    private func spaceOperations(_ queue: any AsyncFileQueue, _ file: ScratchFile) throws {
        let block = UInt64(ScratchFile.block)
        try queue.submit(.punchHole, descriptor: file.fd, offset: block, length: block, tag: 1)
        try queue.submit(.zeroRange, descriptor: file.fd, offset: 3 * block, length: 512, tag: 2)
        try queue.submit(.zeroRange, descriptor: -1, offset: 0, length: block, tag: 3)
        // Space operations take no vectors, reads and writes need them.
        #expect(throws: SystemCallError.self) {
            try queue.submit(.punchHole, descriptor: file.fd, vectors: nil, count: 0, offset: 0, tag: 4)
        }
        #expect(throws: SystemCallError.self) {
            try queue.submit(.read, descriptor: file.fd, offset: 0, length: block, tag: 4)
        }
        try queue.commit()
        let done = reapAll(queue, count: 3).sorted { $0.tag < $1.tag }
        #expect(done.map(\.tag) == [1, 2, 3])
        #expect(done.last?.result == -EBADF)
        var expected = (0..<4).flatMap { [UInt8](repeating: UInt8($0), count: ScratchFile.block) }
        #if os(Linux)
        // Linux file systems on disk do both (the CI's /tmp included).
        #expect(done.prefix(2).allSatisfy { $0.result == 0 })
        #endif
        if done[0].result == 0 { expected.replaceSubrange(4096..<8192, with: [UInt8](repeating: 0, count: 4096)) }
        if done[1].result == 0 { expected.replaceSubrange(12288..<12800, with: [UInt8](repeating: 0, count: 512)) }
        #expect(done.prefix(2).allSatisfy { $0.result == 0 || $0.result == -EOPNOTSUPP })
        var contents = [UInt8](repeating: 0xFF, count: expected.count)
        #expect(contents.withUnsafeMutableBytes { pread(file.fd, $0.baseAddress, $0.count, 0) } == expected.count)
        #expect(contents == expected)
    }

    @Test("writes, durable writes and fdatasync reach the file; errors come back as -errno", arguments: kinds)
    func writesAndErrors(kind: AsyncFileEngineKind) throws {
        let file = try ScratchFile(blocks: 4)
        let engine = try AsyncFileEngine(kind: kind, threadCount: 2)
        defer { engine.shutdown() }
        let queue = try engine.makeQueue(capacity: 4)
        var data = [UInt8](repeating: 0xAB, count: 512)
        try data.withUnsafeMutableBytes { raw in
            var vector = iovec(iov_base: raw.baseAddress, iov_len: raw.count)
            try queue.submit(.write, descriptor: file.fd, vectors: &vector, count: 1, offset: 100, tag: 1)
            try queue.commit()
            #expect(reapAll(queue, count: 1) == [AsyncFileCompletion(tag: 1, result: 512)])
            try queue.submit(.durableWrite, descriptor: file.fd, vectors: &vector, count: 1, offset: 5000, tag: 2)
            try queue.submit(.dataSync, descriptor: file.fd, vectors: nil, count: 0, offset: 0, tag: 3)
            try queue.submit(.read, descriptor: -1, vectors: &vector, count: 1, offset: 0, tag: 4)
            try queue.commit()
            let done = reapAll(queue, count: 3).sorted { $0.tag < $1.tag }
            #expect(
                done == [
                    AsyncFileCompletion(tag: 2, result: 512), AsyncFileCompletion(tag: 3, result: 0),
                    AsyncFileCompletion(tag: 4, result: -EBADF),
                ])
        }
        var check = [UInt8](repeating: 0, count: 512)
        #expect(check.withUnsafeMutableBytes { pread(file.fd, $0.baseAddress, 512, 5000) } == 512)
        #expect(check.allSatisfy { $0 == 0xAB })
        #expect(check.withUnsafeMutableBytes { pread(file.fd, $0.baseAddress, 512, 100) } == 512)
        #expect(check == data)
    }

    @Test("the completion descriptor is readable only while completions wait", arguments: kinds)
    func readiness(kind: AsyncFileEngineKind) throws {
        let file = try ScratchFile(blocks: 1)
        let engine = try AsyncFileEngine(kind: kind, threadCount: 1)
        defer { engine.shutdown() }
        let queue = try engine.makeQueue(capacity: 2)
        #expect(!becomesReadable(queue.completionDescriptor, within: 0))
        try queue.submit(.dataSync, descriptor: file.fd, vectors: nil, count: 0, offset: 0, tag: 9)
        try queue.commit()
        #expect(becomesReadable(queue.completionDescriptor))
        #expect(reapAll(queue, count: 1).map(\.tag) == [9])
        #expect(!becomesReadable(queue.completionDescriptor, within: 0))
    }

    @Test("the engine in use is reported; io_uring is refused with a typed error where it is absent")
    func selection() throws {
        if AsyncFileEngineKind.preferred == .threads {
            #expect(throws: AsyncFileEngineError.self) { try AsyncFileEngine(kind: .ioUring) }
        } else {
            #expect(try AsyncFileEngine(kind: .ioUring).kind == .ioUring)
        }
        #expect(AsyncFileEngineKind(rawValue: "io_uring") == .ioUring)
        #expect(AsyncFileEngineKind(rawValue: "native") == .native)
        #if os(Linux)
        #expect(try AsyncFileEngine(kind: .native).kind == .native)
        #else
        #expect(throws: AsyncFileEngineError.self) { try AsyncFileEngine(kind: .native) }
        #endif
    }

    @Test("an operation refused at submission completes with its error; the ones behind it still run", arguments: kinds)
    func refusedFirst(kind: AsyncFileEngineKind) throws {
        let file = try ScratchFile(blocks: 2)
        let engine = try AsyncFileEngine(kind: kind, threadCount: 2)
        defer { engine.shutdown() }
        let queue = try engine.makeQueue(capacity: 4)
        var data = [UInt8](repeating: 0, count: 512)
        try data.withUnsafeMutableBytes { raw in
            var vector = iovec(iov_base: raw.baseAddress, iov_len: raw.count)
            try queue.submit(.read, descriptor: -1, vectors: &vector, count: 1, offset: 0, tag: 1)
            try queue.submit(.read, descriptor: file.fd, vectors: &vector, count: 1, offset: 4096, tag: 2)
            try queue.commit()
            let done = reapAll(queue, count: 2).sorted { $0.tag < $1.tag }
            #expect(done == [AsyncFileCompletion(tag: 1, result: -EBADF), AsyncFileCompletion(tag: 2, result: 512)])
        }
        #expect(data.allSatisfy { $0 == 1 })
    }
}
