import Testing
import Virtio

/// The packed ring's write hints for used descriptors: which slot a completion hints
/// (`PackedQueue.ringSlotToPrefetch`), and completions across the ring's end with the hints on.
@Suite struct RingPrefetchTests {
    /// The hinted slot is the one `ringPrefetchDistance` (8) slots after the used one, wrapped,
    /// only while it is a popped slot not yet used; never a slot outside the ring or one the
    /// driver may still be writing. Checked for every position pair of rings up to 40 slots.
    @Test func hintedSlotIsAPoppedOneEightAhead() {
        for size in 1...40 {
            for used in 0..<size {
                for available in 0..<size {
                    let popped = (available - used + size) % size
                    let hinted = PackedQueue.ringSlotToPrefetch(used: used, available: available, size: size)
                    if popped > 8 {
                        #expect(hinted == (used + 8) % size, "size \(size) used \(used) available \(available)")
                    } else {
                        #expect(hinted == nil, "size \(size) used \(used) available \(available)")
                    }
                }
            }
        }
        #expect(PackedQueue.ringSlotToPrefetch(used: 250, available: 26, size: 256) == 2)
        #expect(PackedQueue.ringSlotToPrefetch(used: 0, available: 32, size: 256) == 8)
        #expect(PackedQueue.ringSlotToPrefetch(used: 24, available: 32, size: 256) == nil)
    }

    /// A receive burst of 15 chains that wraps the ring's end, completed one by one with distinct
    /// lengths (each completion hints a slot 8 ahead, wrapping): the driver reaps every buffer, in
    /// order, with its length, and nothing before publication.
    @Test func burstAcrossTheRingEndCompletesInOrder() throws {
        let size = 16
        let memory = try standardMemory()
        let driver = try DriverPackedQueue(memory: memory, size: size, addresses: standardAddresses(), features: [])
        var device = try PackedQueue(memory: memory, size: size, addresses: standardAddresses(), features: [])
        let buffer = [DriverBuffer(address: dataBase, length: 64, isWritable: true)]
        let chains = UnsafeMutableBufferPointer<Chain>.allocate(capacity: size)
        defer { chains.deallocate() }
        // Move both sides to slot 11 so the next burst wraps.
        for _ in 0..<11 { try driver.post(buffer) }
        #expect(try device.pop(into: chains) == 11)
        for chain in chains[0..<11] { try device.stage(chain, written: 1) }
        device.publishUsed()
        while try driver.reap() != nil {}
        var ids: [UInt16] = []
        for _ in 0..<15 { ids.append(try driver.post(buffer)) }
        #expect(try device.pop(into: chains) == 15)
        for (index, chain) in chains[0..<15].enumerated() { try device.stage(chain, written: UInt32(index + 2)) }
        #expect(try driver.reap() == nil)
        device.publishUsed()
        var reaped: [UsedBuffer] = []
        while let used = try driver.reap() { reaped.append(used) }
        #expect(reaped == ids.enumerated().map { UsedBuffer(id: $1, length: UInt32($0 + 2)) })
        #expect(device.inFlightCount == 0)
    }
}
