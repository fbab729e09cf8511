/// Packed rings: queue-owned copies of the ring descriptors of chains that iteration walks again.
///
/// A packed ring is read and written by both sides (VIRTIO 1.2 §2.8): the device writes each used
/// descriptor into the next used slot, and the driver reuses a slot for new descriptors once it
/// has seen it used. With out-of-order completion those slots may still hold the descriptors of a
/// chain the device holds. A chain pop keeps translated (`ChainSummary.cachedCount` ≥ 0) never
/// reads the ring again; any other chain (longer than `chainCacheCapacity` buffers, a buffer across
/// a region boundary, a large indirect table) is copied here at pop and re-walked from the copy.
///
/// The copies live in a pool of `capacity` (= queue size) 16-byte entries, linked through
/// `links`, so a chain of any length takes as many entries as it has ring descriptors and
/// nothing is allocated after configure. The pool cannot run out for a conforming driver: the
/// descriptors of chains in flight sit in ring slots the device has not marked used, and there
/// are only queue-size slots. A driver that makes more available than that overwrote descriptors
/// still in flight; pop refuses it (`.tooManyDescriptorsInFlight`).
///
/// Every link is below `capacity` at all times (the free list ends on a stale but in-range index),
/// so a walk following links never leaves the pool; the walker bounds the steps by the queue size.
///
/// Memory: allocated and freed by `InFlightTable`; this value holds raw pointers into it and the
/// free-list state, and is owned (mutated) by the queue's thread only. A chain's own entries are
/// not written while it is in flight, so another thread may walk them meanwhile.
@usableFromInline
struct ChainSnapshots {
    static let none = UInt16.max

    /// `capacity` descriptors, 16 bytes each, in the packed layout.
    let descriptors: UnsafeMutableRawPointer
    /// Next entry of a chain's copy, or of the free list.
    let links: UnsafeMutablePointer<UInt16>
    /// Per buffer id: the first entry of its copy, or `none`.
    let firstEntry: UnsafeMutablePointer<UInt16>
    /// Per buffer id with a copy: the ring slot its chain was popped from (`ringDescriptors(of:)`).
    let ringSlot: UnsafeMutablePointer<UInt16>
    /// The walk context over `descriptors` (packed layout, following `links`).
    let context: UnsafeMutablePointer<QueueContext>
    let capacity: Int
    var freeHead: UInt16 = 0
    var freeCount: Int
    /// Chains in flight that hold a copy: lets push skip the per-id lookup while there are none.
    @usableFromInline var holders = 0

    /// Allocates a pool of `capacity` (≥ 1) entries for a queue walked with `ringContext`.
    static func allocate(capacity: Int, ringContext: QueueContext) -> ChainSnapshots {
        let descriptors = UnsafeMutableRawPointer.allocate(byteCount: capacity * 16, alignment: 16)
        descriptors.initializeMemory(as: UInt8.self, repeating: 0, count: capacity * 16)
        let links = UnsafeMutablePointer<UInt16>.allocate(capacity: capacity)
        links.initialize(repeating: 0, count: capacity)
        let firstEntry = UnsafeMutablePointer<UInt16>.allocate(capacity: capacity)
        firstEntry.initialize(repeating: none, count: capacity)
        let ringSlot = UnsafeMutablePointer<UInt16>.allocate(capacity: capacity)
        ringSlot.initialize(repeating: 0, count: capacity)
        let context = UnsafeMutablePointer<QueueContext>.allocate(capacity: 1)
        context.initialize(
            to: QueueContext(
                regions: ringContext.regions, ring: descriptors, queueSize: ringContext.queueSize,
                layout: .packed, indirectAllowed: ringContext.indirectAllowed, links: links))
        var snapshots = ChainSnapshots(
            descriptors: descriptors, links: links, firstEntry: firstEntry, ringSlot: ringSlot, context: context,
            capacity: capacity, freeCount: capacity)
        snapshots.reset()
        return snapshots
    }

    func deallocate() {
        descriptors.deallocate()
        links.deallocate()
        firstEntry.deallocate()
        ringSlot.deallocate()
        context.deallocate()
    }

    /// Frees every entry (the queue forgot its chains in flight).
    mutating func reset() {
        // Safe: every index below is < capacity.
        for entry in 0..<capacity {
            links[entry] = UInt16(truncatingIfNeeded: entry + 1 == capacity ? 0 : entry + 1)
        }
        firstEntry.update(repeating: Self.none, count: capacity)
        freeHead = 0
        freeCount = capacity
        holders = 0
    }

    /// Copies the `count` descriptors of the chain popped for buffer `id` from ring slots `slot`,
    /// `slot + 1`, … (wrapping at `ringSize`) and returns where to walk the copy. NEXT is set on
    /// every copy but the last, so the copy has exactly the validated chain's shape; its contents
    /// are validated again when walked, like any re-read.
    ///
    /// - Throws: `.tooManyDescriptorsInFlight` if the pool has fewer than `count` free entries.
    @usableFromInline @inline(never)
    mutating func take(
        id: UInt16, ring: UnsafeRawPointer, slot: UInt16, count: UInt16, ringSize: Int
    ) throws(VirtqueueError) -> WalkStart {
        guard Int(count) <= freeCount else { throw .tooManyDescriptorsInFlight(limit: capacity) }
        let first = freeHead
        var entry = first
        var source = Int(slot)
        for copied in 1...Int(count) {
            // Safe: entry < capacity (every link is) and source < ringSize; both hold 16-byte slots.
            let target = descriptors + Int(entry) &* 16
            target.copyMemory(from: ring + source &* 16, byteCount: 16)
            let flags = UInt16(littleEndian: target.load(fromByteOffset: 14, as: UInt16.self))
            let shaped = copied < Int(count) ? flags | DescriptorFlag.next : flags & ~DescriptorFlag.next
            target.storeBytes(of: shaped.littleEndian, toByteOffset: 14, as: UInt16.self)
            source = source + 1 == ringSize ? 0 : source + 1
            if copied < Int(count) { entry = links[Int(entry)] }
        }
        freeHead = links[Int(entry)]
        freeCount -= Int(count)
        firstEntry[Int(id)] = first
        ringSlot[Int(id)] = slot
        holders += 1
        return WalkStart(context: context, head: first)
    }

    /// Returns the `count` entries of buffer `id`'s copy, if it has one, to the free list.
    @usableFromInline @inline(never)
    mutating func release(id: UInt16, count: Int) {
        let first = firstEntry[Int(id)]
        guard first != Self.none else { return }
        firstEntry[Int(id)] = Self.none
        var last = first
        for _ in 1..<max(count, 1) { last = links[Int(last)] }
        links[Int(last)] = freeHead
        freeHead = first
        freeCount += count
        holders -= 1
    }
}
