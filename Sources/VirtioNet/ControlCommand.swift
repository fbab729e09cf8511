/// One command from the control queue (VIRTIO 1.2 section 5.1.6.5): `u8 class, u8 command`, the
/// command's data, then (in the device-writable part) the `u8 ack` the device answers.
///
/// Thread-safety: a value type, `Sendable`.
public enum ControlCommand: Hashable, Sendable {
    /// Class 0 `VIRTIO_NET_CTRL_RX`: switch a receive mode on or off.
    case receiveMode(ReceiveMode, on: Bool)
    /// Class 1 command 0 `VIRTIO_NET_CTRL_MAC_TABLE_SET`: the unicast and multicast filter tables.
    case macTable(unicast: [MacAddress], multicast: [MacAddress])
    /// Class 1 command 1 `VIRTIO_NET_CTRL_MAC_ADDR_SET`: the device's own address.
    case macAddress(MacAddress)
    /// Class 3 command 0 `VIRTIO_NET_CTRL_ANNOUNCE_ACK`.
    case announceAck
    /// Class 4 command 0 `VIRTIO_NET_CTRL_MQ_VQ_PAIRS_SET`: use this many queue pairs.
    case queuePairs(UInt16)
    /// A well-formed header naming a class or command this device does not implement.
    case unsupported(class: UInt8, command: UInt8)
    /// A known command whose data is too short, too long or inconsistent.
    case malformed(class: UInt8, command: UInt8)

    /// Class numbers.
    public static let classReceive: UInt8 = 0
    public static let classMAC: UInt8 = 1
    public static let classAnnounce: UInt8 = 3
    public static let classMultiQueue: UInt8 = 4

    /// `VIRTIO_NET_OK` / `VIRTIO_NET_ERR`.
    public static let ackOK: UInt8 = 0
    public static let ackError: UInt8 = 1

    /// The most entries a MAC table command may carry per table before the rest is summarised as
    /// "overflow" (accept all of that kind), like QEMU's 64-entry table.
    public static let macTableCapacity = 64
    /// The longest command read from a chain: header plus two full tables with room to spare.
    /// Longer commands are refused as malformed.
    public static let maximumLength = 2 + 2 * (4 + 6 * 1024)

    /// Parses the readable part of a control chain (copied out of guest memory), `bytes`.
    ///
    /// - Returns: nil when `bytes` holds less than the 2-byte class/command header.
    public init?(_ bytes: UnsafeRawBufferPointer) {
        guard bytes.count >= 2 else { return nil }
        let commandClass = bytes[0], command = bytes[1]
        let data = UnsafeRawBufferPointer(rebasing: bytes[2...])
        switch (commandClass, command) {
        case (Self.classReceive, _):
            guard let mode = ReceiveMode(rawValue: command) else {
                self = .unsupported(class: commandClass, command: command)
                return
            }
            guard data.count == 1 else {
                self = .malformed(class: commandClass, command: command)
                return
            }
            self = .receiveMode(mode, on: data[0] != 0)
        case (Self.classMAC, 0):
            self = Self.parseTables(data) ?? .malformed(class: commandClass, command: command)
        case (Self.classMAC, 1):
            guard data.count == 6, let mac = MacAddress(bytes: data) else {
                self = .malformed(class: commandClass, command: command)
                return
            }
            self = .macAddress(mac)
        case (Self.classAnnounce, 0):
            self = data.isEmpty ? .announceAck : .malformed(class: commandClass, command: command)
        case (Self.classMultiQueue, 0):
            guard data.count == 2 else {
                self = .malformed(class: commandClass, command: command)
                return
            }
            self = .queuePairs(UInt16(littleEndian: data.loadUnaligned(as: UInt16.self)))
        default:
            self = .unsupported(class: commandClass, command: command)
        }
    }

    /// Two `struct virtio_net_ctrl_mac { le32 entries; u8 macs[entries][6]; }`, back to back and
    /// filling `data` exactly. Entries beyond `macTableCapacity` are kept (the caller decides).
    private static func parseTables(_ data: UnsafeRawBufferPointer) -> ControlCommand? {
        var offset = 0
        func table() -> [MacAddress]? {
            guard data.count - offset >= 4 else { return nil }
            let entries = Int(UInt32(littleEndian: data.loadUnaligned(fromByteOffset: offset, as: UInt32.self)))
            offset += 4
            guard entries <= (data.count - offset) / 6 else { return nil }
            var macs: [MacAddress] = []
            macs.reserveCapacity(entries)
            for _ in 0..<entries {
                guard let mac = MacAddress.load(from: data, at: offset) else { return nil }
                macs.append(mac)
                offset += 6
            }
            return macs
        }
        guard let unicast = table(), let multicast = table(), offset == data.count else { return nil }
        return .macTable(unicast: unicast, multicast: multicast)
    }
}

/// The `VIRTIO_NET_CTRL_RX` commands.
///
/// Thread-safety: a value type.
public enum ReceiveMode: UInt8, Hashable, Sendable, CaseIterable {
    case promiscuous = 0
    case allMulticast = 1
    case allUnicast = 2
    case noMulticast = 3
    case noUnicast = 4
    case noBroadcast = 5

    /// The feature that makes the command valid: CTRL_RX for the first two, CTRL_RX_EXTRA else.
    public var requiredFeature: UInt64 {
        rawValue <= 1 ? NetFeature.controlReceiveMode : NetFeature.controlReceiveExtra
    }
}
