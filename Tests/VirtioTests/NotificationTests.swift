import Testing
import Virtio

/// Notification suppression in both directions, with and without EVENT_IDX.
@Suite struct NotificationTests {
    let buffer = [DriverBuffer(address: dataBase, length: 64, isWritable: true)]

    // Device queues are non-copyable (no tuples of them): the driver first, the device over its memory.
    func splitDriver(_ features: VirtioFeatures) throws -> DriverSplitQueue {
        try DriverSplitQueue(memory: try standardMemory(), size: 8, addresses: standardAddresses(), features: features)
    }

    func splitDevice(_ driver: DriverSplitQueue, _ features: VirtioFeatures) throws -> SplitQueue {
        try SplitQueue(memory: driver.memory, size: 8, addresses: standardAddresses(), features: features)
    }

    func packedDriver(_ features: VirtioFeatures) throws -> DriverPackedQueue {
        try DriverPackedQueue(memory: try standardMemory(), size: 8, addresses: standardAddresses(), features: features)
    }

    func packedDevice(_ driver: DriverPackedQueue, _ features: VirtioFeatures) throws -> PackedQueue {
        try PackedQueue(memory: driver.memory, size: 8, addresses: standardAddresses(), features: features)
    }

    func roundTrip<Q: DeviceQueue & ~Copyable>(_ device: inout Q, _ driver: some DriverQueue) throws {
        try driver.post(buffer, indirectTable: nil)
        let chain = try #require(try device.pop())
        try device.push(chain, written: 1)
        #expect(try driver.reap() != nil)
    }

    @Test func splitFlagsWithoutEventIndex() throws {
        let driver = try splitDriver([])
        var device = try splitDevice(driver, [])
        try roundTrip(&device, driver)
        let decision1 = device.needsNotification()
        #expect(decision1)
        driver.suppressInterrupts(true)
        try roundTrip(&device, driver)
        let decision2 = device.needsNotification()
        #expect(!decision2)
        driver.suppressInterrupts(false)
        let decision3 = device.needsNotification()
        #expect(decision3)
        // Kick suppression: NO_NOTIFY in used->flags.
        try driver.post(buffer, indirectTable: nil)
        #expect(driver.needsKick())
        device.disableNotifications()
        try driver.post(buffer, indirectTable: nil)
        #expect(!driver.needsKick())
        let decision4 = device.enableNotifications()  // two chains arrived meanwhile
        #expect(decision4)
        #expect(driver.needsKick())
        while let chain = try device.pop() { try device.push(chain, written: 0) }
        let decision5 = device.enableNotifications()
        #expect(!decision5)
    }

    @Test func splitEventIndex() throws {
        let driver = try splitDriver([.ringEventIndex])
        var device = try splitDevice(driver, [.ringEventIndex])
        try roundTrip(&device, driver)
        let decision6 = device.needsNotification()  // first decision: always
        #expect(decision6)
        let decision7 = device.needsNotification()  // nothing new published
        #expect(!decision7)
        // used_event = 0 and the used index is now 1: crossing 0 happened already.
        try roundTrip(&device, driver)
        let decision8 = device.needsNotification()
        #expect(!decision8)
        driver.setUsedEvent(2)  // interrupt when the used index passes 2
        try roundTrip(&device, driver)  // used idx 2 -> 3
        let decision9 = device.needsNotification()
        #expect(decision9)
        driver.setUsedEvent(10)
        try roundTrip(&device, driver)
        let decision10 = device.needsNotification()
        #expect(!decision10)
        // Batch: two pushes published together cross used_event = 5.
        driver.setUsedEvent(5)
        try driver.post(buffer, indirectTable: nil)
        try driver.post(buffer, indirectTable: nil)
        let a = try #require(try device.pop())
        let b = try #require(try device.pop())
        try device.stage(a, written: 0)
        try device.stage(b, written: 0)
        #expect(try driver.reap() == nil)  // staged, not yet published
        device.publishUsed()
        let decision11 = device.needsNotification()
        #expect(decision11)
        #expect(try driver.reap() != nil && driver.reap() != nil)
    }

    @Test func splitAvailEventSuppressesKicks() throws {
        let driver = try splitDriver([.ringEventIndex])
        var device = try splitDevice(driver, [.ringEventIndex])
        try driver.post(buffer, indirectTable: nil)
        #expect(driver.needsKick())  // avail_event = 0 initially: first post crosses it
        _ = try #require(try device.pop())  // device writes avail_event = 1
        try driver.post(buffer, indirectTable: nil)  // avail idx 1 -> 2 crosses 1
        #expect(driver.needsKick())
        device.disableNotifications()  // avail_event stays at 1
        _ = try #require(try device.pop())
        try driver.post(buffer, indirectTable: nil)  // 2 -> 3 does not cross 1
        #expect(!driver.needsKick())
        let decision12 = device.enableNotifications()  // writes avail_event = 2; chain 3 is pending
        #expect(decision12)
        _ = try #require(try device.pop())
        let decision13 = device.enableNotifications()
        #expect(!decision13)
        try driver.post(buffer, indirectTable: nil)
        #expect(driver.needsKick())
    }

    @Test func packedFlagsWithoutEventIndex() throws {
        let driver = try packedDriver([])
        var device = try packedDevice(driver, [])
        try roundTrip(&device, driver)
        let decision14 = device.needsNotification()
        #expect(decision14)
        driver.setDriverEvent(flags: 1)
        try roundTrip(&device, driver)
        let decision15 = device.needsNotification()
        #expect(!decision15)
        driver.setDriverEvent(flags: 2, offWrap: 0)  // DESC without EVENT_IDX counts as enabled
        let decision16 = device.needsNotification()
        #expect(decision16)
        device.disableNotifications()
        try driver.post(buffer, indirectTable: nil)
        #expect(!driver.needsKick())
        let decision17 = device.enableNotifications()
        #expect(decision17)
        #expect(driver.needsKick() == true)
        let chain = try #require(try device.pop())
        try device.push(chain, written: 0)
        let decision18 = device.enableNotifications()
        #expect(!decision18)
    }

    @Test func packedEventIndex() throws {
        let driver = try packedDriver([.ringEventIndex])
        var device = try packedDevice(driver, [.ringEventIndex])
        driver.setDriverEvent(flags: 2, offWrap: 0x8000 | 3)  // notify when used slot 3 (lap 1) is written
        try roundTrip(&device, driver)  // next used 0 -> 1
        let decision19 = device.needsNotification()  // first decision: always
        #expect(decision19)
        try roundTrip(&device, driver)  // 1 -> 2
        let decision20 = device.needsNotification()
        #expect(!decision20)
        try roundTrip(&device, driver)  // 2 -> 3
        let decision21 = device.needsNotification()
        #expect(!decision21)
        try roundTrip(&device, driver)  // 3 -> 4: crosses 3
        let decision22 = device.needsNotification()
        #expect(decision22)
        // Around the ring: ask for slot 1 of the next lap (wrap counter 0).
        driver.setDriverEvent(flags: 2, offWrap: 1)
        for _ in 0..<4 { try roundTrip(&device, driver) }  // 4 -> 0 (wraps)
        let decision23 = device.needsNotification()
        #expect(!decision23)
        try roundTrip(&device, driver)  // 0 -> 1
        let decision24 = device.needsNotification()
        #expect(!decision24)
        try roundTrip(&device, driver)  // 1 -> 2: crosses 1
        let decision25 = device.needsNotification()
        #expect(decision25)
        driver.setDriverEvent(flags: 1)
        try roundTrip(&device, driver)
        let decision26 = device.needsNotification()
        #expect(!decision26)
        driver.setDriverEvent(flags: 0)
        try roundTrip(&device, driver)
        let decision27 = device.needsNotification()
        #expect(decision27)
    }

    @Test func packedDeviceEventDescMode() throws {
        let driver = try packedDriver([.ringEventIndex])
        var device = try packedDevice(driver, [.ringEventIndex])
        let decision28 = device.enableNotifications()  // writes DESC with our next slot (0, wrap 1)
        #expect(!decision28)
        try driver.post(buffer, indirectTable: nil)
        #expect(driver.needsKick())  // slot 0 is the one we asked about
        _ = try #require(try device.pop())  // DESC now names slot 1
        device.disableNotifications()
        try driver.post(buffer, indirectTable: nil)
        #expect(!driver.needsKick())
        let decision29 = device.enableNotifications()
        #expect(decision29)
    }
}
