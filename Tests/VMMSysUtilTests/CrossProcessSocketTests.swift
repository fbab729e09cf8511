import Testing
import VMMSysUtil
import VMMTestSupport
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Spawns `vmm-test-peer socket <scenario...>` with one end of a socketpair as its fd 3, runs
/// `body` with our end, then waits (bounded) for the child. Returns the child's exit status, or
/// nil if it had to be killed.
func withSocketPeer(_ scenario: [String], _ body: (ScmSocket) throws -> Void) throws -> Int32? {
    var (ours, theirs): (ScmSocket?, ScmSocket?) = try ScmSocket.pair()
    SocketTesting.setReceiveTimeout(ours?.descriptor ?? -1)
    // posix_spawn's dup2(fd, 3) would be a no-op (leaving close-on-exec set) if the end were
    // already fd 3, so hand the child a copy numbered above it.
    let childEnd = fcntl(theirs?.descriptor ?? -1, F_DUPFD_CLOEXEC, 10)
    try #require(childEnd >= 10)
    let peer: PeerProcess
    do {
        peer = try PeerProcess.spawn(arguments: ["socket"] + scenario, mapping: [(childEnd, 3)])
    } catch {
        close(childEnd)
        throw error
    }
    // Only the child holds its end now, so its exit is our end of stream.
    close(childEnd)
    theirs = nil
    var bodyError: (any Error)?
    if let socket = ours {
        do { try body(socket) } catch { bodyError = error }
    }
    ours = nil  // drop our end: a child still reading sees end of stream
    let status = waitForExit(peer, seconds: 30)
    if let bodyError { throw bodyError }
    return status
}

/// Waits at most `seconds` for `peer` to exit; kills it (and returns nil) if it does not.
func waitForExit(_ peer: PeerProcess, seconds: Int) -> Int32? {
    for _ in 0..<(seconds * 100) {
        var status: Int32 = 0
        let result = waitpid(peer.pid, &status, WNOHANG)
        if result == peer.pid {
            if status & 0x7f == 0 { return (status >> 8) & 0xff }
            return 128 + (status & 0x7f)
        }
        if result == -1 && errno != EINTR { return nil }
        usleep(10_000)
    }
    kill(peer.pid, SIGKILL)
    var status: Int32 = 0
    while waitpid(peer.pid, &status, 0) == -1 && errno == EINTR {}
    return nil
}

/// The byte the parent writes at file offset `index` (vmm-test-peer's SocketRole uses the same).
private func parentPattern(_ index: Int) -> UInt8 { UInt8(truncatingIfNeeded: index &* 31 &+ 7) }
/// The byte the peer writes back at file offset `index` (vmm-test-peer's SocketRole uses the same).
private func childPattern(_ index: Int) -> UInt8 { UInt8(truncatingIfNeeded: index &* 17 &+ 3) }

@Suite(.serialized) struct CrossProcessSocketTests {
    static let memorySize = 16 * 4096 + 512

    /// The parent creates memory, sends its fd over ScmSocket; the child maps the region, checks our
    /// bytes, writes its own and acks (reporting whether the fd arrived close-on-exec).
    @Test(.isolatedDescriptors, arguments: SharedMemoryBackend.availableBackends, [0, 4096 + 100])
    func peerMapsSharedMemory(backend: SharedMemoryBackend, offset: Int) throws {
        let leaked = try descriptorsLeaked {
            let memory = try SharedMemory(size: Self.memorySize, backend: backend)
            let bytes = memory.mapping.bytes
            for index in 0..<bytes.count { bytes[index] = parentPattern(index) }
            let regionSize = Self.memorySize - offset

            let status = try withSocketPeer(["memory"]) { socket in
                var header = [UInt8]()
                withUnsafeBytes(of: UInt64(regionSize).littleEndian) { header += $0 }
                withUnsafeBytes(of: UInt64(offset).littleEndian) { header += $0 }
                try socket.send(header, fds: [memory.descriptor])
                let ack = try SocketTesting.receiveBytes(socket, count: 2).bytes
                #expect(ack[0] == 1, "the peer saw the wrong bytes (see its stderr)")
                #expect(ack[1] == 1, "the received memory fd was not close-on-exec in the peer")
            }
            #expect(status == 0)
            // Bytes before the region are ours; the region now holds the child's pattern.
            for index in 0..<offset where bytes[index] != parentPattern(index) {
                Issue.record("byte \(index) before the region changed")
                break
            }
            for index in offset..<bytes.count where bytes[index] != childPattern(index) {
                Issue.record("byte \(index) does not hold the peer's pattern")
                break
            }
        }
        #expect(leaked.leaked == 0)
    }

    @Test func peerRejectsRegionsBeyondTheFile() throws {
        let memory = try SharedMemory(size: 4096, backend: SharedMemoryBackend.native)
        let status = try withSocketPeer(["memory"]) { socket in
            var header = [UInt8]()
            withUnsafeBytes(of: UInt64(8192).littleEndian) { header += $0 }
            withUnsafeBytes(of: UInt64(0).littleEndian) { header += $0 }
            try socket.send(header, fds: [memory.descriptor])
            // The peer refuses to map (MappingError.beyondEndOfFile) and exits without an ack.
            #expect(throws: ScmSocketError.peerClosed) { _ = try SocketTesting.receiveBytes(socket, count: 2) }
        }
        #expect(status == 1)
    }

    /// Kick and call notifiers cross the socket; the peer waits on the kick and answers on the call.
    @Test(.isolatedDescriptors, arguments: EventNotifierBackend.availableBackends)
    func notifiersCrossTheSocket(backend: EventNotifierBackend) throws {
        let rounds = 200
        let leaked = try descriptorsLeaked {
            let kick = try EventNotifier(backend: backend)
            let call = try EventNotifier(backend: backend)
            let status = try withSocketPeer(["notifiers", String(rounds)]) { socket in
                // For pipes the peer needs the kick's read end and the call's write end; for an
                // eventfd both are the same descriptor.
                try socket.send([0x4E], fds: [kick.waitDescriptor, call.notifyDescriptor])
                for round in 0..<rounds {
                    try kick.notify()
                    // Bounded: a peer that stopped answering fails the test instead of hanging it.
                    var ready = pollfd(fd: call.waitDescriptor, events: Int16(POLLIN), revents: 0)
                    guard poll(&ready, 1, 10_000) == 1 else {
                        Issue.record("no call from the peer in round \(round)")
                        return
                    }
                    try call.wait()
                }
                let flags = try SocketTesting.receiveBytes(socket, count: 2).bytes
                #expect(flags == [1, 1], "received notifier fds were not close-on-exec in the peer")
            }
            #expect(status == 0)
        }
        #expect(leaked.leaked == 0)
    }
}
