import Dispatch
import Testing
import VMMSysUtil
import VMMTestSupport
import CVMMPlatform
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Helpers shared by the socket and shared-memory tests (namespaced to keep test symbols apart).
enum SocketTesting {
    /// Bounds every blocking receive in these tests: a bug fails with EAGAIN instead of hanging.
    static func setReceiveTimeout(_ fd: Int32, seconds: Int = 20) {
        var timeout = timeval(tv_sec: seconds, tv_usec: 0)
        _ = setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    }

    static func isCloseOnExec(_ fd: Int32) -> Bool {
        let flags = fcntl(fd, F_GETFD)
        return flags != -1 && flags & FD_CLOEXEC != 0
    }

    /// A pipe as (read, write), both close-on-exec, owned by the caller.
    static func makePipe() throws -> (read: Int32, write: Int32) {
        var fds: [Int32] = [-1, -1]
        try #require(pipe(&fds) == 0)
        _ = fcntl(fds[0], F_SETFD, FD_CLOEXEC)
        _ = fcntl(fds[1], F_SETFD, FD_CLOEXEC)
        return (fds[0], fds[1])
    }

    /// A fresh private directory under /tmp for socket files, removed by the caller.
    static func makeTemporaryDirectory() throws -> String {
        var template = Array("/tmp/vmm-sock-XXXXXX".utf8CString)
        return try #require(mkdtemp(&template).map { String(cString: $0) })
    }

    /// Receives into a fresh buffer of `count` bytes (the socket's receive timeout bounds it).
    static func receiveBytes(_ socket: ScmSocket, count: Int, maxFDs: Int = 0) throws -> (bytes: [UInt8], fds: [Int32])
    {
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: count, alignment: 8)
        defer { buffer.deallocate() }
        var received = try socket.receiveExactly(into: buffer, maxFDs: maxFDs)
        var fds: [Int32] = []
        for index in 0..<received.count {
            if let fd = received.take(at: index) { fds.append(fd.release()) }
        }
        return (Array(buffer), fds)
    }

    /// Runs `body` on another thread; `wait` blocks at most `seconds`, returning whether it finished.
    final class Background: @unchecked Sendable {
        private let group = DispatchGroup()
        init(_ body: @escaping @Sendable () -> Void) {
            DispatchQueue.global().async(group: group, execute: body)
        }
        func wait(seconds: Int = 30) -> Bool { group.wait(timeout: .now() + .seconds(seconds)) == .success }
    }
}

@Suite(.serialized) struct ScmSocketTests {
    @Test(.isolatedDescriptors, arguments: [1, 8])
    func descriptorsTravelWithBytes(count: Int) throws {
        let leaked = try descriptorsLeaked {
            let (left, right) = try ScmSocket.pair()
            #expect(SocketTesting.isCloseOnExec(left.descriptor) && SocketTesting.isCloseOnExec(right.descriptor))
            SocketTesting.setReceiveTimeout(right.descriptor)
            var pipes: [(read: Int32, write: Int32)] = []
            defer {
                pipes.forEach {
                    close($0.read)
                    close($0.write)
                }
            }
            for _ in 0..<count { pipes.append(try SocketTesting.makePipe()) }

            try left.send([1, 2, 3, 4], fds: pipes.map(\.write))
            let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 16, alignment: 8)
            defer { buffer.deallocate() }
            var message = try right.receive(into: buffer, maxFDs: 8)
            #expect(message.byteCount == 4)
            #expect(Array(buffer.prefix(4)) == [1, 2, 3, 4])
            #expect(message.fds.count == count)
            for index in 0..<count {
                guard let received = message.fds.take(at: index) else {
                    Issue.record("descriptor \(index) missing")
                    continue
                }
                #expect(try received.isCloseOnExec())
                #expect(received.rawValue != pipes[index].write)
                // Same pipe: a byte written through the received end comes out of our read end.
                var byte = UInt8(index + 40)
                #expect(write(received.rawValue, &byte, 1) == 1)
                var echoed: UInt8 = 0
                #expect(read(pipes[index].read, &echoed, 1) == 1)
                #expect(echoed == UInt8(index + 40))
            }
            #expect(message.fds.descriptor(at: 0) == nil)  // already taken
            #expect(message.fds.descriptor(at: count) == nil)  // out of range
            var taken = 0
            while message.fds.take(at: taken) != nil { taken += 1 }
            #expect(taken == 0)
        }
        #expect(leaked.leaked == 0)
    }

    @Test(.isolatedDescriptors) func untakenDescriptorsAreClosed() throws {
        let (left, right) = try ScmSocket.pair()
        SocketTesting.setReceiveTimeout(right.descriptor)
        let pipe = try SocketTesting.makePipe()
        defer { close(pipe.read) }
        try left.send([7], fds: [pipe.write, pipe.write])
        close(pipe.write)
        let leaked = try descriptorsLeaked {
            let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 1, alignment: 1)
            defer { buffer.deallocate() }
            let message = try right.receive(into: buffer, maxFDs: 2)
            #expect(message.fds.count == 2)
            #expect(message.fds.descriptor(at: 1) != nil)
        }
        #expect(leaked.leaked == 0)
        // Every write end is closed (ours and both received copies): the read end sees EOF.
        var byte: UInt8 = 0
        #expect(read(pipe.read, &byte, 1) == 0)
    }

    @Test func largeSendsCompleteWithDescriptorsOnTheFirstChunk() throws {
        let (left, right) = try ScmSocket.pair()
        SocketTesting.setReceiveTimeout(right.descriptor)
        let size = 4 << 20
        let payload = (0..<size).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ $0 >> 12) }
        let pipes = try (0..<3).map { _ in try SocketTesting.makePipe() }
        defer {
            pipes.forEach {
                close($0.read)
                close($0.write)
            }
        }

        nonisolated(unsafe) var received: (bytes: [UInt8], fds: [Int32])?
        nonisolated(unsafe) var failure: (any Error)?
        let reader = SocketTesting.Background {
            do { received = try SocketTesting.receiveBytes(right, count: size, maxFDs: 3) } catch { failure = error }
        }
        try left.send(payload, fds: pipes.map(\.write))
        #expect(reader.wait())
        #expect(failure == nil, "\(String(describing: failure))")
        let result = try #require(received)
        defer { result.fds.forEach { close($0) } }
        #expect(result.bytes == payload)
        #expect(result.fds.count == 3)
        #expect(result.fds.allSatisfy(SocketTesting.isCloseOnExec))
    }

    @Test(.isolatedDescriptors) func closedPeerIsAnError() throws {
        let leaked = try descriptorsLeaked {
            var (left, right): (ScmSocket?, ScmSocket) = try ScmSocket.pair()
            SocketTesting.setReceiveTimeout(right.descriptor)
            try left?.send([1, 2])
            left = nil
            // A partial message then end of stream: receiveExactly reports the peer closing.
            #expect(throws: ScmSocketError.peerClosed) { _ = try SocketTesting.receiveBytes(right, count: 4) }
            #expect(throws: ScmSocketError.peerClosed) { _ = try SocketTesting.receiveBytes(right, count: 1) }
            // Sending to a closed peer is an error, not SIGPIPE (which would kill the test process).
            #expect(throws: ScmSocketError.peerClosed) { try right.send([1]) }
        }
        #expect(leaked.leaked == 0)
    }

    @Test(.isolatedDescriptors) func tooManyDescriptorsAreAllClosed() throws {
        let (left, right) = try ScmSocket.pair()
        SocketTesting.setReceiveTimeout(right.descriptor)
        let pipe = try SocketTesting.makePipe()
        defer {
            close(pipe.read)
            close(pipe.write)
        }
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 8, alignment: 8)
        defer { buffer.deallocate() }

        let leaked = try descriptorsLeaked {
            try left.send([1], fds: Array(repeating: pipe.write, count: 8))
            #expect(throws: ScmSocketError.tooManyDescriptors(count: 8, limit: 4)) {
                _ = try right.receive(into: buffer, maxFDs: 4)
            }
            try left.send([1], fds: [pipe.write])
            #expect(throws: ScmSocketError.tooManyDescriptors(count: 1, limit: 0)) {
                _ = try right.receive(into: buffer, maxFDs: 0)
            }
            // Across the reads of one receiveExactly the limit is for the total.
            try left.send([1, 2], fds: [pipe.write, pipe.write])
            try left.send([3, 4], fds: [pipe.write, pipe.write])
            #expect(throws: ScmSocketError.tooManyDescriptors(count: 4, limit: 3)) {
                _ = try right.receiveExactly(into: UnsafeMutableRawBufferPointer(rebasing: buffer[0..<4]), maxFDs: 3)
            }
        }
        #expect(leaked.leaked == 0)
        // The sender refuses more than the per-message capacity outright.
        let tooMany = Array(repeating: pipe.write, count: ReceivedFileDescriptors.capacity + 1)
        #expect(throws: ScmSocketError.tooManyDescriptors(count: 17, limit: 16)) { try left.send([1], fds: tooMany) }
        #expect(throws: ScmSocketError.descriptorsWithoutBytes) { try left.send([], fds: [pipe.write]) }
    }

    @Test(.isolatedDescriptors) func truncatedControlDataClosesEverything() throws {
        let (left, right) = try ScmSocket.pair()
        SocketTesting.setReceiveTimeout(right.descriptor)
        let pipe = try SocketTesting.makePipe()
        defer {
            close(pipe.read)
            close(pipe.write)
        }
        // A raw sendmsg with more descriptors than any receiver buffer holds (ScmSocket refuses to).
        let count = ReceivedFileDescriptors.capacity + 8
        let space = vmm_cmsg_space(count * 4)
        let control = UnsafeMutableRawPointer.allocate(byteCount: space, alignment: 8)
        defer { control.deallocate() }
        control.initializeMemory(as: UInt8.self, repeating: 0, count: space)
        var byte: UInt8 = 9
        let sent = withUnsafeMutablePointer(to: &byte) { bytePointer -> Int in
            var vector = iovec(iov_base: bytePointer, iov_len: 1)
            return withUnsafeMutablePointer(to: &vector) { vectorPointer in
                var message = msghdr()
                message.msg_iov = vectorPointer
                message.msg_iovlen = 1
                message.msg_control = control
                message.msg_controllen = .init(space)
                let header = control.assumingMemoryBound(to: cmsghdr.self)
                header.pointee.cmsg_level = SOL_SOCKET
                header.pointee.cmsg_type = Int32(SCM_RIGHTS)
                header.pointee.cmsg_len = .init(vmm_cmsg_len(count * 4))
                let data = UnsafeMutableRawPointer(vmm_cmsg_data(header))
                for index in 0..<count { data.storeBytes(of: pipe.write, toByteOffset: index * 4, as: Int32.self) }
                return sendmsg(left.descriptor, &message, 0)
            }
        }
        try #require(sent == 1)
        let leaked = descriptorsLeaked {
            let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 1, alignment: 1)
            defer { buffer.deallocate() }
            #expect(throws: ScmSocketError.controlDataTruncated) { _ = try right.receive(into: buffer, maxFDs: 16) }
        }
        #expect(leaked.leaked == 0)
    }

    @Test func adoptedSocketsBecomeCloseOnExec() throws {
        let (left, right) = try ScmSocket.pair()
        let inherited = dup(right.descriptor)  // like an inherited --fd N: not close-on-exec
        try #require(inherited >= 0 && !SocketTesting.isCloseOnExec(inherited))
        let adopted = ScmSocket(adopting: FileDescriptor(adopting: inherited))
        #expect(SocketTesting.isCloseOnExec(adopted.descriptor))
        SocketTesting.setReceiveTimeout(adopted.descriptor)
        try left.send([8])
        #expect(try SocketTesting.receiveBytes(adopted, count: 1).bytes == [8])
    }

    #if os(Linux)
    @Test(.isolatedDescriptors) func foreignControlMessagesAreRefused() throws {
        let (left, right) = try ScmSocket.pair()
        SocketTesting.setReceiveTimeout(right.descriptor)
        // SO_PASSCRED makes Linux attach SCM_CREDENTIALS (type 2) to every message we receive.
        var on: Int32 = 1
        try #require(
            setsockopt(right.descriptor, SOL_SOCKET, SO_PASSCRED, &on, socklen_t(MemoryLayout<Int32>.size)) == 0)
        let pipe = try SocketTesting.makePipe()
        defer {
            close(pipe.read)
            close(pipe.write)
        }
        try left.send([1], fds: [pipe.write])
        let leaked = descriptorsLeaked {
            let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 1, alignment: 1)
            defer { buffer.deallocate() }
            #expect(throws: ScmSocketError.unexpectedControlMessage(level: SOL_SOCKET, type: 2)) {
                _ = try right.receive(into: buffer, maxFDs: 1)
            }
        }
        #expect(leaked.leaked == 0)
    }
    #endif

    @Test func peerCredentialsAreOurs() throws {
        let (left, right) = try ScmSocket.pair()
        let credentials = try left.peerCredentials()
        #expect(credentials == PeerCredentials(uid: geteuid(), gid: getegid()))
        #expect(try right.peerCredentials() == credentials)
    }
}

@Suite(.serialized) struct ScmListenerTests {
    @Test(.isolatedDescriptors) func listenConnectAcceptWithMode() throws {
        let directory = try SocketTesting.makeTemporaryDirectory()
        defer { rmdir(directory) }
        let path = directory + "/control.sock"
        let leaked = try descriptorsLeaked {
            for mode: mode_t in [0o600, 0o666] {
                let listener = try ScmListener(path: path, mode: mode)
                #expect(listener.path == path)
                #expect(SocketTesting.isCloseOnExec(listener.descriptor))
                var info = stat()
                #expect(lstat(path, &info) == 0)
                #expect(info.st_mode & S_IFMT == S_IFSOCK)
                // 0o666 is beyond what a usual umask (022) leaves: the mode is set, not masked.
                #expect(info.st_mode & 0o7777 == mode)

                let client = try ScmSocket.connect(path: path)
                let server = try listener.accept()
                #expect(
                    SocketTesting.isCloseOnExec(server.descriptor) && SocketTesting.isCloseOnExec(client.descriptor))
                SocketTesting.setReceiveTimeout(server.descriptor)
                SocketTesting.setReceiveTimeout(client.descriptor)
                try client.send([42])
                #expect(try SocketTesting.receiveBytes(server, count: 1).bytes == [42])
                try server.send([43])
                #expect(try SocketTesting.receiveBytes(client, count: 1).bytes == [43])
            }
            // The listener removed its socket file when it went away.
            #expect(access(path, F_OK) == -1 && errno == ENOENT)
        }
        #expect(leaked.leaked == 0)
    }

    @Test func pathsThatDoNotFitAreRefused() throws {
        let capacity = MemoryLayout.size(ofValue: sockaddr_un().sun_path)
        let directory = try SocketTesting.makeTemporaryDirectory()
        defer { rmdir(directory) }
        let base = directory + "/"
        // capacity - 1 bytes plus the NUL fit: connect gets as far as the kernel (no such file).
        let fits = base + String(repeating: "a", count: capacity - 1 - base.utf8.count)
        #expect(throws: ScmSocketError.system(SystemCallError("connect", .noSuchFile))) {
            _ = try ScmSocket.connect(path: fits)
        }
        let tooLong = fits + "a"
        #expect(throws: ScmSocketError.pathTooLong(tooLong)) { _ = try ScmSocket.connect(path: tooLong) }
        #expect(throws: ScmSocketError.pathTooLong(tooLong)) { _ = try ScmListener(path: tooLong) }
        #expect(throws: ScmSocketError.invalidPath("")) { _ = try ScmListener(path: "") }
        #expect(throws: ScmSocketError.invalidPath(base + "a\0b")) { _ = try ScmListener(path: base + "a\0b") }
        #expect(access(base + "a", F_OK) == -1)
    }

    @Test(.isolatedDescriptors) func staleSocketFileIsReplaced() throws {
        let directory = try SocketTesting.makeTemporaryDirectory()
        defer { rmdir(directory) }
        let path = directory + "/stale.sock"
        // A socket file nobody listens on any more: a second name (hard link) for a listener's
        // socket file outlives the listener, which removes only its own name.
        do {
            let original = directory + "/original.sock"
            let listener = try ScmListener(path: original)
            try #require(link(original, path) == 0)
            _ = listener
        }
        #expect(access(directory + "/original.sock", F_OK) == -1)
        var info = stat()
        try #require(lstat(path, &info) == 0)
        let leaked = try descriptorsLeaked {
            let listener = try ScmListener(path: path)
            let client = try ScmSocket.connect(path: path)
            _ = try listener.accept()
            _ = client
        }
        #expect(leaked.leaked == 0)
        #expect(access(path, F_OK) == -1)
    }

    @Test(.isolatedDescriptors) func liveListenerIsNotReplaced() throws {
        let directory = try SocketTesting.makeTemporaryDirectory()
        defer { rmdir(directory) }
        let path = directory + "/live.sock"
        let leaked = try descriptorsLeaked {
            let listener = try ScmListener(path: path)
            #expect(throws: ScmSocketError.addressInUse(path)) { _ = try ScmListener(path: path) }
            // The probe connection is pending on the live listener; drain it, then check that the
            // original listener still works through its (untouched) socket file.
            _ = try listener.accept()
            let client = try ScmSocket.connect(path: path)
            let server = try listener.accept()
            SocketTesting.setReceiveTimeout(server.descriptor)
            try client.send([5])
            #expect(try SocketTesting.receiveBytes(server, count: 1).bytes == [5])
        }
        #expect(leaked.leaked == 0)
    }

    @Test func nonSocketFileIsNeverDeleted() throws {
        let directory = try SocketTesting.makeTemporaryDirectory()
        defer { rmdir(directory) }
        let path = directory + "/precious"
        let fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        try #require(fd >= 0)
        var byte: UInt8 = 0x5A
        #expect(write(fd, &byte, 1) == 1)
        close(fd)
        defer { unlink(path) }
        #expect(throws: ScmSocketError.notASocket(path)) { _ = try ScmListener(path: path) }
        var info = stat()
        #expect(stat(path, &info) == 0)
        #expect(info.st_mode & S_IFMT == S_IFREG && info.st_size == 1)
    }

    @Test(.isolatedDescriptors) func peersOutsideAllowedUIDsAreRejected() throws {
        let directory = try SocketTesting.makeTemporaryDirectory()
        defer { rmdir(directory) }
        let path = directory + "/guarded.sock"
        let me = geteuid()
        let leaked = try descriptorsLeaked {
            do {
                let listener = try ScmListener(path: path, allowedUIDs: [me &+ 1, me &+ 2])
                for _ in 0..<2 {
                    let client = try ScmSocket.connect(path: path)
                    SocketTesting.setReceiveTimeout(client.descriptor)
                    #expect(throws: ScmSocketError.peerNotAllowed(uid: me)) { _ = try listener.accept() }
                    // Closed before a byte was read: the client sees end of stream.
                    #expect(throws: ScmSocketError.peerClosed) { _ = try SocketTesting.receiveBytes(client, count: 1) }
                }
                // Still a working listener: nothing pending now, so a non-blocking accept says so.
                let flags = fcntl(listener.descriptor, F_GETFL)
                #expect(fcntl(listener.descriptor, F_SETFL, flags | O_NONBLOCK) == 0)
                #expect(throws: ScmSocketError.system(SystemCallError("accept", .wouldBlock))) {
                    _ = try listener.accept()
                }
            }
            let listener = try ScmListener(path: path, allowedUIDs: [me &+ 1, me])
            let client = try ScmSocket.connect(path: path)
            let server = try listener.accept()
            #expect(try server.peerCredentials().uid == me)
            _ = client
        }
        #expect(leaked.leaked == 0)
    }

    @Test func adoptedListenerLeavesTheFileAlone() throws {
        let directory = try SocketTesting.makeTemporaryDirectory()
        defer { rmdir(directory) }
        let path = directory + "/inherited.sock"
        let owner = try ScmListener(path: path)
        let fd = dup(owner.descriptor)  // not close-on-exec, like an inherited --fd N
        try #require(fd >= 0 && !SocketTesting.isCloseOnExec(fd))
        do {
            let listener = ScmListener(adopting: FileDescriptor(adopting: fd))
            #expect(listener.path == nil)
            #expect(SocketTesting.isCloseOnExec(listener.descriptor))
            let client = try ScmSocket.connect(path: path)
            let server = try listener.accept()
            #expect(try server.peerCredentials().uid == geteuid())
            _ = client
        }
        // The adopted listener went away without touching the file (its creator is still alive).
        withExtendedLifetime(owner) { #expect(access(path, F_OK) == 0) }
    }
}
