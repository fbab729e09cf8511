import VhostUserBackend
import VMMSysUtil
import VirtioNet

/// `--sink`: takes every frame the driver transmits and drops it (counted), like testpmd's
/// rxonly; never receives. Measures the transmit path alone.
///
/// Thread-safety: stateless.
final class SinkPort: NetPort {
    let offloadFeatures: UInt64 = 0
    let maxFrameLength: Int

    init(maxFrameLength: Int) { self.maxFrameLength = maxFrameLength }

    func transmit(_ packet: UnsafeMutableRawBufferPointer, pair: Int) -> Bool { true }
    func receive(_ lane: ReceiveLane, queue: inout VhostUserQueue, event: PollEvent?) throws {}
}

/// `--source`: fills every receive buffer the driver posts with a fixed UDP frame (64 bytes by
/// default), like testpmd's txonly; drops what the driver transmits. Measures the receive path
/// alone. The frame goes to the device's MAC address (so a driver's receive filter takes it)
/// from a locally administered source address.
///
/// Thread-safety: each lane's copy of the frame is used only by that lane's worker.
final class SourcePort: NetPort {
    let offloadFeatures: UInt64 = 0
    let maxFrameLength: Int
    let frameLength: Int
    private let destination: MacAddress

    init(frameLength: Int, destination: MacAddress, maxFrameLength: Int) {
        self.frameLength = frameLength
        self.destination = destination
        self.maxFrameLength = maxFrameLength
    }

    func transmit(_ packet: UnsafeMutableRawBufferPointer, pair: Int) -> Bool { true }

    func receiveStarted(_ lane: ReceiveLane, queue: inout VhostUserQueue) throws {
        let packet = UnsafeMutableRawBufferPointer(rebasing: lane.packet[..<(NetHeader.size + frameLength)])
        SourcePort.buildFrame(into: packet, destination: destination)
        lane.pending = packet.count
    }

    /// Fills every available receive buffer, at most a ring's worth per call, in bursts of
    /// `burst` chains popped before any frame is written (`ReceiveLane.reserve`), each published
    /// when written.
    func receive(_ lane: ReceiveLane, queue: inout VhostUserQueue, event: PollEvent?) throws {
        guard lane.pending > 0 else { return }
        let packet = UnsafeMutableRawBufferPointer(rebasing: lane.packet[..<lane.pending])
        var budget = queue.size
        while budget > 0 {
            let held = lane.writer.heldCount + (try lane.reserve(min(budget, Self.burst), from: &queue))
            guard held > 0 else { return }
            for _ in 0..<min(held, budget) {
                guard case .delivered = try lane.deliver(packet, to: &queue) else { return }
                budget -= 1
            }
            // Each burst reaches the driver at once (one used-index store and a call check), as
            // DPDK's vhost publishes each enqueue burst: the driver takes and refills it while the
            // next is written, instead of waiting for the ring's worth or for the ring to run dry.
            try queue.publish()
        }
    }

    /// Chains popped ahead of the frames written into them.
    static let burst = 32

    /// A zero virtio-net header, then Ethernet (to `destination`), IPv4 (checksummed) and UDP
    /// (checksum 0: none, allowed for IPv4) headers, then a payload of byte indices.
    static func buildFrame(into packet: UnsafeMutableRawBufferPointer, destination: MacAddress) {
        packet.initializeMemory(as: UInt8.self, repeating: 0)
        let frame = UnsafeMutableRawBufferPointer(rebasing: packet[NetHeader.size...])
        guard frame.count >= 42 else { return }
        destination.store(to: frame, at: 0)
        MacAddress(rawValue: 0x01_00_00_00_00_02).store(to: frame, at: 6)
        frame.storeBytes(of: UInt16(0x0800).bigEndian, toByteOffset: 12, as: UInt16.self)
        let ipLength = frame.count - 14
        let ip: [UInt8] = [
            0x45, 0, UInt8(ipLength >> 8), UInt8(ipLength & 0xff), 0, 0, 0, 0, 64, 17, 0, 0,
            198, 18, 0, 1, 198, 18, 0, 2,
        ]
        for (offset, byte) in ip.enumerated() { frame[14 + offset] = byte }
        var sum: UInt32 = 0
        for word in stride(from: 0, to: 20, by: 2) { sum += UInt32(ip[word]) << 8 | UInt32(ip[word + 1]) }
        while sum > 0xffff { sum = (sum & 0xffff) + (sum >> 16) }
        frame.storeBytes(of: (~UInt16(sum)).bigEndian, toByteOffset: 24, as: UInt16.self)
        let udpLength = ipLength - 20
        frame.storeBytes(of: UInt16(9).bigEndian, toByteOffset: 34, as: UInt16.self)
        frame.storeBytes(of: UInt16(9).bigEndian, toByteOffset: 36, as: UInt16.self)
        frame.storeBytes(of: UInt16(udpLength).bigEndian, toByteOffset: 38, as: UInt16.self)
        for offset in 42..<frame.count { frame[offset] = UInt8(truncatingIfNeeded: offset) }
    }
}
