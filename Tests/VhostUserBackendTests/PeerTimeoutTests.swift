#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Testing
import VMMSysUtil
import VMMTestSupport
import Virtio
@testable import VhostUserProtocol
@testable import VhostUserBackend

/// A front-end that stalls must not hold the back-end: it is disconnected after the peer timeout,
/// logged with what it sent, and the next front-end is served. Real sockets, one server thread.
@Suite("Peer timeout: stalled and hostile front-ends", .serialized)
struct PeerTimeoutTests {
    static let timeout = Duration.milliseconds(200)

    /// A listening server (timeout 200 ms) on its own thread, for `body`; stopped afterwards.
    func withServer(_ body: (String, CapturedLog) throws -> Void) throws {
        let path = "/tmp/vhost-user-stall-\(getpid()).sock"
        let log = CapturedLog()
        let server = VhostUserServer(device: PatternDevice(), peerTimeout: Self.timeout, logger: log.logger)
        let thread = try BoundedThread { try? server.run(socketPath: path) }
        defer {
            server.stop()
            #expect(thread.join(), "the server did not stop")
        }
        // Listening once a first front-end is served (and goes away at once).
        _ = try connectWhenListening(path)
        try body(path, log)
    }

    /// A front-end that is served: GET_FEATURES answered (the wait bounded by a receive timeout).
    func expectServed(_ path: String) throws {
        let socket = try ScmSocket.connect(path: path)
        try socket.setReceiveTimeout(.seconds(10))
        let features = try TestFrontend(socket: socket).u64(.getFeatures)
        #expect(features & VirtioFeatures.version1.rawValue != 0)
    }

    /// Whether `socket` was closed by the server (end of stream within 10 s).
    func closedByServer(_ socket: ScmSocket) throws -> Bool {
        try socket.setReceiveTimeout(.seconds(10))
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 64, alignment: 8)
        defer { buffer.deallocate() }
        do {
            _ = try socket.receive(into: buffer, maxFDs: 0).byteCount
            return false
        } catch {
            if case .peerClosed = error { return true }
            throw error
        }
    }

    @Test func partialHeaderIsDisconnectedAndLoggedAndTheNextFrontendServed() throws {
        try withServer { path, log in
            let stalled = try ScmSocket.connect(path: path)
            try stalled.send([1, 0, 0, 0, 0x01])  // 5 bytes of GET_FEATURES' 12-byte header
            // The next front-end waits in the backlog, then is served.
            try expectServed(path)
            #expect(try closedByServer(stalled))
            let line = log.messages.first { $0.contains("stalled") }
            #expect(line?.contains("5 of 12 bytes") == true, "\(log.messages)")
            #expect(line?.contains("[01 00 00 00 01]") == true, "\(log.messages)")
        }
    }

    @Test func partialPayloadWithDescriptorsIsDisconnectedWithoutLeaking() throws {
        try withServer { path, log in
            let stalled = try ScmSocket.connect(path: path)
            // SET_VRING_CALL: a full header (size 8) carrying an fd, then 3 of the 8 payload bytes.
            // The fd is a pipe's write end, ours closed at once: the read end sees end of file
            // only once the server closed the copy it received (whatever else runs meanwhile).
            var ends: [Int32] = [-1, -1]
            #expect(pipe(&ends) == 0)
            defer { close(ends[0]) }
            var bytes: [UInt8] = []
            MessageHeader(request: FrontendRequest.setVringCall.rawValue, flags: .version1, size: 8).encode(
                into: &bytes)
            try stalled.send(bytes + [0, 0, 0], fds: [ends[1]])
            close(ends[1])
            try expectServed(path)
            #expect(try closedByServer(stalled))
            let line = log.messages.first { $0.contains("stalled") }
            #expect(
                line?.contains("SET_VRING_CALL") == true && line?.contains("15 of 20 bytes") == true, "\(log.messages)")
            var reader = pollfd(fd: ends[0], events: Int16(POLLIN), revents: 0)
            var byte: UInt8 = 0
            #expect(poll(&reader, 1, 10_000) == 1 && read(ends[0], &byte, 1) == 0, "the received fd was closed")
        }
    }

    @Test func tricklingPeerIsHeldToOneDeadlinePerMessage() throws {
        try withServer { path, log in
            let slow = try ScmSocket.connect(path: path)
            var header: [UInt8] = []
            MessageHeader(request: FrontendRequest.getFeatures.rawValue, flags: .version1, size: 0).encode(
                into: &header)
            // One byte every 50 ms: each read is quick, the message takes 600 ms > 200 ms.
            var cut = false
            for byte in header {
                do {
                    try slow.send([byte])
                } catch {
                    cut = true
                    break
                }
                usleep(50_000)
            }
            #expect(try closedByServer(slow) || cut)
            #expect(log.messages.contains { $0.contains("stalled") }, "\(log.messages)")
            try expectServed(path)
        }
    }

    @Test func peerThatDoesNotReadRepliesIsDisconnected() throws {
        try withServer { path, log in
            let deaf = try ScmSocket.connect(path: path)
            try deaf.setSendTimeout(.milliseconds(500))
            var request: [UInt8] = []
            MessageHeader(request: FrontendRequest.getFeatures.rawValue, flags: .version1, size: 0).encode(
                into: &request)
            let burst = Array([[UInt8]](repeating: request, count: 1024).joined())
            // Requests until our side blocks too (the server stopped reading while its replies,
            // never read, filled the socket), bounded in count.
            for _ in 0..<1000 {
                do { try deaf.send(burst) } catch { break }
            }
            #expect(eventually { log.messages.contains { $0.contains("did not read the reply") } }, "\(log.messages)")
            try expectServed(path)
        }
    }
}
