/// A 48-bit Ethernet MAC address.
///
/// Thread-safety: a value type, `Sendable`.
public struct MacAddress: Hashable, Sendable, CustomStringConvertible {
    /// The six octets, first on the wire in the lowest byte (`octets & 0xff`).
    public let rawValue: UInt64

    /// The address whose octets are `rawValue`'s six low bytes, first octet lowest.
    public init(rawValue: UInt64) { self.rawValue = rawValue & 0xffff_ffff_ffff }

    /// The address `bytes[0]...bytes[5]`; nil unless `bytes` has exactly six elements.
    public init?<Bytes: Collection>(bytes: Bytes) where Bytes.Element == UInt8 {
        guard bytes.count == 6 else { return nil }
        var value: UInt64 = 0
        for (shift, byte) in bytes.enumerated() { value |= UInt64(byte) << (8 * UInt64(shift)) }
        rawValue = value
    }

    /// Parses `aa:bb:cc:dd:ee:ff` (or with `-`); nil if malformed.
    public init?(_ text: String) {
        let parts = text.split(omittingEmptySubsequences: false) { $0 == ":" || $0 == "-" }
        guard parts.count == 6 else { return nil }
        var bytes: [UInt8] = []
        for part in parts {
            guard part.count == 2, let byte = UInt8(part, radix: 16) else { return nil }
            bytes.append(byte)
        }
        self.init(bytes: bytes)
    }

    /// Reads the six bytes at `offset` of `bytes` (any alignment); nil if they do not fit.
    @inlinable @inline(__always)
    public static func load(from bytes: UnsafeRawBufferPointer, at offset: Int) -> MacAddress? {
        guard offset >= 0, offset <= bytes.count - 6 else { return nil }
        let low = UInt64(UInt32(littleEndian: bytes.loadUnaligned(fromByteOffset: offset, as: UInt32.self)))
        let high = UInt64(UInt16(littleEndian: bytes.loadUnaligned(fromByteOffset: offset + 4, as: UInt16.self)))
        return MacAddress(rawValue: low | high << 32)
    }

    /// Writes the six bytes at `offset` of `bytes`; the caller checked that they fit.
    @inlinable @inline(__always)
    public func store(to bytes: UnsafeMutableRawBufferPointer, at offset: Int) {
        bytes.storeBytes(of: UInt32(truncatingIfNeeded: rawValue).littleEndian, toByteOffset: offset, as: UInt32.self)
        bytes.storeBytes(
            of: UInt16(truncatingIfNeeded: rawValue >> 32).littleEndian, toByteOffset: offset + 4, as: UInt16.self)
    }

    /// The octet `index` (0...5).
    public subscript(index: Int) -> UInt8 { UInt8(truncatingIfNeeded: rawValue >> (8 * UInt64(index))) }

    /// ff:ff:ff:ff:ff:ff.
    public static let broadcast = MacAddress(rawValue: 0xffff_ffff_ffff)
    /// The group bit (least significant bit of the first octet): multicast or broadcast.
    @inlinable public var isMulticast: Bool { rawValue & 1 != 0 }
    @inlinable public var isBroadcast: Bool { rawValue == 0xffff_ffff_ffff }
    /// The locally administered bit (second bit of the first octet).
    public var isLocallyAdministered: Bool { rawValue & 2 != 0 }

    /// A locally administered unicast address derived from `seed` (FNV-1a), stable for a given
    /// seed: a daemon's default MAC stays the same across restarts for the same socket path.
    public static func stable(seed: String) -> MacAddress {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in seed.utf8 {
            hash ^= UInt64(byte)
            hash = hash &* 0x100_0000_01b3
        }
        // First octet: locally administered (bit 1 set), unicast (bit 0 clear).
        return MacAddress(rawValue: (hash & 0xffff_ffff_fffc) | 0x02)
    }

    public var description: String {
        (0..<6).map { index in
            let hex = String(self[index], radix: 16)
            return hex.count == 1 ? "0" + hex : hex
        }.joined(separator: ":")
    }
}
