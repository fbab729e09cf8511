import VhostUserProtocol
import VMMSysUtil

/// The back-end channel of one connection (vhost-user `VHOST_USER_PROTOCOL_F_BACKEND_REQ`): the
/// socket the front-end handed over with `SET_BACKEND_REQ_FD`, on which the back-end sends requests
/// of its own, such as `VHOST_USER_BACKEND_CONFIG_CHANGE_MSG`.
///
/// With REPLY_ACK negotiated every request carries NEED_REPLY and the front-end's `u64` answer is
/// awaited, at most `replyTimeout` (sends are bounded the same way): a front-end that never
/// answers cannot block the caller for longer. After a timeout or any socket or protocol failure
/// the channel closes (a late answer would otherwise be taken for the next request's) and every
/// later request throws at once.
///
/// Thread-safety: any thread; requests are serialised by an internal lock. A device must not send
/// from inside a call the control thread makes into it (`readConfig`, `featuresNegotiated`, ...):
/// the front-end answers some requests (CONFIG_CHANGE: a `GET_CONFIG` first) only after the
/// control thread served it.
public final class BackendChannel: @unchecked Sendable {
    /// How long a request waits for the front-end's ack (and for the socket to take it).
    public let replyTimeout: Duration
    /// Whether requests ask for and wait on an ack (REPLY_ACK was negotiated).
    public let acknowledged: Bool
    private let socket: ScmSocket
    private let lock = ConditionLock()
    // Guarded by `lock`.
    private var closed = false
    private var buffer: [UInt8] = []
    /// A reply: header and `u64`. Allocated once the checks in `init` passed: an initializer that
    /// throws runs no `deinit`, so an earlier allocation would leak with every refused fd.
    private let replyBuffer: UnsafeMutableRawBufferPointer

    /// Adopts the channel socket.
    ///
    /// - Throws: `VhostUserError.invalidBackendChannel` if it is not a stream socket or its
    ///   timeouts cannot be set (the fd is closed then).
    init(socket: ScmSocket, acknowledged: Bool, replyTimeout: Duration) throws(VhostUserError) {
        guard socket.isStreamSocket else { throw .invalidBackendChannel(reason: "the fd is not a stream socket") }
        do {
            try socket.setTimeouts(replyTimeout)
        } catch {
            throw .invalidBackendChannel(reason: "\(error)")
        }
        self.socket = socket
        self.acknowledged = acknowledged
        self.replyTimeout = replyTimeout
        replyBuffer = .allocate(byteCount: MessageHeader.byteCount + 8, alignment: 8)
    }

    deinit { replyBuffer.deallocate() }

    /// Whether requests can still be sent.
    public var isOpen: Bool { lock.withLock { !closed } }

    /// Tells the front-end that the device's config space changed
    /// (`VHOST_USER_BACKEND_CONFIG_CHANGE_MSG`): it reads it again with `GET_CONFIG` and raises the
    /// guest's config interrupt.
    ///
    /// - Throws: `VhostUserError.backendChannel` (closed, socket failure),
    ///   `.backendChannelTimeout`, `.backendChannelRefused`.
    public func sendConfigChange() throws(VhostUserError) {
        try send(.configChange)
    }

    /// Sends `message` and, when acknowledged, waits for the front-end's ack.
    func send(_ message: BackendMessage) throws(VhostUserError) {
        lock.lock()
        defer { lock.unlock() }
        let request = message.request
        guard !closed else { throw .backendChannel(request, reason: "the channel is closed") }
        do {
            try Message.encodeRequest(message, needsReply: acknowledged, into: &buffer)
            try socket.send(buffer)
            if acknowledged {
                let ack = try readAck(to: request)
                guard ack == 0 else { throw VhostUserError.backendChannelRefused(request, ack: ack) }
            }
        } catch let error as VhostUserError {
            if case .backendChannelRefused = error {} else { closeLocked() }
            throw error
        } catch let error as ScmSocketError {
            closeLocked()
            if case .system(let system) = error, system.errno == .wouldBlock { throw .backendChannelTimeout(request) }
            throw .backendChannel(request, reason: "\(error)")
        } catch {
            closeLocked()
            throw .backendChannel(request, reason: "\(error)")
        }
    }

    /// Reads one reply (header, then at most 8 bytes of payload) and decodes it as the ack.
    private func readAck(to request: BackendRequest) throws -> UInt64 {
        let header = UnsafeMutableRawBufferPointer(rebasing: replyBuffer[..<MessageHeader.byteCount])
        let headerFDs = try socket.receiveExactly(into: header, maxFDs: 1)
        let parsed = try MessageHeader(decoding: UnsafeRawBufferPointer(header))
        // Bounded before anything more is read: every answer on this channel is a u64.
        guard parsed.size == 8, headerFDs.count == 0 else {
            throw VhostUserError.backendChannel(
                request, reason: "reply of \(parsed.size) bytes, \(headerFDs.count) fd(s); expected a u64")
        }
        let payload = UnsafeMutableRawBufferPointer(rebasing: replyBuffer[MessageHeader.byteCount...])
        let payloadFDs = try socket.receiveExactly(into: payload, maxFDs: 1)
        return try Reply.u64(
            to: request, header: parsed, payload: UnsafeRawBufferPointer(payload),
            descriptors: MessageDescriptors(adopting: payloadFDs.releaseAll()))
    }

    /// Closes the channel (the session ends, or the front-end sent a new one). Idempotent.
    func close() {
        lock.withLock { closeLocked() }
    }

    private func closeLocked() {
        guard !closed else { return }
        closed = true
        // Wakes a peer blocked on us; the fd itself closes with the last reference.
        socket.shutdown()
    }
}
