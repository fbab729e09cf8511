#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Testing
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
    func sendRaw(request: UInt32, flags: UInt32 = 1, size: UInt32? = nil, payload: [UInt8] = [], fds: [Int32] = [])
        throws
    {
        var bytes: [UInt8] = []
        for value in [request, flags, size ?? UInt32(payload.count)] { bytes += le(value) }
        try socket.send(bytes + payload, fds: fds)
    }

    /// What the back-end sent next.
    enum Reply {
        case message(request: UInt32, payload: [UInt8])
        /// The back-end closed the connection.
        case endOfStream
        /// Nothing within the bound.
        case silence
    }

    /// Reads one reply (header + payload; any fds closed), end of stream, or `milliseconds` of
    /// silence. A malformed reply or a socket error other than end of stream is thrown.
    func next(milliseconds: Int32 = 3000) throws -> Reply {
        var entry = pollfd(fd: socket.descriptor, events: Int16(POLLIN), revents: 0)
        guard poll(&entry, 1, milliseconds) == 1 else { return .silence }
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 12 + 4096, alignment: 8)
        defer { buffer.deallocate() }
        do {
            var received = try socket.receiveExactly(
                into: UnsafeMutableRawBufferPointer(rebasing: buffer[0..<12]), maxFDs: 8)
            received.closeAll()
            let request = buffer.loadUnaligned(fromByteOffset: 0, as: UInt32.self)
            let size = Int(buffer.loadUnaligned(fromByteOffset: 8, as: UInt32.self))
            guard size <= 4096 else { throw MalformedReply(size: size) }
            if size > 0 {
                var more = try socket.receiveExactly(
                    into: UnsafeMutableRawBufferPointer(rebasing: buffer[12..<(12 + size)]), maxFDs: 8)
                more.closeAll()
            }
            return .message(request: request, payload: Array(buffer[12..<(12 + size)]))
        } catch ScmSocketError.peerClosed {
            return .endOfStream
        }
    }

    /// Reads one reply's payload, nil at end of stream or after `milliseconds` of silence.
    func reply(milliseconds: Int32 = 3000) throws -> (request: UInt32, payload: [UInt8])? {
        guard case .message(let request, let payload) = try next(milliseconds: milliseconds) else { return nil }
        return (request, payload)
    }

    func u64(_ body: FrontendMessage, needsReply: Bool = false, fds: [Int32] = []) throws -> UInt64? {
        try send(body, needsReply: needsReply, fds: fds)
        guard let (_, payload) = try reply(), payload.count == 8 else { return nil }
        return payload.withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) }
    }

    /// Sends a well-formed request with NEED_REPLY; throws unless the back-end acks it with 0.
    func acked(_ body: FrontendMessage, fds: [Int32] = []) throws {
        guard try u64(body, needsReply: true, fds: fds) == 0 else { throw AttackSetupFailed(step: "\(body)") }
    }

    /// Sends a request the back-end must refuse, with NEED_REPLY, and returns its answer.
    func refuse(_ body: FrontendMessage, fds: [Int32] = []) throws -> Answer {
        try send(body, needsReply: true, fds: fds)
        return answer()
    }

    /// Sends `steps` in turn, each with NEED_REPLY, until one is refused; the back-end may take a
    /// step with REPLY_ACK 0 while it cannot check it yet (ring addresses before the ring starts),
    /// but must refuse by the last one. Returns the first refusal, or the last step's answer.
    func refuseBy(_ steps: [(FrontendMessage, [Int32])]) throws -> Answer {
        var answer = Answer.silent
        for (body, fds) in steps {
            answer = try refuse(body, fds: fds)
            if answer.isRefusal { return answer }
        }
        return answer
    }

    /// The back-end's answer to the bad request just sent. For a `query` (a request answered with
    /// data, like GET_FEATURES) any reply is an acceptance; otherwise an 8-byte REPLY_ACK is a
    /// NACK when non-zero and an acceptance when zero. Silence counts as acceptance of a request
    /// that asked for no reply: a refusing back-end closes.
    func answer(query: Bool = false, milliseconds: Int32 = 3000) -> Answer {
        do {
            switch try next(milliseconds: milliseconds) {
            case .endOfStream: return .closed
            case .silence: return .silent
            case .message(let request, let payload):
                if query || payload.count != 8 { return .accepted("a reply to request \(request)") }
                let status = payload.withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) }
                return status == 0 ? .accepted("REPLY_ACK 0 to request \(request)") : .nack(status)
            }
        } catch {
            // A connection reset is the back-end closing too.
            if case ScmSocketError.system(let system) = error, system.errno == .connectionReset { return .closed }
            return .accepted("an unreadable answer: \(error)")
        }
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
            let protocolOffered = try wire.u64(.getProtocolFeatures)
        else { return false }
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

    /// The back-end's answer to a broken ring: its err fd fired (within 3 s) and no used entry
    /// was published for the bad chain.
    func ringAnswer() -> Answer {
        var entry = pollfd(fd: err.waitDescriptor, events: Int16(POLLIN), revents: 0)
        let fired = poll(&entry, 1, 3000) == 1
        if let used = try? driver.reap() { return .accepted("a used entry (id \(used.id))") }
        return fired ? .errSignalled : .silent
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

    /// A connection to the daemon, retried (bounded) while the socket exists but does not accept
    /// yet (between the daemon's bind and listen).
    func connect() throws -> ScmSocket { try ScmSocket.connectRetrying(path: path) }

    deinit {
        kill(process.pid, SIGKILL)
        _ = process.waitForExit()
        unlink(path)
    }
}

/// What a back-end did about bad input.
enum Answer: Equatable, CustomStringConvertible {
    /// REPLY_ACK with this non-zero status.
    case nack(UInt64)
    /// End of stream (the back-end closed the connection).
    case closed
    /// The ring's err fd fired.
    case errSignalled
    /// Success or data: the bad input was taken.
    case accepted(String)
    /// No answer and no close within the bound.
    case silent

    /// NACK, close or err fd: the only right answers to bad input.
    var isRefusal: Bool {
        switch self {
        case .nack, .closed, .errSignalled: true
        case .accepted, .silent: false
        }
    }

    var description: String {
        switch self {
        case .nack(let status): "NACK \(status)"
        case .closed: "closed"
        case .errSignalled: "err fd signalled"
        case .accepted(let what): "accepted: \(what)"
        case .silent: "no answer and no close"
        }
    }
}

struct MalformedReply: Error {
    let size: Int
}
