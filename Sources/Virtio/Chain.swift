/// One descriptor chain popped from a queue: the buffer id to push back and a restartable walk over
/// its buffers.
///
/// Validation: `pop()` walks the whole chain once and validates every descriptor (see
/// `VirtqueueError`), so a malformed chain breaks the queue at pop. For a short chain (up to four
/// descriptors, each inside one memory region) pop also keeps the validated, translated buffers in
/// the queue's own memory, so iterating uses exactly what was validated and never re-reads guest
/// memory. Longer chains are re-read on iteration and every descriptor copy is validated again
/// (memory safety never depends on the earlier walk); if the guest rewrote such a chain meanwhile,
/// iteration throws instead of yielding anything outside guest memory or beyond the lengths
/// recorded at pop. A split chain is re-read from the driver's descriptor table, which the driver
/// leaves alone until the chain is used. A packed chain is re-read from a copy of its ring
/// descriptors that pop keeps in queue memory: the ring slots themselves may already hold used
/// descriptors of chains completed out of order, or new ones (VIRTIO 1.2 §2.8). Indirect tables
/// (either layout) are re-read from guest memory.
///
/// Lifetime: a chain is usable from `pop()` until it is pushed, while its queue exists (and the
/// queue's `GuestMemory` is not replaced; quiesce workers first). Never allocates.
///
/// Thread-safety: a value of plain pointers; it may be handed to another thread (say, to complete
/// I/O there) as long as the push happens on the queue's owner thread.
public struct Chain: @unchecked Sendable {
    /// The id to complete: split head descriptor index, or packed buffer id.
    public let id: UInt16
    /// Ring descriptors (packed: ring slots) the chain occupies; an indirect table counts as one.
    public var descriptorCount: Int { Int(slots) }
    /// Total bytes the device may read.
    public let readableLength: UInt32
    /// Total bytes the device may write.
    public let writableLength: UInt32

    @usableFromInline let slots: UInt16
    // Inlinable across modules (devices live in other modules): the short-chain fast path.
    /// Buffers translated at pop, or -1 if the chain must be re-walked.
    @usableFromInline let cachedCount: Int8
    @usableFromInline let cache: UnsafeMutablePointer<CachedBuffer>
    @usableFromInline let start: WalkStart

    @inlinable @inline(__always)
    init(id: UInt16, slots: UInt16, summary: ChainSummary, start: WalkStart, cache: UnsafeMutablePointer<CachedBuffer>)
    {
        self.id = id
        self.slots = slots
        self.readableLength = summary.readableLength
        self.writableLength = summary.writableLength
        self.cachedCount = summary.cachedCount
        self.cache = cache
        self.start = start
    }

    /// A fresh iterator over the chain's buffers: readable ones first, then writable ones.
    @inlinable @inline(__always)
    public func buffers() -> ChainIterator {
        ChainIterator(self)
    }
}

/// A contiguous piece of a chain's buffer in guest memory. A descriptor whose buffer runs across
/// adjacent memory regions yields one piece per region.
///
/// Thread-safety: a pointer and a length; `Sendable` like the chain it came from.
public struct GuestBuffer: @unchecked Sendable {
    /// The bytes, in guest memory (shared: the guest may change them at any time).
    public let bytes: UnsafeMutableRawBufferPointer
    /// Whether the device may write them (device-writable descriptor).
    public let isWritable: Bool

    @usableFromInline @inline(__always)
    init(bytes: UnsafeMutableRawBufferPointer, isWritable: Bool) {
        self.bytes = bytes
        self.isWritable = isWritable
    }
}

/// Iterates a chain's buffers (readable, then writable). Allocation-free.
public struct ChainIterator {
    @usableFromInline let cache: UnsafeMutablePointer<CachedBuffer>
    @usableFromInline let cachedCount: Int8
    @usableFromInline var cacheIndex: Int8 = 0
    /// Re-walk state, touched only for chains that were not cached. Kept apart so the cached path's
    /// index can live in a register (the slow path borrows only this part).
    @usableFromInline var walk: ChainWalkState

    /// An iterator that always re-walks (for the copy helpers' slow path).
    @usableFromInline @inline(__always)
    init(start: WalkStart, cache: UnsafeMutablePointer<CachedBuffer>, readableLimit: UInt32, writableLimit: UInt32) {
        self.cache = cache
        cachedCount = -1
        walk = ChainWalkState(start: start, readableLimit: readableLimit, writableLimit: writableLimit)
    }

    @inlinable @inline(__always)
    init(_ chain: Chain) {
        cache = chain.cache
        cachedCount = chain.cachedCount
        walk = ChainWalkState(
            start: chain.start, readableLimit: chain.readableLength, writableLimit: chain.writableLength)
    }

    /// The next piece, or nil after the last one.
    ///
    /// - Throws: a `VirtqueueError` if the chain had to be re-read and the guest rewrote it since it
    ///   was popped (`.chainChanged`, or whichever validation the new contents fail).
    @inlinable @inline(__always)
    public mutating func next() throws(VirtqueueError) -> GuestBuffer? {
        if cachedCount >= 0 {
            guard cacheIndex < cachedCount else { return nil }
            // Safe: cacheIndex < cachedCount <= chainCacheCapacity entries written at pop.
            let buffer = cache[Int(cacheIndex)]
            cacheIndex &+= 1
            return GuestBuffer(
                bytes: UnsafeMutableRawBufferPointer(start: buffer.pointer, count: Int(buffer.length)),
                isWritable: buffer.isWritable)
        }
        return try walk.next()
    }
}

/// The re-walking part of a `ChainIterator`: re-reads and re-validates each descriptor and checks
/// the totals against what pop recorded.
@usableFromInline
struct ChainWalkState {
    // All stored properties are visible to inlinable code only so the initialiser can be inlined
    // into other modules; nothing outside this file touches them.
    @usableFromInline let start: WalkStart
    @usableFromInline let readableLimit: UInt32
    @usableFromInline let writableLimit: UInt32
    /// Created on first use: cached chains never need it.
    @usableFromInline var walker: DescriptorWalker?
    @usableFromInline var readableSeen: UInt32
    @usableFromInline var writableSeen: UInt32
    @usableFromInline var address: UInt64
    @usableFromInline var remaining: UInt64
    @usableFromInline var writable: Bool

    @inlinable @inline(__always)
    init(start: WalkStart, readableLimit: UInt32, writableLimit: UInt32) {
        self.start = start
        self.readableLimit = readableLimit
        self.writableLimit = writableLimit
        walker = nil
        readableSeen = 0
        writableSeen = 0
        address = 0
        remaining = 0
        writable = false
    }

    @usableFromInline @inline(never)
    mutating func next() throws(VirtqueueError) -> GuestBuffer? {
        if remaining == 0 {
            var walker = self.walker ?? DescriptorWalker(start)
            let next = try walker.next()
            self.walker = walker
            guard let d = next else { return nil }
            if d.isWritable {
                writableSeen = writableSeen &+ d.length
                guard writableSeen >= d.length, writableSeen <= writableLimit else { throw .chainChanged }
            } else {
                readableSeen = readableSeen &+ d.length
                guard writableSeen == 0, readableSeen >= d.length, readableSeen <= readableLimit else {
                    throw .chainChanged
                }
            }
            address = d.address
            remaining = UInt64(d.length)
            writable = d.isWritable
        }
        // The walker checked the whole buffer is memory; the lookup is needed for the pointer and
        // to split at region boundaries.
        guard let piece = start.regions.piece(at: address, length: remaining) else {
            throw .bufferOutsideMemory(address: address, length: remaining)
        }
        address &+= piece.length
        remaining &-= piece.length
        return GuestBuffer(
            bytes: UnsafeMutableRawBufferPointer(start: piece.pointer, count: Int(piece.length)),
            isWritable: writable)
    }
}
