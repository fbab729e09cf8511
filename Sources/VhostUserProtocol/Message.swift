import VMMSysUtil

/// A decoded front-end request, as a back-end receives it: the typed request, whether the sender
/// wants an ack, and exactly the fds that request carries.
///
/// Produced only by `Message.decode`, which checked every header, payload and fd-count rule.
/// `descriptors.count == body.descriptorCount` always holds. Fds not taken are closed when the
/// message goes away.
/// Thread-safety: not synchronized; one owner at a time (it may move between threads).
public struct Message: ~Copyable, Sendable {
    /// The request and its payload.
    public let body: FrontendMessage
    /// NEED_REPLY was set: with REPLY_ACK negotiated, answer with a `u64` ack unless the request
    /// has its own reply.
    public let needsReply: Bool
    /// The fds of this request, in order.
    public var descriptors: MessageDescriptors

    init(body: FrontendMessage, needsReply: Bool, descriptors: consuming MessageDescriptors) {
        self.body = body
        self.needsReply = needsReply
        self.descriptors = descriptors
    }

    /// Builds a message directly, e.g. to drive a session state machine without a socket.
    ///
    /// - Throws: `ProtocolError.unexpectedDescriptors` / `.missingDescriptors` unless exactly
    ///   `body.descriptorCount` fds are given (they are closed then).
    public init(
        _ body: FrontendMessage, needsReply: Bool = false,
        descriptors: consuming MessageDescriptors = MessageDescriptors()
    ) throws(ProtocolError) {
        try checkDescriptorCount(.frontend(body.request), expected: body.descriptorCount, received: descriptors.count)
        self.init(body: body, needsReply: needsReply, descriptors: descriptors)
    }

    /// The request code.
    public var request: FrontendRequest { body.request }

    /// Moves the first fd out (the one fd of single-fd requests); nil if there is none.
    public mutating func takeDescriptor() -> FileDescriptor? {
        descriptors.take(at: 0)
    }
}
