import Testing
import VMMSysUtil
import VMMTestSupport
import VhostUserFrontend
import Virtio
import VirtioNet

/// A virtio-net driver in the test process, talking to a `vhost-user-net` daemon through the
/// front-end library: shared memory, receive queue 0, transmit queue 1 (and the control queue when
/// asked), one data buffer per chain. Every wait is bounded.
final class NetGuest {
    static let memorySize = 4 << 20
    static let wait: Duration = .seconds(10)
    static let bufferSize = 2048
    static let features: VirtioFeatures = [
        .version1, .ringEventIndex, .ringIndirectDescriptors,
        VirtioFeatures(rawValue: NetFeature.mergeableRxBuffers | NetFeature.mac | NetFeature.status),
    ]

    let frontend: VhostUserFrontend
    let memory: GuestMemory
    let negotiated: NegotiatedFeatures
    let rx: FrontendQueue
    let tx: FrontendQueue
    private(set) var control: FrontendQueue?
    private var nextBuffer: UInt64 = 0x10_0000
    /// Posted chains by queue index and id: the buffer address.
    private var buffers: [Int: [UInt16: UInt64]] = [:]

    /// - Parameter ringStride: bytes from one ring's start to the next (64-byte aligned); by
    ///   default each ring starts on its own page.
    init(
        socket: String, features: VirtioFeatures = NetGuest.features, queueSize: Int = 128, controlQueue: Int? = nil,
        ringStride: UInt64? = nil
    ) throws {
        frontend = try VhostUserFrontend(connectingTo: socket, timeout: Self.wait)
        negotiated = try frontend.negotiate(features: features)
        memory = try frontend.setMemory([FrontendMemoryRegion(try SharedMemory(size: Self.memorySize))])
        // Rings one after another from guest-physical 0; buffers from 1 MiB.
        let frontend = frontend
        let stride =
            ringStride ?? (FrontendQueue.ringBytes(size: queueSize, packed: true) + 8192 + 4095) / 4096 * 4096
        rx = try frontend.startQueue(index: 0, size: queueSize, ringAddress: 0)
        tx = try frontend.startQueue(index: 1, size: queueSize, ringAddress: stride)
        if let controlQueue {
            control = try frontend.startQueue(index: controlQueue, size: queueSize, ringAddress: 2 * stride)
        }
    }

    private func allocate(_ size: Int) throws -> UInt64 {
        let address = nextBuffer
        nextBuffer += UInt64(size + 63) / 64 * 64
        guard nextBuffer <= UInt64(Self.memorySize) else { throw FrontendError.noGuestMemory }
        return address
    }

    private func post(_ queue: FrontendQueue, readable: [UInt8]?, writable: Int) throws -> UInt16 {
        var chain: [DriverBuffer] = []
        var first: UInt64 = 0
        if let readable {
            let address = try allocate(readable.count)
            try readable.withUnsafeBytes { try memory.write(guestPhysical: address, bytes: $0) }
            chain.append(DriverBuffer(address: address, length: UInt32(readable.count), isWritable: false))
            first = address
        }
        if writable > 0 {
            let address = try allocate(writable)
            chain.append(DriverBuffer(address: address, length: UInt32(writable), isWritable: true))
            if readable == nil { first = address }
        }
        let id = try queue.post(chain)
        buffers[queue.index, default: [:]][id] = chain.last?.isWritable == true ? chain.last!.address : first
        return id
    }

    /// Posts `count` receive buffers of `size` bytes and kicks.
    func postReceiveBuffers(_ count: Int, size: Int = NetGuest.bufferSize) throws {
        for _ in 0..<count { _ = try post(rx, readable: nil, writable: size) }
        try rx.kick()
    }

    /// Sends one packet (a zero header unless given, then `frame`) and kicks.
    @discardableResult
    func send(_ frame: [UInt8], header: [UInt8] = [UInt8](repeating: 0, count: NetHeader.size), writable: Int = 0)
        throws -> UInt16
    {
        let id = try post(tx, readable: header + frame, writable: writable)
        try tx.kick()
        return id
    }

    /// Posts one packet per frame (zero headers) and kicks once, after the last: the device takes
    /// them in one go. Returns their ids in order.
    func sendAll(_ frames: [[UInt8]]) throws -> [UInt16] {
        let header = [UInt8](repeating: 0, count: NetHeader.size)
        let ids = try frames.map { try post(tx, readable: header + $0, writable: 0) }
        try tx.kick()
        return ids
    }

    /// Waits for the next transmit completion.
    func transmitted() throws -> UsedBuffer? { try tx.waitForUsed(timeout: Self.wait) }

    /// The next received packet (header and frame), or nil if none came within `timeout`.
    func receive(timeout: Duration = NetGuest.wait) throws -> [UInt8]? {
        guard let used = try rx.waitForUsed(timeout: timeout) else { return nil }
        guard let address = buffers[0]?[used.id] else { return nil }
        var bytes = [UInt8](repeating: 0, count: Int(used.length))
        try bytes.withUnsafeMutableBytes { try memory.read(guestPhysical: address, into: $0) }
        return bytes
    }

    /// The split receive ring's `avail_event` (VIRTIO 1.2 section 2.7.10): with EVENT_IDX, the
    /// device writes there the available index it wants a kick for once it has taken the chains
    /// before it.
    func receiveAvailEvent() throws -> UInt16 {
        var value: UInt16 = 0
        try withUnsafeMutableBytes(of: &value) {
            try memory.read(guestPhysical: rx.addresses.deviceArea + 4 + UInt64(rx.size) * 8, into: $0)
        }
        return UInt16(littleEndian: value)
    }

    /// Sends a control command and returns the used length and the ack byte (nil without one).
    func command(_ bytes: [UInt8], ackBytes: Int = 1) throws -> (length: UInt32, ack: UInt8?)? {
        guard let control else { return nil }
        let id = try post(control, readable: bytes.isEmpty ? nil : bytes, writable: ackBytes)
        try control.kick()
        guard let used = try control.waitForUsed(timeout: Self.wait), used.id == id else { return nil }
        guard used.length > 0, let address = buffers[control.index]?[id] else { return (used.length, nil) }
        var ack: [UInt8] = [0]
        try ack.withUnsafeMutableBytes { try memory.read(guestPhysical: address, into: $0) }
        return (used.length, ack[0])
    }
}

/// A `vhost-user-net` process on `sockets` with `arguments`.
func startNetDaemon(_ arguments: [String], sockets: [String], log: String) throws -> SocketDaemon {
    let executable = builtProductPath("vhost-user-net") ?? "vhost-user-net"
    let socketArguments = sockets.flatMap { ["--socket-path", $0] }
    return try SocketDaemon.start([executable] + socketArguments + arguments, sockets: sockets, log: log)
}

/// A frame to `destination` from `source` carrying `payload` bytes (a pattern seeded by `seed`).
func testFrame(to destination: MacAddress, from source: MacAddress, payload: Int = 50, seed: UInt8 = 0) -> [UInt8] {
    var frame = [UInt8](repeating: 0, count: 14 + payload)
    for i in 0..<6 {
        frame[i] = destination[i]
        frame[6 + i] = source[i]
    }
    frame[12] = 0x88
    frame[13] = 0xb5
    for i in 0..<payload { frame[14 + i] = UInt8(truncatingIfNeeded: i) &+ seed }
    return frame
}
