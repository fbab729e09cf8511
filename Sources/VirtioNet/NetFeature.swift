/// virtio-net feature bits (VIRTIO 1.2 section 5.1.3), as bits of the 64-bit feature word.
///
/// Thread-safety: constants.
public enum NetFeature {
    /// Bit 0 `VIRTIO_NET_F_CSUM`: the device takes packets with a partial checksum (NEEDS_CSUM).
    public static let checksum: UInt64 = 1 << 0
    /// Bit 1 `VIRTIO_NET_F_GUEST_CSUM`: the driver takes packets with a partial checksum.
    public static let guestChecksum: UInt64 = 1 << 1
    /// Bit 3 `VIRTIO_NET_F_MTU`: the `mtu` config field is valid.
    public static let mtu: UInt64 = 1 << 3
    /// Bit 5 `VIRTIO_NET_F_MAC`: the `mac` config field is valid.
    public static let mac: UInt64 = 1 << 5
    /// Bit 7 `VIRTIO_NET_F_GUEST_TSO4`: the driver takes TCPv4 segmentation-offloaded packets.
    public static let guestTSO4: UInt64 = 1 << 7
    /// Bit 8 `VIRTIO_NET_F_GUEST_TSO6`.
    public static let guestTSO6: UInt64 = 1 << 8
    /// Bit 9 `VIRTIO_NET_F_GUEST_ECN`: GSO packets with ECN.
    public static let guestECN: UInt64 = 1 << 9
    /// Bit 11 `VIRTIO_NET_F_HOST_TSO4`: the device takes TCPv4 GSO packets.
    public static let hostTSO4: UInt64 = 1 << 11
    /// Bit 12 `VIRTIO_NET_F_HOST_TSO6`.
    public static let hostTSO6: UInt64 = 1 << 12
    /// Bit 13 `VIRTIO_NET_F_HOST_ECN`.
    public static let hostECN: UInt64 = 1 << 13
    /// Bit 15 `VIRTIO_NET_F_MRG_RXBUF`: a received packet may span several buffers (`num_buffers`).
    public static let mergeableRxBuffers: UInt64 = 1 << 15
    /// Bit 16 `VIRTIO_NET_F_STATUS`: the `status` config field is valid.
    public static let status: UInt64 = 1 << 16
    /// Bit 17 `VIRTIO_NET_F_CTRL_VQ`: there is a control queue.
    public static let controlQueue: UInt64 = 1 << 17
    /// Bit 18 `VIRTIO_NET_F_CTRL_RX`: receive-mode control commands (promiscuous, all-multicast).
    public static let controlReceiveMode: UInt64 = 1 << 18
    /// Bit 20 `VIRTIO_NET_F_CTRL_RX_EXTRA`: the extra receive-mode commands (all-unicast, no-broadcast...).
    public static let controlReceiveExtra: UInt64 = 1 << 20
    /// Bit 21 `VIRTIO_NET_F_GUEST_ANNOUNCE`: the driver announces itself (a gratuitous ARP) when
    /// the device sets `VIRTIO_NET_S_ANNOUNCE`, e.g. after a live migration, and acknowledges with
    /// `VIRTIO_NET_CTRL_ANNOUNCE_ACK` (section 5.1.6.5.4).
    public static let guestAnnounce: UInt64 = 1 << 21
    /// Bit 22 `VIRTIO_NET_F_MQ`: several queue pairs, selected with `VIRTIO_NET_CTRL_MQ`.
    public static let multiQueue: UInt64 = 1 << 22
    /// Bit 23 `VIRTIO_NET_F_CTRL_MAC_ADDR`: the MAC address can be set through the control queue.
    public static let controlMACAddress: UInt64 = 1 << 23
    /// Bit 32 (transport) `VIRTIO_F_VERSION_1`: modern device, 12-byte header.
    public static let version1: UInt64 = 1 << 32
    /// Bit 34 (transport) `VIRTIO_F_RING_PACKED`.
    public static let ringPacked: UInt64 = 1 << 34
    /// Bit 35 (transport) `VIRTIO_F_IN_ORDER`: the device uses buffers in the order they were
    /// made available (VIRTIO 1.2 section 2.7.9 / 2.8.23); the driver may then skip its free-list
    /// bookkeeping.
    public static let inOrder: UInt64 = 1 << 35

    /// The receive-side offloads (GUEST_*): what a port may hand the driver partially checksummed
    /// or unsegmented.
    public static let guestOffloads: UInt64 = guestChecksum | guestTSO4 | guestTSO6 | guestECN
    /// The transmit-side offloads (CSUM, HOST_*): what the driver may hand the device.
    public static let hostOffloads: UInt64 = checksum | hostTSO4 | hostTSO6 | hostECN
}
