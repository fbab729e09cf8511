extension Message {
    /// Replaces `buffer` with a front-end request: header (version 1, NEED_REPLY if asked) and payload.
    ///
    /// The result is checked with the same rules a receiver applies, so nothing is produced that a
    /// conforming peer (or our own decoder) would refuse. The request's fds
    /// (`message.descriptorCount` of them) travel separately, with the same `sendmsg`.
    ///
    /// - Throws: `ProtocolError` when the message breaks a rule (e.g. more than 8 memory regions or
    ///   more than 256 config bytes); `buffer` is then unspecified.
    public static func encodeRequest(
        _ message: FrontendMessage, needsReply: Bool = false, into buffer: inout [UInt8]
    ) throws(ProtocolError) {
        try encode(
            request: message.request.rawValue, flags: needsReply ? [.version1, .needReply] : .version1,
            direction: .frontendRequest, into: &buffer
        ) { message.encodePayload(into: &$0) }
    }

    /// Replaces `buffer` with a back-end request for the back-end channel.
    ///
    /// - Throws: `ProtocolError` when the message breaks a rule; `buffer` is then unspecified.
    public static func encodeRequest(
        _ message: BackendMessage, needsReply: Bool = false, into buffer: inout [UInt8]
    ) throws(ProtocolError) {
        try encode(
            request: message.request.rawValue, flags: needsReply ? [.version1, .needReply] : .version1,
            direction: .backendRequest, into: &buffer
        ) { message.encodePayload(into: &$0) }
    }

    /// Replaces `buffer` with a back-end's reply to `request`: flags exactly 0x5, the request code
    /// echoed, and `payload`.
    ///
    /// - Throws: `ProtocolError.payloadTooLarge` when `payload` exceeds what a front-end accepts
    ///   as a reply to `request`; `buffer` is then unspecified.
    public static func encodeReply(
        to request: FrontendRequest, _ payload: ReplyPayload, into buffer: inout [UInt8]
    ) throws(ProtocolError) {
        try encode(
            request: request.rawValue, flags: MessageFlags.replyFlags, direction: .backendReply, into: &buffer
        ) { payload.encode(into: &$0) }
    }

    /// Replaces `buffer` with a front-end's reply to a back-end request (a `u64`, flags 0x5).
    ///
    /// - Throws: `ProtocolError.payloadTooLarge` for anything but a `u64`; `buffer` is then unspecified.
    public static func encodeReply(
        to request: BackendRequest, _ payload: ReplyPayload, into buffer: inout [UInt8]
    ) throws(ProtocolError) {
        try encode(
            request: request.rawValue, flags: MessageFlags.replyFlags, direction: .frontendReply, into: &buffer
        ) { payload.encode(into: &$0) }
    }

    private static func encode(
        request: UInt32, flags: MessageFlags, direction: MessageDirection, into buffer: inout [UInt8],
        payload: (inout [UInt8]) -> Void
    ) throws(ProtocolError) {
        buffer.removeAll(keepingCapacity: true)
        MessageHeader(request: request, flags: flags, size: 0).encode(into: &buffer)
        payload(&buffer)
        let size = UInt32(truncatingIfNeeded: buffer.count - MessageHeader.byteCount)
        let header = MessageHeader(request: request, flags: flags, size: size)
        try header.validate(direction)
        // Patch the size field (bytes 8..<12) now that the payload length is known.
        withUnsafeBytes(of: size) { sizeBytes in
            buffer.replaceSubrange(8..<MessageHeader.byteCount, with: sizeBytes)
        }
    }
}
