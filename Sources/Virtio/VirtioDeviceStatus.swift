/// Virtio device status bits (`SET_STATUS` / `GET_STATUS`), from the virtio spec.
///
/// Thread-safety: constants only.
public enum VirtioDeviceStatus {
    /// The driver noticed the device.
    public static let acknowledge: UInt8 = 1
    /// The driver knows how to drive the device.
    public static let driver: UInt8 = 2
    /// The driver is set up and ready to drive the device.
    public static let driverOK: UInt8 = 4
    /// Feature negotiation is complete (the device clears it to refuse the features).
    public static let featuresOK: UInt8 = 8
    /// The device hit an error it cannot recover from without a reset.
    public static let needsReset: UInt8 = 64
    /// The driver gave up on the device.
    public static let failed: UInt8 = 128
}
