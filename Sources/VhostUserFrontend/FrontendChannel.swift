import VhostUserProtocol
import VMMSysUtil

/// The request/reply transport of a front-end: encodes requests into a reused buffer, sends them
/// with their fds in one `sendmsg`, and reads replies within a deadline.
///
/// Each reply is read in two steps, header then payload, so nothing past the reply is consumed;
/// the header is checked (request code echoed, flags exactly 0x5, size within the request's reply
/// limit) before a single payload byte is read. Any failure poisons the channel: the byte stream
/// may be out of step, so the socket is released (closed unless someone else holds it) and later
/// requests throw `.connectionUnusable`.
/// Thread-safety: not synchronized; one thread at a time.
final class FrontendChannel {
    /// The connection; nil once poisoned.
    private var connection: ScmSocket?
    /// How long to wait for each part of a reply; nil waits forever.
    let timeout: Duration?
    var isUsable: Bool { connection != nil }
    private var sendBuffer: [UInt8] = []
    /// Header and payload of the reply being read; large enough for any reply `validate` accepts.
    private let receiveBuffer: UnsafeMutableRawBufferPointer

    /// The largest reply payload the codec allows (a memory table or 256 config bytes).
    private static let payloadCapacity = 512

    init(socket: ScmSocket, timeout: Duration?) {
        connection = socket
        self.timeout = timeout
        receiveBuffer = .allocate(byteCount: MessageHeader.byteCount + Self.payloadCapacity, alignment: 16)
        sendBuffer.reserveCapacity(MessageHeader.byteCount + Self.payloadCapacity)
    }

    deinit {
        receiveBuffer.deallocate()
    }

    /// Marks the channel unusable and releases the socket (after a disconnect, or an error the
    /// caller detected in a reply).
    func poison() {
        connection = nil
    }

    /// Sends `message` with `fds` (borrowed: the caller keeps and closes its copies).
    func send(_ message: FrontendMessage, needsReply: Bool = false, fds: [Int32] = []) throws(FrontendError) {
        guard let socket = connection else { throw .connectionUnusable }
        do {
            try Message.encodeRequest(message, needsReply: needsReply, into: &sendBuffer)
        } catch {
            // Our own request broke a rule (e.g. too many config bytes): nothing was sent.
            throw .protocolViolation(error)
        }
        do {
            try socket.send(sendBuffer, fds: fds)
        } catch {
            poison()
            throw .socket(error)
        }
    }

    /// Reads the reply to `request` and hands its validated header, exact payload and fds to
    /// `decode`, whose `ProtocolError` is reported as `.protocolViolation`.
    func receiveReply<Result: ~Copyable>(
        to request: FrontendRequest,
        _ decode: (MessageHeader, UnsafeRawBufferPointer, consuming MessageDescriptors) throws(ProtocolError) -> Result
    ) throws(FrontendError) -> Result {
        guard let socket = connection else { throw .connectionUnusable }
        do {
            return try readReply(from: socket, to: request, decode)
        } catch {
            poison()
            throw error
        }
    }

    /// Sends `message` with NEED_REPLY and checks the `u64` ack (0 = success).
    func sendAwaitingAck(_ message: FrontendMessage, fds: [Int32] = []) throws(FrontendError) {
        try send(message, needsReply: true, fds: fds)
        let status = try receiveReply(to: message.request) { (header, payload, fds) throws(ProtocolError) in
            try Reply.u64(to: message.request, header: header, payload: payload, descriptors: fds)
        }
        guard status == 0 else { throw .requestFailed(message.request, status: status) }
    }

    /// Sends a request whose reply is a `u64` and returns it.
    func requestU64(_ message: FrontendMessage) throws(FrontendError) -> UInt64 {
        try send(message)
        return try receiveReply(to: message.request) { (header, payload, fds) throws(ProtocolError) in
            try Reply.u64(to: message.request, header: header, payload: payload, descriptors: fds)
        }
    }

    private func readReply<Result: ~Copyable>(
        from socket: ScmSocket, to request: FrontendRequest,
        _ decode: (MessageHeader, UnsafeRawBufferPointer, consuming MessageDescriptors) throws(ProtocolError) -> Result
    ) throws(FrontendError) -> Result {
        let deadline = timeout.map { ContinuousClock.now + $0 }
        var descriptors: [Int32] = []
        let headerBytes = UnsafeMutableRawBufferPointer(rebasing: receiveBuffer[0..<MessageHeader.byteCount])
        try fill(headerBytes, from: socket, request: request, deadline: deadline, descriptors: &descriptors)
        let header: MessageHeader
        do throws(ProtocolError) {
            header = try MessageHeader(decoding: UnsafeRawBufferPointer(headerBytes))
            guard header.request == request.rawValue else {
                throw ProtocolError.replyMismatch(expected: .frontend(request), received: header.request)
            }
            // Bounds the size by the request's reply limit before any payload byte is read.
            try header.validate(.backendReply)
        } catch {
            // The fds collected so far are closed here, before the error leaves.
            _ = MessageDescriptors(adopting: descriptors)
            throw .protocolViolation(error)
        }
        let size = Int(header.size)
        guard size <= Self.payloadCapacity else {
            _ = MessageDescriptors(adopting: descriptors)
            throw .protocolViolation(
                .payloadTooLarge(
                    request: .frontend(request), size: header.size,
                    limit: Self.payloadCapacity))
        }
        let payload = UnsafeMutableRawBufferPointer(
            rebasing: receiveBuffer[MessageHeader.byteCount..<(MessageHeader.byteCount + size)])
        try fill(payload, from: socket, request: request, deadline: deadline, descriptors: &descriptors)
        do {
            return try decode(header, UnsafeRawBufferPointer(payload), MessageDescriptors(adopting: descriptors))
        } catch {
            throw .protocolViolation(error)
        }
    }

    /// Fills `buffer` completely, one `recvmsg` at a time, each preceded by a bounded wait;
    /// appends the fds that arrive (at most 8 per reply). Closes them all on error.
    private func fill(
        _ buffer: UnsafeMutableRawBufferPointer, from socket: ScmSocket, request: FrontendRequest,
        deadline: ContinuousClock.Instant?, descriptors: inout [Int32]
    ) throws(FrontendError) {
        var filled = 0
        while filled < buffer.count {
            do throws(FrontendError) {
                try waitReadable(socket, request: request, deadline: deadline)
                let rest = UnsafeMutableRawBufferPointer(rebasing: buffer[filled...])
                var received: ReceivedMessage
                do {
                    received = try socket.receive(
                        into: rest, maxFDs: MemoryTable.maximumRegionCount - descriptors.count)
                } catch { throw .socket(error) }
                for index in 0..<received.fds.count {
                    if let fd = received.fds.take(at: index) { descriptors.append(fd.release()) }
                }
                filled += received.byteCount
            } catch {
                _ = MessageDescriptors(adopting: descriptors)
                descriptors = []
                throw error
            }
        }
    }

    /// Waits until the socket is readable, or throws `.timedOut` at the deadline.
    private func waitReadable(
        _ socket: ScmSocket, request: FrontendRequest, deadline: ContinuousClock.Instant?
    ) throws(FrontendError) {
        guard let deadline else { return }
        let remaining = deadline - ContinuousClock.now
        let milliseconds = remaining <= .zero ? 0 : Int32(clamping: milliseconds(rounding: remaining))
        let ready: Bool
        do {
            ready = try isReadable(socket.descriptor, timeoutMilliseconds: milliseconds)
        } catch { throw .system(error) }
        guard ready else { throw .timedOut(request) }
    }
}

/// `duration` in whole milliseconds, rounded up (so a short wait is not a busy poll), clamped to
/// `0...Int64.max`.
func milliseconds(rounding duration: Duration) -> Int64 {
    let (seconds, attoseconds) = duration.components
    guard seconds >= 0, attoseconds >= 0 else { return 0 }
    let fraction = (attoseconds + 999_999_999_999_999) / 1_000_000_000_000_000
    let (whole, overflow) = seconds.multipliedReportingOverflow(by: 1000)
    guard !overflow, whole <= Int64.max - fraction else { return Int64.max }
    return whole + fraction
}
