/// Feature bits carried by `GET/SET_FEATURES`: virtio transport bits (24-41), the vhost bits 26
/// and 30, and device-specific bits (0-23, 50-63) by raw value. The queues read
/// `ringIndirectDescriptors` and `ringEventIndex`; vhost-user negotiates the whole set.
///
/// Thread-safety: a value type; freely shareable.
public struct VirtioFeatures: OptionSet, Hashable, Sendable {
    public let rawValue: UInt64

    public init(rawValue: UInt64) {
        self.rawValue = rawValue
    }

    /// Creates the set with one device-specific (or any other) bit, `bit` < 64.
    public init(bit: Int) {
        self.init(rawValue: bit >= 0 && bit < 64 ? 1 << UInt64(bit) : 0)
    }

    /// Bit 24: `VIRTIO_F_NOTIFY_ON_EMPTY` (legacy).
    public static let notifyOnEmpty = VirtioFeatures(bit: 24)
    /// Bit 26: `VHOST_F_LOG_ALL`: the back-end can dirty-log; set by the front-end to start logging.
    public static let logAll = VirtioFeatures(bit: 26)
    /// Bit 27: `VIRTIO_F_ANY_LAYOUT` (legacy; implied by VERSION_1).
    public static let anyLayout = VirtioFeatures(bit: 27)
    /// Bit 28: `VIRTIO_RING_F_INDIRECT_DESC`.
    public static let ringIndirectDescriptors = VirtioFeatures(bit: 28)
    /// Bit 29: `VIRTIO_RING_F_EVENT_IDX`.
    public static let ringEventIndex = VirtioFeatures(bit: 29)
    /// Bit 30: `VHOST_USER_F_PROTOCOL_FEATURES`: the back-end speaks protocol features.
    public static let protocolFeatures = VirtioFeatures(bit: 30)
    /// Bit 32: `VIRTIO_F_VERSION_1`.
    public static let version1 = VirtioFeatures(bit: 32)
    /// Bit 33: `VIRTIO_F_ACCESS_PLATFORM` (addresses are IOVAs).
    public static let accessPlatform = VirtioFeatures(bit: 33)
    /// Bit 34: `VIRTIO_F_RING_PACKED`.
    public static let ringPacked = VirtioFeatures(bit: 34)
    /// Bit 35: `VIRTIO_F_IN_ORDER`.
    public static let inOrder = VirtioFeatures(bit: 35)
    /// Bit 36: `VIRTIO_F_ORDER_PLATFORM`.
    public static let orderPlatform = VirtioFeatures(bit: 36)
    /// Bit 37: `VIRTIO_F_SR_IOV` (PCI only).
    public static let singleRootIOV = VirtioFeatures(bit: 37)
    /// Bit 38: `VIRTIO_F_NOTIFICATION_DATA`.
    public static let notificationData = VirtioFeatures(bit: 38)
    /// Bit 39: `VIRTIO_F_NOTIF_CONFIG_DATA`.
    public static let notificationConfigData = VirtioFeatures(bit: 39)
    /// Bit 40: `VIRTIO_F_RING_RESET`.
    public static let ringReset = VirtioFeatures(bit: 40)
    /// Bit 41: `VIRTIO_F_ADMIN_VQ`.
    public static let adminVirtqueue = VirtioFeatures(bit: 41)
}
