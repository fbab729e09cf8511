/// `struct vhost_vring_addr` (40 bytes): where a ring lives, as front-end user addresses (or IOVAs
/// with ACCESS_PLATFORM). Note the wire order: descriptors, used, available, log.
///
/// Thread-safety: a value type; freely shareable.
public struct VringAddress: WirePayload {
    /// Bytes on the wire.
    public static let wireSize = 40

    /// `flags` bits of a ring address.
    public struct Flags: OptionSet, Hashable, Sendable {
        public let rawValue: UInt32
        public init(rawValue: UInt32) { self.rawValue = rawValue }
        /// `VHOST_VRING_F_LOG`: log writes to the used ring (the vhost-user specification's
        /// "Migration" section).
        public static let log = Flags(rawValue: 0x1)
    }

    /// The ring index (offset 0).
    public var index: UInt32
    /// Flags (offset 4); unknown bits are kept for the session to judge.
    public var flags: Flags
    /// Descriptor table (split) or descriptor ring (packed) (offset 8).
    public var descriptorTable: UInt64
    /// Used ring (split) or device event-suppression area (packed) (offset 16).
    public var usedRing: UInt64
    /// Available ring (split) or driver event-suppression area (packed) (offset 24).
    public var availableRing: UInt64
    /// Guest-physical address for used-ring dirty logging (offset 32).
    public var logGuestAddress: UInt64

    /// Creates the payload from its fields.
    public init(
        index: UInt32, flags: Flags = [], descriptorTable: UInt64, usedRing: UInt64,
        availableRing: UInt64, logGuestAddress: UInt64 = 0
    ) {
        self.index = index
        self.flags = flags
        self.descriptorTable = descriptorTable
        self.usedRing = usedRing
        self.availableRing = availableRing
        self.logGuestAddress = logGuestAddress
    }

    public init(decoding bytes: UnsafeRawBufferPointer, for request: AnyRequest) throws(ProtocolError) {
        try Self.requireSize(bytes, Self.wireSize, request)
        var reader = WireReader(bytes)
        index = reader.read()
        flags = Flags(rawValue: reader.read())
        descriptorTable = reader.read()
        usedRing = reader.read()
        availableRing = reader.read()
        logGuestAddress = reader.read()
    }

    public func encode(into buffer: inout [UInt8]) {
        buffer.appendWire(index)
        buffer.appendWire(flags.rawValue)
        buffer.appendWire(descriptorTable)
        buffer.appendWire(usedRing)
        buffer.appendWire(availableRing)
        buffer.appendWire(logGuestAddress)
    }

    public var encodedSize: Int { Self.wireSize }
}
