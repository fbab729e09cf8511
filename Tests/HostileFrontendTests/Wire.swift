#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import VMMSysUtil
import Virtio
import VMMTestSupport
@testable import VhostUserProtocol
@testable import VhostUserBackend

/// The hostile front-end's end of a connection: well-formed requests through the codec, and raw
/// bytes (any header, any payload, any fds) that bypass it.
final class Wire {
    let socket: ScmSocket
    init(_ socket: ScmSocket) { self.socket = socket }

    func send(_ body: FrontendMessage, needsReply: Bool = false, fds: [Int32] = []) throws {
        var bytes: [UInt8] = []
        try Message.encodeRequest(body, needsReply: needsReply, into: &bytes)
        try socket.send(bytes, fds: fds)
    }

    /// A raw header (request, flags, size) followed by `payload`, with `fds`.
    func sendRaw(request: UInt32, flags: UInt32 = 1, size: UInt32? = nil, payload: [UInt8] = [], fds: [Int32] = []) throws {
        var bytes: [UInt8] = []
        for value in [request, flags, size ?? UInt32(payload.count)] { bytes += le(value) }
        try socket.send(bytes + payload, fds: fds)
    }

    /// Reads one reply (header + payload; fds closed), or nil at end of stream or after
    /// `milliseconds` of silence.
    func reply(milliseconds: Int32 = 2000) -> (request: UInt32, payload: [UInt8])? {
        var entry = pollfd(fd: socket.descriptor, events: Int16(POLLIN), revents: 0)
        guard poll(&entry, 1, milliseconds) == 1 else { return nil }
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 12 + 4096, alignment: 8)
        defer { buffer.deallocate() }
        do {
            _ = try socket.receiveExactly(into: UnsafeMutableRawBufferPointer(rebasing: buffer[0..<12]), maxFDs: 8)
            let request = buffer.loadUnaligned(fromByteOffset: 0, as: UInt32.self)
            let size = Int(buffer.loadUnaligned(fromByteOffset: 8, as: UInt32.self))
            guard size <= 4096 else { return nil }
            if size > 0 {
                _ = try socket.receiveExactly(into: UnsafeMutableRawBufferPointer(rebasing: buffer[12..<(12 + size)]), maxFDs: 8)
            }
            return (request, Array(buffer[12..<(12 + size)]))
        } catch {
            return nil
        }
    }

    func u64(_ body: FrontendMessage, needsReply: Bool = false, fds: [Int32] = []) throws -> UInt64? {
        try send(body, needsReply: needsReply, fds: fds)
        guard let (_, payload) = reply(), payload.count == 8 else { return nil }
        return payload.withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) }
    }

    /// Reads and drops replies until end of stream or `milliseconds` of silence: the back-end
    /// answered (or refused and closed). True when the stream ended.
    func drain(milliseconds: Int32 = 300) -> Bool {
        var entry = pollfd(fd: socket.descriptor, events: Int16(POLLIN), revents: 0)
        var scratch = [UInt8](repeating: 0, count: 4096)
        while poll(&entry, 1, milliseconds) == 1 {
            let n = scratch.withUnsafeMutableBytes { recv(socket.descriptor, $0.baseAddress, $0.count, 0) }
            if n <= 0 { return true }
        }
        return false
    }
}

func le<T: FixedWidthInteger>(_ value: T) -> [UInt8] {
    withUnsafeBytes(of: value.littleEndian) { Array($0) }
}

/// A memory region's wire form (gpa, size, uva, mmap offset).
func regionBytes(gpa: UInt64, size: UInt64, uva: UInt64, offset: UInt64) -> [UInt8] {
    le(gpa) + le(size) + le(uva) + le(offset)
}

/// The guest a well-formed front-end drives: `GuestRig` (shared memory, a driver-side split ring,
/// kick, call) plus an error notifier.
final class Guest: GuestRig {
    let err: EventNotifier

    init() throws {
        err = try EventNotifier()
        try super.init(features: [.ringEventIndex, .ringIndirectDescriptors])
    }

    /// Pointer to guest-physical `address` (the front-end's own view of guest memory).
    func pointer(_ address: UInt64) -> UnsafeMutableRawPointer { memory.mapping.base + Int(address) }

    /// Negotiates (REPLY_ACK, CONFIG if offered, INFLIGHT not taken) and starts ring 0; every
    /// step acked. Returns false if anything was refused.
    func start(_ wire: Wire) throws -> Bool {
        guard let offered = try wire.u64(.getFeatures),
              let protocolOffered = try wire.u64(.getProtocolFeatures) else { return false }
        let wantedProtocol = protocolOffered & (ProtocolFeatures.replyAck.rawValue | ProtocolFeatures.config.rawValue)
        try wire.send(.setProtocolFeatures(ProtocolFeatures(rawValue: wantedProtocol)))
        let wanted = VirtioFeatures([.version1, .protocolFeatures, .ringEventIndex, .ringIndirectDescriptors]).rawValue
        let steps: [(FrontendMessage, [Int32])] = [
            (.setOwner, []),
            (.setFeatures(VirtioFeatures(rawValue: offered & wanted)), []),
            (.setMemTable(MemoryTable(regions: [region])), [memory.descriptor]),
            (.setVringNum(VringState(index: 0, num: UInt32(Self.queueSize))), []),
            (.setVringBase(VringState(index: 0, num: 0)), []),
            (.setVringAddr(vringAddress()), []),
            (.setVringKick(VringFileIndex(index: 0, hasFile: true)), [kick.waitDescriptor]),
            (.setVringCall(VringFileIndex(index: 0, hasFile: true)), [call.notifyDescriptor]),
            (.setVringErr(VringFileIndex(index: 0, hasFile: true)), [err.notifyDescriptor]),
            (.setVringEnable(VringState(index: 0, num: 1)), []),
        ]
        for (body, fds) in steps {
            guard try wire.u64(body, needsReply: true, fds: fds) == 0 else { return false }
        }
        return true
    }

    /// Waits (bounded) for a used entry.
    func awaitUsed() throws -> UsedBuffer? {
        for _ in 0..<50 {
            if let used = try driver.reap() { return used }
            var entry = pollfd(fd: call.waitDescriptor, events: Int16(POLLIN), revents: 0)
            if poll(&entry, 1, 100) == 1 { _ = try? call.tryConsume() }
        }
        return try driver.reap()
    }
}

/// A daemon program listening on a socket at `path`: spawned, and waited for (bounded, 5 s) until
/// the socket exists; on release SIGKILLed (spawned children inherit the test runner's signal
/// mask, which may block SIGTERM), reaped, and its socket removed.
final class ListeningDaemon {
    let process: PeerProcess
    let path: String
    var pid: pid_t { process.pid }

    init(_ program: String, arguments: [String], path: String) throws {
        process = try PeerProcess.spawn(program, arguments: arguments, mapping: [])
        self.path = path
        var waited = 0
        while access(path, F_OK) != 0 && waited < 500 {
            usleep(10_000)
            waited += 1
        }
    }

    /// A connection to the daemon, retried (bounded, 5 s) while the socket exists but does not
    /// accept yet (between the daemon's bind and listen).
    func connect() throws -> ScmSocket {
        for _ in 0..<500 {
            if let socket = try? ScmSocket.connect(path: path) { return socket }
            usleep(10_000)
        }
        return try ScmSocket.connect(path: path)
    }

    deinit {
        kill(process.pid, SIGKILL)
        _ = process.waitForExit()
        unlink(path)
    }
}
