import Virtio

/// The device state the control queue changes: the receive filter and the queue pairs in use.
///
/// Thread-safety: a value type; the device guards the one it shares between threads.
public struct NetControlState: Hashable, Sendable {
    /// What the driver's receive filter lets through.
    public var filter: ReceiveFilter
    /// Queue pairs the driver uses (`VIRTIO_NET_CTRL_MQ_VQ_PAIRS_SET`; 1 until then, per VIRTIO 1.2
    /// section 5.1.6.5.5: only the first pair is used until the driver sets more).
    public private(set) var activeQueuePairs: UInt16 = 1
    /// `max_virtqueue_pairs`.
    public let maxQueuePairs: UInt16

    public init(mac: MacAddress, maxQueuePairs: UInt16) {
        filter = ReceiveFilter(mac: mac)
        self.maxQueuePairs = max(1, maxQueuePairs)
    }

    /// Applies `command` if the driver negotiated what it needs (`features`) and its values are in
    /// range; returns the ack to write: `ControlCommand.ackOK` or `.ackError` (state unchanged).
    public mutating func apply(_ command: ControlCommand, features: UInt64) -> UInt8 {
        func has(_ feature: UInt64) -> Bool { features & feature == feature }
        switch command {
        case .receiveMode(let mode, let on):
            guard has(NetFeature.controlQueue | mode.requiredFeature) else { return ControlCommand.ackError }
            filter.set(mode, on)
        case .macTable(let unicast, let multicast):
            guard has(NetFeature.controlQueue | NetFeature.controlReceiveMode) else { return ControlCommand.ackError }
            filter.setTables(unicast: unicast, multicast: multicast)
        case .macAddress(let mac):
            // A group address cannot be a station's own.
            guard has(NetFeature.controlQueue | NetFeature.controlMACAddress), !mac.isMulticast else {
                return ControlCommand.ackError
            }
            filter.mac = mac
        case .queuePairs(let pairs):
            // Section 5.1.6.5.5: 1 <= virtqueue_pairs <= max_virtqueue_pairs.
            guard has(NetFeature.controlQueue | NetFeature.multiQueue), pairs >= 1, pairs <= maxQueuePairs else {
                return ControlCommand.ackError
            }
            activeQueuePairs = pairs
        case .announceAck:
            // Section 5.1.6.5.4: the acknowledgement clears VIRTIO_NET_S_ANNOUNCE. A front-end
            // that announces a migrated guest (QEMU) owns the status field and clears it itself;
            // here there is nothing to clear, only the negotiation to check.
            guard has(NetFeature.controlQueue | NetFeature.guestAnnounce) else { return ControlCommand.ackError }
        case .unsupported, .malformed:
            return ControlCommand.ackError
        }
        return ControlCommand.ackOK
    }

    /// Back to the state after reset (the driver's address choice is forgotten: `mac`).
    public mutating func reset(mac: MacAddress) {
        self = NetControlState(mac: mac, maxQueuePairs: maxQueuePairs)
    }

    /// Answers one control-queue chain: reads the command (at most `ControlCommand.maximumLength`
    /// bytes, copied out of guest memory into `scratch` before parsing), applies it, and writes the
    /// one-byte ack into the first writable byte. A command longer than the scratch buffer, shorter
    /// than its header, unknown or not negotiated is answered `VIRTIO_NET_ERR`; a chain with no
    /// writable byte cannot be answered and is completed with length 0.
    ///
    /// - Returns: the ack written (nil when there was no writable byte) and the bytes written.
    /// - Throws: a `VirtqueueError` if the guest rewrote the chain since it was popped.
    public mutating func answer(_ chain: Chain, features: UInt64, scratch: UnsafeMutableRawBufferPointer)
        throws(VirtqueueError) -> (ack: UInt8?, written: UInt32)
    {
        let length = Int(chain.readableLength)
        var ack = ControlCommand.ackError
        if length <= scratch.count {
            let copied = try chain.readReadable(into: UnsafeMutableRawBufferPointer(rebasing: scratch[..<length]))
            if let command = ControlCommand(UnsafeRawBufferPointer(rebasing: scratch[..<copied])) {
                ack = apply(command, features: features)
            }
        }
        guard chain.writableLength >= 1 else { return (nil, 0) }
        let written = try withUnsafeBytes(of: ack) { bytes throws(VirtqueueError) in try chain.writeWritable(bytes) }
        return (ack, UInt32(written))
    }
}
