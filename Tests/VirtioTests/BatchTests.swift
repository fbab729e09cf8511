import Testing
import Virtio

/// Batched pop and push, in-flight accounting, NOTIFY_ON_EMPTY.
@Suite struct BatchTests {
    let buffer = [DriverBuffer(address: dataBase, length: 32, isWritable: true)]

    // Device queues are non-copyable (no tuples of them): the driver first, the device over its memory.
    func queueDriver(_ layout: RingLayout, _ features: VirtioFeatures) throws -> any DriverQueue {
        let memory = try standardMemory()
        switch layout {
        case .split:
            return try DriverSplitQueue(memory: memory, size: 8, addresses: standardAddresses(), features: features)
        case .packed:
            return try DriverPackedQueue(memory: memory, size: 8, addresses: standardAddresses(), features: features)
        }
    }

    func queueDevice(
        _ layout: RingLayout, _ driver: any DriverQueue,
        _ features: VirtioFeatures
    ) throws -> any DeviceQueue & ~Copyable {
        switch layout {
        case .split:
            return try SplitQueue(memory: driver.memory, size: 8, addresses: standardAddresses(), features: features)
        case .packed:
            return try PackedQueue(memory: driver.memory, size: 8, addresses: standardAddresses(), features: features)
        }
    }

    @Test(arguments: RingLayout.allCases)
    func batchPopAndStagedPushPublishTogether(layout: RingLayout) throws {
        let driver = try queueDriver(layout, [])
        var device = try queueDevice(layout, driver, [])
        var ids: [UInt16] = []
        for _ in 0..<5 { ids.append(try driver.post(buffer)) }
        let chains = UnsafeMutableBufferPointer<Chain>.allocate(capacity: 8)
        defer { chains.deallocate() }
        let count = try device.pop(into: chains)
        #expect(count == 5)
        #expect(chains[0..<count].map(\.id) == ids)
        for chain in chains[0..<count] { try device.stage(chain, written: 7) }
        // Nothing is visible until the batch is published.
        #expect(try driver.reap() == nil)
        device.publishUsed()
        var reaped: [UsedBuffer] = []
        while let used = try driver.reap() { reaped.append(used) }
        #expect(reaped == ids.map { UsedBuffer(id: $0, length: 7) })
        #expect(driver.freeDescriptors == 8)
        #expect(try device.pop(into: chains) == 0)
    }

    /// A burst that meets an invalid chain returns the chains before it (in flight, completable);
    /// the queue is broken and the next burst, like `pop()`, throws the error.
    @Test(arguments: RingLayout.allCases)
    func burstStopsAtAnInvalidChainAndTheNextThrows(layout: RingLayout) throws {
        let driver = try queueDriver(layout, [])
        var device = try queueDevice(layout, driver, [])
        let good = [try driver.post(buffer), try driver.post(buffer)]
        try driver.post([DriverBuffer(address: dataBase, length: 0, isWritable: true)])
        try driver.post(buffer)
        let chains = UnsafeMutableBufferPointer<Chain>.allocate(capacity: 8)
        defer { chains.deallocate() }
        #expect(try device.pop(into: chains) == 2)
        #expect(chains[0..<2].map(\.id) == good)
        #expect(device.brokenReason == .zeroLengthDescriptor)
        #expect(throws: VirtqueueError.zeroLengthDescriptor) { _ = try device.pop(into: chains) }
        #expect(throws: VirtqueueError.zeroLengthDescriptor) { _ = try device.pop() }
        for chain in chains[0..<2] { try device.push(chain, written: 1) }
        #expect(try driver.reap() == UsedBuffer(id: good[0], length: 1))
        #expect(try driver.reap() == UsedBuffer(id: good[1], length: 1))
    }

    /// A burst into a buffer smaller than what is available takes only what fits; the rest waits.
    @Test(arguments: RingLayout.allCases)
    func burstTakesAtMostItsCapacity(layout: RingLayout) throws {
        let driver = try queueDriver(layout, [])
        var device = try queueDevice(layout, driver, [])
        var ids: [UInt16] = []
        for _ in 0..<5 { ids.append(try driver.post(buffer)) }
        let chains = UnsafeMutableBufferPointer<Chain>.allocate(capacity: 3)
        defer { chains.deallocate() }
        #expect(try device.pop(into: chains) == 3)
        #expect(chains.map(\.id) == Array(ids[0..<3]))
        #expect(try device.pop(into: chains) == 2)
        #expect(chains[0..<2].map(\.id) == Array(ids[3...]))
        #expect(try device.pop(into: UnsafeMutableBufferPointer(start: nil, count: 0)) == 0)
        #expect(try device.pop(into: chains) == 0)
    }

    @Test(arguments: RingLayout.allCases)
    func notifyOnEmpty(layout: RingLayout) throws {
        let driver = try queueDriver(layout, [.notifyOnEmpty])
        var device = try queueDevice(layout, driver, [.notifyOnEmpty])
        switch driver {
        case let split as DriverSplitQueue: split.suppressInterrupts(true)
        case let packed as DriverPackedQueue: packed.setDriverEvent(flags: 1)
        default: Issue.record("unknown driver")
        }
        try driver.post(buffer)
        try driver.post(buffer)
        let first = try #require(try device.pop())
        try device.push(first, written: 0)
        // Suppressed, and work remains (one chain available): no notification.
        let busy = device.needsNotification()
        #expect(!busy)
        let second = try #require(try device.pop())
        try device.push(second, written: 0)
        // Ring empty and nothing in flight: notify despite suppression.
        let empty = device.needsNotification()
        #expect(empty)
    }

    @Test func inFlightCountFollowsPopAndPush() throws {
        let memory = try standardMemory()
        var device = try SplitQueue(memory: memory, size: 8, addresses: standardAddresses(), features: [])
        let driver = try DriverSplitQueue(memory: memory, size: 8, addresses: standardAddresses(), features: [])
        try driver.post(buffer)
        try driver.post(buffer)
        let a = try #require(try device.pop())
        _ = try #require(try device.pop())
        #expect(device.inFlightCount == 2)
        try device.push(a, written: 0)
        #expect(device.inFlightCount == 1)
        try device.setNextAvailIndex(2)
        #expect(device.inFlightCount == 0)
    }
}
