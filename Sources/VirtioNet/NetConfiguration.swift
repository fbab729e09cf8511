/// The device's `struct virtio_net_config` (VIRTIO 1.2 section 5.1.4): `mac` at 0, `status` le16
/// at 6, `max_virtqueue_pairs` le16 at 8, `mtu` le16 at 10. Fields past `mtu` (speed, duplex, RSS)
/// belong to features never offered, so the config space ends there.
///
/// Thread-safety: a value type, `Sendable`.
public struct NetConfiguration: Hashable, Sendable {
    /// Bytes of config space served.
    public static let size = 12
    /// `VIRTIO_NET_S_LINK_UP`.
    public static let linkUp: UInt16 = 1

    /// The device's MAC address (`mac`; changed by `VIRTIO_NET_CTRL_MAC_ADDR_SET`).
    public var mac: MacAddress
    /// `status`: link up unless set otherwise.
    public var status: UInt16
    /// `max_virtqueue_pairs` (1...0x8000).
    public var maxQueuePairs: UInt16
    /// `mtu`: the largest packet (without Ethernet header) the driver should send.
    public var mtu: UInt16

    public init(
        mac: MacAddress, maxQueuePairs: UInt16 = 1, mtu: UInt16 = 1500, status: UInt16 = NetConfiguration.linkUp
    ) {
        self.mac = mac
        self.status = status
        self.maxQueuePairs = max(1, maxQueuePairs)
        self.mtu = mtu
    }

    /// Copies config bytes `[offset, offset + buffer.count)` into `buffer`.
    ///
    /// - Returns: false (nothing copied) unless the range lies within `NetConfiguration.size`.
    @discardableResult
    public func read(offset: Int, into buffer: UnsafeMutableRawBufferPointer) -> Bool {
        guard offset >= 0, offset <= Self.size, buffer.count <= Self.size - offset else { return false }
        var encoded: (UInt64, UInt32) = (0, 0)
        withUnsafeMutableBytes(of: &encoded) { raw in
            mac.store(to: raw, at: 0)
            raw.storeBytes(of: status.littleEndian, toByteOffset: 6, as: UInt16.self)
            raw.storeBytes(of: maxQueuePairs.littleEndian, toByteOffset: 8, as: UInt16.self)
            raw.storeBytes(of: mtu.littleEndian, toByteOffset: 10, as: UInt16.self)
            if !buffer.isEmpty {
                buffer.copyMemory(from: UnsafeRawBufferPointer(rebasing: raw[offset..<offset + buffer.count]))
            }
        }
        return true
    }
}
