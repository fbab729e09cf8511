import CVMMPlatform
import Virtio

/// One packed queue's inflight region, in the layout of the vhost-user specification ("Inflight
/// I/O tracking", packed virtqueue): header `features` u64 @0, `version` u16 @8, `desc_num` u16
/// @10, `free_head` u16 @12, `old_free_head` u16 @14, `used_idx` u16 @16, `old_used_idx` u16 @18,
/// `used_wrap_counter` u8 @20, `old_used_wrap_counter` u8 @21, then at @32 `desc[i]` of 32 bytes:
/// `inflight` u8 @0, `next` u16 @2, `last` u16 @4, `num` u16 @6, `counter` u64 @8, `id` u16 @16,
/// `flags` u16 @18, `len` u32 @20, `addr` u64 @24. Native endian.
///
/// Entries form a free list (`next`). Popping a chain of n ring descriptors takes the first n
/// entries of the free list, copies the descriptors into them, and marks the first (the head:
/// `num`, `last`, `counter`) in flight. Completing chains returns their entries to the free list,
/// records the used position after the batch in `used_idx`/`used_wrap_counter`, publishes the
/// batch in the ring, clears the heads' `inflight`, then copies the current fields into the `old_*`
/// ones: a crash between two steps leaves either the old or the new state recognisable.
///
/// Recovery (a restarted back-end): if `used_idx` differs from `old_used_idx` a batch was being
/// committed; the ring slot at `old_used_idx` tells whether the driver can see it (its flags are
/// no longer "available" for `old_used_wrap_counter`). If it can, the batch's heads (on the free
/// list) are cleared and the new position kept; otherwise the old position stands. The free list
/// is then rebuilt from the heads still in flight (every link and count checked), the ring resumes
/// used at `old_used_idx` and available that many slots further as the in-flight chains occupy,
/// and the in-flight chains are resubmitted from their copies, oldest first.
///
/// Thread-safety: used by one thread at a time (see `InflightBuffer`).
struct InflightPackedQueue {
    static let headerSize = 32
    static let entrySize = 32
    /// `next` value that ends the free list.
    static let none: UInt16 = 0xFFFF

    /// Keeps the mapping alive.
    let buffer: InflightBuffer
    let base: UnsafeMutableRawPointer
    /// Entries the region has room for.
    let capacity: Int
    /// Queue size in use (`desc_num`), set by `recover`.
    private(set) var size = 0
    private var counter: UInt64 = 1
    /// Head entry of each buffer id in flight (our memory; `none` when not in flight).
    private var headOfID: [UInt16] = []
    /// Head entries of the batch being completed.
    private var batch: [UInt16] = []

    init(buffer: InflightBuffer, base: UnsafeMutableRawPointer, capacity: Int) {
        self.buffer = buffer
        self.base = base
        self.capacity = capacity
    }

    /// A chain to resubmit: its buffer id and ring descriptor copies (16 bytes each, packed layout).
    struct Resubmission {
        let id: UInt16
        let descriptors: [UInt8]
    }

    /// Where a recovered ring resumes (vhost-user packed base) and what it resubmits, oldest first.
    struct Recovery {
        let base: UInt32
        let resubmit: [Resubmission]
    }

    // MARK: fields (native endian, as the specification's C structs)

    private func u16(_ offset: Int) -> UInt16 { base.load(fromByteOffset: offset, as: UInt16.self) }
    private func setU16(_ offset: Int, _ value: UInt16) {
        base.storeBytes(of: value, toByteOffset: offset, as: UInt16.self)
    }
    private func u8(_ offset: Int) -> UInt8 { base.load(fromByteOffset: offset, as: UInt8.self) }
    private func setU8(_ offset: Int, _ value: UInt8) {
        base.storeBytes(of: value, toByteOffset: offset, as: UInt8.self)
    }
    // Safe (entry accessors): callers pass entry < size <= capacity; the region holds 32 × capacity
    // bytes after its 32-byte header, and every field is naturally aligned.
    private func entry(_ index: UInt16) -> UnsafeMutableRawPointer {
        base + Self.headerSize + Int(index) &* Self.entrySize
    }
    private func isInflight(_ index: UInt16) -> Bool { entry(index).load(as: UInt8.self) != 0 }
    private func setInflight(_ index: UInt16, _ value: Bool) {
        entry(index).storeBytes(of: value ? 1 : 0, as: UInt8.self)
    }
    private func next(_ index: UInt16) -> UInt16 { entry(index).load(fromByteOffset: 2, as: UInt16.self) }
    private func setNext(_ index: UInt16, _ value: UInt16) {
        entry(index).storeBytes(of: value, toByteOffset: 2, as: UInt16.self)
    }
    private func last(_ index: UInt16) -> UInt16 { entry(index).load(fromByteOffset: 4, as: UInt16.self) }
    private func count(_ index: UInt16) -> UInt16 { entry(index).load(fromByteOffset: 6, as: UInt16.self) }

    private var version: UInt16 {
        get { u16(8) }
        nonmutating set { setU16(8, newValue) }
    }
    private var descriptorCount: UInt16 {
        get { u16(10) }
        nonmutating set { setU16(10, newValue) }
    }
    private var freeHead: UInt16 {
        get { u16(12) }
        nonmutating set { setU16(12, newValue) }
    }
    private var oldFreeHead: UInt16 {
        get { u16(14) }
        nonmutating set { setU16(14, newValue) }
    }
    /// Used slot | wrap counter << 15 (the two fields combined).
    private var usedPosition: UInt16 {
        get { u16(16) | (u8(20) != 0 ? 0x8000 : 0) }
        nonmutating set {
            setU16(16, newValue & 0x7fff)
            setU8(20, newValue & 0x8000 != 0 ? 1 : 0)
        }
    }
    private var oldUsedPosition: UInt16 {
        get { u16(18) | (u8(21) != 0 ? 0x8000 : 0) }
        nonmutating set {
            setU16(18, newValue & 0x7fff)
            setU8(21, newValue & 0x8000 != 0 ? 1 : 0)
        }
    }

    // MARK: recovery

    /// Prepares the region for a ring of `queueSize` and returns where to resume and what to
    /// resubmit, or nil if the region was fresh (version 0: it has just been initialised, the ring
    /// starts at the front-end's base).
    ///
    /// - Parameter isAvailable: whether a ring slot holds a descriptor made available in the lap of
    ///   a wrap counter (`PackedQueue.isAvailable(slot:wrapCounter:)`): tells whether an
    ///   interrupted batch was published.
    /// - Throws: `VhostUserError.corruptInflight` for records that cannot be valid.
    mutating func recover(queueIndex: Int, queueSize: Int, isAvailable: (UInt16, Bool) -> Bool) throws(VhostUserError)
        -> Recovery?
    {
        func corrupt(_ reason: String) -> VhostUserError { .corruptInflight(index: queueIndex, reason: reason) }
        guard queueSize <= capacity, queueSize < Int(Self.none) else {
            throw corrupt("ring size \(queueSize) exceeds the buffer's \(capacity)")
        }
        size = queueSize
        headOfID = Array(repeating: Self.none, count: queueSize)
        batch.removeAll()
        batch.reserveCapacity(queueSize)
        let n = UInt16(queueSize)
        if version == 0 {
            (base + Self.headerSize).initializeMemory(as: UInt8.self, repeating: 0, count: Self.entrySize * queueSize)
            base.initializeMemory(as: UInt8.self, repeating: 0, count: Self.headerSize)
            descriptorCount = n
            rebuildFreeList(claimed: [Bool](repeating: false, count: queueSize))
            usedPosition = 0x8000
            oldUsedPosition = 0x8000
            version = 1
            counter = 1
            return nil
        }
        guard descriptorCount == n else { throw corrupt("desc_num \(descriptorCount), ring size \(queueSize)") }
        for position in [usedPosition, oldUsedPosition] where position & 0x7fff >= n {
            throw corrupt("used index \(position & 0x7fff) beyond the ring")
        }
        if usedPosition != oldUsedPosition {
            let slot = oldUsedPosition & 0x7fff
            let wrap = oldUsedPosition & 0x8000 != 0
            if !isAvailable(slot, wrap) {
                // Published: the batch's heads lead the free list; they are complete.
                var entry = freeHead
                var steps = 0
                while entry != Self.none, steps < queueSize {
                    guard entry < n else { throw corrupt("free list link \(entry) out of range") }
                    setInflight(entry, false)
                    entry = next(entry)
                    steps += 1
                }
                oldUsedPosition = usedPosition
            } else {
                usedPosition = oldUsedPosition
            }
        }
        // The heads still in flight, their entries, and the slots they occupy.
        var claimed = [Bool](repeating: false, count: queueSize)
        var pending: [(counter: UInt64, resubmission: Resubmission)] = []
        var slots = 0
        for head in 0..<n where isInflight(head) {
            let num = Int(count(head))
            guard num >= 1, slots + num <= queueSize else { throw corrupt("entry \(head) holds \(num) descriptors") }
            var bytes: [UInt8] = []
            bytes.reserveCapacity(16 * num)
            var entry = head
            for step in 0..<num {
                guard entry < n, !claimed[Int(entry)] else { throw corrupt("chain at entry \(head) links to \(entry)") }
                claimed[Int(entry)] = true
                bytes += packedDescriptor(entry)
                if step + 1 < num { entry = next(entry) }
            }
            guard last(head) == entry else {
                throw corrupt("entry \(head): last \(last(head)), chain ends at \(entry)")
            }
            let id = self.entry(entry).load(fromByteOffset: 16, as: UInt16.self)
            guard id < n, headOfID[Int(id)] == Self.none else {
                throw corrupt("buffer id \(id) invalid or twice in flight")
            }
            headOfID[Int(id)] = head
            slots += num
            pending.append(
                (self.entry(head).load(fromByteOffset: 8, as: UInt64.self), Resubmission(id: id, descriptors: bytes)))
        }
        rebuildFreeList(claimed: claimed)
        pending.sort { $0.counter < $1.counter }
        counter = (pending.last?.counter ?? 0) &+ 1
        // Available resumes past every in-flight chain's slots (each popped chain moved it as far).
        let used = usedPosition
        var availSlot = Int(used & 0x7fff) + slots
        var availWrap = used & 0x8000 != 0
        if availSlot >= queueSize {
            availSlot -= queueSize
            availWrap.toggle()
        }
        let avail = UInt32(availSlot) | (availWrap ? 0x8000 : 0)
        return Recovery(base: avail | UInt32(used) << 16, resubmit: pending.map(\.resubmission))
    }

    /// Links every entry not `claimed` into the free list, in index order.
    private func rebuildFreeList(claimed: [Bool]) {
        var head = Self.none
        for index in stride(from: size - 1, through: 0, by: -1) where !claimed[index] {
            let entry = UInt16(index)
            setInflight(entry, false)
            setNext(entry, head)
            head = entry
        }
        freeHead = head
        oldFreeHead = head
    }

    /// Entry `index`'s descriptor copy in the ring's 16-byte packed layout (little-endian).
    private func packedDescriptor(_ index: UInt16) -> [UInt8] {
        let e = entry(index)
        var bytes = [UInt8](repeating: 0, count: 16)
        bytes.withUnsafeMutableBytes { out in
            out.storeBytes(
                of: e.load(fromByteOffset: 24, as: UInt64.self).littleEndian, toByteOffset: 0, as: UInt64.self)
            out.storeBytes(
                of: e.load(fromByteOffset: 20, as: UInt32.self).littleEndian, toByteOffset: 8, as: UInt32.self)
            out.storeBytes(
                of: e.load(fromByteOffset: 16, as: UInt16.self).littleEndian, toByteOffset: 12, as: UInt16.self)
            out.storeBytes(
                of: e.load(fromByteOffset: 18, as: UInt16.self).littleEndian, toByteOffset: 14, as: UInt16.self)
        }
        return bytes
    }

    // MARK: data path

    /// Records a chain just popped: copies its ring descriptors into free entries and marks the
    /// head in flight (before the device acts on it).
    @inline(__always)
    mutating func recordPop(_ chain: Chain, descriptors: RingDescriptors) {
        let head = freeHead
        guard Int(chain.id) < headOfID.count, head != Self.none, Int(head) < size else { return }
        var entry = head
        var previous = head
        var copied = 0
        var overflow = false
        for index in 0..<descriptors.count {
            let ringDescriptor = descriptors.descriptor(index)
            guard entry != Self.none, Int(entry) < size else {
                overflow = true
                break
            }
            let e = self.entry(entry)
            e.storeBytes(
                of: UInt64(littleEndian: ringDescriptor.loadUnaligned(as: UInt64.self)), toByteOffset: 24,
                as: UInt64.self)
            e.storeBytes(
                of: UInt32(littleEndian: ringDescriptor.loadUnaligned(fromByteOffset: 8, as: UInt32.self)),
                toByteOffset: 20, as: UInt32.self)
            e.storeBytes(
                of: UInt16(littleEndian: ringDescriptor.loadUnaligned(fromByteOffset: 12, as: UInt16.self)),
                toByteOffset: 16, as: UInt16.self)
            e.storeBytes(
                of: UInt16(littleEndian: ringDescriptor.loadUnaligned(fromByteOffset: 14, as: UInt16.self)),
                toByteOffset: 18, as: UInt16.self)
            copied += 1
            previous = entry
            entry = next(entry)
        }
        // More descriptors in flight than the ring has: cannot happen for a valid pop; then the
        // chain is simply not recorded (a restart re-pops it from the ring).
        guard !overflow, copied > 0 else { return }
        let h = self.entry(head)
        h.storeBytes(of: UInt16(copied), toByteOffset: 6, as: UInt16.self)
        h.storeBytes(of: previous, toByteOffset: 4, as: UInt16.self)
        h.storeBytes(of: counter, toByteOffset: 8, as: UInt64.self)
        counter &+= 1
        // Full fence: the copies before the mark, the mark before the free list moves on.
        vmm_fence_seq_cst()
        setInflight(head, true)
        vmm_fence_seq_cst()
        freeHead = entry
        oldFreeHead = entry
        headOfID[Int(chain.id)] = head
    }

    /// Notes that buffer `id` is in the batch about to be published.
    @inline(__always)
    mutating func recordCompletion(_ id: UInt16) {
        guard Int(id) < headOfID.count else { return }
        let head = headOfID[Int(id)]
        guard head != Self.none else { return }
        headOfID[Int(id)] = Self.none
        batch.append(head)
    }

    /// First half of committing the batch, before the ring publishes it: entries back on the free
    /// list and the used position after the batch recorded.
    mutating func beginCommit(usedAfter: UInt16) {
        guard !batch.isEmpty else { return }
        var free = freeHead
        for head in batch {
            setNext(last(head), free)
            free = head
        }
        freeHead = free
        usedPosition = usedAfter
        // Full fence: the record must be complete before the driver can see the batch.
        vmm_fence_seq_cst()
    }

    /// Second half, once the ring published the batch: heads cleared, state copied to `old_*`.
    mutating func endCommit() {
        guard !batch.isEmpty else { return }
        // Full fence: clearing must not be reordered before the publication.
        vmm_fence_seq_cst()
        for head in batch { setInflight(head, false) }
        oldFreeHead = freeHead
        oldUsedPosition = usedPosition
        batch.removeAll(keepingCapacity: true)
    }
}
