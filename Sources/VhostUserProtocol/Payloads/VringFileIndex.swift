/// The `u64` payload of `SET_VRING_KICK/CALL/ERR`: bits 0-7 the ring index, bit 8 set when no fd
/// accompanies the message (the ring is polled instead). Other bits are reserved and refused.
///
/// Thread-safety: a value type; freely shareable.
public struct VringFileIndex: WirePayload {
    /// Bytes on the wire.
    public static let wireSize = 8
    /// Bit 8: no fd follows (`VHOST_USER_VRING_NOFD_MASK`).
    public static let noFileMask: UInt64 = 0x100
    /// Bits 0-7: the ring index (`VHOST_USER_VRING_IDX_MASK`).
    public static let indexMask: UInt64 = 0xFF

    /// The ring index.
    public var index: UInt8
    /// Whether an fd accompanies the message (bit 8 clear).
    public var hasFile: Bool

    /// Creates the payload from its fields.
    public init(index: UInt8, hasFile: Bool) {
        self.index = index
        self.hasFile = hasFile
    }

    /// Decodes the `u64` form.
    ///
    /// - Throws: `ProtocolError.reservedBits` when bits above 8 are set.
    public init(value: UInt64, for request: AnyRequest) throws(ProtocolError) {
        guard value & ~(Self.indexMask | Self.noFileMask) == 0 else {
            throw .reservedBits(request: request, value: value)
        }
        index = UInt8(truncatingIfNeeded: value)
        hasFile = value & Self.noFileMask == 0
    }

    public init(decoding bytes: UnsafeRawBufferPointer, for request: AnyRequest) throws(ProtocolError) {
        try Self.requireSize(bytes, Self.wireSize, request)
        var reader = WireReader(bytes)
        try self.init(value: reader.read(), for: request)
    }

    /// The `u64` form.
    public var value: UInt64 { UInt64(index) | (hasFile ? 0 : Self.noFileMask) }

    public func encode(into buffer: inout [UInt8]) {
        buffer.appendWire(value)
    }

    public var encodedSize: Int { Self.wireSize }
}
