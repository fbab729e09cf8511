/// vhost-user protocol feature bits (`GET/SET_PROTOCOL_FEATURES`, bits 0-19 of the vhost-user
/// specification's "Protocol features" section).
///
/// Only usable once `VirtioFeatures.protocolFeatures` (bit 30) was offered. Unknown bits are kept
/// in `rawValue`; a back-end must never offer bits it does not implement.
/// Thread-safety: a value type; freely shareable.
public struct ProtocolFeatures: OptionSet, Hashable, Sendable {
    public let rawValue: UInt64

    public init(rawValue: UInt64) {
        self.rawValue = rawValue
    }

    /// Bit 0: `GET_QUEUE_NUM`.
    public static let multiqueue = ProtocolFeatures(rawValue: 1 << 0)
    /// Bit 1: the log bitmap comes as an fd with `SET_LOG_BASE`.
    public static let logSharedMemory = ProtocolFeatures(rawValue: 1 << 1)
    /// Bit 2: `SEND_RARP`.
    public static let rarp = ProtocolFeatures(rawValue: 1 << 2)
    /// Bit 3: `NEED_REPLY` is honoured on every request.
    public static let replyAck = ProtocolFeatures(rawValue: 1 << 3)
    /// Bit 4: `NET_SET_MTU` (`MTU` in the document).
    public static let netMTU = ProtocolFeatures(rawValue: 1 << 4)
    /// Bit 5: the back-end channel (`SET_BACKEND_REQ_FD`).
    public static let backendRequest = ProtocolFeatures(rawValue: 1 << 5)
    /// Bit 6: `SET_VRING_ENDIAN` for legacy guests.
    public static let crossEndian = ProtocolFeatures(rawValue: 1 << 6)
    /// Bit 7: crypto session messages.
    public static let cryptoSession = ProtocolFeatures(rawValue: 1 << 7)
    /// Bit 8: postcopy messages 28-30.
    public static let pagefault = ProtocolFeatures(rawValue: 1 << 8)
    /// Bit 9: `GET/SET_CONFIG` and `BACKEND_CONFIG_CHANGE_MSG`.
    public static let config = ProtocolFeatures(rawValue: 1 << 9)
    /// Bit 10: the back-end may attach fds on the back-end channel.
    public static let backendSendFD = ProtocolFeatures(rawValue: 1 << 10)
    /// Bit 11: `BACKEND_VRING_HOST_NOTIFIER_MSG`.
    public static let hostNotifier = ProtocolFeatures(rawValue: 1 << 11)
    /// Bit 12: `GET/SET_INFLIGHT_FD`.
    public static let inflightSharedMemory = ProtocolFeatures(rawValue: 1 << 12)
    /// Bit 13: `RESET_DEVICE`.
    public static let resetDevice = ProtocolFeatures(rawValue: 1 << 13)
    /// Bit 14: `VRING_KICK`, `BACKEND_VRING_CALL/ERR` (needs bits 3 and 5 too).
    public static let inbandNotifications = ProtocolFeatures(rawValue: 1 << 14)
    /// Bit 15: `GET_MAX_MEM_SLOTS`, `ADD/REM_MEM_REG`.
    public static let configureMemorySlots = ProtocolFeatures(rawValue: 1 << 15)
    /// Bit 16: `SET/GET_STATUS`.
    public static let status = ProtocolFeatures(rawValue: 1 << 16)
    /// Bit 17: 40-byte memory regions with Xen flags (not supported by this codec).
    public static let xenMmap = ProtocolFeatures(rawValue: 1 << 17)
    /// Bit 18: `GET_SHARED_OBJECT`, back-end `SHARED_OBJECT_*`.
    public static let sharedObject = ProtocolFeatures(rawValue: 1 << 18)
    /// Bit 19: `SET_DEVICE_STATE_FD`, `CHECK_DEVICE_STATE`.
    public static let deviceState = ProtocolFeatures(rawValue: 1 << 19)

    /// Every bit defined by the vhost-user document (0-19).
    public static let known = ProtocolFeatures(rawValue: (1 << 20) - 1)
}
