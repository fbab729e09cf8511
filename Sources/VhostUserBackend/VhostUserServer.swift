#if canImport(Glibc)
import VhostUserProtocol
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import Logging
import VMMSysUtil

/// Serves a `VhostUserDevice` to front-ends, one connection at a time: reads each request (header,
/// payload, fds) with `ScmSocket`, decodes it, feeds a fresh `VhostUserSession` per connection,
/// sends the replies. When the front-end disconnects, or sends anything the session refuses, the
/// session is torn down completely (workers stopped, memory unmapped, every fd closed) and the
/// next front-end is served.
///
/// Call fds may be pipes (front-ends without eventfd): a process embedding the server should
/// ignore SIGPIPE, as `VhostUserDaemon` does, so a front-end that went away cannot kill it.
///
/// Thread-safety: `run` and `serve` block the calling thread (the control thread); call one at a
/// time per server. The device's `process` runs on the sessions' worker threads.
public final class VhostUserServer: Sendable {
    /// How a connection ended.
    public enum EndReason: Sendable, CustomStringConvertible {
        /// The front-end closed the connection.
        case disconnected
        /// The front-end sent a request that was refused (logged); the connection was closed.
        case refused(VhostUserError)
        /// The socket failed (logged).
        case transport(ScmSocketError)

        public var description: String {
            switch self {
            case .disconnected: "front-end disconnected"
            case .refused(let error): "refused: \(error)"
            case .transport(let error): "socket error: \(error)"
            }
        }
    }

    /// The device served.
    public let device: any VhostUserDevice
    /// Options for every session.
    public let options: VhostUserSessionOptions
    /// Where connections, refusals and ring failures are reported.
    public let logger: Logger

    /// - Parameters:
    ///   - device: the device; `reset()` is called at the end of every connection.
    ///   - options: session tuning (worker threads, memory slots).
    ///   - logger: swift-log logger (label "vhost-user" by default).
    public init(device: any VhostUserDevice, options: VhostUserSessionOptions = .init(),
                logger: Logger = Logger(label: "vhost-user")) {
        self.device = device
        self.options = options
        self.logger = logger
    }

    /// Accepts front-ends on `listener` and serves each until it disconnects, forever.
    ///
    /// A peer refused by the listener's uid check is logged and skipped.
    /// - Throws: `ScmSocketError` only when `accept` itself fails for another reason.
    public func run(listener: ScmListener) throws(ScmSocketError) -> Never {
        while true {
            let connection: ScmSocket
            do {
                connection = try listener.accept()
            } catch {
                if case .peerNotAllowed(let uid) = error {
                    logger.warning("refused a front-end with uid \(uid)")
                    continue
                }
                if case .system(let system) = error, system.errno == .interrupted { continue }
                throw error
            }
            logger.info("front-end connected")
            let reason = serve(connection)
            logger.info("connection ended: \(reason)")
        }
    }

    /// Serves one connected front-end until it disconnects or is refused, then tears the session
    /// down and shuts the connection down (the peer sees end of stream at once); the descriptor is
    /// closed when the caller drops `connection`.
    public func serve(_ connection: ScmSocket) -> EndReason {
        let reason = serveSession(connection)
        // Nothing to do if it fails: the peer may have closed first.
        _ = shutdown(connection.descriptor, Int32(SHUT_RDWR))
        return reason
    }

    private func serveSession(_ connection: ScmSocket) -> EndReason {
        let session: VhostUserSession
        do {
            session = try VhostUserSession(device: device, options: options, logger: logger)
        } catch {
            logger.error("cannot start a session: \(error)")
            return .refused(error)
        }
        defer { session.close() }
        let connectionReader = ConnectionReader(connection: connection)
        var reply: [UInt8] = []
        reply.reserveCapacity(MessageHeader.byteCount + MessageHeader.maximumPayloadSize)
        while true {
            let message: Message
            do {
                message = try connectionReader.next()
            } catch {
                switch error {
                case .transport(.peerClosed): return .disconnected
                case .transport(let failure):
                    logger.error("socket error: \(failure)")
                    return .transport(failure)
                case .protocolViolation(let violation):
                    logger.error("front-end sent a malformed message: \(violation)")
                    return .refused(.protocolViolation(violation))
                }
            }
            let request = message.request
            let body = message.body
            let needsReply = message.needsReply
            logger.debug("request \(request): \(body)\(needsReply ? " [NEED_REPLY]" : "")")
            let response: VhostUserResponse?
            do {
                response = try session.handle(message)
            } catch {
                logger.error("refused \(request) (\(body)): \(error)")
                if needsReply && session.replyAckNegotiated {
                    // The front-end waits for this ack; a non-zero one tells it why we go away.
                    if (try? Message.encodeReply(to: request, .u64(1), into: &reply)) != nil {
                        try? connection.send(reply)
                    }
                }
                return .refused(error)
            }
            guard let response else { continue }
            do {
                try Message.encodeReply(to: response.request, response.payload, into: &reply)
                try connection.send(reply, fds: response.descriptor.map { [$0] } ?? [])
            } catch let error as ProtocolError {
                logger.error("cannot encode the reply to \(request): \(error)")
                return .refused(.protocolViolation(error))
            } catch let error as ScmSocketError {
                if case .peerClosed = error { return .disconnected }
                logger.error("cannot send the reply to \(request): \(error)")
                return .transport(error)
            } catch {
                logger.error("cannot send the reply to \(request): \(error)")
                return .disconnected
            }
        }
    }
}

/// Reads whole requests from a connection: 12-byte header, validated before its payload is read,
/// then exactly `size` payload bytes; fds of both reads (at most 8) go to the decoder.
/// Buffers are allocated once per connection.
final class ConnectionReader {
    enum Failure: Error {
        case transport(ScmSocketError)
        case protocolViolation(ProtocolError)
    }

    let connection: ScmSocket
    private let header: UnsafeMutableRawBufferPointer
    private let payload: UnsafeMutableRawBufferPointer
    static let maximumDescriptors = 8

    init(connection: ScmSocket) {
        self.connection = connection
        header = .allocate(byteCount: MessageHeader.byteCount, alignment: 8)
        payload = .allocate(byteCount: MessageHeader.maximumPayloadSize, alignment: 8)
    }

    deinit {
        header.deallocate()
        payload.deallocate()
    }

    func next() throws(Failure) -> Message {
        let headerFDs: ReceivedFileDescriptors
        do {
            headerFDs = try connection.receiveExactly(into: header, maxFDs: Self.maximumDescriptors)
        } catch { throw .transport(error) }
        let parsed: MessageHeader
        let request: AnyRequest
        do {
            parsed = try MessageHeader(decoding: UnsafeRawBufferPointer(header))
            // Refuses oversized sizes before anything is read into the payload buffer.
            request = try parsed.validate(.frontendRequest)
        } catch { throw .protocolViolation(error) }
        let size = Int(parsed.size)
        // validate() bounds every request's size by MessageHeader.maximumPayloadSize; checked again
        // because the buffer's safety must not depend on another file's table.
        guard size <= payload.count else {
            throw .protocolViolation(.payloadTooLarge(request: request, size: parsed.size, limit: payload.count))
        }
        // Safe: size <= payload.count.
        let body = UnsafeMutableRawBufferPointer(rebasing: payload[..<size])
        var payloadFDs = ReceivedFileDescriptors()
        if size > 0 {
            do {
                payloadFDs = try connection.receiveExactly(
                    into: body, maxFDs: Self.maximumDescriptors - headerFDs.count)
            } catch { throw .transport(error) }
        }
        let raw = headerFDs.releaseAll() + payloadFDs.releaseAll()
        do {
            return try Message.decode(header: parsed, payload: UnsafeRawBufferPointer(body),
                                      descriptors: MessageDescriptors(adopting: raw))
        } catch { throw .protocolViolation(error) }
    }
}
