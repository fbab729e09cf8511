/// What every walk on one queue shares. Written once at configure into queue-owned memory, so chains
/// and walkers carry a pointer to it instead of copies.
@usableFromInline
struct QueueContext {
    let regions: RegionTable
    /// Split descriptor table or packed descriptor ring (16 × queueSize bytes, validated at configure).
    let ring: UnsafeMutableRawPointer
    let queueSize: UInt16
    let layout: RingLayout
    let indirectAllowed: Bool
    /// Packed copies only (see `ChainSnapshots`): the next entry of a chain, instead of the next
    /// slot. Every link is below `queueSize`.
    let links: UnsafeMutablePointer<UInt16>?

    init(
        regions: RegionTable, ring: UnsafeMutableRawPointer, queueSize: UInt16, layout: RingLayout,
        indirectAllowed: Bool, links: UnsafeMutablePointer<UInt16>? = nil
    ) {
        self.regions = regions
        self.ring = ring
        self.queueSize = queueSize
        self.layout = layout
        self.indirectAllowed = indirectAllowed
        self.links = links
    }
}

/// Where a chain starts: the queue's context and the head. Ten bytes, no references.
@usableFromInline
struct WalkStart {
    @usableFromInline let context: UnsafePointer<QueueContext>
    /// Head descriptor index (split) or slot (packed); < queueSize.
    @usableFromInline let head: UInt16

    @inlinable @inline(__always)
    init(context: UnsafePointer<QueueContext>, head: UInt16) {
        self.context = context
        self.head = head
    }

    // Safe: the context lives in the queue's in-flight table, alive while the queue (and so any
    // chain in flight on it) is.
    @inline(__always) var regions: RegionTable { context.pointee.regions }
    @inline(__always) var ring: UnsafeMutableRawPointer { context.pointee.ring }
    @inline(__always) var queueSize: UInt16 { context.pointee.queueSize }
    @inline(__always) var layout: RingLayout { context.pointee.layout }
    @inline(__always) var indirectAllowed: Bool { context.pointee.indirectAllowed }
    @inline(__always) var links: UnsafeMutablePointer<UInt16>? { context.pointee.links }
}
