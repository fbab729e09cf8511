#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import Virtio

/// What `--print-capabilities` prints (vhost-user specification, "Backend program conventions"):
/// `{"features":[...],"type":"..."}`, the device type's name as QEMU knows it and the program's
/// optional features (e.g. blk's `read-only`, `blk-file`).
///
/// Thread-safety: a value type.
public struct VhostUserCapabilities: Codable, Equatable, Sendable {
    /// The device type name, e.g. `block`, `net`, `rng` (QEMU's names; a number for a type it has
    /// no name for).
    public var type: String
    /// Optional features of the program.
    public var features: [String]

    /// The capabilities of a `deviceType` program with `features`.
    public init(deviceType: VirtioDeviceType, features: [String] = []) {
        type = deviceType.capabilityTypeName ?? "\(deviceType.rawValue)"
        self.features = features
    }

    /// The JSON text (one line, keys sorted so the output is the same every run).
    ///
    /// - Throws: `EncodingError` (never for these two fields).
    public func json() throws -> String {
        String(decoding: try programJSONEncoder().encode(self), as: UTF8.self)
    }
}

/// The JSON encoder of the programs' outputs: compact, sorted keys (stable output), `/` unescaped.
///
/// Thread-safety: a new encoder per call.
public func programJSONEncoder() -> JSONEncoder {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
    return encoder
}
