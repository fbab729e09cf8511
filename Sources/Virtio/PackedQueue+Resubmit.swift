import CVMMPlatform

extension PackedQueue {
    /// What chains popped from this queue point into besides guest memory (their translated
    /// buffers and walk context). Holding it (and the `GuestMemory`) keeps such a chain readable
    /// after the queue itself is gone: vhost-user keeps both while a device may still hold a chain
    /// whose completion will be refused.
    public var chainStorage: AnyObject { inFlight }

    /// The next used slot and its wrap counter, in vhost-user's encoding (bits 0-14 slot, bit 15
    /// wrap counter): where the next used descriptor will be written.
    public var nextUsedPosition: UInt16 { nextUsed | (usedWrap ? 0x8000 : 0) }

    /// Whether ring slot `slot` (< size) holds a descriptor the driver made available in the lap
    /// whose wrap counter is `wrapCounter` (AVAIL = counter, USED = !counter): vhost-user inflight
    /// recovery asks it of the first slot of an interrupted batch to learn whether it was published.
    public func isAvailable(slot: UInt16, wrapCounter: Bool) -> Bool {
        guard Int(slot) < size else { return false }
        // Safe: slot < size; the ring holds 16 × size bytes.
        let flags = UInt16(littleEndian: vmm_load_acquire_u16(ring + Int(slot) &* 16 + 14))
        return (flags & DescriptorFlag.avail != 0) == wrapCounter && (flags & DescriptorFlag.used != 0) != wrapCounter
    }

    /// Where `chain`'s descriptors sit in the ring (16 bytes each, packed layout, in chain order):
    /// what vhost-user's inflight region copies so a restarted back-end can resubmit the chain after
    /// used entries overwrote its slots. Ask right after `pop()`; empty for a resubmitted chain.
    /// The bytes are guest memory: a copy is validated again when resubmitted.
    public func ringDescriptors(of chain: Chain) -> RingDescriptors {
        let first: UInt16
        if chain.start.context == UnsafePointer(context) {
            first = chain.start.head
        } else if chain.start.context == UnsafePointer(snapshots.context), Int(chain.id) < size {
            // Walked from a copy (see `ChainSnapshots`); the copy remembers the ring slot.
            first = snapshots.ringSlot[Int(chain.id)]
        } else {
            return RingDescriptors(ring: ring, size: size, first: 0, count: 0)
        }
        return RingDescriptors(ring: ring, size: size, first: Int(first), count: Int(chain.slots))
    }

    /// Takes a chain in flight again from a copy of its ring descriptors (`count` × 16 bytes in the
    /// packed layout, as `withRingDescriptors(of:_:)` gave them), without consuming ring slots:
    /// vhost-user inflight recovery of a chain a previous back-end popped but never completed.
    /// Call it after `setNextAvailIndex(_:)`; the chains resubmitted between two such calls may
    /// hold `size` descriptors in all.
    ///
    /// The copy is validated exactly as `pop()` validates a ring (buffer id below the size and not
    /// in flight, lengths, memory, indirect rules), but a bad copy does not break the queue: it
    /// came from a record, not from the driver's ring.
    /// - Throws: `.chainTooLong` if the copies would exceed the size, or any validation error.
    public mutating func resubmit(descriptors: UnsafeRawBufferPointer) throws(VirtqueueError) -> Chain {
        let count = descriptors.count / 16
        guard count >= 1, resubmitUsed + count <= size, let source = descriptors.baseAddress else {
            throw .chainTooLong(limit: size)
        }
        let first = resubmitUsed
        // Safe: first + count <= size slots in the resubmission ring (16 × size bytes).
        (resubmitRing + first &* 16).copyMemory(from: source, byteCount: count &* 16)
        // The last copy must not link further: the walk ends within what was copied.
        let lastFlags = resubmitRing + (first + count - 1) &* 16 + 14
        lastFlags.storeBytes(
            of: UInt16(littleEndian: lastFlags.load(as: UInt16.self)) & ~DescriptorFlag.next, as: UInt16.self)
        resubmitUsed += count
        let start = WalkStart(context: resubmitContext, head: UInt16(first))
        let scratch = cacheBase + size &* chainCacheCapacity
        var walker = DescriptorWalker(start)
        let summary = try walker.summarize(into: scratch)
        let id = walker.lastID
        guard Int(walker.directCount) == count else { throw .chainTooLong(limit: count) }
        guard Int(id) < size else { throw .bufferIDOutOfRange(id: id, queueSize: size) }
        guard slots[Int(id)] == 0 else { throw .bufferInUse(id: id) }
        slots[Int(id)] = UInt16(count)
        chainsInFlight &+= 1
        let cache = cacheBase + Int(id) &* chainCacheCapacity
        if summary.cachedCount > 0 {
            // Safe: both ranges hold chainCacheCapacity entries and do not overlap (id < size).
            cache.update(from: scratch, count: Int(summary.cachedCount))
        }
        writable[Int(id)] = summary.writableLength
        return Chain(id: id, slots: UInt16(count), summary: summary, start: start, cache: cache)
    }
}

/// Consecutive slots of a packed ring (wrapping at its size): a chain's descriptors as popped.
///
/// Thread-safety: plain pointers into guest memory, read on the queue's thread right after pop.
public struct RingDescriptors {
    let ring: UnsafeMutableRawPointer
    let size: Int
    let first: Int
    /// Descriptors (slots).
    public let count: Int

    /// The 16 bytes of the `index`th descriptor (index < count).
    public func descriptor(_ index: Int) -> UnsafeRawPointer {
        var slot = first + index
        if slot >= size { slot -= size }
        // Safe: slot < size (first < size, index < count <= size); the ring holds 16 × size bytes.
        return UnsafeRawPointer(ring + slot &* 16)
    }
}
