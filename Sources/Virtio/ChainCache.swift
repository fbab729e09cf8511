/// Byte totals of a validated chain.
@usableFromInline
struct ChainSummary {
    @usableFromInline var readableLength: UInt32 = 0
    @usableFromInline var writableLength: UInt32 = 0
    /// Buffers kept translated by pop, or -1 if the chain must be re-walked.
    @usableFromInline var cachedCount: Int8 = -1

    @inlinable @inline(__always)
    init() {}
}

/// One buffer validated and translated at pop: our own copy, immune to later guest writes.
@usableFromInline
struct CachedBuffer {
    @usableFromInline var pointer: UnsafeMutableRawPointer? = nil
    @usableFromInline var length: UInt32 = 0
    @usableFromInline var isWritable = false

    @inlinable @inline(__always)
    init(pointer: UnsafeMutableRawPointer? = nil, length: UInt32 = 0, isWritable: Bool = false) {
        self.pointer = pointer
        self.length = length
        self.isWritable = isWritable
    }
}

/// Where pop keeps the translated buffers of a short chain: four entries per buffer id in the
/// queue's in-flight table (queue memory, not guest memory), valid until the chain is pushed.
@usableFromInline let chainCacheCapacity = 4
