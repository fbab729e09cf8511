#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import SystemPackage
import Testing
import VMMSysUtil
import VMMSystemInterop

/// A VMM written with swift-system: its descriptors cross into ours and back, ownership explicit.
@Suite("swift-system interop")
struct SystemInteropTests {
    /// Whether `fd` is open in this process.
    func isOpen(_ fd: CInt) -> Bool { fcntl(fd, F_GETFD) != -1 }

    /// A pipe opened with swift-system.
    func systemPipe() throws -> (readEnd: SystemPackage.FileDescriptor, writeEnd: SystemPackage.FileDescriptor) {
        try SystemPackage.FileDescriptor.pipe()
    }

    @Test func adoptingMakesOursTheOneThatCloses() throws {
        let (readEnd, writeEnd) = try systemPipe()
        defer { try? readEnd.close() }
        do {
            let owned = VMMSysUtil.FileDescriptor(adopting: writeEnd)
            #expect(owned.rawValue == writeEnd.rawValue)
        }
        // The only write end was closed by our owner: the reader sees end of file (whatever
        // other tests open meanwhile, even under the same number).
        var byte: [UInt8] = [0]
        #expect(try byte.withUnsafeMutableBytes { try readEnd.read(into: $0) } == 0)
    }

    @Test func releasingHandsOwnershipBack() throws {
        let (readEnd, writeEnd) = try systemPipe()
        let owned = VMMSysUtil.FileDescriptor(adopting: writeEnd)
        let back = owned.releaseAsSystemDescriptor()
        // Ours is gone and did not close it: swift-system's handle writes, then closes it.
        #expect(try back.writeAll([7, 8, 9]) == 3)
        try back.close()
        var bytes = [UInt8](repeating: 0, count: 8)
        let count = try bytes.withUnsafeMutableBytes { try readEnd.read(into: $0) }
        #expect(Array(bytes.prefix(count)) == [7, 8, 9])
        try readEnd.close()
    }

    @Test func borrowingLendsWithoutGivingAway() throws {
        let (readEnd, writeEnd) = try systemPipe()
        defer { try? readEnd.close() }
        let owned = VMMSysUtil.FileDescriptor(adopting: writeEnd)
        let written = try owned.withSystemDescriptor { fd in try fd.writeAll([1, 2]) }
        #expect(written == 2)
        #expect(isOpen(owned.rawValue), "still ours after the borrow")
        let copy = try owned.duplicateAsSystemDescriptor()
        #expect(copy.rawValue != owned.rawValue)
        #expect(fcntl(copy.rawValue, F_GETFD) & FD_CLOEXEC != 0)
        try copy.close()
        #expect(isOpen(owned.rawValue))
    }

    @Test func errorsExposeTheErrno() throws {
        #expect(VMMSysUtil.Errno.badFileDescriptor.systemErrno == SystemPackage.Errno.badFileDescriptor)
        #expect(VMMSysUtil.Errno(SystemPackage.Errno.connectionRefused) == .connectionRefused)
        #expect(SystemPackage.Errno(VMMSysUtil.Errno.brokenPipe) == .brokenPipe)
        // A real failure: connecting to a path nobody listens on.
        let path = "/tmp/vmm-interop-nobody-\(getpid()).sock"
        do {
            _ = try ScmSocket.connect(path: path)
            Issue.record("connected to \(path)")
        } catch {
            #expect(error.systemErrno == .noSuchFileOrDirectory, "\(error)")
        }
        #expect(ScmSocketError.peerClosed.systemErrno == nil)
        let duplicated = Result { () throws(SystemCallError) in
            try VMMSysUtil.FileDescriptor(adopting: -1).duplicateAsSystemDescriptor()
        }
        guard case .failure(let failure) = duplicated else {
            Issue.record("duplicating -1 succeeded")
            return
        }
        #expect(failure.systemErrno == .badFileDescriptor)
        #expect(SharedMemoryError.system(failure).systemErrno == .badFileDescriptor)
        #expect(SharedMemoryError.mapping(.system(failure)).systemErrno == .badFileDescriptor)
        #expect(SharedMemoryError.invalidSize(0).systemErrno == nil)
    }

    @Test func socketsTakeAndSendSystemDescriptors() throws {
        let (ours, theirs) = try ScmSocket.pair()
        let (readEnd, writeEnd) = try systemPipe()
        defer { try? readEnd.close() }
        // Sent borrowed: our copy stays ours, and we close it.
        try ours.send([0x42], descriptors: [writeEnd])
        try writeEnd.close()
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 4, alignment: 1)
        defer { buffer.deallocate() }
        var message = try theirs.receive(into: buffer, maxFDs: 1)
        guard let received = message.fds.take(at: 0) else {
            Issue.record("no descriptor arrived")
            return
        }
        let handle = received.releaseAsSystemDescriptor()
        #expect(try handle.writeAll([5]) == 1)
        try handle.close()
        var byte: [UInt8] = [0]
        #expect(try byte.withUnsafeMutableBytes { try readEnd.read(into: $0) } == 1 && byte == [5])
    }

    @Test func aSocketFromSwiftSystemIsAdoptedAndClosedByUs() throws {
        let (peer, systemSocket): (ScmSocket, SystemPackage.FileDescriptor)
        do {
            let (left, right) = try ScmSocket.pair()
            // A descriptor made with swift-system (a dup: not close-on-exec); `left` closes its own.
            systemSocket = try SystemPackage.FileDescriptor(rawValue: left.descriptor).duplicate()
            peer = right
        }
        do {
            let adopted = ScmSocket(adopting: systemSocket)
            #expect(fcntl(adopted.descriptor, F_GETFD) & FD_CLOEXEC != 0)
            try adopted.send([1])
        }
        // The adopted socket was the last copy: the peer gets the byte, then end of stream.
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 4, alignment: 1)
        defer { buffer.deallocate() }
        #expect(try peer.receive(into: buffer, maxFDs: 0).byteCount == 1)
        #expect(throws: ScmSocketError.peerClosed) { _ = try peer.receive(into: buffer, maxFDs: 0) }
    }
}
