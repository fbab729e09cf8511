import VMMSysUtil
import Virtio
import VirtioNet

/// A device queue of either layout as the net paths' `NetQueue`.
struct BenchNetQueue<Q: DeviceQueue & ~Copyable>: NetQueue, ~Copyable {
    var queue: Q
    @inline(__always) mutating func pop() throws(VirtqueueError) -> Chain? { try queue.pop() }
    @inline(__always) mutating func pop(into chains: UnsafeMutableBufferPointer<Chain>) throws(VirtqueueError) -> Int {
        try queue.pop(into: chains)
    }
    @inline(__always) mutating func complete(_ chain: Chain, written: UInt32) throws(VirtqueueError) {
        try queue.push(chain, written: written)
    }
}

/// One 64-byte frame per iteration through the virtio-net packet path over a driver/device
/// loopback in shared memory: `rx` posts a 2 KiB receive buffer and delivers the frame into it
/// (`ReceiveWriter`, MRG_RXBUF), `tx` posts a 12 + 64 byte packet and takes it out
/// (`TransmitReader`: copy, header checks). The driver reaps each completion. The raw twin does
/// the same ring work with a bare copy of the 76 bytes: the difference is the net logic's cost.
/// Allocation-free after `init`.
final class NetPathRunner<Q: DeviceQueue & ~Copyable>: BenchRunner {
    let memory: SharedMemory
    let driver: any DriverQueue
    var device: BenchNetQueue<Q>
    let direction: NetPathDirection
    let raw: Bool
    let chain: [DriverBuffer]
    var writer: ReceiveWriter
    let reader = TransmitReader(features: NetFeature.version1 | NetFeature.mergeableRxBuffers)
    let counters = NetCounters()
    let packet = UnsafeMutableRawBufferPointer.allocate(byteCount: 2048, alignment: 64)

    init(
        memory: SharedMemory, driver: any DriverQueue, device: consuming Q, direction: NetPathDirection, raw: Bool,
        data: UInt64, guest: GuestMemory
    ) throws {
        self.memory = memory
        self.driver = driver
        let size = device.size
        self.device = BenchNetQueue(queue: device)
        self.direction = direction
        self.raw = raw
        let features = NetFeature.version1 | NetFeature.mergeableRxBuffers
        writer = ReceiveWriter(features: features, queueSize: size)
        packet.initializeMemory(as: UInt8.self, repeating: 0)
        let frame = UnsafeMutableRawBufferPointer(rebasing: packet[NetHeader.size..<NetHeader.size + 64])
        MacAddress(rawValue: 0x02).store(to: frame, at: 0)
        MacAddress(rawValue: 0x0402).store(to: frame, at: 6)
        switch direction {
        case .rx:
            chain = [DriverBuffer(address: data, length: 2048, isWritable: true)]
        case .tx:
            chain = [DriverBuffer(address: data, length: UInt32(NetHeader.size + 64), isWritable: false)]
            try guest.write(
                guestPhysical: data, bytes: UnsafeRawBufferPointer(rebasing: packet[..<(NetHeader.size + 64)]))
        }
    }

    deinit { packet.deallocate() }

    func run(_ iterations: Int) throws {
        let bytes = UnsafeMutableRawBufferPointer(rebasing: packet[..<(NetHeader.size + 64)])
        try chain.withUnsafeBufferPointer { buffers in
            for _ in 0..<iterations {
                _ = try driver.post(buffers, indirectTable: nil)
                switch (direction, raw) {
                case (.rx, false):
                    guard try writer.deliver(bytes, to: &device, counters: counters) == .delivered else {
                        throw VirtqueueError.chainChanged
                    }
                case (.tx, false):
                    guard let popped = try device.pop() else { throw VirtqueueError.chainChanged }
                    guard case .frame = try reader.read(popped, into: packet, counters: counters) else {
                        throw VirtqueueError.chainChanged
                    }
                    try device.complete(popped, written: 0)
                case (.rx, true):
                    guard let popped = try device.pop() else { throw VirtqueueError.chainChanged }
                    let written = try popped.writeWritable(UnsafeRawBufferPointer(bytes))
                    try device.complete(popped, written: UInt32(written))
                case (.tx, true):
                    guard let popped = try device.pop() else { throw VirtqueueError.chainChanged }
                    _ = try popped.readReadable(into: bytes)
                    try device.complete(popped, written: 0)
                }
                guard try driver.reap() != nil else { throw VirtqueueError.chainChanged }
            }
        }
    }
}

/// Which way a frame goes in a `NetPathRunner`.
enum NetPathDirection: Sendable { case rx, tx }

enum NetCases {
    static func make(_ layout: RingLayout, _ direction: NetPathDirection, raw: Bool) throws -> any BenchRunner {
        let memory = try SharedMemory(size: vringMemorySize)
        let guest = try GuestMemory(regions: [GuestMemoryRegion(guestPhysicalAddress: 0, mapping: memory.mapping)])
        let size = 256
        let addresses = RingAddresses(descriptorTable: 0, driverArea: 0x1000, deviceArea: 0x2000)
        let data: UInt64 = 0x10000
        // IN_ORDER as DPDK's virtio_user negotiates it: transmit completions take the in-order
        // used-descriptor path (a run per publication here, one chain each).
        var features: VirtioFeatures = [.ringEventIndex, .ringIndirectDescriptors, .version1, .inOrder]
        switch layout {
        case .split:
            let driver = try DriverSplitQueue(memory: guest, size: size, addresses: addresses, features: features)
            let device = try SplitQueue(memory: guest, size: size, addresses: addresses, features: features)
            return try NetPathRunner(
                memory: memory, driver: driver, device: device, direction: direction, raw: raw, data: data, guest: guest
            )
        case .packed:
            features.insert(.ringPacked)
            let driver = try DriverPackedQueue(memory: guest, size: size, addresses: addresses, features: features)
            let device = try PackedQueue(memory: guest, size: size, addresses: addresses, features: features)
            return try NetPathRunner(
                memory: memory, driver: driver, device: device, direction: direction, raw: raw, data: data, guest: guest
            )
        }
    }

    static func all() -> [BenchCase] {
        RingLayout.allCases.flatMap { layout in
            [("rx-deliver-64B", NetPathDirection.rx), ("tx-take-64B", .tx)].map { name, direction in
                BenchCase(group: "netpath", name: name, backend: layout.rawValue, batch: 1024) { implementation, _ in
                    try make(layout, direction, raw: implementation == .raw)
                }
            }
        }
    }
}
