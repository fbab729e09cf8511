import VMMSysUtil

/// Decoders for replies: what a front-end reads after a request that has a reply (or NEED_REPLY),
/// and what a back-end reads after NEED_REPLY on the back-end channel.
///
/// Each checks the header as a reply (flags exactly 0x5), that it answers the awaited request,
/// the exact payload size, and the fd count; every fd is closed on error, like `Message.decode`.
/// Thread-safety: stateless; callable from any thread.
public enum Reply {
    /// A `u64` reply (size exactly 8, no fd): `GET_FEATURES`, `GET_PROTOCOL_FEATURES`,
    /// `GET_QUEUE_NUM`, `GET_MAX_MEM_SLOTS`, `GET_STATUS`, REPLY_ACK acks (0 = success), ...
    ///
    /// - Throws: `ProtocolError`.
    public static func u64(
        to request: FrontendRequest, header: MessageHeader, payload: UnsafeRawBufferPointer,
        descriptors: consuming MessageDescriptors
    ) throws(ProtocolError) -> UInt64 {
        let any = try check(header, .backendReply, awaiting: .frontend(request), payload)
        try requirePayloadSize(payload, 8, any)
        try checkDescriptorCount(any, expected: 0, received: descriptors.count)
        var reader = WireReader(payload)
        return reader.read()
    }

    /// The front-end's `u64` answer to a back-end request sent with NEED_REPLY (0 = success).
    ///
    /// - Throws: `ProtocolError`.
    public static func u64(
        to request: BackendRequest, header: MessageHeader, payload: UnsafeRawBufferPointer,
        descriptors: consuming MessageDescriptors
    ) throws(ProtocolError) -> UInt64 {
        let any = try check(header, .frontendReply, awaiting: .backend(request), payload)
        try requirePayloadSize(payload, 8, any)
        try checkDescriptorCount(any, expected: 0, received: descriptors.count)
        var reader = WireReader(payload)
        return reader.read()
    }

    /// The `GET_VRING_BASE` reply (size exactly 8, no fd).
    ///
    /// - Throws: `ProtocolError`.
    public static func vringState(
        header: MessageHeader, payload: UnsafeRawBufferPointer, descriptors: consuming MessageDescriptors
    ) throws(ProtocolError) -> VringState {
        let any = try check(header, .backendReply, awaiting: .frontend(.getVringBase), payload)
        let state = try VringState(decoding: payload, for: any)
        try checkDescriptorCount(any, expected: 0, received: descriptors.count)
        return state
    }

    /// The `GET_CONFIG` reply, which must have exactly the requested size (12 + `requestedSize`);
    /// a back-end that failed sends size 0, refused here as `payloadSize`.
    ///
    /// - Throws: `ProtocolError`.
    public static func config(
        requestedSize: Int, header: MessageHeader, payload: UnsafeRawBufferPointer,
        descriptors: consuming MessageDescriptors
    ) throws(ProtocolError) -> ConfigSpace {
        let any = try check(header, .backendReply, awaiting: .frontend(.getConfig), payload)
        try requirePayloadSize(payload, ConfigSpace.headerSize + requestedSize, any)
        let config = try ConfigSpace(decoding: payload, for: any)
        try checkDescriptorCount(any, expected: 0, received: descriptors.count)
        return config
    }

    /// The `GET_INFLIGHT_FD` reply: the description (24 bytes) and the buffer's fd, which must
    /// come unless `mmapSize` is 0 (then an fd is optional and closed).
    ///
    /// - Throws: `ProtocolError`.
    public static func inflight(
        header: MessageHeader, payload: UnsafeRawBufferPointer, descriptors: consuming MessageDescriptors
    ) throws(ProtocolError) -> InflightReply {
        let any = try check(header, .backendReply, awaiting: .frontend(.getInflightFD), payload)
        let description = try InflightDescription(decoding: payload, for: any)
        if description.mmapSize == 0 {
            guard descriptors.count <= 1 else {
                throw .unexpectedDescriptors(request: any, expected: 1, received: descriptors.count)
            }
            return InflightReply(description: description, descriptor: nil)
        }
        try checkDescriptorCount(any, expected: 1, received: descriptors.count)
        return InflightReply(description: description, descriptor: descriptors.take(at: 0))
    }

    /// The `SET_DEVICE_STATE_FD` reply: a `u64` whose bits 0-7 are an error code (0 = success)
    /// and bit 8 says that no fd follows; without bit 8 the back-end sends the fd the front-end
    /// must use instead of its own. Other bits are reserved.
    ///
    /// - Throws: `ProtocolError`, e.g. `reservedBits`, or a wrong fd count for bit 8.
    public static func deviceState(
        header: MessageHeader, payload: UnsafeRawBufferPointer, descriptors: consuming MessageDescriptors
    ) throws(ProtocolError) -> DeviceStateReply {
        let any = try check(header, .backendReply, awaiting: .frontend(.setDeviceStateFD), payload)
        try requirePayloadSize(payload, 8, any)
        var reader = WireReader(payload)
        let value: UInt64 = reader.read()
        guard value & ~0x1FF == 0 else { throw .reservedBits(request: any, value: value) }
        let hasFile = value & 0x100 == 0
        try checkDescriptorCount(any, expected: hasFile ? 1 : 0, received: descriptors.count)
        return DeviceStateReply(error: UInt8(truncatingIfNeeded: value), descriptor: descriptors.take(at: 0))
    }

    /// Validates `header` as a reply in `direction` to `awaiting`, with `payload` of its size.
    private static func check(
        _ header: MessageHeader, _ direction: MessageDirection, awaiting: AnyRequest,
        _ payload: UnsafeRawBufferPointer
    ) throws(ProtocolError) -> AnyRequest {
        guard header.request == awaiting.code else {
            throw .replyMismatch(expected: awaiting, received: header.request)
        }
        try header.validate(direction)
        guard payload.count == Int(header.size) else {
            throw .payloadLengthMismatch(request: awaiting, headerSize: header.size, received: payload.count)
        }
        return awaiting
    }
}

/// A decoded `GET_INFLIGHT_FD` reply: the buffer description and its fd (nil when `mmapSize` is 0).
///
/// Thread-safety: not synchronized; one owner at a time.
public struct InflightReply: ~Copyable, Sendable {
    /// Size, offset, queue count and size of the inflight buffer.
    public let description: InflightDescription
    /// The inflight buffer's fd, owned by this value until taken.
    var descriptor: FileDescriptor?

    init(description: InflightDescription, descriptor: consuming FileDescriptor?) {
        self.description = description
        self.descriptor = descriptor
    }

    /// Moves the fd out; nil when there is none (or it was taken).
    public mutating func takeDescriptor() -> FileDescriptor? {
        descriptor.take()
    }
}

/// A decoded `SET_DEVICE_STATE_FD` reply: the back-end's error code and the fd it wants used for
/// the transfer (nil when it keeps the front-end's).
///
/// Thread-safety: not synchronized; one owner at a time.
public struct DeviceStateReply: ~Copyable, Sendable {
    /// 0 = success; anything else is a back-end failure.
    public let error: UInt8
    /// The back-end's own transfer fd, owned by this value until taken.
    var descriptor: FileDescriptor?

    init(error: UInt8, descriptor: consuming FileDescriptor?) {
        self.error = error
        self.descriptor = descriptor
    }

    /// Moves the fd out; nil when there is none (or it was taken).
    public mutating func takeDescriptor() -> FileDescriptor? {
        descriptor.take()
    }
}
