import VMMSysUtil

/// A decoded back-end request, as a front-end receives it on the back-end channel, with exactly
/// the fds that request carries.
///
/// Thread-safety: not synchronized; one owner at a time (it may move between threads).
public struct BackendChannelMessage: ~Copyable, Sendable {
    /// The request and its payload.
    public let body: BackendMessage
    /// NEED_REPLY was set: answer with a `u64` (0 = success).
    public let needsReply: Bool
    /// The fds of this request, in order.
    public var descriptors: MessageDescriptors

    /// The request code.
    public var request: BackendRequest { body.request }

    /// Moves the first fd out; nil if there is none.
    public mutating func takeDescriptor() -> FileDescriptor? {
        descriptors.take(at: 0)
    }

    /// Decodes a back-end request; the rules and fd ownership are those of `Message.decode`.
    ///
    /// - Throws: `ProtocolError` saying what was refused; every fd is then closed.
    public static func decode(
        header: MessageHeader,
        payload: UnsafeRawBufferPointer,
        descriptors: consuming MessageDescriptors
    ) throws(ProtocolError) -> BackendChannelMessage {
        let typed = try header.validate(.backendRequest)
        guard case .backend(let request) = typed else {
            throw .unknownRequest(code: header.request, direction: .backendRequest)
        }
        guard payload.count == Int(header.size) else {
            throw .payloadLengthMismatch(request: typed, headerSize: header.size, received: payload.count)
        }
        let body = try BackendMessage.decode(request, payload: payload)
        try checkDescriptorCount(typed, expected: body.descriptorCount, received: descriptors.count)
        return BackendChannelMessage(body: body, needsReply: header.needsReply, descriptors: descriptors)
    }

    /// Decodes a back-end request from `bytes` holding the header and exactly its payload.
    ///
    /// - Throws: `ProtocolError`; `descriptors` are closed on every error.
    public static func decode(
        bytes: UnsafeRawBufferPointer,
        descriptors: consuming MessageDescriptors
    ) throws(ProtocolError) -> BackendChannelMessage {
        let header = try MessageHeader(decoding: bytes)
        let payload = UnsafeRawBufferPointer(rebasing: bytes[MessageHeader.byteCount...])
        return try decode(header: header, payload: payload, descriptors: descriptors)
    }
}
