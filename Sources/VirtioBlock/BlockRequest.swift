import Virtio
import CVMMPlatform

/// Scratch space for one request's data segments: `iovec`s pointing straight into guest memory,
/// allocated once (per queue worker) so parsing and I/O allocate nothing per request.
///
/// Thread-safety: not thread-safe; one owner (a queue worker) at a time.
public final class BlockSegments {
    /// Most data segments a request may have (`seg_max`).
    public let limit: Int
    // One spare entry: the status byte's own piece is collected, then trimmed away.
    let iovecs: UnsafeMutablePointer<iovec>
    let capacity: Int

    /// Room for `limit` data segments (clamped to 1…1024, the smallest `IOV_MAX` we support).
    public init(limit: Int) {
        self.limit = min(max(limit, 1), 1024)
        capacity = self.limit + 1
        iovecs = .allocate(capacity: capacity)
        iovecs.initialize(repeating: iovec(iov_base: nil, iov_len: 0), count: capacity)
    }

    deinit {
        iovecs.deallocate()
    }
}

/// A virtio-blk request as found in a chain: the header's fields, where its data and status byte
/// are, and what is wrong with its shape. Nothing here is judged against a device; see
/// `BlockRequestProcessor.execute(_:)`.
///
/// Valid only while the chain's guest memory is mapped and until the `BlockSegments` it was parsed
/// into is reused. Thread-safety: a value, used by the thread that parsed it.
public struct BlockRequest {
    /// The header's `type` (meaningless unless `isHeaderComplete`).
    public let type: BlockRequestType
    /// The header's `sector` (meaningless unless `isHeaderComplete`).
    public let sector: UInt64
    /// Whether the readable part holds the 16-byte header.
    public let isHeaderComplete: Bool
    /// Readable bytes after the header (write-class payload).
    public let readableDataLength: UInt32
    /// Writable bytes before the status byte (read-class payload).
    public let writableDataLength: UInt32
    /// Data segments in the readable part after the header (in `BlockSegments`, first).
    public let readableSegmentCount: Int
    /// Data segments in the writable part before the status byte (in `BlockSegments`, after the readable ones).
    public let writableSegmentCount: Int
    /// Whether there were more data segments than `BlockSegments.limit` (then the counts above are
    /// not usable and the request must fail).
    public let hasTooManySegments: Bool
    /// The status byte: the last byte of the writable part, nil if the chain has no writable byte.
    public let status: UnsafeMutablePointer<UInt8>?

    /// Parses `chain`: gathers the header (which may span buffers) from the start of the readable
    /// part, collects data segments into `segments`, and locates the status byte. Allocation-free.
    ///
    /// - Throws: a `VirtqueueError` only if the guest rewrote the chain since it was popped.
    public static func parse(_ chain: Chain, into segments: BlockSegments) throws(VirtqueueError) -> BlockRequest {
        var header: (UInt64, UInt64) = (0, 0)
        var headerBytes = 0
        var total = 0
        var readableCount = 0
        var writableCount = 0
        // Summed from the pieces actually collected (at most the chain's recorded lengths).
        var readableData: UInt32 = 0
        var writableData: UInt32 = 0
        var lastWritable: UnsafeMutableRawBufferPointer?
        var buffers = chain.buffers()
        while let piece = try buffers.next() {
            guard
                var bytes = piece.bytes.baseAddress.map({
                    UnsafeMutableRawBufferPointer(start: $0, count: piece.bytes.count)
                }),
                !bytes.isEmpty
            else { continue }
            if piece.isWritable {
                lastWritable = bytes
            } else if headerBytes < BlockProtocol.headerSize {
                let take = min(BlockProtocol.headerSize - headerBytes, bytes.count)
                withUnsafeMutableBytes(of: &header) { raw in
                    // Safe: `take` bytes fit in both the header's remaining room and the piece.
                    (raw.baseAddress! + headerBytes).copyMemory(from: bytes.baseAddress!, byteCount: take)
                }
                headerBytes += take
                guard take < bytes.count else { continue }
                // Safe: `take < bytes.count`, so the rest is a non-empty part of the same piece.
                bytes = UnsafeMutableRawBufferPointer(start: bytes.baseAddress! + take, count: bytes.count - take)
            }
            if total < segments.capacity {
                segments.iovecs[total] = iovec(iov_base: bytes.baseAddress, iov_len: bytes.count)
            }
            total += 1
            // No overflow: each sum is at most the chain's recorded (UInt32) length for that part.
            if piece.isWritable {
                writableCount += 1
                writableData &+= UInt32(truncatingIfNeeded: bytes.count)
            } else {
                readableCount += 1
                readableData &+= UInt32(truncatingIfNeeded: bytes.count)
            }
        }
        var status: UnsafeMutablePointer<UInt8>?
        if let last = lastWritable, let base = last.baseAddress {
            // Safe: `last` is a non-empty writable piece; its final byte is the status byte.
            status = (base + (last.count - 1)).assumingMemoryBound(to: UInt8.self)
            writableData &-= 1
            // The status byte's piece is the last one collected: trim the status byte off it.
            if total <= segments.capacity {
                let index = total - 1
                segments.iovecs[index].iov_len -= 1
                if segments.iovecs[index].iov_len == 0 {
                    total -= 1
                    writableCount -= 1
                }
            } else {
                total -= 1
            }
        }
        let complete = headerBytes == BlockProtocol.headerSize
        return BlockRequest(
            type: BlockRequestType(rawValue: UInt32(truncatingIfNeeded: UInt64(littleEndian: header.0))),
            sector: UInt64(littleEndian: header.1),
            isHeaderComplete: complete,
            readableDataLength: readableData,
            writableDataLength: writableData,
            readableSegmentCount: readableCount,
            writableSegmentCount: writableCount,
            hasTooManySegments: total > segments.limit,
            status: status)
    }
}
