import VMMSysUtil
import Virtio
import VhostUserProtocol

/// The front-end's view of one guest in vhost-user tests: `memorySize` bytes of shared memory at
/// guest-physical 0 (front-end address `userBase`), a driver-side split queue of `queueSize` at
/// `addresses`, kick and call notifiers. Open so a test target can add notifiers of its own.
///
/// - Throws (init): what `SharedMemory`, `GuestMemory`, `DriverSplitQueue` or `EventNotifier` throw.
///
/// Thread-safety: none; one test drives it at a time.
open class GuestRig {
    public static let userBase: UInt64 = 0x7f00_0000_0000
    public static let memorySize = 1 << 20
    public static let queueSize = 8
    public static let addresses = RingAddresses(descriptorTable: 0x1000, driverArea: 0x2000, deviceArea: 0x3000)
    /// Where tests place data buffers (one page per slot).
    public static let bufferBase: UInt64 = 0x10000

    public let memory: SharedMemory
    public let guest: GuestMemory
    public let driver: DriverSplitQueue
    public let kick: EventNotifier
    public let call: EventNotifier
    /// Used entries reaped so far (the driver's free-running used index).
    public private(set) var reaped: UInt16 = 0

    /// Maps `reuse` (or new shared memory) and lays out a driver ring with `features`.
    public init(
        features: VirtioFeatures = [.ringEventIndex, .ringIndirectDescriptors], freshRings: Bool = true,
        reuse: SharedMemory? = nil
    ) throws {
        memory = try reuse ?? SharedMemory(size: Self.memorySize)
        guest = try GuestMemory(regions: [
            GuestMemoryRegion(
                guestPhysicalAddress: 0, size: UInt64(Self.memorySize),
                userAddress: Self.userBase, mapping: memory.mapping)
        ])
        driver = try DriverSplitQueue(
            memory: guest, size: Self.queueSize, addresses: Self.addresses, features: features)
        kick = try EventNotifier()
        call = try EventNotifier()
    }

    /// The next used entry, if the device has published one.
    /// - Throws: what `DriverSplitQueue.reap()` throws.
    public func reap() throws -> UsedBuffer? {
        guard let used = try driver.reap() else { return nil }
        reaped &+= 1
        return used
    }

    /// The memory table entry a front-end sends for this guest.
    public var region: MemoryRegion {
        MemoryRegion(guestPhysicalAddress: 0, size: UInt64(Self.memorySize), userAddress: Self.userBase, mmapOffset: 0)
    }

    /// Ring `index`'s addresses in the front-end's address space (as SET_VRING_ADDR carries them).
    public func vringAddress(index: UInt32 = 0) -> VringAddress {
        VringAddress(
            index: index, descriptorTable: Self.userBase + Self.addresses.descriptorTable,
            usedRing: Self.userBase + Self.addresses.deviceArea,
            availableRing: Self.userBase + Self.addresses.driverArea)
    }
}
