import Virtio

/// A single-threaded driver/device loopback over one `GuestMemory`, for measuring the device-side
/// hot path: per iteration the driver posts a chain, the device pops it, walks its buffers, reads
/// 16 bytes from the readable part and pushes it, and the driver reaps the used entry.
///
/// It uses only the public API of Virtio, as a back-end does.
///
/// Allocation-free after `init`. Thread-safety: one thread.
struct VringLoopback {
    /// The ring layout exercised.
    let layout: RingLayout
    /// Descriptors per chain (the last one device-writable when more than one).
    let descriptorsPerChain: Int
    var split: (device: SplitQueue, driver: DriverSplitQueue)?
    var packed: (device: PackedQueue, driver: DriverPackedQueue)?
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
              (1...32768).contains(queueSize), region.guestPhysicalAddress < 1 << 62 else {
            throw VirtqueueError.invalidQueueSize(queueSize)
        }
        self.layout = layout
        self.descriptorsPerChain = descriptorsPerChain
        let base = region.guestPhysicalAddress
        let q = UInt64(queueSize)
        let addresses = RingAddresses(descriptorTable: base, driverArea: base + 16 * q,
                                      deviceArea: (base + 16 * q + 6 + 2 * q + 64) & ~63)
        let data = (addresses.deviceArea + 6 + 8 * q + 4095) & ~4095
        var buffers: [DriverBuffer] = []
        for i in 0..<descriptorsPerChain {
            let writable = descriptorsPerChain > 1 && i == descriptorsPerChain - 1
            buffers.append(DriverBuffer(address: data + UInt64(i) * 512, length: writable ? 1 : 64, isWritable: writable))
        }
        self.buffers = buffers
        let features: VirtioFeatures = [.ringEventIndex, .ringIndirectDescriptors, .version1]
        switch layout {
        case .split:
            let driver = try DriverSplitQueue(memory: memory, size: queueSize, addresses: addresses, features: features)
            let device = try SplitQueue(memory: memory, size: queueSize, addresses: addresses, features: features)
            split = (device, driver)
        case .packed:
            let driver = try DriverPackedQueue(memory: memory, size: queueSize, addresses: addresses, features: features)
            let device = try PackedQueue(memory: memory, size: queueSize, addresses: addresses, features: features)
            packed = (device, driver)
        }
    }

    /// Runs `n` post → pop → walk → read 16 bytes → push → reap round trips.
    ///
    /// - Throws: whatever the queues throw (nothing, unless memory was corrupted externally).
    mutating func runIterations(_ n: Int) throws {
        if var pair = split {
            split = nil
            defer { split = pair }
            try run(n, &pair.device, pair.driver)
        } else if var pair = packed {
            packed = nil
            defer { packed = pair }
            try run(n, &pair.device, pair.driver)
        }
    }

    @inline(__always)
    private mutating func run<Q: DeviceQueue, D: DriverQueue>(_ n: Int, _ device: inout Q, _ driver: D) throws {
        var scratch: (UInt64, UInt64) = (0, 0)
        var sum = checksum
        try buffers.withUnsafeBufferPointer { chainBuffers in
            try withUnsafeMutableBytes(of: &scratch) { header in
                for _ in 0..<n {
                    try driver.post(chainBuffers, indirectTable: nil)
                    guard let chain = try device.pop() else { throw VirtqueueError.chainChanged }
                    var pieces = chain.buffers()
                    while let piece = try pieces.next() { sum &+= UInt64(piece.bytes.count) }
                    sum &+= UInt64(try chain.readReadable(into: header))
                    try device.push(chain, written: 0)
                    guard try driver.reap() != nil else { throw VirtqueueError.chainChanged }
                }
            }
        }
        checksum = sum &+ scratch.0
    }
}
