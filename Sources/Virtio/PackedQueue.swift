import CVMMPlatform

/// The device side of a packed virtqueue over guest memory.
///
/// Buffer ids are checked against the queue size and against the queue's own in-flight table before
/// any use; completions are matched by that table, never by trusting guest data.
///
/// Thread-safety: non-copyable, so it has one owner; it may be moved to another thread (hence
/// `Sendable`). Its in-flight table is its own (never shared with a copy).
public struct PackedQueue: DeviceQueue, ~Copyable, @unchecked Sendable {
    /// Queue size (descriptors).
    public let size: Int
    /// Where the descriptor ring and the two event-suppression areas are.
    public let addresses: RingAddresses
    /// The negotiated features that matter to the ring.
    public let features: VirtioFeatures
    /// The memory the cached pointers point into.
    public let memory: GuestMemory
    /// The first error a `pop()` threw; the queue is unusable from then on.
    public var brokenReason: VirtqueueError? { broken }

    // The state pop and push touch is visible to inlinable code so devices in other modules get
    // them inlined; nothing outside this module uses it.
    @usableFromInline var broken: VirtqueueError?
    let inFlight: InFlightTable
    @usableFromInline let slots: UnsafeMutablePointer<UInt16>
    @usableFromInline let writable: UnsafeMutablePointer<UInt32>
    @usableFromInline let cacheBase: UnsafeMutablePointer<CachedBuffer>
    @usableFromInline let context: UnsafeMutablePointer<QueueContext>
    let resubmitRing: UnsafeMutableRawPointer
    let resubmitContext: UnsafeMutablePointer<QueueContext>
    /// Copies of the ring descriptors of chains in flight that iteration re-walks.
    @usableFromInline var snapshots: ChainSnapshots
    /// Slots of `resubmitRing` taken since the last `setNextAvailIndex(_:)`.
    var resubmitUsed = 0
    @usableFromInline let regions: RegionTable
    @usableFromInline let ring: UnsafeMutableRawPointer
    /// Driver event suppression (the device reads it).
    let driverEvent: UnsafeMutableRawPointer
    /// Device event suppression (the device writes it).
    @usableFromInline let deviceEvent: UnsafeMutableRawPointer
    @usableFromInline let eventIndex: Bool
    /// VIRTIO_F_IN_ORDER negotiated: runs of zero-length completions share one used descriptor.
    @usableFromInline let inOrder: Bool
    let notifyOnEmpty: Bool
    let indirect: Bool

    @usableFromInline var nextAvail: UInt16 = 0
    @usableFromInline var availWrap = true
    @usableFromInline var nextUsed: UInt16 = 0
    @usableFromInline var usedWrap = true
    @usableFromInline var stagedCount = 0
    @usableFromInline var stagedFirst: UnsafeMutableRawPointer?
    @usableFromInline var stagedFirstFlags: UInt16 = 0
    /// The used descriptor of the in-order batch still open (see `stageInOrder(id:count:)`): its
    /// flags are not stored yet, so later completions may still take it over. Nil if none is open.
    @usableFromInline var openBatch: UnsafeMutableRawPointer?
    @usableFromInline var openBatchFlags: UInt16 = 0
    var signalledUsed: UInt16 = 0
    var signalledValid = false
    @usableFromInline var notificationsEnabled = true
    @usableFromInline var chainsInFlight = 0
    /// Chains popped and not yet staged for completion.
    public var inFlightCount: Int { chainsInFlight }

    /// Configures a packed queue of `size` descriptors (1…32768) at `addresses` in `memory`.
    /// Positions start at 0 with both wrap counters 1.
    ///
    /// - Throws: `.invalidQueueSize`, `.misalignedRing` (16 / 4 / 4), `.ringOutsideMemory`.
    public init(memory: GuestMemory, size: Int, addresses: RingAddresses, features: VirtioFeatures)
        throws(VirtqueueError)
    {
        guard size >= 1, size <= maximumQueueSize else { throw .invalidQueueSize(size) }
        // Every check before the first stored property (a non-copyable value is all or nothing).
        let ring = try addresses.translate(.descriptorTable, in: memory, alignment: 16, length: 16 * UInt64(size))
        let driverEvent = try addresses.translate(.driverArea, in: memory, alignment: 4, length: 4)
        let deviceEvent = try addresses.translate(.deviceArea, in: memory, alignment: 4, length: 4)
        self.size = size
        self.addresses = addresses
        self.features = features
        self.memory = memory
        self.ring = ring
        self.driverEvent = driverEvent
        self.deviceEvent = deviceEvent
        regions = memory.table
        let indirectAllowed = features.contains(.ringIndirectDescriptors)
        inFlight = InFlightTable(
            count: size,
            context: QueueContext(
                regions: regions, ring: ring, queueSize: UInt16(truncatingIfNeeded: size), layout: .packed,
                indirectAllowed: indirectAllowed))
        context = inFlight.context
        resubmitRing = inFlight.resubmitRing
        resubmitContext = inFlight.resubmitContext
        snapshots = inFlight.snapshots
        slots = inFlight.slots
        writable = inFlight.writable
        cacheBase = inFlight.cache
        eventIndex = features.contains(.ringEventIndex)
        inOrder = features.contains(.inOrder)
        notifyOnEmpty = features.contains(.notifyOnEmpty)
        indirect = features.contains(.ringIndirectDescriptors)
    }

    @inlinable @inline(__always)
    public mutating func pop() throws(VirtqueueError) -> Chain? {
        if let broken { throw broken }
        do {
            return try popValidated()
        } catch {
            broken = error
            throw error
        }
    }

    @inlinable @inline(__always)
    mutating func popValidated() throws(VirtqueueError) -> Chain? {
        // Safe: nextAvail < size; the ring holds 16 × size bytes, 16-aligned.
        let head = ring + Int(nextAvail) &* 16
        // Acquire: the rest of the descriptor is read only after its flags say it is available.
        let flags = UInt16(littleEndian: vmm_load_acquire_u16(head + 14))
        guard isAvailable(flags) else { return nil }
        if let chain = try popSingle(head) { return chain }
        var start = WalkStart(context: context, head: nextAvail)
        // The id is known only at the end of the walk: translate into the scratch entries, then
        // move them to the id's entries once the id is validated.
        let scratch = cacheBase + size &* chainCacheCapacity
        let summary: ChainSummary
        let count: UInt16
        let id: UInt16
        if let direct = try summarizeDirect(cache: scratch) {
            (summary, count, id) = direct
        } else {
            // The spec puts the buffer id in the last descriptor of the chain.
            (summary, count, id) = try DescriptorWalker.summarizeWalking(start, into: scratch)
        }
        guard Int(id) < size else { throw .bufferIDOutOfRange(id: id, queueSize: size) }
        guard slots[Int(id)] == 0 else { throw .bufferInUse(id: id) }
        if summary.cachedCount < 0 {
            // Iteration walks this chain again, by when out-of-order completions may have reused
            // its ring slots: walk a copy instead.
            start = try snapshots.take(id: id, ring: ring, slot: nextAvail, count: count, ringSize: size)
        }
        slots[Int(id)] = count
        chainsInFlight &+= 1
        let cache = cacheBase + Int(id) &* chainCacheCapacity
        if summary.cachedCount > 0 {
            // Safe: both ranges hold chainCacheCapacity entries and do not overlap (id < size).
            cache.update(from: scratch, count: Int(summary.cachedCount))
        }
        writable[Int(id)] = summary.writableLength
        Self.advance(&nextAvail, &availWrap, by: Int(count), size: size)
        if eventIndex && notificationsEnabled { writeDeviceEvent(PackedEventFlag.desc) }
        return Chain(id: id, slots: count, summary: summary, start: start, cache: cache)
    }

    /// The common receive and transmit case, a chain of one direct descriptor whose id is free:
    /// validated straight into the id's cache entries (the general path translates into scratch
    /// entries first, the id being known only at the chain's end). Nil, having changed nothing,
    /// for any other chain (the general path then walks it and throws what it finds). The checks
    /// and their order are the general path's for one descriptor (VIRTIO 1.2 section 2.8.6: the
    /// id is that of the chain's last, here only, descriptor).
    @inlinable @inline(__always)
    mutating func popSingle(_ head: UnsafeMutableRawPointer) throws(VirtqueueError) -> Chain? {
        // One copy of the descriptor, after the acquire load of its flags: every check below is
        // of this copy, whatever the driver writes meanwhile.
        let d = Descriptor(loading: head, packed: true)
        let id = d.next
        guard !d.hasNext, !d.isIndirect, Int(id) < size, slots[Int(id)] == 0 else { return nil }
        let host = try regions.validatedBuffer(d)
        // A buffer spanning two regions is walked again at iteration: the general path keeps it.
        guard let host else { return nil }
        var summary = ChainSummary()
        try summary.add(d)
        summary.cachedCount = 1
        let cache = cacheBase + Int(id) &* chainCacheCapacity
        // Safe: id < size, and the id's entries hold chainCacheCapacity >= 1 buffers.
        cache[0] = CachedBuffer(pointer: host, length: d.length, isWritable: d.isWritable)
        slots[Int(id)] = 1
        chainsInFlight &+= 1
        writable[Int(id)] = summary.writableLength
        let start = WalkStart(context: context, head: nextAvail)
        Self.advance(&nextAvail, &availWrap, by: 1, size: size)
        if eventIndex && notificationsEnabled { writeDeviceEvent(PackedEventFlag.desc) }
        return Chain(id: id, slots: 1, summary: summary, start: start, cache: cache)
    }

    /// Pops up to `chains.count` chains into `chains`; see `DeviceQueue.pop(into:)`. One call per
    /// burst: the validated pop is inlined into the loop, which stores each chain straight into
    /// the caller's buffer.
    public mutating func pop(into chains: UnsafeMutableBufferPointer<Chain>) throws(VirtqueueError) -> Int {
        let first = nextAvail
        // `pop()` records an error after the first chain in `broken`: the next call throws it.
        let count = try popEach(into: chains) { () throws(VirtqueueError) in try pop() }.count
        guard count > 0 else { return count }
        // Safe: count >= 1 chains were initialised.
        if inOrder && chains[count - 1].writableLength == 0 {
            // A device-readable burst (transmit) completes into one used descriptor at its first
            // slot (`stageInOrder`): hinting the other slots would take their lines from the driver.
            vmm_prefetch_write(ring + Int(first) &* 16)
        } else {
            // The burst's first lines now, the others as completions come near them (`stage`).
            var slots = Int(nextAvail) - Int(first)
            if slots <= 0 { slots += size }
            prefetchSlots(from: first, count: min(slots, Self.ringPrefetchDistance))
        }
        return count
    }

    /// How far ahead of the next used slot its ring line is hinted for writing: the used
    /// descriptors go to the slots just popped, lines the driver's core wrote, and a store that
    /// has to take its line back holds up every later store behind it. Hinted all at once at pop,
    /// a 32-chain receive burst's 8 lines took the core's fill buffers from the first frames'
    /// buffer lines (hinted right after), whose loads then waited: about 5% of the packed 64-byte
    /// receive rate. A line at a time, this many slots ahead, they come in as needed.
    @usableFromInline static let ringPrefetchDistance = 8

    /// The ring slot whose line `stage` hints for writing when it completes into slot `used`:
    /// `ringPrefetchDistance` slots further, wrapped, if that slot was popped and is not yet used
    /// (`available`, the next slot to pop, is further still); nil otherwise (near the end of a
    /// burst, whose next slots the driver may be writing). Both positions are below `size`.
    @inlinable @inline(__always)
    public static func ringSlotToPrefetch(used: Int, available: Int, size: Int) -> Int? {
        var popped = available - used
        if popped < 0 { popped += size }
        guard popped > ringPrefetchDistance else { return nil }
        // popped < size, so size > ringPrefetchDistance and one wrap suffices.
        let slot = used + ringPrefetchDistance
        return slot >= size ? slot - size : slot
    }

    /// Hints into the cache, for writing, the lines of `count` ring slots from `first` (popped
    /// ones, wrapping), where in-order completions put their used descriptors (see
    /// `ringPrefetchDistance`).
    @inlinable @inline(__always)
    func prefetchSlots(from first: UInt16, count slots: Int) {
        // Every 4th slot (a line apart), then the last: each line the slots span.
        var offset = 0
        while offset < slots {
            let slot = Int(first) + offset
            // Safe: the slot wraps below size; the ring holds 16 × size bytes.
            vmm_prefetch_write(ring + (slot >= size ? slot - size : slot) &* 16)
            offset &+= 4
        }
        let last = Int(first) + slots - 1
        vmm_prefetch_write(ring + (last >= size ? last - size : last) &* 16)
    }

    @inlinable @inline(__always)
    func isAvailable(_ flags: UInt16) -> Bool {
        let avail = flags & DescriptorFlag.avail != 0
        let used = flags & DescriptorFlag.used != 0
        return avail == availWrap && used != availWrap
    }

    /// Moves a ring position by `count` (≤ size) slots, toggling its wrap counter on each lap.
    @inlinable @inline(__always)
    static func advance(_ position: inout UInt16, _ wrap: inout Bool, by count: Int, size: Int) {
        var next = Int(position) + count
        if next >= size {
            next -= size
            wrap.toggle()
        }
        position = UInt16(truncatingIfNeeded: next)
    }

    @inlinable @inline(__always)
    public mutating func push(_ chain: Chain, written: UInt32) throws(VirtqueueError) {
        try stage(id: chain.id, written: written)
        publishUsed()
    }

    @inlinable @inline(__always)
    public mutating func stage(_ chain: Chain, written: UInt32) throws(VirtqueueError) {
        try stage(id: chain.id, written: written)
    }

    /// Stages completion of buffer `id` (for devices that keep only the id). The first staged used
    /// descriptor's flags are written last, by `publishUsed()`, so the driver never sees half a batch.
    ///
    /// With VIRTIO_F_IN_ORDER, a chain the device could not write into (no writable bytes, so its
    /// used length is 0 and nothing is lost by not writing it) joins the in-order batch open at
    /// the previous used descriptor instead of taking one of its own (`stageInOrder`).
    ///
    /// - Throws: `.notInFlight` if `id` was not popped (or already pushed), `.writtenExceedsWritable`.
    @inlinable @inline(__always)
    public mutating func stage(id: UInt16, written: UInt32) throws(VirtqueueError) {
        guard Int(id) < size, slots[Int(id)] != 0 else { throw .notInFlight(id: id) }
        let writableLength = writable[Int(id)]
        guard written <= writableLength else {
            throw .writtenExceedsWritable(written: written, writable: writableLength)
        }
        let count = Int(slots[Int(id)])
        slots[Int(id)] = 0
        chainsInFlight &-= 1
        if snapshots.holders != 0 { snapshots.release(id: id, count: count) }
        if inOrder && writableLength == 0 {
            stageInOrder(id: id, count: count)
            return
        }
        closeBatch()
        if let ahead = Self.ringSlotToPrefetch(used: Int(nextUsed), available: Int(nextAvail), size: size) {
            // Safe: ahead < size; the ring holds 16 × size bytes.
            vmm_prefetch_write(ring + ahead &* 16)
        }
        // Safe: nextUsed < size; the ring holds 16 × size bytes.
        let descriptor = ring + Int(nextUsed) &* 16
        descriptor.storeBytes(of: written.littleEndian, toByteOffset: 8, as: UInt32.self)
        descriptor.storeBytes(of: id.littleEndian, toByteOffset: 12, as: UInt16.self)
        var flags: UInt16 = usedWrap ? (DescriptorFlag.avail | DescriptorFlag.used) : 0
        if written > 0 { flags |= DescriptorFlag.write }
        if stagedCount == 0 {
            stagedFirst = descriptor
            stagedFirstFlags = flags
        } else {
            // Release: id and len are visible before the flags that mark the descriptor used.
            vmm_store_release_u16(descriptor + 14, flags.littleEndian)
        }
        stagedCount += 1
        Self.advance(&nextUsed, &usedWrap, by: count, size: size)
    }

    /// Completes a zero-length chain under VIRTIO_F_IN_ORDER. VIRTIO 1.2 section 2.8.8 ("In-order
    /// use of descriptors", packed virtqueues): "If negotiated, this knowledge allows devices to
    /// notify the use of a batch of buffers to the driver by only writing out a single used
    /// descriptor with the Buffer ID corresponding to the last descriptor in the batch. The device
    /// then skips forward in the ring according to the size of the batch." and "The skipped
    /// buffers (for which no used descriptor was written) are assumed to have been used (read or
    /// written) by the device completely": hence only chains with nothing writable (whose used
    /// length is 0 whatever the device did) join a batch.
    ///
    /// The batch's descriptor is the one at the slot where it starts, with the wrap counter of that
    /// slot; each further chain only replaces its Buffer ID, and every chain, written or skipped,
    /// moves the used position by its descriptor count, so event suppression and the inflight
    /// records see the same used position as without batching. Its flags are stored when the batch
    /// closes (the next completion that cannot join it, or publication): until then the driver
    /// cannot see it, and it is what DPDK's vhost (dequeue, in order) and the in-order drivers
    /// (DPDK's virtio PMD transmit cleanup, Linux's virtio_ring) expect.
    @inlinable @inline(__always)
    mutating func stageInOrder(id: UInt16, count: Int) {
        if let open = openBatch {
            open.storeBytes(of: id.littleEndian, toByteOffset: 12, as: UInt16.self)
        } else {
            // Safe: nextUsed < size; the ring holds 16 × size bytes.
            let descriptor = ring + Int(nextUsed) &* 16
            descriptor.storeBytes(of: UInt32(0), toByteOffset: 8, as: UInt32.self)
            descriptor.storeBytes(of: id.littleEndian, toByteOffset: 12, as: UInt16.self)
            let flags: UInt16 = usedWrap ? (DescriptorFlag.avail | DescriptorFlag.used) : 0
            if stagedCount == 0 {
                stagedFirst = descriptor
                stagedFirstFlags = flags
            }
            openBatch = descriptor
            openBatchFlags = flags
            stagedCount += 1
        }
        Self.advance(&nextUsed, &usedWrap, by: count, size: size)
    }

    /// Ends the open in-order batch: its flags are stored now, unless it is the first staged
    /// descriptor, whose flags `publishUsed()` stores last of all.
    @inlinable @inline(__always)
    mutating func closeBatch() {
        guard let open = openBatch else { return }
        // Release: the batch's last Buffer ID is visible before the flags that mark it used.
        if open != stagedFirst { vmm_store_release_u16(open + 14, openBatchFlags.littleEndian) }
        openBatch = nil
    }

    @inlinable @inline(__always)
    public mutating func publishUsed() {
        guard stagedCount != 0, let first = stagedFirst else { return }
        closeBatch()
        vmm_store_release_u16(first + 14, stagedFirstFlags.littleEndian)
        stagedCount = 0
        stagedFirst = nil
    }

    /// Packed, vhost-user encoding: bits 0–14 next available slot, bit 15 its wrap counter,
    /// bits 16–30 next used slot, bit 31 its wrap counter.
    public var nextAvailIndex: UInt32 {
        let avail = UInt32(nextAvail) | (availWrap ? 0x8000 : 0)
        let used = UInt32(nextUsed) | (usedWrap ? 0x8000 : 0)
        return avail | used << 16
    }

    /// Sets both positions from a vhost-user base. If bits 16–31 are zero (QEMU and DPDK send only
    /// the available part), the used position is set equal to the available one, as they do.
    public mutating func setNextAvailIndex(_ value: UInt32) throws(VirtqueueError) {
        let availPart = UInt16(truncatingIfNeeded: value)
        var usedPart = UInt16(truncatingIfNeeded: value >> 16)
        if usedPart == 0 { usedPart = availPart }
        guard Int(availPart & 0x7fff) < size, Int(usedPart & 0x7fff) < size else { throw .invalidRingBase(value) }
        nextAvail = availPart & 0x7fff
        availWrap = availPart & 0x8000 != 0
        nextUsed = usedPart & 0x7fff
        usedWrap = usedPart & 0x8000 != 0
        stagedCount = 0
        stagedFirst = nil
        openBatch = nil
        signalledValid = false
        resubmitUsed = 0
        inFlight.reset()
        snapshots.reset()
        chainsInFlight = 0
    }
}
