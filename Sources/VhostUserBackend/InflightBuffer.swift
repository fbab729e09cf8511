import VhostUserProtocol
import CVMMPlatform
import VMMSysUtil

/// The shared inflight buffer of `GET/SET_INFLIGHT_FD` (vhost-user specification, "Inflight I/O
/// tracking"): one region per queue, `stride` bytes apart, in the split or packed layout of the
/// ring that uses it. The stride fits the larger, packed, layout, so one buffer serves either. The front-end keeps the memory across back-end
/// restarts, so a new back-end can resubmit requests the old one popped but never completed.
///
/// Thread-safety: immutable; each queue's region is written only by the thread serving that queue
/// (or by the control thread while the queue's worker is parked).
final class InflightBuffer: @unchecked Sendable {
    /// The memory we created for `GET_INFLIGHT_FD` (its fd is sent in the reply), if we created it.
    let created: SharedMemory?
    /// The mapping: `created.mapping`, or the front-end's fd mapped on `SET_INFLIGHT_FD`.
    let mapping: MemoryMapping
    let queueCount: Int
    let queueSize: Int
    let stride: Int

    /// Bytes of one queue's region: the packed layout's header (32) + 32 per descriptor (the split
    /// layout needs 16 + 16 per descriptor), 64-byte aligned.
    static func stride(queueSize: Int) -> Int {
        (InflightPackedQueue.headerSize + InflightPackedQueue.entrySize * queueSize + 63) & ~63
    }

    /// Creates a zeroed buffer (version 0: "start fresh") for `queueCount` queues of `queueSize`.
    init(queueCount: Int, queueSize: Int) throws(SharedMemoryError) {
        let stride = Self.stride(queueSize: queueSize)
        let memory = try SharedMemory(size: stride * queueCount)
        created = memory
        mapping = memory.mapping
        self.queueCount = queueCount
        self.queueSize = queueSize
        self.stride = stride
    }

    /// Adopts a front-end's mapping of a buffer with this geometry (sizes already checked).
    init(mapping: MemoryMapping, queueCount: Int, queueSize: Int) {
        created = nil
        self.mapping = mapping
        self.queueCount = queueCount
        self.queueSize = queueSize
        self.stride = Self.stride(queueSize: queueSize)
    }

    /// The region of queue `index` in the layout of its ring, or nil if the buffer has none for it.
    func tracker(_ index: Int, packed: Bool) -> InflightTracker? {
        if packed { return packedQueue(index).map { .packed($0) } }
        return queue(index).map { .split($0) }
    }

    /// Queue `index`'s region in the split layout.
    func queue(_ index: Int) -> InflightSplitQueue? {
        region(index).map { InflightSplitQueue(buffer: self, base: $0, capacity: queueSize) }
    }

    /// Queue `index`'s region in the packed layout.
    func packedQueue(_ index: Int) -> InflightPackedQueue? {
        region(index).map { InflightPackedQueue(buffer: self, base: $0, capacity: queueSize) }
    }

    private func region(_ index: Int) -> UnsafeMutableRawPointer? {
        guard index >= 0, index < queueCount else { return nil }
        // Safe: index < queueCount and the mapping holds queueCount × stride bytes (checked when
        // adopted, exact when created); stride is a multiple of 64, so fields are aligned, and it
        // holds either layout for queueSize descriptors.
        return mapping.base + index * stride
    }
}

/// One split queue's inflight region: `features` u64 @0, `version` u16 @8, `desc_num` u16 @10,
/// `last_batch_head` u16 @12, `used_idx` u16 @14, then `desc[i]` (16 bytes: `inflight` u8 @0,
/// `next` u16 @6, `counter` u64 @8). Native endian, as libvhost-user writes it.
///
/// Thread-safety: used by one thread at a time (see `InflightBuffer`).
struct InflightSplitQueue {
    /// Keeps the mapping alive.
    let buffer: InflightBuffer
    let base: UnsafeMutableRawPointer
    /// Descriptors the region has room for.
    let capacity: Int
    /// Queue size in use (`desc_num`), set by `recover`.
    private(set) var size = 0
    /// Next pop's counter value (our own memory: a restart recomputes it from the records).
    private var counter: UInt64 = 1

    init(buffer: InflightBuffer, base: UnsafeMutableRawPointer, capacity: Int) {
        self.buffer = buffer
        self.base = base
        self.capacity = capacity
    }

    private var version: UInt16 {
        get { base.load(fromByteOffset: 8, as: UInt16.self) }
        nonmutating set { base.storeBytes(of: newValue, toByteOffset: 8, as: UInt16.self) }
    }
    private var descriptorCount: UInt16 {
        get { base.load(fromByteOffset: 10, as: UInt16.self) }
        nonmutating set { base.storeBytes(of: newValue, toByteOffset: 10, as: UInt16.self) }
    }
    private var lastBatchHead: UInt16 {
        get { base.load(fromByteOffset: 12, as: UInt16.self) }
        nonmutating set { base.storeBytes(of: newValue, toByteOffset: 12, as: UInt16.self) }
    }
    private var usedIndex: UInt16 {
        get { base.load(fromByteOffset: 14, as: UInt16.self) }
        nonmutating set { base.storeBytes(of: newValue, toByteOffset: 14, as: UInt16.self) }
    }
    // Safe (all four): callers pass head < size <= capacity, and the region holds 16 × capacity
    // descriptor bytes after its 16-byte header; offsets are naturally aligned.
    private func entry(_ head: UInt16) -> UnsafeMutableRawPointer { base + 16 + Int(head) &* 16 }
    private func isInflight(_ head: UInt16) -> UInt8 { entry(head).load(as: UInt8.self) }
    private func setInflight(_ head: UInt16, _ value: UInt8) { entry(head).storeBytes(of: value, as: UInt8.self) }
    private func next(_ head: UInt16) -> UInt16 { entry(head).load(fromByteOffset: 6, as: UInt16.self) }

    /// Prepares the region for a ring of `queueSize` whose `used->idx` is `deviceUsedIndex`, and
    /// returns the heads to resubmit, oldest first, and whether the region held records (false:
    /// it was fresh and has just been initialised).
    ///
    /// Version 0 (new buffer, or the VM was reset) starts fresh. Otherwise: if the last batch was
    /// published (`used->idx` moved past our record) but its entries not cleared, clear them; then
    /// every entry still marked in flight is resubmitted in `counter` order.
    /// - Throws: `VhostUserError.corruptInflight` for records that cannot be valid.
    mutating func recover(queueIndex: Int, queueSize: Int, deviceUsedIndex: UInt16) throws(VhostUserError) -> (
        heads: [UInt16], wasInitialized: Bool
    ) {
        guard queueSize <= capacity else {
            throw .corruptInflight(index: queueIndex, reason: "ring size \(queueSize) exceeds the buffer's \(capacity)")
        }
        size = queueSize
        if version == 0 {
            (base + 16).initializeMemory(as: UInt8.self, repeating: 0, count: 16 * queueSize)
            base.storeBytes(of: UInt64(0), as: UInt64.self)
            descriptorCount = UInt16(queueSize)
            lastBatchHead = 0
            usedIndex = deviceUsedIndex
            version = 1
            counter = 1
            return ([], false)
        }
        guard Int(descriptorCount) == queueSize else {
            throw .corruptInflight(index: queueIndex, reason: "desc_num \(descriptorCount), ring size \(queueSize)")
        }
        let unrecorded = deviceUsedIndex &- usedIndex
        if unrecorded != 0 {
            guard Int(unrecorded) <= queueSize else {
                throw .corruptInflight(
                    index: queueIndex, reason: "used_idx \(usedIndex) vs used->idx \(deviceUsedIndex)")
            }
            var head = lastBatchHead
            for _ in 0..<unrecorded {
                guard Int(head) < queueSize else {
                    throw .corruptInflight(index: queueIndex, reason: "batch link \(head) out of range")
                }
                setInflight(head, 0)
                head = next(head)
            }
            usedIndex = deviceUsedIndex
        }
        var pending: [(counter: UInt64, head: UInt16)] = []
        for head in 0..<UInt16(queueSize) where isInflight(head) != 0 {
            pending.append((entry(head).load(fromByteOffset: 8, as: UInt64.self), head))
        }
        pending.sort { $0.counter < $1.counter }
        counter = (pending.last?.counter ?? 0) &+ 1
        return (pending.map(\.head), true)
    }

    /// Records that `head` was popped (before the device acts on it).
    @inline(__always)
    mutating func recordPop(_ head: UInt16) {
        guard Int(head) < size else { return }
        entry(head).storeBytes(of: counter, toByteOffset: 8, as: UInt64.self)
        setInflight(head, 1)
        counter &+= 1
    }

    /// Links the heads of the batch about to be published (so a restart can tell whether it was).
    func beginBatch(_ heads: [UInt16]) {
        var last = lastBatchHead
        for head in heads where Int(head) < size {
            entry(head).storeBytes(of: last, toByteOffset: 6, as: UInt16.self)
            last = head
        }
        lastBatchHead = last
        // Full fence: the links must be in memory before used->idx moves (a kill right after the
        // publication must find them).
        vmm_fence_seq_cst()
    }

    /// Clears the batch's entries once `used->idx` (now `deviceUsedIndex`) was published.
    func endBatch(_ heads: [UInt16], deviceUsedIndex: UInt16) {
        // Full fence: clearing must not be reordered before the used index store.
        vmm_fence_seq_cst()
        for head in heads where Int(head) < size { setInflight(head, 0) }
        usedIndex = deviceUsedIndex
    }
}
