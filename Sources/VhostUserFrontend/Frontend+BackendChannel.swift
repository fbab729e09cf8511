import VhostUserProtocol
import VMMSysUtil

/// The front-end's end of the back-end channel (`SET_BACKEND_REQ_FD`): it receives the back-end's
/// requests (`BACKEND_CONFIG_CHANGE_MSG`, ...) and answers those sent with NEED_REPLY.
///
/// Thread-safety: not synchronized; one thread at a time (typically not the one sending control
/// requests: a back-end may wait for an answer here while the front-end waits on the main socket).
public final class FrontendBackendChannel: @unchecked Sendable {
    /// The socket (our end of the pair).
    public let socket: ScmSocket
    private let buffer: UnsafeMutableRawBufferPointer
    private var reply: [UInt8] = []

    /// Our end of a channel whose other end went to the back-end (`openBackendChannel` does both).
    public init(socket: ScmSocket) {
        self.socket = socket
        buffer = .allocate(byteCount: MessageHeader.byteCount + MessageHeader.maximumPayloadSize, alignment: 8)
    }

    deinit { buffer.deallocate() }

    /// The back-end's next request, validated and decoded, or nil if none came within `timeout`.
    ///
    /// - Throws: `.socket` (e.g. `.peerClosed`), `.protocolViolation` for a malformed request (its
    ///   fds are closed), `.system` if waiting fails.
    public func receive(timeout: Duration) throws(FrontendError) -> BackendChannelMessage? {
        let ready: Bool
        do {
            ready = try isReadable(
                socket.descriptor, timeoutMilliseconds: Int32(clamping: milliseconds(rounding: timeout)))
        } catch { throw .system(error) }
        guard ready else { return nil }
        let header = UnsafeMutableRawBufferPointer(rebasing: buffer[..<MessageHeader.byteCount])
        do {
            let headerFDs = try socket.receiveExactly(into: header, maxFDs: 8)
            let parsed = try MessageHeader(decoding: UnsafeRawBufferPointer(header))
            // Bounds the size before the payload is read.
            _ = try parsed.validate(.backendRequest)
            let payload = UnsafeMutableRawBufferPointer(
                rebasing: buffer[MessageHeader.byteCount..<(MessageHeader.byteCount + Int(parsed.size))])
            var fds = headerFDs.releaseAll()
            if !payload.isEmpty {
                fds += try socket.receiveExactly(into: payload, maxFDs: 8 - fds.count).releaseAll()
            }
            return try BackendChannelMessage.decode(
                header: parsed, payload: UnsafeRawBufferPointer(payload),
                descriptors: MessageDescriptors(adopting: fds))
        } catch let error as ScmSocketError {
            throw .socket(error)
        } catch let error as ProtocolError {
            throw .protocolViolation(error)
        } catch {
            throw .system(SystemCallError("recvmsg (\(error))", .invalidArgument))
        }
    }

    /// Answers `request` (sent with NEED_REPLY) with `value` (0 = success).
    ///
    /// - Throws: `.socket`.
    public func reply(to request: BackendRequest, _ value: UInt64) throws(FrontendError) {
        do {
            try Message.encodeReply(to: request, .u64(value), into: &reply)
        } catch { throw .protocolViolation(error) }
        do {
            try socket.send(reply)
        } catch { throw .socket(error) }
    }
}

extension VhostUserFrontend {
    /// Creates the back-end channel (a socket pair, as QEMU does) and hands one end to the
    /// back-end with `SET_BACKEND_REQ_FD`.
    ///
    /// - Throws: `.notNegotiated(.backendRequest)`, `.socket` if the pair cannot be created, or a
    ///   transport/ack error.
    public func openBackendChannel() throws(FrontendError) -> FrontendBackendChannel {
        try require(.backendRequest)
        let (ours, theirs): (ScmSocket, ScmSocket)
        do {
            (ours, theirs) = try ScmSocket.pair()
        } catch { throw .socket(error) }
        try sendAcknowledged(.setBackendRequestFD, fds: [theirs.descriptor])
        return FrontendBackendChannel(socket: ours)
    }
}
