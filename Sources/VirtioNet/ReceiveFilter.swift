/// The driver's receive filter (VIRTIO 1.2 section 5.1.6.5.1-2): the receive modes and MAC
/// tables set through the control queue, and the device's own address. Filtering is best effort in
/// the spec; this one is exact, as QEMU's is: a table too large to hold accepts every address of
/// its kind instead.
///
/// Thread-safety: a value type.
public struct ReceiveFilter: Hashable, Sendable {
    /// The device's address (config `mac`, or `VIRTIO_NET_CTRL_MAC_ADDR_SET`).
    public var mac: MacAddress
    /// On by default, as in QEMU: a driver that never sends receive-mode commands sees everything.
    public var promiscuous = true
    public var allMulticast = false
    public var allUnicast = false
    public var noMulticast = false
    public var noUnicast = false
    public var noBroadcast = false
    public private(set) var unicast: [MacAddress] = []
    public private(set) var multicast: [MacAddress] = []
    /// A table had more than `ControlCommand.macTableCapacity` entries: accept its whole kind.
    public private(set) var unicastOverflow = false
    public private(set) var multicastOverflow = false

    public init(mac: MacAddress) { self.mac = mac }

    /// Sets `mode` on or off.
    public mutating func set(_ mode: ReceiveMode, _ on: Bool) {
        switch mode {
        case .promiscuous: promiscuous = on
        case .allMulticast: allMulticast = on
        case .allUnicast: allUnicast = on
        case .noMulticast: noMulticast = on
        case .noUnicast: noUnicast = on
        case .noBroadcast: noBroadcast = on
        }
    }

    /// Replaces the MAC tables.
    public mutating func setTables(unicast: [MacAddress], multicast: [MacAddress]) {
        let capacity = ControlCommand.macTableCapacity
        unicastOverflow = unicast.count > capacity
        multicastOverflow = multicast.count > capacity
        self.unicast = unicastOverflow ? [] : unicast
        self.multicast = multicastOverflow ? [] : multicast
    }

    /// Whether a frame sent to `destination` reaches the driver.
    @inlinable
    public func accepts(_ destination: MacAddress) -> Bool {
        if promiscuous { return true }
        if destination.isBroadcast { return !noBroadcast }
        if destination.isMulticast {
            if noMulticast { return false }
            return allMulticast || multicastOverflow || multicast.contains(destination)
        }
        if noUnicast { return false }
        return destination == mac || allUnicast || unicastOverflow || unicast.contains(destination)
    }
}
