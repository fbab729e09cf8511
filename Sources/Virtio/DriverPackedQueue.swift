import CVMMPlatform

/// The driver side of a packed virtqueue: posts chains with the driver's wrap counter, writing the
/// head's flags last (release), and reaps used descriptors. Keeps its own free buffer-id list.
/// With VIRTIO_F_IN_ORDER it reaps as an in-order driver must: one used descriptor may stand for
/// every buffer from the slot it sits in up to the one whose id it carries.
///
/// Thread-safety: not thread-safe; one owner thread.
public final class DriverPackedQueue {
    /// Queue size (descriptors).
    public let size: Int
    /// The memory the rings and buffers live in.
    public let memory: GuestMemory
    /// Where the rings are (guest-physical).
    public let addresses: RingAddresses
    let eventIndex: Bool
    let inOrder: Bool
    let ring: UnsafeMutableRawPointer
    let driverEvent: UnsafeMutableRawPointer
    let deviceEvent: UnsafeMutableRawPointer
    let freeIDs: UnsafeMutablePointer<UInt16>
    var freeIDCount: Int
    /// Ring slots each in-flight id occupies (0 = not in flight).
    let idSlots: UnsafeMutablePointer<UInt16>
    var freeSlots: Int
    /// In order: the id posted with its head at each slot, and the bytes each id lets the device
    /// write (what a buffer skipped by a batched used descriptor reports as used).
    let headID: UnsafeMutablePointer<UInt16>
    let idWritable: UnsafeMutablePointer<UInt32>
    /// In order: the id and length of the used descriptor being consumed, until its buffer is reaped.
    var batchLast: UsedBuffer?
    var nextAvail: UInt16 = 0
    var availWrap = true
    var nextUsed: UInt16 = 0
    var usedWrap = true
    var kickedAt: UInt16 = 0

    /// Sets up a zeroed descriptor ring and both event areas (flags ENABLE) at guest-physical `addresses`.
    ///
    /// - Throws: `DriverQueueError.configuration` for a bad size, alignment or placement.
    public init(memory: GuestMemory, size: Int, addresses: RingAddresses, features: VirtioFeatures)
        throws(DriverQueueError)
    {
        guard size >= 1, size <= maximumQueueSize else { throw .configuration(.invalidQueueSize(size)) }
        do {
            ring = try addresses.translate(.descriptorTable, in: memory, alignment: 16, length: 16 * UInt64(size))
            driverEvent = try addresses.translate(.driverArea, in: memory, alignment: 4, length: 4)
            deviceEvent = try addresses.translate(.deviceArea, in: memory, alignment: 4, length: 4)
        } catch { throw .configuration(error) }
        self.size = size
        self.memory = memory
        self.addresses = addresses
        eventIndex = features.contains(.ringEventIndex)
        inOrder = features.contains(.inOrder)
        freeIDs = .allocate(capacity: size)
        for i in 0..<size { (freeIDs + i).initialize(to: UInt16(size - 1 - i)) }
        freeIDCount = size
        idSlots = .allocate(capacity: size)
        idSlots.initialize(repeating: 0, count: size)
        freeSlots = size
        headID = .allocate(capacity: size)
        headID.initialize(repeating: 0, count: size)
        idWritable = .allocate(capacity: size)
        idWritable.initialize(repeating: 0, count: size)
        ring.initializeMemory(as: UInt8.self, repeating: 0, count: 16 * size)
        driverEvent.initializeMemory(as: UInt8.self, repeating: 0, count: 4)
        deviceEvent.initializeMemory(as: UInt8.self, repeating: 0, count: 4)
    }

    deinit {
        freeIDs.deallocate()
        idSlots.deallocate()
        headID.deallocate()
        idWritable.deallocate()
    }

    /// Free ring slots left.
    public var freeDescriptors: Int { freeSlots }

    /// Posts a chain; with `indirectTable`, as one indirect descriptor whose table is written at
    /// that guest-physical address. The buffer id goes in every descriptor of the chain.
    ///
    /// - Returns: the buffer id the device will complete.
    /// - Throws: `.emptyChain`, `.queueFull`, `.outsideMemory` (indirect table).
    @discardableResult
    public func post(_ buffers: UnsafeBufferPointer<DriverBuffer>, indirectTable: UInt64? = nil)
        throws(DriverQueueError) -> UInt16
    {
        guard !buffers.isEmpty else { throw .emptyChain }
        let needed = indirectTable == nil ? buffers.count : 1
        guard needed <= freeSlots, freeIDCount > 0, buffers.count <= 0xFFFF else { throw .queueFull }
        if let table = indirectTable {
            for (i, buffer) in buffers.enumerated() {
                var entry = DescriptorBytes(
                    address: buffer.address, length: buffer.length, id: 0,
                    flags: buffer.isWritable ? DescriptorFlag.write : 0)
                do {
                    try withUnsafeBytes(of: &entry) { (raw) throws(GuestMemoryError) in
                        try memory.write(guestPhysical: table &+ UInt64(i) &* 16, bytes: raw)
                    }
                } catch { throw .outsideMemory(address: table) }
            }
        }
        freeIDCount -= 1
        let id = freeIDs[freeIDCount]
        idSlots[Int(id)] = UInt16(truncatingIfNeeded: needed)
        freeSlots -= needed
        let headSlot = nextAvail
        headID[Int(headSlot)] = id
        idWritable[Int(id)] = buffers.reduce(0) { $0 &+ ($1.isWritable ? $1.length : 0) }
        var headFlags: UInt16 = 0
        for i in 0..<needed {
            let descriptor: DescriptorBytes
            var flags = wrapBits(availWrap)
            if let table = indirectTable {
                flags |= DescriptorFlag.indirect
                descriptor = DescriptorBytes(
                    address: table, length: UInt32(truncatingIfNeeded: buffers.count * 16),
                    id: id, flags: 0)
            } else {
                let buffer = buffers[i]
                if buffer.isWritable { flags |= DescriptorFlag.write }
                if i + 1 < needed { flags |= DescriptorFlag.next }
                descriptor = DescriptorBytes(address: buffer.address, length: buffer.length, id: id, flags: 0)
            }
            let slot = ring + Int(nextAvail) * 16
            // Address, length and id first; flags after (the head's last of all).
            slot.storeBytes(of: descriptor, as: DescriptorBytes.self)
            if i == 0 {
                headFlags = flags
                // Not yet available: stale flags from an earlier lap cannot look available, since
                // the device waits for this lap's wrap bits.
            } else {
                (slot + 14).storeBytes(of: flags.littleEndian, as: UInt16.self)
            }
            nextAvail += 1
            if Int(nextAvail) == size {
                nextAvail = 0
                availWrap.toggle()
            }
        }
        // Release: every descriptor of the chain is visible before the head becomes available.
        vmm_store_release_u16(ring + Int(headSlot) * 16 + 14, headFlags.littleEndian)
        return id
    }

    /// Array convenience for `post(_:indirectTable:)` (allocates; not for hot loops).
    @discardableResult
    public func post(_ buffers: [DriverBuffer], indirectTable: UInt64? = nil) throws(DriverQueueError) -> UInt16 {
        try buffers.withUnsafeBufferPointer { (b) throws(DriverQueueError) in try post(b, indirectTable: indirectTable)
        }
    }

    /// The next used buffer, or nil if the device has marked none. In order, buffers are returned
    /// in the order they were posted, those a batched used descriptor skipped with the writable
    /// length they were posted with (VIRTIO 1.2 section 2.8.8: "assumed to have been used (read
    /// or written) by the device completely").
    ///
    /// - Throws: `.unknownUsedID` if the device completed an id that is not in flight.
    public func reap() throws(DriverQueueError) -> UsedBuffer? {
        if inOrder, let last = batchLast {
            return try reapInOrder(last)
        }
        let slot = ring + Int(nextUsed) * 16
        let flags = UInt16(littleEndian: vmm_load_acquire_u16(slot + 14))
        let avail = flags & DescriptorFlag.avail != 0
        let used = flags & DescriptorFlag.used != 0
        guard avail == usedWrap, used == usedWrap else { return nil }
        let length = UInt32(littleEndian: slot.load(fromByteOffset: 8, as: UInt32.self))
        let id = UInt16(littleEndian: slot.load(fromByteOffset: 12, as: UInt16.self))
        guard Int(id) < size, idSlots[Int(id)] != 0 else { throw .unknownUsedID(id) }
        if inOrder { return try reapInOrder(UsedBuffer(id: id, length: length)) }
        release(id)
        return UsedBuffer(id: id, length: length)
    }

    /// Reaps the buffer posted at the next used slot, part of the batch the used descriptor `last`
    /// ends (its id is in flight, so the walk reaches it before the buffers in flight run out).
    private func reapInOrder(_ last: UsedBuffer) throws(DriverQueueError) -> UsedBuffer {
        let id = headID[Int(nextUsed)]
        guard idSlots[Int(id)] != 0 else { throw .unknownUsedID(last.id) }
        let used = UsedBuffer.inOrder(id: id, skippedLength: idWritable[Int(id)], last: last, pending: &batchLast)
        release(id)
        return used
    }

    /// Frees `id` (in flight) and moves the next used slot past its descriptors.
    private func release(_ id: UInt16) {
        let count = Int(idSlots[Int(id)])
        idSlots[Int(id)] = 0
        freeSlots += count
        freeIDs[freeIDCount] = id
        freeIDCount += 1
        var next = Int(nextUsed) + count
        if next >= size {
            next -= size
            usedWrap.toggle()
        }
        nextUsed = UInt16(next)
    }

    /// Whether the device wants a kick for what was posted since the last call (full fence first).
    public func needsKick() -> Bool {
        vmm_fence_seq_cst()
        let old = kickedAt
        kickedAt = nextAvail
        let flags = UInt16(littleEndian: vmm_load_acquire_u16(deviceEvent + 2)) & 3
        if flags == PackedEventFlag.disable { return false }
        guard flags == PackedEventFlag.desc, eventIndex else { return true }
        let offWrap = UInt16(littleEndian: vmm_load_relaxed_u16(deviceEvent))
        let q = UInt16(truncatingIfNeeded: size)
        var offset = offWrap & 0x7fff
        var previous = old
        if nextAvail <= previous { previous &-= q }
        if (offWrap & 0x8000 != 0) != availWrap { offset &-= q }
        return vringNeedEvent(eventIndex: offset, new: nextAvail, old: previous)
    }

    /// Writes the driver event-suppression area: `flags` 0 ENABLE, 1 DISABLE, 2 DESC with
    /// `offWrap` (slot | wrap counter << 15).
    public func setDriverEvent(flags: UInt16, offWrap: UInt16 = 0) {
        vmm_store_relaxed_u16(driverEvent, offWrap.littleEndian)
        vmm_store_release_u16(driverEvent + 2, flags.littleEndian)
    }

    /// The driver's next used slot and wrap counter, as `offWrap` for `setDriverEvent`.
    public var usedOffWrap: UInt16 { nextUsed | (usedWrap ? 0x8000 : 0) }

    @inline(__always)
    private func wrapBits(_ wrap: Bool) -> UInt16 { wrap ? DescriptorFlag.avail : DescriptorFlag.used }
}
