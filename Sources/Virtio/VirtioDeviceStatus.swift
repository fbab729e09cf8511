/// The virtio device status byte (VIRTIO 1.2 §2.1 "Device Status Field"), as vhost-user carries
/// it in `SET_STATUS` / `GET_STATUS`.
///
/// Thread-safety: a value type.
public struct VirtioDeviceStatus: OptionSet, Hashable, Sendable, CustomStringConvertible {
    public let rawValue: UInt8
    public init(rawValue: UInt8) { self.rawValue = rawValue }

    /// 1: the driver noticed the device.
    public static let acknowledge = VirtioDeviceStatus(rawValue: 1)
    /// 2: the driver knows how to drive the device.
    public static let driver = VirtioDeviceStatus(rawValue: 2)
    /// 4: the driver is set up and ready to drive the device.
    public static let driverOK = VirtioDeviceStatus(rawValue: 4)
    /// 8: feature negotiation is complete (the device clears it to refuse the features).
    public static let featuresOK = VirtioDeviceStatus(rawValue: 8)
    /// 64: the device hit an error it cannot recover from without a reset.
    public static let needsReset = VirtioDeviceStatus(rawValue: 64)
    /// 128: the driver gave up on the device.
    public static let failed = VirtioDeviceStatus(rawValue: 128)

    /// Every bit the specification defines; the others are reserved.
    public static let defined: VirtioDeviceStatus = [
        .acknowledge, .driver, .driverOK, .featuresOK, .needsReset, .failed,
    ]

    public var description: String {
        let names: [(VirtioDeviceStatus, String)] = [
            (.acknowledge, "ACKNOWLEDGE"), (.driver, "DRIVER"), (.driverOK, "DRIVER_OK"),
            (.featuresOK, "FEATURES_OK"), (.needsReset, "DEVICE_NEEDS_RESET"), (.failed, "FAILED"),
        ]
        var parts = names.filter { contains($0.0) }.map(\.1)
        let reserved = rawValue & ~Self.defined.rawValue
        if reserved != 0 { parts.append("0x" + String(reserved, radix: 16)) }
        return parts.isEmpty ? "0" : parts.joined(separator: "|")
    }
}
