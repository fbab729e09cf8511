#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import Logging
import VhostUserProtocol
import VMMSysUtil

/// Serves a `VhostUserDevice` to front-ends, one connection at a time: reads each request (header,
/// payload, fds) with `ScmSocket`, decodes it, feeds a fresh `VhostUserSession` per connection,
/// sends the replies. When the front-end disconnects, or sends anything the session refuses, the
/// session is torn down completely (workers stopped, memory unmapped, every fd closed) and the
/// next front-end is served.
///
/// A front-end that sends part of a message and then nothing more for `peerTimeout`, or stops
/// reading our replies for that long, is disconnected (logged with what it sent), so a stalled or
/// hostile peer cannot hold the back-end. `stop()` ends `run` and `serve` from any thread, so a
/// VMM can host a back-end in its own process and shut it down.
///
/// Call fds may be pipes (front-ends without eventfd): a process embedding the server should
/// ignore SIGPIPE, as `VhostUserDaemon` does, so a front-end that went away cannot kill it.
///
/// Thread-safety: `run` and `serve` block the calling thread (the control thread); call one at a
/// time per server. `stop()` may be called from any thread (not from a signal handler). The
/// device's `process` runs on the sessions' worker threads.
public final class VhostUserServer: Sendable {
    /// How a connection ended.
    public enum EndReason: Sendable, CustomStringConvertible {
        /// The front-end closed the connection.
        case disconnected
        /// The front-end sent a request that was refused (logged); the connection was closed.
        case refused(VhostUserError)
        /// The socket failed (logged), including a reply the front-end did not read within the
        /// peer timeout.
        case transport(ScmSocketError)
        /// The front-end began a message and did not finish it within the peer timeout (logged
        /// with what it sent); the connection was closed.
        case stalled(StalledMessage)
        /// `stop()` was called; the session was closed.
        case stopped

        public var description: String {
            switch self {
            case .disconnected: "front-end disconnected"
            case .refused(let error): "refused: \(error)"
            case .transport(let error): "socket error: \(error)"
            case .stalled(let message): "front-end stalled mid-message: \(message)"
            case .stopped: "server stopped"
            }
        }
    }

    /// The default `peerTimeout`: long enough for any front-end that is alive (a message is at
    /// most a few KiB, written at once), short enough that a stalled one is noticed.
    public static let defaultPeerTimeout = Duration.seconds(5)

    /// The device served.
    public let device: any VhostUserDevice
    /// Options for every session.
    public let options: VhostUserSessionOptions
    /// How long a front-end may take to finish a message it began, or to read a reply we send.
    public let peerTimeout: Duration
    /// Where connections, refusals and ring failures are reported.
    public let logger: Logger
    private let stopRequest = StopRequest()

    /// - Parameters:
    ///   - device: the device; `reset()` is called at the end of every connection.
    ///   - options: session tuning (worker threads, memory slots).
    ///   - peerTimeout: see the property (clamped to at least 1 ms).
    ///   - logger: swift-log logger (label "vhost-user" by default).
    public init(
        device: any VhostUserDevice, options: VhostUserSessionOptions = .init(),
        peerTimeout: Duration = VhostUserServer.defaultPeerTimeout,
        logger: Logger = Logger(label: "vhost-user")
    ) {
        self.device = device
        self.options = options
        self.peerTimeout = max(peerTimeout, .milliseconds(1))
        self.logger = logger
    }

    /// Stops the server: a `run` or `serve` in progress on another thread closes its session (the
    /// workers are joined, guest memory unmapped, the session's fds closed), shuts the connection
    /// down and returns; later calls return at once. Idempotent; returns without waiting for them.
    /// A reply being sent to a front-end that does not read delays this by at most `peerTimeout`.
    ///
    /// Thread-safety: any thread; not async-signal-safe (takes a lock): from a signal, use a
    /// thread that waits for it (`VhostUserDaemon` does).
    public func stop() {
        stopRequest.request()
    }

    /// Whether `stop()` was called.
    public var isStopped: Bool { stopRequest.isRequested }

    /// Listens on a new socket file at `path` (mode 0600 unless `mode` says otherwise) and serves
    /// front-ends until `stop()`; then the listener is closed and its socket file removed.
    ///
    /// - Throws: `ScmSocketError` if the socket cannot be created, as `run(listener:)` otherwise.
    public func run(socketPath path: String, mode: mode_t = 0o600, allowedUIDs: Set<uid_t>? = nil)
        throws(ScmSocketError)
    {
        let listener = try ScmListener(path: path, mode: mode, allowedUIDs: allowedUIDs, backlog: 1)
        logger.info("listening on \(path)")
        try run(listener: listener)
    }

    /// Accepts front-ends on `listener` and serves each until it disconnects, until `stop()`.
    /// The listener stays the caller's (drop it to close it and remove its socket file).
    ///
    /// A peer refused by the listener's uid check is logged and skipped.
    /// - Throws: `ScmSocketError` when `accept` fails for another reason, or when the wait for
    ///   connections cannot be set up (`.system`).
    public func run(listener: ScmListener) throws(ScmSocketError) {
        let waiter: ControlWaiter
        do {
            waiter = try ControlWaiter(stop: stopRequest)
            try waiter.watch(listener.descriptor)
        } catch {
            throw .system(Self.setupFailure(error))
        }
        while true {
            let outcome: ControlWaitOutcome
            do {
                outcome = try waiter.waitReadable(until: nil)
            } catch { throw .system(error) }
            guard outcome == .ready else { return }
            let connection: ScmSocket
            do {
                connection = try listener.accept()
            } catch {
                if case .peerNotAllowed(let uid) = error {
                    logger.warning("refused a front-end with uid \(uid)")
                    continue
                }
                // A connection that went away before accept, on systems that report it.
                if case .system(let system) = error,
                    [.interrupted, Errno(rawValue: ECONNABORTED)].contains(system.errno)
                {
                    continue
                }
                throw error
            }
            logger.info("front-end connected")
            let reason = serve(connection)
            logger.info("connection ended: \(reason)")
            if case .stopped = reason { return }
        }
    }

    /// Serves one connected front-end until it disconnects, is refused, stalls, or `stop()` is
    /// called, then tears the session down and shuts the connection down (the peer sees end of
    /// stream at once); the descriptor is closed when the caller drops `connection`.
    public func serve(_ connection: ScmSocket) -> EndReason {
        let reason = serveSession(connection)
        // Nothing to do if it fails: the peer may have closed first.
        _ = shutdown(connection.descriptor, Int32(SHUT_RDWR))
        return reason
    }

    /// The wait's setup failed: a `SystemCallError` as it is, anything else (a bad `VMM_POLLER`)
    /// as EINVAL from the poller.
    static func setupFailure(_ error: any Error) -> SystemCallError {
        (error as? SystemCallError) ?? SystemCallError("Poller.init (\(error))", .invalidArgument)
    }

    private func serveSession(_ connection: ScmSocket) -> EndReason {
        if stopRequest.isRequested { return .stopped }
        let session: VhostUserSession
        do {
            session = try VhostUserSession(device: device, options: options, logger: logger)
        } catch {
            logger.error("cannot start a session: \(error)")
            return .refused(error)
        }
        defer { session.close() }
        let connectionReader: ConnectionReader
        do {
            // A reply the front-end does not read blocks a send for at most peerTimeout.
            try connection.setSendTimeout(peerTimeout)
            connectionReader = try ConnectionReader(
                connection: connection, waiter: ControlWaiter(stop: stopRequest), peerTimeout: peerTimeout)
        } catch {
            let failure = Self.setupFailure(error)
            logger.error("cannot wait for requests: \(failure)")
            return .transport(.system(failure))
        }
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
                case .stalled(let partial):
                    logger.error("front-end stalled mid-message, disconnecting: \(partial)")
                    return .stalled(partial)
                case .stopped: return .stopped
                case .wait(let failure):
                    logger.error("cannot wait for requests: \(failure)")
                    return .transport(.system(failure))
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
                if case .system(let failure) = error, failure.errno == .wouldBlock {
                    logger.error(
                        "front-end did not read the reply to \(request) within \(peerTimeout.milliseconds) ms, disconnecting"
                    )
                    return .transport(error)
                }
                logger.error("cannot send the reply to \(request): \(error)")
                return .transport(error)
            } catch {
                logger.error("cannot send the reply to \(request): \(error)")
                return .disconnected
            }
        }
    }
}
