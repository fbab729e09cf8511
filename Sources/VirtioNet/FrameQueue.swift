import CVMMPlatform
import VMMSysUtil

/// A bounded queue of copied Ethernet frames, from any number of producer threads to one
/// consumer: how a switch port hands frames to another port's receive worker without touching
/// that port's ring. Slots are allocated once; a full queue refuses a frame (the producer drops and
/// counts it) instead of waiting, so one port that stops taking frames never blocks the others.
///
/// Thread-safety: `push` from any thread (producers share a mutex); `front`, `removeFront` and
/// `removeAll` from one consumer thread at a time. The consumer never takes the mutex: the
/// indices are published with release stores and read with acquire loads.
public final class FrameQueue: @unchecked Sendable {
    /// Frames the queue holds at most.
    public let capacity: Int
    /// The longest frame a slot holds.
    public let slotSize: Int
    private let storage: UnsafeMutableRawPointer
    private let lengths: UnsafeMutablePointer<UInt32>
    /// `indices[0]`: head (next to consume, written by the consumer); `indices[1]`: tail (next
    /// free slot, written by producers under `producers`). Free-running, compared modulo 2^32.
    private let indices: UnsafeMutablePointer<UInt32>
    private let producers = PthreadMutex()

    /// A queue of `capacity` slots (at least 1) of `slotSize` bytes each.
    public init(capacity: Int, slotSize: Int) {
        self.capacity = max(1, capacity)
        self.slotSize = max(1, slotSize)
        storage = .allocate(byteCount: self.capacity * self.slotSize, alignment: 64)
        lengths = .allocate(capacity: self.capacity)
        lengths.initialize(repeating: 0, count: self.capacity)
        indices = .allocate(capacity: 2)
        indices.initialize(repeating: 0, count: 2)
    }

    deinit {
        storage.deallocate()
        lengths.deallocate()
        indices.deallocate()
    }

    /// Copies `frame` in.
    ///
    /// - Returns: false (nothing queued) when the queue is full or the frame longer than a slot.
    @discardableResult
    public func push(_ frame: UnsafeRawBufferPointer) -> Bool {
        guard frame.count <= slotSize else { return false }
        return producers.withLock {
            let tail = indices[1]
            guard tail &- vmm_load_acquire_u32(indices) < UInt32(capacity) else { return false }
            let slot = Int(tail % UInt32(capacity))
            // Safe: slot < capacity, frame.count <= slotSize; the consumer does not read this slot
            // until the tail store below publishes it.
            if let source = frame.baseAddress, !frame.isEmpty {
                (storage + slot * slotSize).copyMemory(from: source, byteCount: frame.count)
            }
            lengths[slot] = UInt32(frame.count)
            vmm_store_release_u32(indices + 1, tail &+ 1)
            return true
        }
    }

    /// The oldest frame, or nil when empty; the consumer may change its bytes in place. Valid
    /// until `removeFront()`. Consumer only.
    @inline(__always)
    public func front() -> UnsafeMutableRawBufferPointer? {
        let head = indices[0]
        guard vmm_load_acquire_u32(indices + 1) != head else { return nil }
        let slot = Int(head % UInt32(capacity))
        // Safe: the acquire load above ordered the producer's copy and length before this read.
        return UnsafeMutableRawBufferPointer(start: storage + slot * slotSize, count: Int(lengths[slot]))
    }

    /// Drops the oldest frame (after `front()` returned one). Consumer only.
    @inline(__always)
    public func removeFront() {
        let head = indices[0]
        guard vmm_load_acquire_u32(indices + 1) != head else { return }
        vmm_store_release_u32(indices, head &+ 1)
    }

    /// Frames queued now (a snapshot).
    public var count: Int { Int(vmm_load_acquire_u32(indices + 1) &- vmm_load_acquire_u32(indices)) }

    /// Drops every queued frame. Consumer only.
    public func removeAll() {
        vmm_store_release_u32(indices, vmm_load_acquire_u32(indices + 1))
    }
}
