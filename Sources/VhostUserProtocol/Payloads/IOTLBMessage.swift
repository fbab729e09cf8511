/// `struct vhost_iotlb_msg` (32 bytes on the wire: 26 bytes of fields, 6 of padding): an IOTLB
/// miss, update, invalidate or access failure (ACCESS_PLATFORM only).
///
/// `permissions` and `type` are kept raw so unknown values reach the session, which refuses them;
/// the typed views return nil for values the protocol does not define.
/// Thread-safety: a value type; freely shareable.
public struct IOTLBMessage: WirePayload {
    /// Bytes on the wire.
    public static let wireSize = 32

    /// Access permissions (`perm`).
    public enum Permission: UInt8, Sendable {
        case none = 0, readOnly = 1, writeOnly = 2, readWrite = 3
    }

    /// Message type (`type`).
    public enum Kind: UInt8, Sendable {
        case miss = 1, update = 2, invalidate = 3, accessFail = 4
    }

    /// I/O virtual address (offset 0).
    public var iova: UInt64
    /// Length of the range (offset 8).
    public var size: UInt64
    /// Front-end user address the range maps to (offset 16).
    public var userAddress: UInt64
    /// `perm` (offset 24).
    public var permissions: UInt8
    /// `type` (offset 25).
    public var type: UInt8

    /// Creates the payload from its fields.
    public init(iova: UInt64, size: UInt64, userAddress: UInt64, permissions: UInt8, type: UInt8) {
        self.iova = iova
        self.size = size
        self.userAddress = userAddress
        self.permissions = permissions
        self.type = type
    }

    public init(decoding bytes: UnsafeRawBufferPointer, for request: AnyRequest) throws(ProtocolError) {
        try Self.requireSize(bytes, Self.wireSize, request)
        var reader = WireReader(bytes)
        iova = reader.read()
        size = reader.read()
        userAddress = reader.read()
        permissions = reader.read()
        type = reader.read()
    }

    /// `permissions` if defined.
    public var permission: Permission? { Permission(rawValue: permissions) }
    /// `type` if defined.
    public var kind: Kind? { Kind(rawValue: type) }

    public func encode(into buffer: inout [UInt8]) {
        buffer.appendWire(iova)
        buffer.appendWire(size)
        buffer.appendWire(userAddress)
        buffer.appendWire(permissions)
        buffer.appendWire(type)
        buffer.appendPadding(6)
    }

    public var encodedSize: Int { Self.wireSize }
}
