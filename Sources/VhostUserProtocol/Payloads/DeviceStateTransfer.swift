/// The `SET_DEVICE_STATE_FD` payload (8 bytes): transfer direction and migration phase.
///
/// Raw values are kept so the session can refuse undefined ones; the typed views return nil then.
/// Thread-safety: a value type; freely shareable.
public struct DeviceStateTransfer: WirePayload {
    /// Bytes on the wire.
    public static let wireSize = 8

    /// Which way the state flows.
    public enum Direction: UInt32, Sendable {
        /// Back-end → front-end (migration source).
        case save = 0
        /// Front-end → back-end (migration destination).
        case load = 1
    }

    /// Migration phase; only "stopped" is defined.
    public enum Phase: UInt32, Sendable {
        /// VM stopped, device suspended.
        case stopped = 0
    }

    /// `direction` (offset 0).
    public var direction: UInt32
    /// `phase` (offset 4).
    public var phase: UInt32

    /// Creates the payload from its fields.
    public init(direction: UInt32, phase: UInt32) {
        self.direction = direction
        self.phase = phase
    }

    /// Creates the payload from its fields.
    public init(direction: Direction, phase: Phase = .stopped) {
        self.init(direction: direction.rawValue, phase: phase.rawValue)
    }

    public init(decoding bytes: UnsafeRawBufferPointer, for request: AnyRequest) throws(ProtocolError) {
        try Self.requireSize(bytes, Self.wireSize, request)
        var reader = WireReader(bytes)
        direction = reader.read()
        phase = reader.read()
    }

    /// `direction` if defined.
    public var transferDirection: Direction? { Direction(rawValue: direction) }
    /// `phase` if defined.
    public var transferPhase: Phase? { Phase(rawValue: phase) }

    public func encode(into buffer: inout [UInt8]) {
        buffer.appendWire(direction)
        buffer.appendWire(phase)
    }

    public var encodedSize: Int { Self.wireSize }
}
