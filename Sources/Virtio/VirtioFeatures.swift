/// Virtio (and vhost-user) feature bits as carried in `GET/SET_FEATURES` (one 64-bit word).
///
/// Thread-safety: a value type, `Sendable`.
public struct VirtioFeatures: OptionSet, Hashable, Sendable {
    public var rawValue: UInt64
    public init(rawValue: UInt64) { self.rawValue = rawValue }

    /// Bit 24: notify when the available ring runs empty even if notifications are suppressed (legacy).
    public static let notifyOnEmpty = VirtioFeatures(rawValue: 1 << 24)
    /// Bit 26 (vhost): the back-end can log dirty memory.
    public static let logAll = VirtioFeatures(rawValue: 1 << 26)
    /// Bit 27: no framing assumptions (legacy; implied by `version1`).
    public static let anyLayout = VirtioFeatures(rawValue: 1 << 27)
    /// Bit 28: indirect descriptor tables.
    public static let indirectDescriptors = VirtioFeatures(rawValue: 1 << 28)
    /// Bit 29: `used_event` / `avail_event` (split) or DESC event suppression (packed).
    public static let eventIndex = VirtioFeatures(rawValue: 1 << 29)
    /// Bit 30 (vhost-user): `GET/SET_PROTOCOL_FEATURES` are supported. Never seen by the guest.
    public static let protocolFeatures = VirtioFeatures(rawValue: 1 << 30)
    /// Bit 32: virtio 1.0 or later (little-endian rings).
    public static let version1 = VirtioFeatures(rawValue: 1 << 32)
    /// Bit 33: addresses are IOVAs translated by an IOMMU.
    public static let accessPlatform = VirtioFeatures(rawValue: 1 << 33)
    /// Bit 34: packed virtqueue layout.
    public static let ringPacked = VirtioFeatures(rawValue: 1 << 34)
    /// Bit 35: buffers are used in the order they were made available.
    public static let inOrder = VirtioFeatures(rawValue: 1 << 35)
    /// Bit 36: hardware-grade memory barriers (not needed by software devices).
    public static let orderPlatform = VirtioFeatures(rawValue: 1 << 36)
}
