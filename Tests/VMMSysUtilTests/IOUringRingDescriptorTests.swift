import Testing
import VMMSysUtil
#if canImport(Glibc)
import Glibc
#endif

/// An io_uring queue is watched through the ring's own descriptor, not an eventfd registered with
/// it: no read per reap, and it stays readable exactly while completions are left in the ring.
@Suite("io_uring ring descriptor")
struct IOUringRingDescriptorTests {
    @Test(
        "the completion descriptor is the ring itself and stays readable while completions are left",
        .enabled(if: AsyncFileEngineKind.preferred == .ioUring))
    func ringDescriptor() throws {
        let engine = try AsyncFileEngine(kind: .ioUring)
        let queue = try engine.makeQueue(capacity: 4)
        #if os(Linux)
        var target = [CChar](repeating: 0, count: 64)
        let length = readlink("/proc/self/fd/\(queue.completionDescriptor)", &target, target.count - 1)
        try #require(length > 0)
        let name = String(decoding: target[0..<length].map { UInt8(bitPattern: $0) }, as: UTF8.self)
        #expect(name == "anon_inode:[io_uring]")
        #endif
        let scratch = open("/dev/null", O_WRONLY | O_CLOEXEC)
        try #require(scratch >= 0)
        defer { close(scratch) }
        for tag in UInt64(1)...3 {
            try queue.submit(.dataSync, descriptor: scratch, vectors: nil, count: 0, offset: 0, tag: tag)
        }
        try queue.commit()
        let one = UnsafeMutableBufferPointer<AsyncFileCompletion>.allocate(capacity: 1)
        defer { one.deallocate() }
        var taken: [UInt64] = []
        // Bounded: 10 s in all. Each reap takes one; what is left keeps the ring readable.
        for _ in 0..<1000 where taken.count < 3 {
            guard becomesReadable(queue.completionDescriptor, within: 10) else { continue }
            if queue.reap(into: one) == 1 { taken.append(one[0].tag) }
            if taken.count == 1 {
                // The other two finish with no further signal needed: the ring is readable while
                // they are in it (an eventfd reset by the first reap would stay quiet).
                #expect(becomesReadable(queue.completionDescriptor))
            }
        }
        #expect(taken.sorted() == [1, 2, 3])
        #expect(!becomesReadable(queue.completionDescriptor, within: 0))
    }
}
