import Virtio
import VMMSysUtil
import CVMMPlatform

/// Executes virtio-blk requests against a backing file: one processor per queue worker.
///
/// Every chain is answered: a malformed or failed request gets IOERR or UNSUPP in its status byte,
/// never silence (only a chain without any writable byte is completed with nothing written).
/// Owns the per-worker scratch (segment iovecs per request slot, a zero page, a bounce buffer),
/// so handling a request allocates nothing.
///
/// Two ways to use it: `handle(_:)` performs a request synchronously; with an `AsyncFileQueue`,
/// `start(_:)` submits reads, writes and flushes (up to `slotCount` in flight) and `reap(_:)`
/// reports them finished (see BlockRequestProcessor+Async.swift).
///
/// Thread-safety: not thread-safe; one owner (a queue worker) at a time. Several processors may
/// share one `BlockBackingFile`.
public final class BlockRequestProcessor {
    /// The image requests go to.
    public let file: BlockBackingFile
    /// The limits requests are checked against (capacity comes from `file`).
    public let configuration: BlockConfiguration
    /// Whether every completed write must already be durable (the driver acked neither FLUSH nor
    /// CONFIG_WCE): write-class requests are then followed by a flush before they complete.
    public var writeThrough = false
    /// The segments of the request being parsed or executed: `slots[slot]`'s for `start`,
    /// `synchronousSegments` for `handle`.
    var segments: BlockSegments
    /// Per request slot: its own segments (an in-flight request's iovecs must stay put).
    let slots: [BlockSegments]
    let synchronousSegments: BlockSegments
    let zeroes: UnsafeMutableRawPointer
    /// iovecs for zero-filling, separate from `segments` (which still hold the request's ranges).
    let zeroVectors: UnsafeMutablePointer<iovec>
    static let zeroChunk = 64 << 10
    static let zeroVectorCount = 16
    /// Aligned staging for direct I/O the guest's buffers cannot take (see +Direct).
    let bounce: BlockBounceBuffer?
    /// The asynchronous queue, if `start(_:)` is used, and the state of each slot.
    let io: (any AsyncFileQueue)?
    var slotState: [BlockSlotState]
    var freeSlots: [Int]
    /// Set while `perform` runs for `start`: the slot a read, write or flush is submitted under.
    var submittingSlot: Int?
    var submitted = false
    let completions: UnsafeMutableBufferPointer<AsyncFileCompletion>
    /// Per slot, the ranges of a DISCARD / WRITE_ZEROES in the engine, `rangeLimit` each (kept for
    /// the synchronous fallback where the engine's space operation is unsupported).
    let spaceRanges: UnsafeMutablePointer<BlockSpaceRange>
    let rangeLimit: Int
    /// Operations in the engine: one per read, write or flush, one per range of a DISCARD /
    /// WRITE_ZEROES.
    var operationsInFlight = 0
    /// Set once the engine refused a space operation as unsupported: ranges are then performed
    /// synchronously (with zeroes written where the file system cannot).
    var spaceOperationsUnsupported = false

    /// A processor for `file` enforcing `configuration`'s limits (its `capacity` is replaced by the
    /// file's), executing synchronously, or through `io` with up to `slotCount` requests in flight
    /// (at least 1; use the queue size: no more chains can be in flight).
    public init(
        file: BlockBackingFile, configuration: BlockConfiguration, io: (any AsyncFileQueue)? = nil,
        slotCount: Int = 1
    ) {
        self.file = file
        var limits = configuration
        limits.capacity = file.capacity
        self.configuration = limits
        let count = io == nil ? 1 : max(1, min(slotCount, io?.capacity ?? 1))
        slots = io == nil ? [] : (0..<count).map { _ in BlockSegments(limit: Int(configuration.segmentMax)) }
        synchronousSegments = BlockSegments(limit: Int(configuration.segmentMax))
        segments = synchronousSegments
        self.io = io
        slotState = Array(repeating: BlockSlotState(), count: slots.count)
        freeSlots = Array((0..<slots.count).reversed())
        completions = .allocate(capacity: count)
        completions.initialize(repeating: AsyncFileCompletion(tag: 0, result: 0))
        rangeLimit = Int(max(limits.maxDiscardSegments, limits.maxWriteZeroesSegments))
        spaceRanges = .allocate(capacity: slots.count * rangeLimit)
        spaceRanges.initialize(repeating: BlockSpaceRange(), count: slots.count * rangeLimit)
        zeroes = .allocate(byteCount: Self.zeroChunk, alignment: 4096)
        zeroes.initializeMemory(as: UInt8.self, repeating: 0, count: Self.zeroChunk)
        zeroVectors = .allocate(capacity: Self.zeroVectorCount)
        zeroVectors.initialize(repeating: iovec(iov_base: nil, iov_len: 0), count: Self.zeroVectorCount)
        bounce =
            file.cacheMode == .none && (file.directMemoryAlignment > 1 || file.directOffsetAlignment > 1)
            ? BlockBounceBuffer(alignment: max(file.directMemoryAlignment, file.directOffsetAlignment)) : nil
    }

    deinit {
        zeroes.deallocate()
        zeroVectors.deallocate()
        completions.deallocate()
        spaceRanges.deallocate()
    }

    /// Handles one popped chain synchronously: parses, executes and writes the status byte. May be
    /// mixed with `start(_:)` (it uses its own scratch).
    ///
    /// - Returns: the byte count to complete the chain with: its writable length (the status byte
    ///   is the last writable byte), or 0 if it has no writable byte.
    /// - Throws: a `VirtqueueError` only if the guest rewrote the chain since it was popped.
    public func handle(_ chain: Chain) throws(VirtqueueError) -> UInt32 {
        segments = synchronousSegments
        let request = try BlockRequest.parse(chain, into: segments)
        guard let status = request.status else { return 0 }
        status.pointee = execute(request).rawValue
        return chain.writableLength
    }

    /// Checks `request` (parsed into this processor's segments) against the device and performs it.
    ///
    /// - Returns: the status to report.
    public func execute(_ request: BlockRequest) -> BlockStatus {
        guard request.isHeaderComplete, !request.hasTooManySegments, segmentsFitSizeMax(request) else {
            return .ioError
        }
        switch request.type {
        case .read:
            guard request.readableDataLength == 0 else { return .ioError }
            return transfer(
                request, write: false, length: request.writableDataLength,
                first: request.readableSegmentCount, count: request.writableSegmentCount)
        case .write:
            guard request.writableDataLength == 0, !file.isReadOnly else { return .ioError }
            return transfer(
                request, write: true, length: request.readableDataLength, first: 0,
                count: request.readableSegmentCount)
        case .flush:
            guard request.readableDataLength == 0, request.writableDataLength == 0 else { return .ioError }
            return flush()
        case .getID:
            guard request.readableDataLength == 0 else { return .ioError }
            writeIdentifier(request)
            return .ok
        case .discard, .writeZeroes:
            guard request.writableDataLength == 0, !file.isReadOnly else { return .ioError }
            return ranges(request)
        default:
            return .unsupported
        }
    }

    private func segmentsFitSizeMax(_ request: BlockRequest) -> Bool {
        let limit = Int(configuration.sizeMax)
        for i in 0..<(request.readableSegmentCount + request.writableSegmentCount)
        where segments.iovecs[i].iov_len > limit {
            return false
        }
        return true
    }

    /// Byte offset of `count` sectors from `sector`, if the range lies within the capacity.
    private func byteRange(sector: UInt64, sectors: UInt64) -> UInt64? {
        // The file's, not the configuration's: it grows when the image does (`refreshCapacity`).
        let capacity = file.capacity
        guard sector <= capacity, sectors <= capacity - sector else { return nil }
        // No overflow: sector ≤ capacity, and capacity × 512 came from a file size (an off_t).
        return sector * UInt64(BlockProtocol.sectorSize)
    }

    private func transfer(_ request: BlockRequest, write: Bool, length: UInt32, first: Int, count: Int) -> BlockStatus {
        guard length % UInt32(BlockProtocol.sectorSize) == 0,
            let offset = byteRange(sector: request.sector, sectors: UInt64(length) / UInt64(BlockProtocol.sectorSize))
        else { return .ioError }
        if let bounce, needsBounce(first: first, count: count, offset: offset, length: length) {
            return transferBounced(
                bounce, write: write, first: first, count: count, offset: offset, length: Int(length))
        }
        if let slot = submittingSlot {
            return submit(
                slot: slot, write ? (writeThrough ? .durableWrite : .write) : .read,
                first: first, count: count, offset: offset, length: Int(length))
        }
        do {
            guard try file.transfer(write: write, segments.iovecs + first, count: count, offset: offset) else {
                return .ioError
            }
            if write && writeThrough { try file.flush() }
        } catch {
            return .ioError
        }
        return .ok
    }

    private func flush() -> BlockStatus {
        // A read-only image has nothing to make durable.
        guard !file.isReadOnly else { return .ok }
        if let slot = submittingSlot { return submit(slot: slot, .dataSync, first: 0, count: 0, offset: 0, length: 0) }
        do { try file.flush() } catch { return .ioError }
        return .ok
    }

    /// Writes `min(20, data length)` id bytes into the writable data segments.
    private func writeIdentifier(_ request: BlockRequest) {
        file.identifier.withUnsafeBytes { id in
            var copied = 0
            for i in request.readableSegmentCount..<(request.readableSegmentCount + request.writableSegmentCount) {
                guard copied < id.count, let base = segments.iovecs[i].iov_base else { break }
                let count = min(segments.iovecs[i].iov_len, id.count - copied)
                // Safe: the segment holds `iov_len` ≥ `count` bytes; `id` has `count` left.
                base.copyMemory(from: id.baseAddress! + copied, byteCount: count)
                copied += count
            }
        }
    }

    // MARK: discard and write zeroes

    private func ranges(_ request: BlockRequest) -> BlockStatus {
        let isDiscard = request.type == .discard
        let maxSegments = isDiscard ? configuration.maxDiscardSegments : configuration.maxWriteZeroesSegments
        let length = request.readableDataLength
        let size = UInt32(BlockProtocol.rangeSegmentSize)
        guard length > 0, length % size == 0, length / size <= maxSegments else { return .ioError }
        let count = Int(length / size)
        if let slot = submittingSlot, let started = submitRanges(request, slot: slot, count: count, discard: isDiscard)
        {
            return started
        }
        // Check every range before touching the file, so a bad request changes nothing; then
        // re-read and re-check each one as it is performed (the guest may have changed it).
        for i in 0..<count {
            let (_, _, status) = checkedRange(request, index: i, discard: isDiscard)
            guard status == .ok else { return status }
        }
        for i in 0..<count {
            let (range, unmap, status) = checkedRange(request, index: i, discard: isDiscard)
            guard status == .ok, let range else { return status == .ok ? .ioError : status }
            do { try performRange(range, discard: isDiscard, unmap: unmap) } catch { return .ioError }
        }
        if writeThrough {
            do { try file.flush() } catch { return .ioError }
        }
        return .ok
    }

    /// Deallocates (DISCARD; WRITE_ZEROES with UNMAP where the device allows it) or zeroes one
    /// checked range synchronously, writing zeroes where the file system cannot do either.
    func performRange(_ range: (offset: UInt64, length: UInt64), discard: Bool, unmap: Bool) throws(SystemCallError) {
        if discard || (unmap && configuration.writeZeroesMayUnmap),
            try file.punchHole(offset: range.offset, length: range.length)
        {
            return
        }
        if !discard, try file.zeroRange(offset: range.offset, length: range.length) { return }
        try writeZeroesByWriting(range)
    }

    /// Segment `index` of a discard / write-zeroes request, copied out of guest memory and checked:
    /// flags (UNSUPP), sector count limit and capacity (IOERR).
    func checkedRange(_ request: BlockRequest, index: Int, discard: Bool) -> (
        (offset: UInt64, length: UInt64)?, Bool, BlockStatus
    ) {
        var raw: (UInt64, UInt64) = (0, 0)
        let copied = withUnsafeMutableBytes(of: &raw) {
            gather(
                into: $0, fromOffset: index * BlockProtocol.rangeSegmentSize,
                segmentCount: request.readableSegmentCount)
        }
        guard copied == BlockProtocol.rangeSegmentSize else { return (nil, false, .ioError) }
        let sector = UInt64(littleEndian: raw.0)
        let word = UInt64(littleEndian: raw.1)
        let sectors = UInt32(truncatingIfNeeded: word)
        let flags = UInt32(truncatingIfNeeded: word >> 32)
        // Discard with `unmap`, or any reserved flag bit, is not supported (spec 5.2.6.2).
        let allowedFlags = discard ? 0 : BlockProtocol.unmapFlag
        guard flags & ~allowedFlags == 0 else { return (nil, false, .unsupported) }
        let maxSectors = discard ? configuration.maxDiscardSectors : configuration.maxWriteZeroesSectors
        guard sectors <= maxSectors, let offset = byteRange(sector: sector, sectors: UInt64(sectors)) else {
            return (nil, false, .ioError)
        }
        return ((offset, UInt64(sectors) * UInt64(BlockProtocol.sectorSize)), flags & BlockProtocol.unmapFlag != 0, .ok)
    }

    /// Copies bytes of the first `segmentCount` segments, starting `offset` bytes in, into `buffer`.
    private func gather(into buffer: UnsafeMutableRawBufferPointer, fromOffset offset: Int, segmentCount: Int) -> Int {
        guard let destination = buffer.baseAddress else { return 0 }
        var skip = offset
        var copied = 0
        for i in 0..<segmentCount where copied < buffer.count {
            let length = segments.iovecs[i].iov_len
            guard let base = segments.iovecs[i].iov_base else { continue }
            if skip >= length {
                skip -= length
                continue
            }
            let count = min(length - skip, buffer.count - copied)
            // Safe: the segment holds `skip + count` bytes; `buffer` has `count` left.
            (destination + copied).copyMemory(from: base + skip, byteCount: count)
            copied += count
            skip = 0
        }
        return copied
    }

    /// Zeroes a range with `pwritev` from the zero page (when the file system cannot do it in place).
    private func writeZeroesByWriting(_ range: (offset: UInt64, length: UInt64)) throws(SystemCallError) {
        if let bounce, (range.offset | range.length) & UInt64(file.directOffsetAlignment - 1) != 0 {
            // Direct I/O cannot write part of a block.
            return try zeroBounced(bounce, offset: range.offset, length: range.length)
        }
        var offset = range.offset
        var left = range.length
        while left > 0 {
            var count = 0
            var batch: UInt64 = 0
            while count < Self.zeroVectorCount, left - batch > 0 {
                let piece = min(UInt64(Self.zeroChunk), left - batch)
                zeroVectors[count] = iovec(iov_base: zeroes, iov_len: Int(piece))
                batch += piece
                count += 1
            }
            guard try file.transfer(write: true, zeroVectors, count: count, offset: offset) else {
                throw SystemCallError("pwritev", Errno(rawValue: EIO))
            }
            offset += batch
            left -= batch
        }
    }
}
