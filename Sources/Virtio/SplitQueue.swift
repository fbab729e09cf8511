import CVMMPlatform

/// The device side of a split virtqueue over guest memory.
///
/// Ring pointers are translated and checked (alignment, whole part inside one region) once at
/// configure and cached; pop and push then touch only cached raw pointers and the queue's own state.
/// Indices in guest memory are read with acquire and published with release, per the spec.
///
/// Thread-safety: non-copyable, so it has one owner; it may be moved to another thread (hence
/// `Sendable`). Its in-flight table is its own (never shared with a copy). The guest writes the rings concurrently, which is what the atomics and the
/// copy-then-validate rules are for.
public struct SplitQueue: DeviceQueue, ~Copyable, @unchecked Sendable {
    /// Queue size (descriptors).
    public let size: Int
    /// Where the rings are.
    public let addresses: RingAddresses
    /// The negotiated features that matter to the ring (indirect descriptors, event index).
    public let features: VirtioFeatures
    /// The memory the cached pointers point into; held so they stay valid.
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
    @usableFromInline let regions: RegionTable
    @usableFromInline let descriptors: UnsafeMutableRawPointer
    @usableFromInline let avail: UnsafeMutableRawPointer
    @usableFromInline let used: UnsafeMutableRawPointer
    @usableFromInline let mask: UInt16
    @usableFromInline let eventIndex: Bool
    /// VIRTIO_F_IN_ORDER negotiated: runs of zero-length completions share one used entry.
    @usableFromInline let inOrder: Bool
    let notifyOnEmpty: Bool
    let indirect: Bool

    @usableFromInline var lastAvail: UInt16 = 0
    /// Last `avail->idx` seen: pops up to it need no new acquire load.
    @usableFromInline var shadowAvail: UInt16 = 0
    @usableFromInline var usedIndex: UInt16 = 0
    @usableFromInline var staged: UInt16 = 0
    /// The used entry of the in-order run still open (see `stage(id:written:)`), or nil.
    @usableFromInline var openRun: UnsafeMutableRawPointer?
    var signalledUsed: UInt16 = 0
    var signalledValid = false
    @usableFromInline var notificationsEnabled = true
    @usableFromInline var chainsInFlight = 0
    /// Chains popped and not yet staged for completion.
    public var inFlightCount: Int { chainsInFlight }

    /// Configures a split queue of `size` descriptors at `addresses` in `memory`.
    ///
    /// The device's used index starts at the value in `used->idx`; the next available index at 0
    /// (use `setNextAvailIndex(_:)` for vhost-user's `SET_VRING_BASE`).
    ///
    /// - Throws: `.invalidQueueSize` (not a power of two in 1…32768), `.misalignedRing`
    ///   (16 / 2 / 4), `.ringOutsideMemory` (a part not inside one region).
    public init(memory: GuestMemory, size: Int, addresses: RingAddresses, features: VirtioFeatures)
        throws(VirtqueueError)
    {
        guard size >= 1, size <= maximumQueueSize, size & (size - 1) == 0 else { throw .invalidQueueSize(size) }
        let q = UInt64(size)
        // Every check before the first stored property (a non-copyable value is all or nothing).
        let descriptors = try addresses.translate(.descriptorTable, in: memory, alignment: 16, length: 16 * q)
        let avail = try addresses.translate(.driverArea, in: memory, alignment: 2, length: 6 + 2 * q)
        let used = try addresses.translate(.deviceArea, in: memory, alignment: 4, length: 6 + 8 * q)
        self.size = size
        self.addresses = addresses
        self.features = features
        self.memory = memory
        self.descriptors = descriptors
        self.avail = avail
        self.used = used
        regions = memory.table
        let indirectAllowed = features.contains(.ringIndirectDescriptors)
        inFlight = InFlightTable(
            count: size,
            context: QueueContext(
                regions: regions, ring: descriptors, queueSize: UInt16(truncatingIfNeeded: size), layout: .split,
                indirectAllowed: indirectAllowed))
        context = inFlight.context
        slots = inFlight.slots
        writable = inFlight.writable
        cacheBase = inFlight.cache
        mask = UInt16(truncatingIfNeeded: size - 1)
        eventIndex = features.contains(.ringEventIndex)
        inOrder = features.contains(.inOrder)
        notifyOnEmpty = features.contains(.notifyOnEmpty)
        indirect = features.contains(.ringIndirectDescriptors)
        usedIndex = UInt16(littleEndian: vmm_load_acquire_u16(used + 2))
        signalledUsed = usedIndex
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
        if lastAvail == shadowAvail {
            // Acquire: ring entries and descriptors are read only after seeing the index.
            let index = UInt16(littleEndian: vmm_load_acquire_u16(avail + 2))
            let pending = index &- lastAvail
            guard Int(pending) <= size else {
                throw .availIndexTooFarAhead(availIndex: index, nextAvail: lastAvail, queueSize: size)
            }
            if pending == 0 { return nil }
            shadowAvail = index
        }
        // Safe: slot < size and the avail ring holds 4 + 2 × size bytes (checked at configure).
        let slot = Int(lastAvail & mask)
        let head = UInt16(littleEndian: (avail + 4 + slot &* 2).load(as: UInt16.self))
        let chain = try takeInFlight(head: head)
        lastAvail &+= 1
        if eventIndex && notificationsEnabled { writeAvailEvent() }
        return chain
    }

    /// Pops up to `chains.count` chains into `chains`; see `DeviceQueue.pop(into:)`. One call per
    /// burst: the validated pop is inlined into the loop, which stores each chain straight into
    /// the caller's buffer.
    public mutating func pop(into chains: UnsafeMutableBufferPointer<Chain>) throws(VirtqueueError) -> Int {
        // `pop()` records an error after the first chain in `broken`: the next call throws it.
        let count = try popEach(into: chains) { () throws(VirtqueueError) in try pop() }.count
        // Safe: count >= 1 chains were initialised when the first operand holds.
        if count > 0 && inOrder && chains[count - 1].writableLength == 0 {
            // A device-readable burst (transmit) completes into one used entry (`stage`).
            prefetchUsedEntries(1, of: count)
        } else {
            prefetchUsedEntries(count, of: count)
        }
        return count
    }

    /// Hints into the cache, for writing, the used-ring entries the last `count` popped chains
    /// will take when completed (the next ones after those staged and those still in flight):
    /// the driver read those lines a lap ago, and a store that has to take a line back from its
    /// core holds up every later store behind it.
    @inlinable @inline(__always)
    func prefetchUsedEntries(_ count: Int, of popped: Int) {
        guard count > 0 else { return }
        let first = usedIndex &+ staged &+ UInt16(truncatingIfNeeded: chainsInFlight &- popped)
        // Every 8th entry (a line apart), then the last: each line the entries span.
        var offset = 0
        while offset < count {
            // Safe: masked slot < size; the used ring holds 4 + 8 × size bytes.
            vmm_prefetch_write(used + 4 + Int((first &+ UInt16(truncatingIfNeeded: offset)) & mask) &* 8)
            offset &+= 8
        }
        vmm_prefetch_write(used + 4 + Int((first &+ UInt16(truncatingIfNeeded: count &- 1)) & mask) &* 8)
    }

    /// Validates the chain at `head` and records it in flight: `pop` and `resubmit` share it.
    /// - Throws: `.descriptorIndexOutOfRange`, `.bufferInUse`, or any chain validation error.
    @inlinable @inline(__always)
    mutating func takeInFlight(head: UInt16) throws(VirtqueueError) -> Chain {
        guard Int(head) < size else { throw .descriptorIndexOutOfRange(index: head, limit: size) }
        guard slots[Int(head)] == 0 else { throw .bufferInUse(id: head) }
        let start = WalkStart(context: context, head: head)
        // Cache entries by head: unique while in flight.
        let cache = cacheBase + Int(head) &* chainCacheCapacity
        let summary: ChainSummary
        let count: UInt16
        if let direct = try summarizeDirect(head: head, cache: cache) {
            (summary, count) = direct
        } else {
            (summary, count, _) = try DescriptorWalker.summarizeWalking(start, into: cache)
        }
        slots[Int(head)] = count
        chainsInFlight &+= 1
        writable[Int(head)] = summary.writableLength
        return Chain(id: head, slots: count, summary: summary, start: start, cache: cache)
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

    /// Stages completion of the chain whose head is `id` (for devices that keep only the id).
    ///
    /// - Throws: `.notInFlight` if `id` was not popped (or already pushed), `.writtenExceedsWritable`.
    @inlinable @inline(__always)
    public mutating func stage(id: UInt16, written: UInt32) throws(VirtqueueError) {
        guard Int(id) < size, slots[Int(id)] != 0 else { throw .notInFlight(id: id) }
        guard written <= writable[Int(id)] else {
            throw .writtenExceedsWritable(written: written, writable: writable[Int(id)])
        }
        slots[Int(id)] = 0
        chainsInFlight &-= 1
        if inOrder && writable[Int(id)] == 0 {
            stageInOrder(id: id)
            return
        }
        openRun = nil
        // Safe: slot < size; the used ring holds 4 + 8 × size bytes, 4-aligned.
        let element = used + 4 + Int((usedIndex &+ staged) & mask) &* 8
        element.storeBytes(of: UInt32(id).littleEndian, as: UInt32.self)
        element.storeBytes(of: written.littleEndian, toByteOffset: 4, as: UInt32.self)
        staged &+= 1
    }

    /// Completes a chain with nothing writable under VIRTIO_F_IN_ORDER. VIRTIO 1.2 section 2.7.9
    /// ("In-order use of descriptors", split virtqueues): "If negotiated, this knowledge allows
    /// devices to notify the use of a batch of buffers to the driver by only writing out a single
    /// used ring entry with the id corresponding to the head entry of the descriptor chain
    /// describing the last buffer in the batch. The device then skips forward in the ring
    /// according to the size of the batch. Accordingly, it increments the used idx by the size of
    /// the batch." The skipped buffers "are assumed to have been used (read or written) by the
    /// device completely": only chains whose used length is 0 whatever the device did join a run.
    /// The run's entry is the one at its first chain's used index; later chains of the run only
    /// replace its id; every chain still counts in the used index published.
    @inlinable @inline(__always)
    mutating func stageInOrder(id: UInt16) {
        if let open = openRun {
            open.storeBytes(of: UInt32(id).littleEndian, as: UInt32.self)
        } else {
            // Safe: slot < size; the used ring holds 4 + 8 × size bytes, 4-aligned.
            let element = used + 4 + Int((usedIndex &+ staged) & mask) &* 8
            element.storeBytes(of: UInt32(id).littleEndian, as: UInt32.self)
            element.storeBytes(of: UInt32(0), toByteOffset: 4, as: UInt32.self)
            openRun = element
        }
        staged &+= 1
    }

    @inlinable @inline(__always)
    public mutating func publishUsed() {
        guard staged != 0 else { return }
        usedIndex &+= staged
        staged = 0
        openRun = nil
        // Release: the used elements (and the data written before) are visible before the index.
        vmm_store_release_u16(used + 2, usedIndex.littleEndian)
    }

    /// Split: bits 0–15 are the next available-ring index; bits 16–31 are zero.
    public var nextAvailIndex: UInt32 { UInt32(lastAvail) }

    public mutating func setNextAvailIndex(_ value: UInt32) throws(VirtqueueError) {
        guard value <= 0xFFFF else { throw .invalidRingBase(value) }
        lastAvail = UInt16(value)
        shadowAvail = lastAvail
        // The used index lives in guest memory; any 16-bit value is a valid free-running index.
        usedIndex = UInt16(littleEndian: vmm_load_acquire_u16(used + 2))
        staged = 0
        openRun = nil
        signalledUsed = usedIndex
        signalledValid = false
        inFlight.reset()
        chainsInFlight = 0
    }

}
