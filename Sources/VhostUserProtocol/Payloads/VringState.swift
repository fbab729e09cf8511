/// `struct vhost_vring_state` (8 bytes): a ring index and a number whose meaning depends on the
/// request (queue size, base, enable 0/1, endianness 0/1, or 0).
///
/// Thread-safety: a value type; freely shareable.
public struct VringState: WirePayload {
    /// Bytes on the wire.
    public static let wireSize = 8

    /// The ring index.
    public var index: UInt32
    /// Queue size, ring base (encoded as `SET_VRING_BASE` in the vhost-user specification
    /// describes), enable flag or endianness, per request.
    public var num: UInt32

    /// Creates the payload from its fields.
    public init(index: UInt32, num: UInt32) {
        self.index = index
        self.num = num
    }

    public init(decoding bytes: UnsafeRawBufferPointer, for request: AnyRequest) throws(ProtocolError) {
        try Self.requireSize(bytes, Self.wireSize, request)
        var reader = WireReader(bytes)
        index = reader.read()
        num = reader.read()
    }

    public func encode(into buffer: inout [UInt8]) {
        buffer.appendWire(index)
        buffer.appendWire(num)
    }

    public var encodedSize: Int { Self.wireSize }
}
