/// virtio-blk feature bits (VIRTIO 1.2 §5.2.3 "Feature bits"), as bits of the 64-bit feature word.
///
/// Thread-safety: constants.
public enum BlockFeature {
    /// Bit 1: `size_max` is the largest segment the driver may use.
    public static let sizeMax: UInt64 = 1 << 1
    /// Bit 2: `seg_max` is the most data segments per request.
    public static let segmentMax: UInt64 = 1 << 2
    /// Bit 5: the device is read-only.
    public static let readOnly: UInt64 = 1 << 5
    /// Bit 6: `blk_size` is valid.
    public static let blockSize: UInt64 = 1 << 6
    /// Bit 9: `T_FLUSH` is supported (writes are volatile until a flush completes).
    public static let flush: UInt64 = 1 << 9
    /// Bit 12: `num_queues` is valid.
    public static let multiQueue: UInt64 = 1 << 12
    /// Bit 13: `T_DISCARD` and its limits.
    public static let discard: UInt64 = 1 << 13
    /// Bit 14: `T_WRITE_ZEROES` and its limits.
    public static let writeZeroes: UInt64 = 1 << 14
    /// Bit 32 (transport): virtio 1.0 or later.
    public static let version1: UInt64 = 1 << 32
}

/// The `type` field of a virtio-blk request header.
///
/// Thread-safety: a value type, `Sendable`.
public struct BlockRequestType: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    /// The header's little-endian `type` value, decoded.
    public let rawValue: UInt32
    /// Any value: unknown types are answered with UNSUPP, never rejected here.
    public init(rawValue: UInt32) { self.rawValue = rawValue }

    /// 0: read `data` from `sector`.
    public static let read = BlockRequestType(rawValue: 0)
    /// 1: write `data` at `sector`.
    public static let write = BlockRequestType(rawValue: 1)
    /// 4: make completed writes durable.
    public static let flush = BlockRequestType(rawValue: 4)
    /// 8: return the 20-byte device id.
    public static let getID = BlockRequestType(rawValue: 8)
    /// 11: discard the ranges in the segments.
    public static let discard = BlockRequestType(rawValue: 11)
    /// 13: zero the ranges in the segments.
    public static let writeZeroes = BlockRequestType(rawValue: 13)

    public var description: String {
        switch self {
        case .read: return "IN"
        case .write: return "OUT"
        case .flush: return "FLUSH"
        case .getID: return "GET_ID"
        case .discard: return "DISCARD"
        case .writeZeroes: return "WRITE_ZEROES"
        default: return "type \(rawValue)"
        }
    }
}

/// The status byte a device writes as the last byte of a request.
///
/// Thread-safety: a value type, `Sendable`.
public struct BlockStatus: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    /// The byte written to the guest.
    public let rawValue: UInt8
    /// Wraps a status byte.
    public init(rawValue: UInt8) { self.rawValue = rawValue }

    /// 0: success.
    public static let ok = BlockStatus(rawValue: 0)
    /// 1: the request failed or was malformed.
    public static let ioError = BlockStatus(rawValue: 1)
    /// 2: the request type (or a flag) is not supported.
    public static let unsupported = BlockStatus(rawValue: 2)

    public var description: String {
        switch self {
        case .ok: return "OK"
        case .ioError: return "IOERR"
        case .unsupported: return "UNSUPP"
        default: return "status \(rawValue)"
        }
    }
}

/// Fixed sizes of the virtio-blk protocol.
///
/// Thread-safety: constants.
public enum BlockProtocol {
    /// The protocol's sector size: `sector` and lengths count 512-byte units whatever `blk_size` is.
    public static let sectorSize = 512
    /// Bytes of the request header (`type`, `reserved`, `sector`).
    public static let headerSize = 16
    /// Bytes of a discard / write-zeroes segment (`sector`, `num_sectors`, `flags`).
    public static let rangeSegmentSize = 16
    /// Bytes of the device id returned by `T_GET_ID`.
    public static let idSize = 20
    /// `flags` bit 0 of a discard / write-zeroes segment: the range may be deallocated.
    public static let unmapFlag: UInt32 = 1
}
