/// The `GET/SET_INFLIGHT_FD` payload (24 bytes: 20 of fields, 4 of tail padding, as QEMU and
/// libvhost-user send it).
///
/// Thread-safety: a value type; freely shareable.
public struct InflightDescription: WirePayload {
    /// Bytes on the wire.
    public static let wireSize = 24

    /// `mmap_size`: bytes of the inflight buffer; 0 = none (offset 0).
    public var mmapSize: UInt64
    /// `mmap_offset` into the fd (offset 8).
    public var mmapOffset: UInt64
    /// `num_queues` (offset 16).
    public var queueCount: UInt16
    /// `queue_size` (offset 18).
    public var queueSize: UInt16

    /// Creates the payload from its fields.
    public init(mmapSize: UInt64, mmapOffset: UInt64, queueCount: UInt16, queueSize: UInt16) {
        self.mmapSize = mmapSize
        self.mmapOffset = mmapOffset
        self.queueCount = queueCount
        self.queueSize = queueSize
    }

    public init(decoding bytes: UnsafeRawBufferPointer, for request: AnyRequest) throws(ProtocolError) {
        try Self.requireSize(bytes, Self.wireSize, request)
        var reader = WireReader(bytes)
        mmapSize = reader.read()
        mmapOffset = reader.read()
        queueCount = reader.read()
        queueSize = reader.read()
    }

    public func encode(into buffer: inout [UInt8]) {
        buffer.appendWire(mmapSize)
        buffer.appendWire(mmapOffset)
        buffer.appendWire(queueCount)
        buffer.appendWire(queueSize)
        buffer.appendPadding(4)
    }

    public var encodedSize: Int { Self.wireSize }
}
