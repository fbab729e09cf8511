/// One descriptor chain popped from a queue: the buffer id to push back and a restartable walk over
/// its buffers.
///
/// Validation: `pop()` walks the whole chain once and validates every descriptor (see
/// `VirtqueueError`), so a malformed chain breaks the queue at pop. Iterating re-reads the
/// descriptors from guest memory and validates each copy again (memory safety never depends on the
/// earlier walk); if the guest rewrote the chain meanwhile, iteration throws instead of yielding
/// anything outside guest memory or beyond the lengths recorded at pop.
///
/// Lifetime: a chain and the pointers it yields are valid while the queue's `GuestMemory` is alive
/// (the queue holds it; replace memory only after the queue's workers are quiesced). Never allocates.
///
/// Thread-safety: a value; use it on the thread that owns the queue, or hand it to one other thread.
public struct Chain {
    /// The id to complete: split head descriptor index, or packed buffer id.
    public let id: UInt16
    /// Ring descriptors (packed: ring slots) the chain occupies; an indirect table counts as one.
    public let descriptorCount: Int
    /// Total bytes the device may read.
    public let readableLength: UInt32
    /// Total bytes the device may write.
    public let writableLength: UInt32

    let walkerStart: DescriptorWalker

    init(id: UInt16, descriptorCount: Int, summary: ChainSummary, walkerStart: DescriptorWalker) {
        self.id = id
        self.descriptorCount = descriptorCount
        self.readableLength = summary.readableLength
        self.writableLength = summary.writableLength
        self.walkerStart = walkerStart
    }

    /// A fresh iterator over the chain's buffers: readable ones first, then writable ones.
    public func buffers() -> ChainIterator {
        ChainIterator(walker: walkerStart, readableLimit: readableLength, writableLimit: writableLength)
    }
}

/// A contiguous piece of a chain's buffer in guest memory. A descriptor whose buffer runs across
/// adjacent memory regions yields one piece per region.
public struct GuestBuffer {
    /// The bytes, in guest memory (shared: the guest may change them at any time).
    public let bytes: UnsafeMutableRawBufferPointer
    /// Whether the device may write them (device-writable descriptor).
    public let isWritable: Bool
}

/// Iterates a chain's buffers (readable, then writable), re-validating each descriptor it reads.
/// Allocation-free.
public struct ChainIterator {
    var walker: DescriptorWalker
    let readableLimit: UInt32
    let writableLimit: UInt32
    var readableSeen: UInt32 = 0
    var writableSeen: UInt32 = 0
    var address: UInt64 = 0
    var remaining: UInt64 = 0
    var writable = false

    init(walker: DescriptorWalker, readableLimit: UInt32, writableLimit: UInt32) {
        self.walker = walker
        self.readableLimit = readableLimit
        self.writableLimit = writableLimit
    }

    /// The next piece, or nil after the last one.
    ///
    /// - Throws: a `VirtqueueError` if the guest rewrote the chain since it was popped
    ///   (`.chainChanged`, or whichever validation the new contents fail).
    @inline(__always)
    public mutating func next() throws(VirtqueueError) -> GuestBuffer? {
        if remaining == 0 {
            guard let d = try walker.next() else { return nil }
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
        guard let piece = walker.regions.piece(at: address, length: remaining) else {
            throw .bufferOutsideMemory(address: address, length: remaining)
        }
        address &+= piece.length
        remaining &-= piece.length
        return GuestBuffer(bytes: UnsafeMutableRawBufferPointer(start: piece.pointer, count: Int(piece.length)),
                           isWritable: writable)
    }
}
