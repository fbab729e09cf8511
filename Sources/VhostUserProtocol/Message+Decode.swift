extension Message {
    /// Decodes a front-end request from its header, payload bytes and the fds that arrived with it.
    ///
    /// Checks the header (`MessageHeader.validate(.frontendRequest)`), that `payload` holds exactly
    /// `header.size` bytes, the payload's layout, and the fd count: exact for every request, except
    /// that one fd with `REM_MEM_REG` is tolerated (and closed) because some front-ends send it.
    /// The decoder owns `descriptors` from the call on: on any error every fd is closed; on success
    /// the message owns them.
    ///
    /// - Throws: `ProtocolError` saying what was refused.
    public static func decode(
        header: MessageHeader,
        payload: UnsafeRawBufferPointer,
        descriptors: consuming MessageDescriptors
    ) throws(ProtocolError) -> Message {
        let typed = try header.validate(.frontendRequest)
        guard case .frontend(let request) = typed else {
            throw .unknownRequest(code: header.request, direction: .frontendRequest)
        }
        guard payload.count == Int(header.size) else {
            throw .payloadLengthMismatch(request: typed, headerSize: header.size, received: payload.count)
        }
        let body = try FrontendMessage.decode(request, payload: payload)
        var received = descriptors.count
        if case .remMemReg = body, received == 1 {
            // QEMU versions differ on whether REM_MEM_REG carries the region's fd; it is not needed.
            // Replacing the container drops (closes) it.
            descriptors = MessageDescriptors()
            received = 0
        }
        try checkDescriptorCount(typed, expected: body.descriptorCount, received: received)
        return Message(body: body, needsReply: header.needsReply, descriptors: descriptors)
    }

    /// Decodes a front-end request from `bytes` holding the header and exactly its payload.
    ///
    /// - Throws: `ProtocolError`; `descriptors` are closed on every error.
    public static func decode(
        bytes: UnsafeRawBufferPointer,
        descriptors: consuming MessageDescriptors
    ) throws(ProtocolError) -> Message {
        let header = try MessageHeader(decoding: bytes)
        let payload = UnsafeRawBufferPointer(rebasing: bytes[MessageHeader.byteCount...])
        return try decode(header: header, payload: payload, descriptors: descriptors)
    }
}

/// Throws unless exactly `expected` fds arrived.
func checkDescriptorCount(_ request: AnyRequest, expected: Int, received: Int) throws(ProtocolError) {
    if received > expected {
        throw .unexpectedDescriptors(request: request, expected: expected, received: received)
    }
    if received < expected {
        throw .missingDescriptors(request: request, expected: expected, received: received)
    }
}
