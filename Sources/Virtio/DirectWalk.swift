extension DescriptorWalker {
    /// Validates a chain of direct descriptors starting at `first` in one tight loop (the common
    /// case), with the same rules and error order as `next()`. Returns nil at the first INDIRECT
    /// descriptor: the caller then re-walks from the start with the general walker. Split and
    /// packed queues share it; `layout` is a constant at each inlined call site.
    ///
    /// - Returns: the summary, the number of ring descriptors (= packed slots), and the `next`
    ///   field of the last one (the packed buffer id).
    @inlinable @inline(__always)
    static func summarizeDirect(
        ring: UnsafeMutableRawPointer, first: UInt16, layout: RingLayout, queueSize size: Int,
        regions table: RegionTable, cache: UnsafeMutablePointer<CachedBuffer>
    ) throws(VirtqueueError) -> (ChainSummary, UInt16, UInt16)? {
        var summary = ChainSummary()
        var index = first
        var count: UInt16 = 0
        var lastID: UInt16 = 0
        var cacheable = true
        while true {
            guard Int(count) < size else { throw .chainTooLong(limit: size) }
            // Safe: index < size (split: head checked by the caller, links below; packed: slots
            // wrap at size); the ring holds 16 × size bytes.
            let d = Descriptor(loading: ring + Int(index) &* 16, packed: layout == .packed)
            if d.isIndirect { return nil }
            count &+= 1
            lastID = d.next
            if layout == .split, d.hasNext {
                guard Int(d.next) < size else { throw .descriptorIndexOutOfRange(index: d.next, limit: size) }
            }
            let host = try table.validatedBuffer(d)
            try summary.add(d)
            if cacheable {
                if Int(count) <= chainCacheCapacity, let host {
                    // Safe: `cache` has chainCacheCapacity entries for this chain.
                    cache[Int(count) - 1] = CachedBuffer(pointer: host, length: d.length, isWritable: d.isWritable)
                } else {
                    cacheable = false
                }
            }
            guard d.hasNext else { break }
            switch layout {
            case .split: index = d.next
            case .packed: index = Int(index) + 1 == size ? 0 : index + 1
            }
        }
        summary.cachedCount = cacheable ? Int8(count) : -1
        return (summary, count, lastID)
    }
}

extension RegionTable {
    /// Checks a data descriptor's buffer (non-zero length, `addr + len` no overflow, fully mapped):
    /// the rules every walker applies. Returns its host pointer when it lies in one region.
    @inlinable @inline(__always)
    func validatedBuffer(_ d: Descriptor) throws(VirtqueueError) -> UnsafeMutableRawPointer? {
        guard d.length != 0 else { throw .zeroLengthDescriptor }
        guard !d.address.addingReportingOverflow(UInt64(d.length)).overflow else {
            throw .addressOverflow(address: d.address, length: d.length)
        }
        // Common case: one region, and the pointer comes for free. Otherwise adjacent regions.
        let host = contiguous(d.address, length: UInt64(d.length))
        guard host != nil || contains(d.address, length: UInt64(d.length)) else {
            throw .bufferOutsideMemory(address: d.address, length: UInt64(d.length))
        }
        return host
    }
}

extension ChainSummary {
    /// Adds one buffer to the totals, enforcing readable-before-writable and 32-bit totals.
    @inlinable @inline(__always)
    mutating func add(_ d: Descriptor) throws(VirtqueueError) {
        if d.isWritable {
            let (sum, overflow) = writableLength.addingReportingOverflow(d.length)
            guard !overflow else { throw .chainLengthOverflow }
            writableLength = sum
        } else {
            guard writableLength == 0 else { throw .readableAfterWritable }
            let (sum, overflow) = readableLength.addingReportingOverflow(d.length)
            guard !overflow else { throw .chainLengthOverflow }
            readableLength = sum
        }
    }
}
