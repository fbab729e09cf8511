import CVMMPlatform

/// The driver side of a split virtqueue: posts chains into guest memory the way a guest driver
/// does (little-endian, release-publishing `avail->idx`) and reaps used entries. For tests,
/// benchmarks and front-ends. Keeps its own descriptor free list; never trusts the device's ids.
///
/// Thread-safety: not thread-safe; one owner thread.
public final class DriverSplitQueue {
    /// Queue size (descriptors).
    public let size: Int
    /// The memory the rings and buffers live in.
    public let memory: GuestMemory
    /// Where the rings are (guest-physical).
    public let addresses: RingAddresses
    let eventIndex: Bool
    let inOrder: Bool
    let descriptors: UnsafeMutableRawPointer
    let avail: UnsafeMutableRawPointer
    let used: UnsafeMutableRawPointer
    let mask: UInt16
    /// Free descriptors form a list linked through `shadowNext` (as in Linux): a chain taken from
    /// it is already linked, and a completed chain goes back in O(1) by its tail.
    var freeHead: UInt16 = 0
    var freeCount: Int
    /// Our own copy of each descriptor's `next` link and each head's descriptor count.
    let shadowNext: UnsafeMutablePointer<UInt16>
    let chainCount: UnsafeMutablePointer<UInt16>
    let chainTail: UnsafeMutablePointer<UInt16>
    var availIndex: UInt16
    var lastUsed: UInt16
    var kickedAt: UInt16
    /// In order: the bytes each head lets the device write (what a buffer skipped by a batched
    /// used entry reports as used), and the used entry being consumed until its buffer is reaped.
    let headWritable: UnsafeMutablePointer<UInt32>
    var batchLast: UsedBuffer?

    /// Sets up the rings at guest-physical `addresses`: both ring flags 0, `avail->idx` and
    /// `used->idx` set to `startIndex` (to start near the 16-bit wrap, say), event fields 0.
    ///
    /// - Throws: `DriverQueueError.configuration` for a bad size, alignment or placement.
    public init(
        memory: GuestMemory, size: Int, addresses: RingAddresses, features: VirtioFeatures,
        startIndex: UInt16 = 0
    ) throws(DriverQueueError) {
        guard size >= 1, size <= maximumQueueSize, size & (size - 1) == 0 else {
            throw .configuration(.invalidQueueSize(size))
        }
        let q = UInt64(size)
        do {
            descriptors = try addresses.translate(.descriptorTable, in: memory, alignment: 16, length: 16 * q)
            avail = try addresses.translate(.driverArea, in: memory, alignment: 2, length: 6 + 2 * q)
            used = try addresses.translate(.deviceArea, in: memory, alignment: 4, length: 6 + 8 * q)
        } catch { throw .configuration(error) }
        self.size = size
        self.memory = memory
        self.addresses = addresses
        eventIndex = features.contains(.ringEventIndex)
        inOrder = features.contains(.inOrder)
        mask = UInt16(truncatingIfNeeded: size - 1)
        freeCount = size
        shadowNext = .allocate(capacity: size)
        for i in 0..<size { (shadowNext + i).initialize(to: UInt16(truncatingIfNeeded: i + 1)) }
        chainCount = .allocate(capacity: size)
        chainCount.initialize(repeating: 0, count: size)
        chainTail = .allocate(capacity: size)
        chainTail.initialize(repeating: 0, count: size)
        headWritable = .allocate(capacity: size)
        headWritable.initialize(repeating: 0, count: size)
        availIndex = startIndex
        lastUsed = startIndex
        kickedAt = startIndex
        // Safe: all inside the translated ring parts.
        avail.initializeMemory(as: UInt8.self, repeating: 0, count: 6 + 2 * size)
        used.initializeMemory(as: UInt8.self, repeating: 0, count: 6 + 8 * size)
        (avail + 2).storeBytes(of: startIndex.littleEndian, as: UInt16.self)
        (used + 2).storeBytes(of: startIndex.littleEndian, as: UInt16.self)
    }

    deinit {
        shadowNext.deallocate()
        chainCount.deallocate()
        chainTail.deallocate()
        headWritable.deallocate()
    }

    /// Free descriptors left.
    public var freeDescriptors: Int { freeCount }

    /// Posts a chain (readable buffers must come first for a well-formed chain; not enforced, so
    /// tests can post bad ones). With `indirectTable`, writes the descriptors as an indirect table at
    /// that guest-physical address and uses one ring descriptor. Publishes `avail->idx` (release).
    ///
    /// - Returns: the head index the device will complete.
    /// - Throws: `.emptyChain`, `.queueFull`, `.outsideMemory` (indirect table).
    @discardableResult
    public func post(_ buffers: UnsafeBufferPointer<DriverBuffer>, indirectTable: UInt64? = nil)
        throws(DriverQueueError) -> UInt16
    {
        guard !buffers.isEmpty else { throw .emptyChain }
        let needed = indirectTable == nil ? buffers.count : 1
        guard needed <= freeCount, buffers.count <= 0xFFFF else { throw .queueFull }
        let head: UInt16
        if let table = indirectTable {
            for (i, buffer) in buffers.enumerated() {
                let flags =
                    (buffer.isWritable ? DescriptorFlag.write : 0)
                    | (i + 1 < buffers.count ? DescriptorFlag.next : 0)
                var entry = DescriptorBytes(
                    address: buffer.address, length: buffer.length, flags: flags,
                    next: UInt16(truncatingIfNeeded: i + 1))
                do {
                    try withUnsafeBytes(of: &entry) { (raw) throws(GuestMemoryError) in
                        try memory.write(guestPhysical: table &+ UInt64(i) &* 16, bytes: raw)
                    }
                } catch { throw .outsideMemory(address: table) }
            }
            head = freeHead
            freeHead = shadowNext[Int(head)]
            freeCount -= 1
            chainTail[Int(head)] = head
            write(
                head,
                DescriptorBytes(
                    address: table, length: UInt32(truncatingIfNeeded: buffers.count * 16),
                    flags: DescriptorFlag.indirect, next: 0))
            chainCount[Int(head)] = 1
        } else {
            head = freeHead
            var current = head
            for (i, buffer) in buffers.enumerated() {
                let last = i + 1 == buffers.count
                // The free list is already linked: the next free descriptor is the chain's next.
                let next = shadowNext[Int(current)]
                let flags = (buffer.isWritable ? DescriptorFlag.write : 0) | (last ? 0 : DescriptorFlag.next)
                write(
                    current,
                    DescriptorBytes(
                        address: buffer.address, length: buffer.length, flags: flags,
                        next: last ? 0 : next))
                if last {
                    chainTail[Int(head)] = current
                    freeHead = next
                } else {
                    current = next
                }
            }
            freeCount -= buffers.count
            chainCount[Int(head)] = UInt16(truncatingIfNeeded: buffers.count)
        }
        headWritable[Int(head)] = buffers.reduce(0) { $0 &+ ($1.isWritable ? $1.length : 0) }
        (avail + 4 + Int(availIndex & mask) * 2).storeBytes(of: head.littleEndian, as: UInt16.self)
        availIndex &+= 1
        // Release: descriptors and the ring entry are visible before the index that publishes them.
        vmm_store_release_u16(avail + 2, availIndex.littleEndian)
        return head
    }

    /// Array convenience for `post(_:indirectTable:)` (allocates; not for hot loops).
    @discardableResult
    public func post(_ buffers: [DriverBuffer], indirectTable: UInt64? = nil) throws(DriverQueueError) -> UInt16 {
        try buffers.withUnsafeBufferPointer { (b) throws(DriverQueueError) in try post(b, indirectTable: indirectTable)
        }
    }

    /// The next used entry, freeing its descriptors, or nil if the device has published none.
    /// With VIRTIO_F_IN_ORDER, buffers come back in the order they were made available; one used
    /// entry may stand for several (those it skipped report the writable length they were posted with).
    ///
    /// - Throws: `.unknownUsedID` if the device completed an id that is not in flight.
    public func reap() throws(DriverQueueError) -> UsedBuffer? {
        if inOrder, let last = batchLast { return try reapInOrder(last) }
        let index = UInt16(littleEndian: vmm_load_acquire_u16(used + 2))
        guard index != lastUsed else { return nil }
        let element = used + 4 + Int(lastUsed & mask) * 8
        let rawID = UInt32(littleEndian: element.load(as: UInt32.self))
        let length = UInt32(littleEndian: element.load(fromByteOffset: 4, as: UInt32.self))
        guard rawID < UInt32(size), chainCount[Int(rawID)] != 0 else {
            throw .unknownUsedID(UInt16(truncatingIfNeeded: rawID))
        }
        let id = UInt16(rawID)
        if inOrder { return try reapInOrder(UsedBuffer(id: id, length: length)) }
        release(id)
        return UsedBuffer(id: id, length: length)
    }

    /// Reaps the buffer made available at the next used index, part of the batch the used entry
    /// `last` ends (its id is in flight, so the walk reaches it before the buffers in flight run out).
    private func reapInOrder(_ last: UsedBuffer) throws(DriverQueueError) -> UsedBuffer {
        // Safe: the avail ring holds 4 + 2 × size bytes; the slot is masked below size.
        let head = UInt16(littleEndian: (avail + 4 + Int(lastUsed & mask) * 2).load(as: UInt16.self))
        guard Int(head) < size, chainCount[Int(head)] != 0 else { throw .unknownUsedID(last.id) }
        let used = UsedBuffer.inOrder(id: head, skippedLength: headWritable[Int(head)], last: last, pending: &batchLast)
        release(head)
        return used
    }

    /// Returns chain `id` (in flight) to the free list and moves to the next used index.
    private func release(_ id: UInt16) {
        // The chain is still linked through shadowNext: splice it onto the free list by its tail.
        shadowNext[Int(chainTail[Int(id)])] = freeHead
        freeHead = id
        freeCount += Int(chainCount[Int(id)])
        chainCount[Int(id)] = 0
        lastUsed &+= 1
    }

    /// Whether the device wants a kick for what was posted since the last call (full fence first).
    public func needsKick() -> Bool {
        vmm_fence_seq_cst()
        let old = kickedAt
        kickedAt = availIndex
        guard eventIndex else {
            return UInt16(littleEndian: vmm_load_relaxed_u16(used)) & SplitRingFlag.noNotify == 0
        }
        let availEvent = UInt16(littleEndian: vmm_load_relaxed_u16(used + 4 + size * 8))
        return vringNeedEvent(eventIndex: availEvent, new: availIndex, old: old)
    }

    /// Sets `used_event` (EVENT_IDX): interrupt me once the used index moves past `index`.
    public func setUsedEvent(_ index: UInt16) {
        vmm_store_relaxed_u16(avail + 4 + size * 2, index.littleEndian)
    }

    /// Sets or clears `VRING_AVAIL_F_NO_INTERRUPT` (without EVENT_IDX).
    public func suppressInterrupts(_ suppress: Bool) {
        vmm_store_relaxed_u16(avail, (suppress ? SplitRingFlag.noInterrupt : 0).littleEndian)
    }

    @inline(__always)
    private func write(_ index: UInt16, _ descriptor: DescriptorBytes) {
        // Safe: index < size; the table holds 16 × size bytes.
        (descriptors + Int(index) * 16).storeBytes(of: descriptor, as: DescriptorBytes.self)
    }
}

/// A descriptor in its little-endian wire layout (16 bytes, no padding).
/// Split: `word12` = flags, `word14` = next. Packed: `word12` = id, `word14` = flags.
struct DescriptorBytes {
    var address: UInt64
    var length: UInt32
    var word12: UInt16
    var word14: UInt16

    /// Split layout.
    init(address: UInt64, length: UInt32, flags: UInt16, next: UInt16) {
        self.address = address.littleEndian
        self.length = length.littleEndian
        self.word12 = flags.littleEndian
        self.word14 = next.littleEndian
    }

    /// Packed layout.
    init(address: UInt64, length: UInt32, id: UInt16, flags: UInt16) {
        self.address = address.littleEndian
        self.length = length.littleEndian
        self.word12 = id.littleEndian
        self.word14 = flags.littleEndian
    }
}
