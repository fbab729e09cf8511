/// Walks one chain's descriptors (direct, then at most one indirect table), validating every
/// descriptor copy as it goes. Allocation-free; a small value type restarted by copying it.
///
/// Checks: index < queue size (or table size), chain length ≤ queue size (loops end there),
/// indirect only if negotiated, never with NEXT, never nested, table length a non-zero multiple of
/// 16 and fully mapped, descriptor length non-zero, `addr + len` no overflow, buffer fully mapped.
@usableFromInline
struct DescriptorWalker {
    let start: WalkStart
    /// Next ring index (split) or slot (packed) to read, while `directMore`.
    var index: UInt16
    var directMore = true
    var inTable = false
    var tableMore = false
    /// Descriptors read from the ring itself (= slots a packed chain occupies).
    var directCount: UInt16 = 0
    /// Buffer id of the last ring descriptor read (packed).
    var lastID: UInt16 = 0
    var tableIndex: UInt16 = 0
    var tableCount: UInt16 = 0
    var tableSteps: UInt16 = 0
    var tableAddress: UInt64 = 0

    @inline(__always)
    init(_ start: WalkStart) {
        self.start = start
        self.index = start.head
    }

    @inline(__always) var regions: RegionTable { start.regions }
    @inline(__always) var queueSize: Int { Int(start.queueSize) }

    /// The next validated data descriptor, or nil at the end of the chain.
    @inline(__always)
    mutating func next() throws(VirtqueueError) -> Descriptor? {
        if inTable { return try nextInTable() }
        guard directMore else { return nil }
        guard Int(directCount) < queueSize else { throw .chainTooLong(limit: queueSize) }
        // Safe: `index < queueSize` (checked by the caller for the start, below for links) and the
        // ring holds 16 × queueSize bytes.
        let d = Descriptor(loading: start.ring + Int(index) &* 16, packed: start.layout == .packed)
        directCount += 1
        lastID = d.next
        if d.isIndirect {
            guard start.indirectAllowed else { throw .indirectNotNegotiated }
            guard !d.hasNext, start.layout == .split || directCount == 1 else { throw .misplacedIndirect }
            let count = Int(d.length / 16)
            guard d.length != 0, d.length % 16 == 0, count <= indirectEntryLimit(queueSize: queueSize) else {
                throw .invalidIndirectLength(d.length)
            }
            guard regions.contains(d.address, length: UInt64(d.length)) else {
                throw .bufferOutsideMemory(address: d.address, length: UInt64(d.length))
            }
            directMore = false
            inTable = true
            tableMore = true
            tableAddress = d.address
            tableCount = UInt16(truncatingIfNeeded: count)
            return try nextInTable()
        }
        if d.hasNext {
            switch start.layout {
            case .split:
                guard Int(d.next) < queueSize else {
                    throw .descriptorIndexOutOfRange(index: d.next, limit: queueSize)
                }
                index = d.next
            case .packed:
                if let links = start.links {
                    // A queue-owned copy (see `ChainSnapshots`): every link is < queueSize.
                    index = links[Int(index)]
                } else {
                    index = Int(index) + 1 == queueSize ? 0 : index + 1
                }
            }
        } else {
            directMore = false
        }
        return try validated(d)
    }

    @inline(__always)
    private mutating func nextInTable() throws(VirtqueueError) -> Descriptor? {
        guard tableMore else { return nil }
        guard tableSteps < tableCount else { throw .chainTooLong(limit: Int(tableCount)) }
        // Table bounds: tableIndex < tableCount, and the whole table was checked to be memory.
        guard
            let d = regions.loadDescriptor(
                at: tableAddress &+ UInt64(tableIndex) &* 16, packed: start.layout == .packed)
        else {
            throw .bufferOutsideMemory(address: tableAddress, length: UInt64(tableCount) &* 16)
        }
        tableSteps += 1
        guard !d.isIndirect else { throw .nestedIndirect }
        switch start.layout {
        case .split:
            if d.hasNext {
                guard d.next < tableCount else {
                    throw .descriptorIndexOutOfRange(index: d.next, limit: Int(tableCount))
                }
                tableIndex = d.next
            } else {
                tableMore = false
            }
        case .packed:
            // Packed tables are consumed in order; NEXT is not used inside them.
            tableIndex &+= 1
            tableMore = tableSteps < tableCount
        }
        return try validated(d)
    }

    @inline(__always)
    private func validated(_ descriptor: Descriptor) throws(VirtqueueError) -> Descriptor {
        var d = descriptor
        d.host = try regions.validatedBuffer(d)
        return d
    }

    /// Walks a whole chain from `start` with the general walker (indirect tables included): pop's
    /// path when the direct walk gave up. Out of line: the inlined pop stays small.
    ///
    /// - Returns: the summary, the ring descriptors (packed slots) read, and the last one's `next`
    ///   field (the packed buffer id).
    @usableFromInline @inline(never)
    static func summarizeWalking(
        _ start: WalkStart, into cache: UnsafeMutablePointer<CachedBuffer>
    ) throws(VirtqueueError) -> (ChainSummary, UInt16, UInt16) {
        var walker = DescriptorWalker(start)
        let summary = try walker.summarize(into: cache)
        return (summary, walker.directCount, walker.lastID)
    }

    /// Walks the rest of the chain and sums it up, enforcing readable-before-writable and 32-bit
    /// totals. The first `chainCacheCapacity` buffers are kept, translated, in `cache` when each
    /// lies in one region and the chain is no longer than that, so iteration need not re-read them.
    @inline(__always)
    mutating func summarize(into cache: UnsafeMutablePointer<CachedBuffer>) throws(VirtqueueError) -> ChainSummary {
        var summary = ChainSummary()
        var cached = 0
        var cacheable = true
        while let d = try next() {
            try summary.add(d)
            if cacheable {
                if cached < chainCacheCapacity, let pointer = d.host {
                    // Safe: `cache` has chainCacheCapacity entries for this id.
                    cache[cached] = CachedBuffer(pointer: pointer, length: d.length, isWritable: d.isWritable)
                    cached += 1
                } else {
                    cacheable = false
                }
            }
        }
        summary.cachedCount = cacheable ? Int8(cached) : -1
        return summary
    }
}
