import Virtio

/// A single-threaded driver/device loopback over one `GuestMemory`, for measuring the device-side
/// hot path: per iteration the driver posts a chain, the device pops it, walks its buffers, reads
/// 16 bytes from the readable part and pushes it, and the driver reaps the used entry.
///
/// It uses only the public API of Virtio, as a back-end does.
///
/// Allocation-free after `init`. Non-copyable (it owns a device queue). Thread-safety: one thread.
struct VringLoopback: ~Copyable {
    /// The ring layout exercised.
    let layout: RingLayout
    /// Descriptors per chain (the last one device-writable when more than one).
    let descriptorsPerChain: Int
    enum Rings: ~Copyable {
        case split(SplitQueue, DriverSplitQueue)
        case packed(PackedQueue, DriverPackedQueue)
    }
    /// Always set; optional only so `runIterations` can move it out and back.
    var rings: Rings?
    let buffers: [DriverBuffer]
    /// Sum of bytes seen, so the work cannot be optimised away.
    private(set) var checksum: UInt64 = 0

    /// Lays out a queue of `queueSize` at the start of `memory`'s first region (which needs
    /// 16 × queueSize + 8 × queueSize + 64 KiB or so) and buffers after it.
    ///
    /// - Throws: `VirtqueueError` or `DriverQueueError` if the memory is too small;
    ///   `VirtqueueError.invalidQueueSize` also if `memory` has no region (or one above 2^62),
    ///   `descriptorsPerChain` is not in 1…16 or `queueSize` not in 1…32768.
    init(memory: GuestMemory, layout: RingLayout, descriptorsPerChain: Int, queueSize: Int = 256) throws {
        // 32768: the largest queue size either layout allows.
        guard let region = memory.regions.first, (1...16).contains(descriptorsPerChain),
            (1...32768).contains(queueSize), region.guestPhysicalAddress < 1 << 62
        else {
            throw VirtqueueError.invalidQueueSize(queueSize)
        }
        let base = region.guestPhysicalAddress
        let q = UInt64(queueSize)
        let addresses = RingAddresses(
            descriptorTable: base, driverArea: base + 16 * q,
            deviceArea: (base + 16 * q + 6 + 2 * q + 64) & ~63)
        let data = (addresses.deviceArea + 6 + 8 * q + 4095) & ~4095
        var buffers: [DriverBuffer] = []
        for i in 0..<descriptorsPerChain {
            let writable = descriptorsPerChain > 1 && i == descriptorsPerChain - 1
            buffers.append(
                DriverBuffer(address: data + UInt64(i) * 512, length: writable ? 1 : 64, isWritable: writable))
        }
        let features: VirtioFeatures = [.ringEventIndex, .ringIndirectDescriptors, .version1]
        // Every throwing step before the first stored property (a non-copyable value is all or nothing).
        let rings: Rings
        switch layout {
        case .split:
            let driver = try DriverSplitQueue(memory: memory, size: queueSize, addresses: addresses, features: features)
            rings = .split(
                try SplitQueue(memory: memory, size: queueSize, addresses: addresses, features: features), driver)
        case .packed:
            let driver = try DriverPackedQueue(
                memory: memory, size: queueSize, addresses: addresses, features: features)
            rings = .packed(
                try PackedQueue(memory: memory, size: queueSize, addresses: addresses, features: features), driver)
        }
        self.rings = consume rings
        self.buffers = buffers
        self.layout = layout
        self.descriptorsPerChain = descriptorsPerChain
    }

    /// Runs `n` post → pop → walk → read 16 bytes → push → reap round trips.
    ///
    /// - Throws: whatever the queues throw (nothing, unless memory was corrupted externally).
    mutating func runIterations(_ n: Int) throws {
        let sum = checksum
        guard let taken = rings.take() else { return }
        // The device is reached through closures of concrete type: a loop generic over a
        // non-copyable queue is not specialized, and pop and push would go through protocol
        // witnesses (not what a back-end, which knows its queue type, pays).
        let result: Result<UInt64, any Error>
        switch consume taken {
        case .split(var device, let driver):
            result = Self.withScratch(buffers) { chainBuffers, header in
                Result {
                    try Self.run(
                        n, driver, chainBuffers, header, sum, pop: { () throws(VirtqueueError) in try device.pop() },
                        push: { (chain) throws(VirtqueueError) in try device.push(chain, written: 0) })
                }
            }
            rings = .split(device, driver)
        case .packed(var device, let driver):
            result = Self.withScratch(buffers) { chainBuffers, header in
                Result {
                    try Self.run(
                        n, driver, chainBuffers, header, sum, pop: { () throws(VirtqueueError) in try device.pop() },
                        push: { (chain) throws(VirtqueueError) in try device.push(chain, written: 0) })
                }
            }
            rings = .packed(device, driver)
        }
        checksum = try result.get()
    }

    /// Calls `body` with the chain's buffers and 16 bytes of stack scratch for the header read.
    @inline(__always)
    private static func withScratch<R>(
        _ buffers: [DriverBuffer], _ body: (UnsafeBufferPointer<DriverBuffer>, UnsafeMutableRawBufferPointer) -> R
    ) -> R {
        buffers.withUnsafeBufferPointer { chainBuffers in
            withUnsafeTemporaryAllocation(byteCount: 16, alignment: 8) { header in body(chainBuffers, header) }
        }
    }

    @inline(__always)
    private static func run<D: DriverQueue>(
        _ n: Int, _ driver: D, _ chainBuffers: UnsafeBufferPointer<DriverBuffer>,
        _ header: UnsafeMutableRawBufferPointer, _ start: UInt64,
        pop: () throws(VirtqueueError) -> Chain?, push: (Chain) throws(VirtqueueError) -> Void
    ) throws -> UInt64 {
        var sum = start
        for _ in 0..<n {
            try driver.post(chainBuffers, indirectTable: nil)
            guard let chain = try pop() else { throw VirtqueueError.chainChanged }
            var pieces = chain.buffers()
            while let piece = try pieces.next() { sum &+= UInt64(piece.bytes.count) }
            sum &+= UInt64(try chain.readReadable(into: header))
            try push(chain)
            guard try driver.reap() != nil else { throw VirtqueueError.chainChanged }
        }
        return sum &+ header.load(as: UInt64.self)
    }
}
