import Testing
import VhostUserProtocol
import Virtio
import VMMSysUtil
import VMMTestSupport
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

struct Failure: Error, CustomStringConvertible { var description: String }

func le(_ value: UInt64) -> [UInt8] { withUnsafeBytes(of: value.littleEndian) { Array($0) } }
func le32(_ value: UInt32) -> [UInt8] { withUnsafeBytes(of: value.littleEndian) { Array($0) } }
func value(_ bytes: [UInt8], _ offset: Int, _ count: Int) -> UInt64 {
    (0..<count).reduce(UInt64(0)) { $0 | UInt64(bytes[offset + $1]) << (8 * $1) }
}

/// A `vhost-user-blk` process listening on a fresh socket, and a connection to it. Killed (SIGKILL:
/// a child spawned from a test thread inherits its signal mask, which may block SIGTERM) and its
/// socket removed on release.
final class Daemon {
    let process: PeerProcess
    let socketPath: String
    let frontEnd: FrontEnd

    init(arguments: [String]) throws {
        socketPath = "/tmp/vhost-user-blk-test-\(getpid())-\(UInt32.random(in: 0...UInt32.max)).sock"
        unlink(socketPath)
        process = try PeerProcess.spawn("vhost-user-blk", arguments: ["--socket-path", socketPath] + arguments)
        // The daemon creates the socket once it is listening; wait for it (bounded, no timing assertion).
        var connection: ScmSocket?
        for _ in 0..<1000 where connection == nil {
            connection = try? ScmSocket.connect(path: socketPath)
            if connection == nil { usleep(10_000) }
        }
        guard let connection else {
            kill(process.pid, SIGKILL)
            _ = process.waitForExit()
            unlink(socketPath)
            throw Failure(description: "the daemon did not listen on \(socketPath)")
        }
        frontEnd = FrontEnd(socket: connection)
    }

    deinit {
        kill(process.pid, SIGKILL)
        _ = process.waitForExit()
        unlink(socketPath)
    }
}

/// Raw vhost-user front-end messages (header: request, flags = version 1, size; little-endian).
final class FrontEnd {
    let socket: ScmSocket
    init(socket: ScmSocket) { self.socket = socket }

    func send(_ request: UInt32, payload: [UInt8] = []) throws {
        try socket.send(le32(request) + le32(1) + le32(UInt32(payload.count)) + payload)
    }

    /// Sends `body` encoded by the package's codec, with `fds`; with `needsReply`, checks the ack is 0.
    func send(_ body: FrontendMessage, fds: [Int32] = [], needsReply: Bool = false) throws {
        var bytes: [UInt8] = []
        try Message.encodeRequest(body, needsReply: needsReply, into: &bytes)
        try socket.send(bytes, fds: fds)
        if needsReply {
            let ack = try reply(body.request.rawValue)
            #expect(ack == le(0), "\(body.request) refused")
        }
    }

    func reply(_ request: UInt32) throws -> [UInt8] {
        var header = [UInt8](repeating: 0, count: 12)
        try receiveExactly(into: &header)
        #expect(value(header, 0, 4) == UInt64(request))
        #expect(value(header, 4, 4) & 0x7 == 0x5, "reply flag and version")
        let size = Int(value(header, 8, 4))
        guard size <= 4096 else { throw Failure(description: "reply too large") }
        var payload = [UInt8](repeating: 0, count: size)
        if size > 0 { try receiveExactly(into: &payload) }
        return payload
    }

    func receiveExactly(into bytes: inout [UInt8]) throws {
        try bytes.withUnsafeMutableBytes { buffer in
            var fds = try socket.receiveExactly(into: buffer, maxFDs: 0)
            fds.closeAll()
        }
    }

    func requestU64(_ request: UInt32) throws -> UInt64 {
        try send(request)
        let payload = try reply(request)
        guard payload.count == 8 else { throw Failure(description: "u64 reply of \(payload.count) bytes") }
        return value(payload, 0, 8)
    }

    func getConfig(offset: UInt32, size: UInt32) throws -> [UInt8] {
        try send(24, payload: le32(offset) + le32(size) + le32(0) + [UInt8](repeating: 0, count: Int(size)))
        let payload = try reply(24)
        guard payload.count == 12 + Int(size), value(payload, 0, 4) == UInt64(offset),
            value(payload, 4, 4) == UInt64(size)
        else {
            throw Failure(description: "bad GET_CONFIG reply of \(payload.count) bytes")
        }
        return Array(payload[12...])
    }
}

/// A temporary file of `size` bytes (zeroes, or `contents`), removed when released.
final class TemporaryFile {
    let path: String
    init(size: Int, contents: [UInt8]? = nil) throws {
        var template = Array("/tmp/vhost-user-blk-image-XXXXXX".utf8CString)
        let fd = template.withUnsafeMutableBufferPointer { mkstemp($0.baseAddress!) }
        guard fd >= 0 else { throw Failure(description: "mkstemp failed") }
        defer { close(fd) }
        path = template.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
        guard ftruncate(fd, off_t(size)) == 0 else { throw Failure(description: "ftruncate failed") }
        if let contents {
            let written = contents.withUnsafeBytes { pwrite(fd, $0.baseAddress, $0.count, 0) }
            guard written == contents.count else { throw Failure(description: "write failed") }
        }
    }
    deinit { unlink(path) }

    func contents() throws -> [UInt8] {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw Failure(description: "open failed") }
        defer { close(fd) }
        let size = Int(lseek(fd, 0, SEEK_END))
        var bytes = [UInt8](repeating: 0, count: size)
        let got = bytes.withUnsafeMutableBytes { pread(fd, $0.baseAddress, size, 0) }
        guard got == size else { throw Failure(description: "pread failed") }
        return bytes
    }
}

/// Waits (bounded, 10 s) until `notifier` is signalled, and consumes it.
func waitForSignal(_ notifier: EventNotifier) -> Bool {
    var entry = pollfd(fd: notifier.waitDescriptor, events: Int16(POLLIN), revents: 0)
    while true {
        let n = poll(&entry, 1, 10_000)
        if n == -1 && errno == EINTR { continue }
        guard n == 1 else { return false }
        return (try? notifier.tryConsume()) == true
    }
}
