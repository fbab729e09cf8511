import Virtio

/// A hand-built split ring of 8 descriptors at the standard addresses, for corrupting on purpose.
struct SplitRig: ~Copyable {
    let memory: GuestMemory
    let size = 8
    var availIndex: UInt16 = 0
    var queue: SplitQueue

    init(features: VirtioFeatures = [.ringIndirectDescriptors, .ringEventIndex], memory: GuestMemory? = nil) throws {
        let memory = try memory ?? standardMemory()
        // The throwing step first: a non-copyable value is initialized all at once or not at all.
        let queue = try SplitQueue(memory: memory, size: 8, addresses: standardAddresses(), features: features)
        self.memory = memory
        self.queue = queue
    }

    func descriptor(_ index: UInt64, addr: UInt64, len: UInt32, flags: UInt16 = 0, next: UInt16 = 0) throws {
        try writeDescriptor(memory, at: memoryBase + index * 16, addr: addr, len: len, flags: flags, next: next)
    }

    /// Appends `head` to the avail ring and publishes it.
    mutating func publish(_ head: UInt16) throws {
        try memory.store(
            head, guestPhysical: standardAddresses().driverArea + 4 + UInt64(availIndex % UInt16(size)) * 2)
        availIndex &+= 1
        try memory.store(availIndex, guestPhysical: standardAddresses().driverArea + 2)
    }

    /// Pops expecting `error`, then checks the queue is broken and keeps throwing it.
    mutating func expectBroken(_ error: VirtqueueError) -> Bool {
        var first: VirtqueueError?
        do { _ = try queue.pop() } catch { first = error }
        var second: VirtqueueError?
        do { _ = try queue.pop() } catch { second = error }
        return first == error && second == error && queue.isBroken && queue.brokenReason == error
    }
}

/// A hand-built packed ring of 8 descriptors at the standard addresses (driver wrap counter 1).
struct PackedRig: ~Copyable {
    let memory: GuestMemory
    let size = 8
    var queue: PackedQueue

    static let avail: UInt16 = 1 << 7
    static let used: UInt16 = 1 << 15

    init(features: VirtioFeatures = [.ringIndirectDescriptors, .ringEventIndex, .ringPacked]) throws {
        let memory = try standardMemory()
        // The throwing step first: a non-copyable value is initialized all at once or not at all.
        let queue = try PackedQueue(memory: memory, size: 8, addresses: standardAddresses(), features: features)
        self.memory = memory
        self.queue = queue
    }

    /// Writes slot `slot` as available in the first lap (AVAIL=1, USED=0) plus `flags`.
    func descriptor(_ slot: UInt64, addr: UInt64, len: UInt32, flags: UInt16 = 0, id: UInt16 = 0) throws {
        try writePackedDescriptor(
            memory, at: memoryBase + slot * 16, addr: addr, len: len, flags: flags | Self.avail, id: id)
    }

    mutating func expectBroken(_ error: VirtqueueError) -> Bool {
        var first: VirtqueueError?
        do { _ = try queue.pop() } catch { first = error }
        var second: VirtqueueError?
        do { _ = try queue.pop() } catch { second = error }
        return first == error && second == error && queue.isBroken && queue.brokenReason == error
    }
}

enum Flag {
    static let next: UInt16 = 1
    static let write: UInt16 = 2
    static let indirect: UInt16 = 4
}
