/// A virtio device ID (VIRTIO spec "Device Types"). vhost-user never carries it on the wire: the
/// front-end's device model picks the type; a back-end states it for logs and capabilities.
///
/// Thread-safety: a value type; freely shareable.
public struct VirtioDeviceType: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    public let rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }

    // The device IDs of VIRTIO 1.2 §5 "Device Types".

    public static let network = VirtioDeviceType(rawValue: 1)
    public static let block = VirtioDeviceType(rawValue: 2)
    public static let console = VirtioDeviceType(rawValue: 3)
    public static let entropy = VirtioDeviceType(rawValue: 4)
    public static let balloon = VirtioDeviceType(rawValue: 5)
    public static let scsi = VirtioDeviceType(rawValue: 8)
    public static let ninePTransport = VirtioDeviceType(rawValue: 9)
    public static let gpu = VirtioDeviceType(rawValue: 16)
    public static let input = VirtioDeviceType(rawValue: 18)
    public static let socket = VirtioDeviceType(rawValue: 19)
    public static let crypto = VirtioDeviceType(rawValue: 20)
    public static let sound = VirtioDeviceType(rawValue: 25)
    public static let fileSystem = VirtioDeviceType(rawValue: 26)
    public static let i2c = VirtioDeviceType(rawValue: 34)
    public static let gpio = VirtioDeviceType(rawValue: 41)

    /// The backend type name of QEMU's `vhost-user.json` schema (`--print-capabilities`), or nil
    /// for a type the schema does not list.
    public var capabilityTypeName: String? {
        switch rawValue {
        case 1: "net"
        case 2: "block"
        case 3: "console"
        case 4: "rng"
        case 5: "balloon"
        case 8: "scsi"
        case 9: "9p"
        case 16: "gpu"
        case 18: "input"
        case 19: "vsock"
        case 20: "crypto"
        case 26: "fs"
        default: nil
        }
    }

    public var description: String { capabilityTypeName ?? "virtio device \(rawValue)" }
}
