import VhostUserProtocol
import VMMSysUtil

/// A message the front-end began and did not finish within the peer timeout: what arrived, for
/// the log.
///
/// Thread-safety: a value type.
public struct StalledMessage: Sendable, CustomStringConvertible {
    /// Bytes of the message that arrived (header and payload together).
    public let receivedBytes: Int
    /// Bytes the message needs: the header's 12 until the header is complete, then 12 + its size.
    public let expectedBytes: Int
    /// The request the header names, once the header arrived.
    public let request: AnyRequest?
    /// The first bytes that arrived (at most 32), for the log.
    public let prefix: [UInt8]
    /// How long the back-end waited for the rest.
    public let timeout: Duration

    public var description: String {
        let hex = prefix.map { byte in
            let digits = String(byte, radix: 16)
            return digits.count == 1 ? "0" + digits : digits
        }.joined(separator: " ")
        let what = request.map { "\($0), " } ?? ""
        let more = receivedBytes > prefix.count ? " ..." : ""
        return "\(what)\(receivedBytes) of \(expectedBytes) bytes in \(timeout.milliseconds) ms: [\(hex)\(more)]"
    }
}

/// Reads whole requests from a connection: 12-byte header, validated before its payload is read,
/// then exactly `size` payload bytes; fds of every read (at most 8 in all) go to the decoder.
///
/// Waiting for a message to begin is unbounded (a front-end is idle most of its life) but ends
/// when the server is asked to stop; once a message began, the rest must arrive within
/// `peerTimeout`, or the read fails with `.stalled` (a peer that sends part of a message and stops
/// must not hold the back-end). Buffers are allocated once per connection.
///
/// Thread-safety: used by the connection's control thread only.
final class ConnectionReader {
    enum Failure: Error {
        case transport(ScmSocketError)
        case protocolViolation(ProtocolError)
        case stalled(StalledMessage)
        case stopped
        /// The wait itself failed (the poller).
        case wait(SystemCallError)
    }

    let connection: ScmSocket
    private let waiter: ControlWaiter
    private let peerTimeout: Duration
    private let header: UnsafeMutableRawBufferPointer
    private let payload: UnsafeMutableRawBufferPointer
    static let maximumDescriptors = 8

    /// - Throws: `SystemCallError` if the connection cannot be watched.
    init(connection: ScmSocket, waiter: ControlWaiter, peerTimeout: Duration) throws(SystemCallError) {
        try waiter.watch(connection.descriptor)
        self.connection = connection
        self.waiter = waiter
        self.peerTimeout = peerTimeout
        header = .allocate(byteCount: MessageHeader.byteCount, alignment: 8)
        payload = .allocate(byteCount: MessageHeader.maximumPayloadSize, alignment: 8)
    }

    deinit {
        waiter.unwatch()
        header.deallocate()
        payload.deallocate()
    }

    func next() throws(Failure) -> Message {
        // Idle until the next message begins (or a stop).
        try wait(until: nil, received: 0, expected: MessageHeader.byteCount, request: nil)
        let deadline = ContinuousClock.now + peerTimeout
        var descriptors = CollectedDescriptors()
        try fill(
            header, deadline: deadline, into: &descriptors, before: 0, expected: MessageHeader.byteCount, request: nil)
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
        try fill(
            body, deadline: deadline, into: &descriptors, before: MessageHeader.byteCount,
            expected: MessageHeader.byteCount + size, request: request)
        do {
            return try Message.decode(
                header: parsed, payload: UnsafeRawBufferPointer(body),
                descriptors: MessageDescriptors(adopting: descriptors.release()))
        } catch { throw .protocolViolation(error) }
    }

    /// Reads until `buffer` is full, each read waiting at most until `deadline`. The first read of
    /// a message does not wait (the caller saw the connection readable).
    private func fill(
        _ buffer: UnsafeMutableRawBufferPointer, deadline: ContinuousClock.Instant,
        into descriptors: inout CollectedDescriptors, before: Int, expected: Int, request: AnyRequest?
    ) throws(Failure) {
        var filled = 0
        while filled < buffer.count {
            if before + filled > 0 {
                try wait(until: deadline, received: before + filled, expected: expected, request: request)
            }
            // Safe: filled < buffer.count, so the slice is a non-empty part of our buffer.
            let rest = UnsafeMutableRawBufferPointer(rebasing: buffer[filled...])
            do {
                var received = try connection.receive(
                    into: rest, maxFDs: Self.maximumDescriptors - descriptors.count)
                for index in 0..<received.fds.count {
                    if let fd = received.fds.take(at: index) { descriptors.append(fd.release()) }
                }
                filled += received.byteCount
            } catch { throw .transport(error) }
        }
    }

    private func wait(
        until deadline: ContinuousClock.Instant?, received: Int, expected: Int,
        request: AnyRequest?
    ) throws(Failure) {
        let outcome: ControlWaitOutcome
        do {
            outcome = try waiter.waitReadable(until: deadline)
        } catch { throw .wait(error) }
        switch outcome {
        case .ready: return
        case .stopped: throw .stopped
        case .timedOut:
            throw .stalled(stalledMessage(received: received, expected: expected, request: request))
        }
    }

    /// What arrived of a message that did not finish (header bytes, then payload bytes).
    private func stalledMessage(received: Int, expected: Int, request: AnyRequest?) -> StalledMessage {
        let shown = min(received, 32)
        var prefix = Array(header.prefix(min(shown, MessageHeader.byteCount)))
        if shown > MessageHeader.byteCount { prefix += payload.prefix(shown - MessageHeader.byteCount) }
        return StalledMessage(
            receivedBytes: received, expectedBytes: expected, request: request,
            prefix: prefix, timeout: peerTimeout)
    }
}

/// The descriptors that arrived with the reads of one message so far; closed unless released.
struct CollectedDescriptors: ~Copyable {
    private var raw: [Int32] = []

    var count: Int { raw.count }

    mutating func append(_ fd: Int32) { raw.append(fd) }

    /// Moves every descriptor to the caller.
    consuming func release() -> [Int32] {
        let taken = raw
        raw = []
        return taken
    }

    deinit {
        for fd in raw { _ = systemClose(fd) }
    }
}

extension Duration {
    /// Whole milliseconds (rounded down).
    var milliseconds: Int64 {
        let (seconds, attoseconds) = components
        return seconds * 1000 + attoseconds / 1_000_000_000_000_000
    }
}
