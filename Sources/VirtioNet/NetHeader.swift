/// `struct virtio_net_hdr_v1` (VIRTIO 1.2 section 5.1.6): the 12-byte little-endian header before
/// every packet on the transmit and receive queues of a VERSION_1 device.
///
/// Thread-safety: a value type, `Sendable`.
public struct NetHeader: Hashable, Sendable {
    /// Bytes of the header with VERSION_1 (or MRG_RXBUF): `num_buffers` included.
    public static let size = 12

    /// `flags`: `needsChecksum`, `dataValid`.
    public var flags: UInt8
    /// `gso_type`: `gsoNone`, `gsoTCPv4`, `gsoUDP`, `gsoTCPv6`, `gsoUDPL4`, plus `gsoECN`.
    public var gsoType: UInt8
    /// `hdr_len`: bytes of the packet's headers (a hint for GSO).
    public var headerLength: UInt16
    /// `gso_size`: the segment payload size (MSS).
    public var gsoSize: UInt16
    /// `csum_start`: where checksumming starts (NEEDS_CSUM).
    public var checksumStart: UInt16
    /// `csum_offset`: where, after `csum_start`, the checksum is stored (NEEDS_CSUM).
    public var checksumOffset: UInt16
    /// `num_buffers`: receive only, the buffers the packet spans; the driver sets 0 on transmit.
    public var bufferCount: UInt16

    /// `VIRTIO_NET_HDR_F_NEEDS_CSUM`: the checksum at `csum_start + csum_offset` is partial.
    public static let needsChecksum: UInt8 = 1
    /// `VIRTIO_NET_HDR_F_DATA_VALID`: the checksum was verified (receive).
    public static let dataValid: UInt8 = 2
    public static let gsoNone: UInt8 = 0
    public static let gsoTCPv4: UInt8 = 1
    public static let gsoUDP: UInt8 = 3
    public static let gsoTCPv6: UInt8 = 4
    public static let gsoUDPL4: UInt8 = 5
    /// `VIRTIO_NET_HDR_GSO_ECN`, or-ed into `gso_type`.
    public static let gsoECN: UInt8 = 0x80

    /// A header with every field zero (a plain, fully checksummed packet) and `bufferCount` buffers.
    @inlinable
    public init(bufferCount: UInt16 = 0) {
        flags = 0
        gsoType = Self.gsoNone
        headerLength = 0
        gsoSize = 0
        checksumStart = 0
        checksumOffset = 0
        self.bufferCount = bufferCount
    }

    /// Decodes the first 12 bytes of `bytes` (host memory: copy guest bytes out first, the guest
    /// may change its own at any time); nil if `bytes` is shorter.
    @inlinable
    public init?(_ bytes: UnsafeRawBufferPointer) {
        guard bytes.count >= Self.size else { return nil }
        flags = bytes[0]
        gsoType = bytes[1]
        headerLength = UInt16(littleEndian: bytes.loadUnaligned(fromByteOffset: 2, as: UInt16.self))
        gsoSize = UInt16(littleEndian: bytes.loadUnaligned(fromByteOffset: 4, as: UInt16.self))
        checksumStart = UInt16(littleEndian: bytes.loadUnaligned(fromByteOffset: 6, as: UInt16.self))
        checksumOffset = UInt16(littleEndian: bytes.loadUnaligned(fromByteOffset: 8, as: UInt16.self))
        bufferCount = UInt16(littleEndian: bytes.loadUnaligned(fromByteOffset: 10, as: UInt16.self))
    }

    /// Encodes the header into the first 12 bytes of `bytes`; false (nothing written) if shorter.
    @inlinable @discardableResult
    public func encode(into bytes: UnsafeMutableRawBufferPointer) -> Bool {
        guard bytes.count >= Self.size else { return false }
        bytes[0] = flags
        bytes[1] = gsoType
        bytes.storeBytes(of: headerLength.littleEndian, toByteOffset: 2, as: UInt16.self)
        bytes.storeBytes(of: gsoSize.littleEndian, toByteOffset: 4, as: UInt16.self)
        bytes.storeBytes(of: checksumStart.littleEndian, toByteOffset: 6, as: UInt16.self)
        bytes.storeBytes(of: checksumOffset.littleEndian, toByteOffset: 8, as: UInt16.self)
        bytes.storeBytes(of: bufferCount.littleEndian, toByteOffset: 10, as: UInt16.self)
        return true
    }

    /// Checks a transmitted header against the negotiated `features` and the packet's length
    /// (bytes after the header), as VIRTIO 1.2 section 5.1.6.2.1 asks of the driver: NEEDS_CSUM
    /// only with CSUM and with `csum_start + csum_offset + 2` inside the packet; a GSO type only
    /// with the matching HOST_* feature, a non-zero `gso_size` and NEEDS_CSUM. Other flag bits are
    /// ignored, as section 5.1.6.2.2 asks of the device; so is `num_buffers` (transmit: 0).
    ///
    /// - Returns: nil if the header is acceptable, else why it is not.
    @inlinable
    public func transmitProblem(features: UInt64, packetLength: Int) -> NetHeaderProblem? {
        if flags & Self.needsChecksum != 0 {
            guard features & NetFeature.checksum != 0 else { return .offloadNotNegotiated }
            guard Int(checksumStart) + Int(checksumOffset) + 2 <= packetLength else { return .checksumOutsidePacket }
        }
        let type = gsoType & ~Self.gsoECN
        if type == Self.gsoNone {
            return gsoType & Self.gsoECN == 0 ? nil : .unknownGSOType
        }
        let needed: UInt64
        switch type {
        case Self.gsoTCPv4: needed = NetFeature.hostTSO4
        case Self.gsoTCPv6: needed = NetFeature.hostTSO6
        default: return .unknownGSOType
        }
        guard features & needed != 0 else { return .offloadNotNegotiated }
        if gsoType & Self.gsoECN != 0, features & NetFeature.hostECN == 0 { return .offloadNotNegotiated }
        guard gsoSize != 0, flags & Self.needsChecksum != 0, Int(headerLength) <= packetLength else {
            return .badSegmentation
        }
        return nil
    }
}

/// Why a transmitted `NetHeader` is refused (the packet is dropped and counted).
///
/// Thread-safety: a value type.
public enum NetHeaderProblem: Hashable, Sendable {
    /// NEEDS_CSUM or a GSO type whose feature was not negotiated.
    case offloadNotNegotiated
    /// `csum_start + csum_offset + 2` lies beyond the packet.
    case checksumOutsidePacket
    /// A GSO type the device does not know (UFO, UDP_L4, ECN alone).
    case unknownGSOType
    /// GSO with `gso_size` 0, without NEEDS_CSUM, or `hdr_len` beyond the packet.
    case badSegmentation
}
