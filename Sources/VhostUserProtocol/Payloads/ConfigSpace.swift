/// The `GET/SET_CONFIG` payload: `offset`, `size`, `flags` (u32 each), then `size` bytes of device
/// config space. The message size must be exactly 12 + size, and size at most 256.
///
/// For `GET_CONFIG` requests the bytes are placeholders (QEMU sends zeros); the reply carries the
/// config. `flags` 0 is a guest write, 1 a migration write; other values are left to the session.
/// Thread-safety: a value type; freely shareable.
public struct ConfigSpace: WirePayload {
    /// Bytes before the config data.
    public static let headerSize = 12
    /// `VHOST_USER_MAX_CONFIG_SIZE`.
    public static let maximumDataSize = 256

    /// Offset into the device config space.
    public var offset: UInt32
    /// 0 = front-end (guest) write, 1 = live migration.
    public var flags: UInt32
    /// The config bytes (little-endian virtio layout); the wire `size` is their count.
    public var data: [UInt8]

    /// Creates the payload from its fields.
    public init(offset: UInt32, flags: UInt32 = 0, data: [UInt8]) {
        self.offset = offset
        self.flags = flags
        self.data = data
    }

    /// - Throws: `payloadTooSmall` under 12 bytes; `configSizeMismatch` when `size` exceeds 256 or
    ///   differs from the bytes that follow.
    public init(decoding bytes: UnsafeRawBufferPointer, for request: AnyRequest) throws(ProtocolError) {
        guard bytes.count >= Self.headerSize else {
            throw .payloadTooSmall(request: request, size: bytes.count, minimum: Self.headerSize)
        }
        var reader = WireReader(bytes)
        offset = reader.read()
        let size: UInt32 = reader.read()
        flags = reader.read()
        guard size <= UInt32(Self.maximumDataSize), Int(size) == bytes.count - Self.headerSize else {
            throw .configSizeMismatch(request: request, configSize: size, payloadSize: bytes.count)
        }
        data = Array(bytes[Self.headerSize...])
    }

    public func encode(into buffer: inout [UInt8]) {
        buffer.appendWire(offset)
        buffer.appendWire(UInt32(truncatingIfNeeded: data.count))
        buffer.appendWire(flags)
        buffer.append(contentsOf: data)
    }

    public var encodedSize: Int { Self.headerSize + data.count }
}
