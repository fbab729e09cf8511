/// The device's limits and geometry, and their `virtio_blk_config` encoding (96 bytes, little-endian).
///
/// Thread-safety: a value type, `Sendable`.
public struct BlockConfiguration: Hashable, Sendable {
    /// Bytes of `struct virtio_blk_config` up to and including the zoned fields.
    public static let size = 96

    /// Capacity in 512-byte sectors.
    public var capacity: UInt64
    /// Largest data segment (bytes) a request may use; enforced per buffer piece.
    public var sizeMax: UInt32
    /// Most data segments a request may use; enforced (a buffer split at a memory-region boundary
    /// counts as two).
    public var segmentMax: UInt32
    /// Logical block size in bytes (a performance hint; the protocol unit stays 512).
    public var blockSize: UInt32
    /// Request queues (`num_queues`).
    public var queueCount: UInt16
    /// Largest discard range, in sectors.
    public var maxDiscardSectors: UInt32
    /// Most segments per discard request.
    public var maxDiscardSegments: UInt32
    /// Discard ranges should be aligned to this many sectors.
    public var discardSectorAlignment: UInt32
    /// Largest write-zeroes range, in sectors.
    public var maxWriteZeroesSectors: UInt32
    /// Most segments per write-zeroes request.
    public var maxWriteZeroesSegments: UInt32
    /// Whether a write-zeroes request with `unmap` may deallocate the range.
    public var writeZeroesMayUnmap: Bool

    /// Limits for a device of `capacity` sectors with `queueCount` queues; `segmentMax` must leave
    /// two descriptors of a queue for header and status, so pass at most the queue size minus 2.
    public init(
        capacity: UInt64, blockSize: UInt32 = 512, queueCount: UInt16 = 1, segmentMax: UInt32 = 126,
        sizeMax: UInt32 = 1 << 20
    ) {
        self.capacity = capacity
        self.sizeMax = sizeMax
        self.segmentMax = segmentMax
        self.blockSize = blockSize
        self.queueCount = queueCount
        maxDiscardSectors = 1 << 22
        maxDiscardSegments = 16
        discardSectorAlignment = max(1, blockSize / 512)
        maxWriteZeroesSectors = 1 << 22
        maxWriteZeroesSegments = 16
        writeZeroesMayUnmap = true
    }

    /// The feature bits this configuration backs: SIZE_MAX, SEG_MAX, BLK_SIZE, FLUSH, MQ and
    /// VERSION_1, plus RO if `readOnly`, else DISCARD and WRITE_ZEROES.
    public func features(readOnly: Bool) -> UInt64 {
        var bits =
            BlockFeature.sizeMax | BlockFeature.segmentMax | BlockFeature.blockSize | BlockFeature.flush
            | BlockFeature.multiQueue | BlockFeature.version1
        bits |= readOnly ? BlockFeature.readOnly : BlockFeature.discard | BlockFeature.writeZeroes
        return bits
    }

    /// Copies `buffer.count` bytes of the encoded config space starting at `offset` into `buffer`.
    ///
    /// - Returns: false (and copies nothing) unless `offset..<offset + buffer.count` lies within
    ///   `BlockConfiguration.size`.
    @discardableResult
    public func read(offset: Int, into buffer: UnsafeMutableRawBufferPointer) -> Bool {
        guard offset >= 0, offset <= Self.size, buffer.count <= Self.size - offset else { return false }
        var encoded = EncodedConfiguration()
        withUnsafeMutableBytes(of: &encoded) { raw in
            raw.storeBytes(of: capacity.littleEndian, toByteOffset: 0, as: UInt64.self)
            raw.storeBytes(of: sizeMax.littleEndian, toByteOffset: 8, as: UInt32.self)
            raw.storeBytes(of: segmentMax.littleEndian, toByteOffset: 12, as: UInt32.self)
            raw.storeBytes(of: blockSize.littleEndian, toByteOffset: 20, as: UInt32.self)
            raw.storeBytes(of: queueCount.littleEndian, toByteOffset: 34, as: UInt16.self)
            raw.storeBytes(of: maxDiscardSectors.littleEndian, toByteOffset: 36, as: UInt32.self)
            raw.storeBytes(of: maxDiscardSegments.littleEndian, toByteOffset: 40, as: UInt32.self)
            raw.storeBytes(of: discardSectorAlignment.littleEndian, toByteOffset: 44, as: UInt32.self)
            raw.storeBytes(of: maxWriteZeroesSectors.littleEndian, toByteOffset: 48, as: UInt32.self)
            raw.storeBytes(of: maxWriteZeroesSegments.littleEndian, toByteOffset: 52, as: UInt32.self)
            raw.storeBytes(of: writeZeroesMayUnmap ? 1 : 0, toByteOffset: 56, as: UInt8.self)
            // Safe: the range was checked against `size`, which is the byte size of `encoded`.
            if let destination = buffer.baseAddress, !buffer.isEmpty {
                destination.copyMemory(from: raw.baseAddress! + offset, byteCount: buffer.count)
            }
        }
        return true
    }
}

/// 96 zeroed bytes on the stack (storeBytes needs no alignment); keeps `read` allocation-free.
private struct EncodedConfiguration {
    var words: (UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64) = (
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0
    )
}
