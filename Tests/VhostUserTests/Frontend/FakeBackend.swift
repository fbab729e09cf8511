#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import VMMSysUtil
import Testing
import VMMTestSupport
import VhostUserProtocol
import VhostUserFrontend

/// What a fake back-end sends in answer to one request.
enum FakeReply {
    /// Nothing (requests without a reply, or to make the front-end time out).
    case nothing
    /// These bytes (a whole message, possibly malformed), with these fds (owned: the fake closes
    /// them after sending).
    case raw([UInt8], fds: [Int32] = [])
    /// Close the connection without answering.
    case hangUp
}

/// What the fake saw of one request.
struct SeenRequest: Sendable {
    let body: FrontendMessage
    let needsReply: Bool
    let descriptorCount: Int
    var request: FrontendRequest { body.request }
}

/// A scripted back-end on its own thread, serving one end of a socket pair until the front-end
/// closes it, `respond` says `.hangUp`, or the front-end stays silent for 10 s (a failure).
/// `seen` and `failure` may be read after `join()`.
final class FakeBackend: @unchecked Sendable {
    private(set) var seen: [SeenRequest] = []
    private(set) var failure: String?
    private var thread: TestThread?

    /// Starts serving `socket`; the fake holds the only reference to it from now on.
    init(socket: ScmSocket, respond: @escaping @Sendable (inout Message) -> FakeReply) {
        let moved = SocketBox(socket)
        thread = startThread { [self] in
            self.serve(moved, respond)
        }
    }

    /// Waits for the fake to finish (the front-end's socket must be closed first).
    func join() {
        thread?.join()
        thread = nil
    }

    private func serve(_ box: SocketBox, _ respond: (inout Message) -> FakeReply) {
        guard let socket = box.take() else { return }
        while true {
            // Bounded: a front-end that neither sends nor closes within 10 s fails the test
            // instead of hanging it in `join()`.
            guard Self.becomesReadable(socket.descriptor) else {
                failure = "the front-end sent nothing and did not close the connection for 10 s"
                return
            }
            var message: Message
            do {
                message = try Self.receive(on: socket)
            } catch .socket(.peerClosed) {
                return
            } catch {
                failure = "\(error)"
                return
            }
            seen.append(
                SeenRequest(
                    body: message.body, needsReply: message.needsReply,
                    descriptorCount: message.descriptors.count))
            switch respond(&message) {
            case .nothing: break
            case .hangUp: return
            case .raw(let bytes, let fds):
                defer { for fd in fds { _ = FileDescriptor(adopting: fd) } }
                do { try socket.send(bytes, fds: fds) } catch {
                    if error != .peerClosed { failure = "\(error)" }
                    return
                }
            }
        }
    }

    /// Whether `fd` becomes readable (or hangs up) within `milliseconds`.
    static func becomesReadable(_ fd: Int32, within milliseconds: Int32 = 10_000) -> Bool {
        var entry = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        while true {
            let n = poll(&entry, 1, milliseconds)
            if n == -1 && errno == EINTR { continue }
            return n == 1
        }
    }

    enum ReceiveError: Error { case socket(ScmSocketError), protocolError(ProtocolError) }

    /// Reads and decodes one front-end request.
    static func receive(on socket: ScmSocket) throws(ReceiveError) -> Message {
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 12 + 1024, alignment: 16)
        defer { buffer.deallocate() }
        var fds: [Int32] = []
        func read(_ range: Range<Int>) throws(ReceiveError) {
            guard !range.isEmpty else { return }
            do {
                var received = try socket.receiveExactly(
                    into: UnsafeMutableRawBufferPointer(rebasing: buffer[range]), maxFDs: 8)
                for index in 0..<received.count { if let fd = received.take(at: index) { fds.append(fd.release()) } }
            } catch {
                _ = MessageDescriptors(adopting: fds)
                fds = []
                throw .socket(error)
            }
        }
        try read(0..<MessageHeader.byteCount)
        let header: MessageHeader
        do throws(ProtocolError) {
            header = try MessageHeader(decoding: UnsafeRawBufferPointer(buffer))
            try header.validate(.frontendRequest)
        } catch {
            _ = MessageDescriptors(adopting: fds)
            throw .protocolError(error)
        }
        let end = MessageHeader.byteCount + Int(header.size)
        try read(MessageHeader.byteCount..<end)
        do {
            return try Message.decode(
                header: header, payload: UnsafeRawBufferPointer(rebasing: buffer[MessageHeader.byteCount..<end]),
                descriptors: MessageDescriptors(adopting: fds))
        } catch { throw .protocolError(error) }
    }
}

/// Hands a socket to the fake's thread.
private final class SocketBox: @unchecked Sendable {
    private var socket: ScmSocket?
    init(_ socket: ScmSocket) { self.socket = socket }
    func take() -> ScmSocket? {
        defer { socket = nil }
        return socket
    }
}

/// A reply message encoded by the codec.
func replyBytes(to request: FrontendRequest, _ payload: ReplyPayload) -> [UInt8] {
    var buffer: [UInt8] = []
    do { try Message.encodeReply(to: request, payload, into: &buffer) } catch { return [] }
    return buffer
}

/// A well-behaved back-end's answers: the given features, one queue, 8 memory slots, status
/// echo, GET_VRING_BASE `base`, GET_CONFIG from `config`, and a 0 ack for every NEED_REPLY.
struct WellBehaved: Sendable {
    var features: UInt64 = (1 << 32) | (1 << 30) | (1 << 29)
    var protocolFeatures: UInt64 = ProtocolFeatures([.multiqueue, .replyAck, .config, .status]).rawValue
    var queueCount: UInt64 = 1
    var memorySlots: UInt64 = 8
    var base: UInt32 = 0
    var config: [UInt8] = Array(0..<64)

    func reply(_ message: inout Message) -> FakeReply {
        let request = message.request
        switch message.body {
        case .getFeatures: return .raw(replyBytes(to: request, .u64(features)))
        case .getProtocolFeatures: return .raw(replyBytes(to: request, .u64(protocolFeatures)))
        case .getQueueNum: return .raw(replyBytes(to: request, .u64(queueCount)))
        case .getMaxMemSlots: return .raw(replyBytes(to: request, .u64(memorySlots)))
        case .getStatus: return .raw(replyBytes(to: request, .u64(0x0B)))
        case .getVringBase(let state):
            return .raw(replyBytes(to: request, .vringState(VringState(index: state.index, num: base))))
        case .getConfig(let space):
            let start = min(Int(space.offset), config.count)
            let end = min(start + space.data.count, config.count)
            var data = Array(config[start..<end])
            data += [UInt8](repeating: 0, count: space.data.count - data.count)
            return .raw(replyBytes(to: request, .config(ConfigSpace(offset: space.offset, data: data))))
        default:
            return message.needsReply ? .raw(replyBytes(to: request, .u64(0))) : .nothing
        }
    }
}

/// A front-end connected to a fake back-end; only the fake's thread holds the back-end's socket,
/// so it closes when the fake stops.
func connectedToFake(
    timeout: Duration? = .seconds(5), _ respond: @escaping @Sendable (inout Message) -> FakeReply
) throws -> (VhostUserFrontend, FakeBackend) {
    let (front, back) = try ScmSocket.pair()
    let fake = FakeBackend(socket: back, respond: respond)
    return (VhostUserFrontend(socket: front, timeout: timeout), fake)
}
