import Testing
import Virtio
import VirtioNet
import VMMSysUtil

struct SetupError: Error, CustomStringConvertible {
    var description: String
}

enum Layout: String, CaseIterable, Sendable {
    case split, packed
}

/// A device queue seen through the net paths' `NetQueue`.
struct DeviceNetQueue: NetQueue, ~Copyable {
    var queue: any DeviceQueue & ~Copyable
    mutating func pop() throws(VirtqueueError) -> Chain? { try queue.pop() }
    mutating func pop(into chains: UnsafeMutableBufferPointer<Chain>) throws(VirtqueueError) -> Int {
        try queue.pop(into: chains)
    }
    mutating func complete(_ chain: Chain, written: UInt32) throws(VirtqueueError) {
        try queue.push(chain, written: written)
    }
}

/// One virtqueue over shared guest memory: a driver side that posts buffers the way a guest does,
/// and the device side the net paths use. Buffers are laid out one after another with a canary gap,
/// so a write outside a posted buffer shows.
final class NetRig {
    static let base: UInt64 = 0x10_0000
    static let dataStart: UInt64 = base + 0x1_0000
    static let memorySize = 4 << 20
    static let canary: UInt8 = 0xEE
    static let gap: UInt64 = 32
    /// The same memory again, mapped read-only: a buffer posted there faults if the device
    /// stores into it (`readOnlyAlias + offset` is `base + offset`).
    static let readOnlyAlias: UInt64 = 0x100_0000

    let shared: SharedMemory
    let memory: GuestMemory
    let driver: any DriverQueue
    var device: DeviceNetQueue
    let features: UInt64
    private var next = NetRig.dataStart
    /// Posted chains by id: their buffers.
    private(set) var posted: [UInt16: [DriverBuffer]] = [:]

    init(layout: Layout, features: UInt64, queueSize: Int = 16) throws {
        self.features = features
        shared = try SharedMemory(size: Self.memorySize)
        let readOnly = try MemoryMapping(fd: shared.descriptor, size: UInt64(Self.memorySize), writable: false)
        memory = try GuestMemory(regions: [
            GuestMemoryRegion(guestPhysicalAddress: Self.base, mapping: shared.mapping),
            GuestMemoryRegion(guestPhysicalAddress: Self.readOnlyAlias, mapping: readOnly),
        ])
        let addresses = RingAddresses(
            descriptorTable: Self.base, driverArea: Self.base + 0x4000, deviceArea: Self.base + 0x8000)
        var ringFeatures: VirtioFeatures = [.ringIndirectDescriptors, .ringEventIndex, .version1]
        if features & NetFeature.inOrder != 0 { ringFeatures.insert(.inOrder) }
        switch layout {
        case .split:
            driver = try DriverSplitQueue(memory: memory, size: queueSize, addresses: addresses, features: ringFeatures)
            let queue = try SplitQueue(memory: memory, size: queueSize, addresses: addresses, features: ringFeatures)
            device = DeviceNetQueue(queue: queue)
        case .packed:
            ringFeatures.insert(.ringPacked)
            driver = try DriverPackedQueue(
                memory: memory, size: queueSize, addresses: addresses, features: ringFeatures)
            let queue = try PackedQueue(memory: memory, size: queueSize, addresses: addresses, features: ringFeatures)
            device = DeviceNetQueue(queue: queue)
        }
        let data = Int(Self.dataStart - Self.base)
        (shared.mapping.base + data).initializeMemory(
            as: UInt8.self, repeating: Self.canary, count: Self.memorySize - data)
    }

    /// Posts a chain of buffers of these sizes, readable ones filled from `readable`.
    @discardableResult
    func post(readable: [UInt8] = [], readableSplit: [Int]? = nil, writable: [Int] = []) throws -> UInt16 {
        var buffers: [DriverBuffer] = []
        var offset = 0
        for size in readableSplit ?? (readable.isEmpty ? [] : [readable.count]) {
            guard next + UInt64(size) + Self.gap < Self.base + UInt64(Self.memorySize) else {
                throw SetupError(description: "rig full")
            }
            try readable[offset..<offset + size].withUnsafeBytes { try memory.write(guestPhysical: next, bytes: $0) }
            buffers.append(DriverBuffer(address: next, length: UInt32(size), isWritable: false))
            next += UInt64(size) + Self.gap
            offset += size
        }
        for size in writable {
            buffers.append(DriverBuffer(address: next, length: UInt32(size), isWritable: true))
            next += UInt64(size) + Self.gap
        }
        let id = try driver.post(buffers)
        posted[id] = buffers
        return id
    }

    /// Posts `buffers` as they are (addresses chosen by the caller).
    @discardableResult
    func post(buffers: [DriverBuffer]) throws -> UInt16 {
        let id = try driver.post(buffers)
        posted[id] = buffers
        return id
    }

    /// Reserves `count` bytes (and a canary gap) of data space; returns its address.
    func allocate(_ count: Int) -> UInt64 {
        defer { next += UInt64(count) + Self.gap }
        return next
    }

    /// Posts a buffer outside guest memory.
    func postOutsideMemory(writable: Bool) throws {
        _ = try driver.post([DriverBuffer(address: 0x4000_0000, length: 100, isWritable: writable)])
    }

    /// The next used entry and the bytes the device wrote into that chain's writable buffers
    /// (`length` of them, gathered), checking the canary after each buffer.
    func reap(sourceLocation: SourceLocation = #_sourceLocation) throws -> (id: UInt16, bytes: [UInt8])? {
        guard let used = try driver.reap() else { return nil }
        var bytes: [UInt8] = []
        for buffer in posted[used.id] ?? [] where buffer.isWritable {
            bytes += try read(buffer.address, Int(buffer.length))
            #expect(
                try read(buffer.address + UInt64(buffer.length), Int(Self.gap)).allSatisfy { $0 == Self.canary },
                "write outside the buffer", sourceLocation: sourceLocation)
        }
        #expect(Int(used.length) <= bytes.count, sourceLocation: sourceLocation)
        return (used.id, Array(bytes.prefix(Int(used.length))))
    }

    func read(_ address: UInt64, _ count: Int) throws -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: count)
        try bytes.withUnsafeMutableBytes { try memory.read(guestPhysical: address, into: $0) }
        return bytes
    }
}

/// An Ethernet frame to `destination` from `source` with `payload` bytes (pattern by index).
func ethernetFrame(to destination: MacAddress, from source: MacAddress, payload: Int, seed: UInt8 = 0) -> [UInt8] {
    var frame = [UInt8](repeating: 0, count: 14 + payload)
    for i in 0..<6 {
        frame[i] = destination[i]
        frame[6 + i] = source[i]
    }
    frame[12] = 0x08
    frame[13] = 0x00
    for i in 0..<payload { frame[14 + i] = UInt8(truncatingIfNeeded: i &+ Int(seed)) }
    return frame
}

/// A 12-byte header's bytes.
func headerBytes(_ header: NetHeader) -> [UInt8] {
    var bytes = [UInt8](repeating: 0, count: NetHeader.size)
    bytes.withUnsafeMutableBytes { _ = header.encode(into: $0) }
    return bytes
}

let macA = MacAddress("52:54:00:00:00:0a")!
let macB = MacAddress("52:54:00:00:00:0b")!
let modern = NetFeature.version1
let mergeable = NetFeature.version1 | NetFeature.mergeableRxBuffers
