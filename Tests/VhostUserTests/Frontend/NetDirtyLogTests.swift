import Testing
import VMMTestSupport
import VhostUserFrontend
import Virtio
import VirtioNet

/// What a migrating front-end sees of `vhost-user-net` in its own process: exactly which guest
/// pages each frame and control command dirties (the front-end reads and clears the log as QEMU
/// does during a live migration), split and packed. Every ring lies in page 0 (32 slots, 1 KiB
/// apart), so page 0 is the only ring page a completion may dirty; buffers sit on pages of their
/// own. Every wait is bounded (10 s; 2 s for a log bit).
@Suite(.enabled(if: builtProductPath("vhost-user-net") != nil, "needs the vhost-user-net product"))
struct NetDirtyLogTests {
    typealias Layout = NetDaemonTests.Layout
    static let ringPage: UInt64 = 0

    /// A guest whose rings all lie in page 0.
    static func guest(_ socket: String, _ layout: Layout, _ extra: UInt64 = 0, controlQueue: Int? = nil) throws
        -> NetGuest
    {
        try NetGuest(
            socket: socket, features: NetDaemonTests.features(layout, extra), queueSize: 32,
            controlQueue: controlQueue, ringStride: 1024)
    }

    /// Starts logging and lets the workers' serve after their resume (which rewrites the rings'
    /// notification fields, page 0) land before anything is measured.
    static func startLogging(_ guest: NetGuest) throws -> DirtyLog {
        let log = try guest.frontend.startLogging().log
        #expect(dirtyPages(log, including: [ringPage]).allSatisfy { $0 == ringPage })
        return log
    }

    /// Posts one receive chain per (address, length), kicks, and returns their ids.
    static func postReceive(_ guest: NetGuest, _ buffers: [(UInt64, UInt32)]) throws -> [UInt16] {
        let ids = try buffers.map { address, length in
            try guest.rx.post([DriverBuffer(address: address, length: length, isWritable: true)])
        }
        try guest.rx.kick()
        return ids
    }

    /// The page numbers of `length` bytes from `address`.
    static func pages(_ address: UInt64, _ length: UInt64) -> Set<UInt64> {
        Set(address / 4096...(address + length - 1) / 4096)
    }

    @Test(arguments: Layout.allCases)
    func aReceivedFrameDirtiesItsBuffersAndTheUsedRingAndASentOneOnlyTheUsedRing(layout: Layout) throws {
        try NetDaemonTests().withDaemon(["--switch"], ports: 2) { sockets in
            let a = try Self.guest(sockets[0], layout)
            let b = try Self.guest(sockets[1], layout)
            #expect(a.negotiated.offeredFeatures.contains(.logAll))
            #expect(a.negotiated.protocolFeatures.contains(.logSharedMemory))
            let logA = try Self.startLogging(a)
            let logB = try Self.startLogging(b)
            let macA = MacAddress(rawValue: 0x02_00_00_00_00_0A)

            // One chain of 8 KiB across pages 0x200-0x202; the packet (12 + 114 bytes) dirties the
            // first two only.
            let single: UInt64 = 0x20_0FC0
            let small = testFrame(to: .broadcast, from: macA, payload: 100)
            _ = try Self.postReceive(b, [(single, 8192)])
            try a.send(small)
            #expect(try a.transmitted()?.length == 0)
            let used = try #require(try b.rx.waitForUsed(timeout: NetGuest.wait))
            #expect(used.length == UInt32(NetHeader.size + small.count))
            let expected = Self.pages(single, UInt64(used.length)).union([Self.ringPage])
            #expect(expected == [Self.ringPage, 0x200, 0x201])
            #expect(dirtyPages(logB, including: expected) == expected.sorted(), "the receiver's pages")
            #expect(dirtyPages(logA, including: [Self.ringPage]) == [Self.ringPage], "a sent frame: its used ring only")

            // MRG_RXBUF: a 4014-byte frame over three chains (1500 + 1500 + 1026 bytes written of
            // 1500 + 1500 + 3000); the fourth chain and the third's unwritten page stay clean.
            let chains: [(UInt64, UInt32)] = [
                (0x28_0F00, 1500), (0x30_0000, 1500), (0x38_0800, 3000), (0x3C_0000, 2048),
            ]
            let ids = try Self.postReceive(b, chains)
            let big = testFrame(to: .broadcast, from: macA, payload: 4000, seed: 3)
            try a.send(big)
            #expect(try a.transmitted()?.length == 0)
            var written: [UInt16: UInt32] = [:]
            for _ in 0..<3 {
                let used = try #require(try b.rx.waitForUsed(timeout: NetGuest.wait))
                written[used.id] = used.length
            }
            #expect(written == [ids[0]: 1500, ids[1]: 1500, ids[2]: 1026])
            var header = [UInt8](repeating: 0, count: NetHeader.size)
            try header.withUnsafeMutableBytes { try b.memory.read(guestPhysical: chains[0].0, into: $0) }
            #expect(header[10..<12] == [3, 0], "num_buffers")
            let merged: Set<UInt64> = [Self.ringPage, 0x280, 0x281, 0x300, 0x380]
            #expect(dirtyPages(logB, including: merged) == merged.sorted(), "every chain the frame spans, no more")
            #expect(dirtyPages(logA, including: [Self.ringPage]) == [Self.ringPage])

            // Logging off: the fourth chain takes the next frame and nothing is marked.
            try b.frontend.stopLogging()
            _ = logB.takeDirtyPages()
            try a.send(small)
            #expect(try b.rx.waitForUsed(timeout: NetGuest.wait)?.id == ids[3])
            #expect(logB.takeDirtyPages() == [], "nothing is logged once logging stopped")
        }
    }

    @Test(arguments: Layout.allCases)
    func aControlAckDirtiesItsByteAndTheUsedRing(layout: Layout) throws {
        try NetDaemonTests().withDaemon(["--sink"]) { sockets in
            let guest = try Self.guest(
                sockets[0], layout, NetFeature.controlQueue | NetFeature.controlReceiveMode, controlQueue: 2)
            let control = try #require(guest.control)
            let log = try Self.startLogging(guest)
            // VIRTIO_NET_CTRL_RX_PROMISC on: the command in page 0x200 (read only), the ack byte
            // the last of page 0x250.
            try [UInt8]([0, 0, 1]).withUnsafeBytes { try guest.memory.write(guestPhysical: 0x20_0000, bytes: $0) }
            let id = try control.post([
                DriverBuffer(address: 0x20_0000, length: 3, isWritable: false),
                DriverBuffer(address: 0x25_0FFF, length: 1, isWritable: true),
            ])
            try control.kick()
            #expect(try control.waitForUsed(timeout: NetGuest.wait) == UsedBuffer(id: id, length: 1))
            var ack: [UInt8] = [0xFF]
            try ack.withUnsafeMutableBytes { try guest.memory.read(guestPhysical: 0x25_0FFF, into: $0) }
            #expect(ack == [ControlCommand.ackOK])
            #expect(dirtyPages(log, including: [Self.ringPage, 0x250]) == [Self.ringPage, 0x250])
            // Frames sent to the sink dirty nothing but the used ring.
            for seed in 0..<8 {
                try guest.send(
                    testFrame(to: .broadcast, from: MacAddress(rawValue: 0x02_00_00_00_00_0B), seed: UInt8(seed)))
                #expect(try guest.transmitted()?.length == 0)
            }
            #expect(dirtyPages(log, including: [Self.ringPage]) == [Self.ringPage])
        }
    }

    /// VIRTIO_F_IN_ORDER on a packed ring, across processes: frames sent to the sink with one kick
    /// are completed by fewer used descriptors than frames, each at the first slot of its run with
    /// the run's last id (VIRTIO 1.2 section 2.8.8), the skipped slots as the driver wrote them;
    /// the driver reaps every frame in order and the log marks the ring page only.
    @Test func inOrderSentFramesShareUsedDescriptorsAndDirtyOnlyTheRing() throws {
        try NetDaemonTests().withDaemon(["--sink"]) { sockets in
            let guest = try Self.guest(sockets[0], .packed, 1 << 35)
            #expect(guest.negotiated.features.contains(.inOrder))
            let log = try Self.startLogging(guest)
            let source = MacAddress(rawValue: 0x02_00_00_00_00_0B)
            let frames = (0..<8).map { testFrame(to: .broadcast, from: source, seed: UInt8($0)) }
            let ring = guest.tx.addresses.descriptorTable
            func slot(_ index: Int) throws -> (id: UInt16, flags: UInt16) {
                let address = ring + UInt64(index) * 16
                return (
                    try guest.memory.load(UInt16.self, guestPhysical: address + 12),
                    try guest.memory.load(UInt16.self, guestPhysical: address + 14)
                )
            }
            let ids = try guest.sendAll(frames)
            var reaped: [UInt16] = []
            while reaped.count < ids.count, let used = try guest.transmitted() {
                #expect(used.length == 0)
                reaped.append(used.id)
            }
            #expect(reaped == ids)
            // Walk the used descriptors as the driver does: each ends a run at its own id.
            var index = 0
            var descriptors = 0
            while index < ids.count {
                let (id, flags) = try slot(index)
                #expect(flags == 0x8080, "slot \(index): a used descriptor, wrap counter 1")
                guard let last = ids.firstIndex(of: id), last >= index else {
                    Issue.record("slot \(index) carries id \(id), not a later chain's")
                    break
                }
                for skipped in index + 1..<last + 1 {
                    let (skippedID, skippedFlags) = try slot(skipped)
                    #expect(
                        skippedID == ids[skipped] && skippedFlags == 0x0080, "slot \(skipped): as the driver wrote it")
                }
                descriptors += 1
                index = last + 1
            }
            #expect(descriptors < ids.count, "runs of completions share used descriptors")
            #expect(dirtyPages(log, including: [Self.ringPage]) == [Self.ringPage])
        }
    }
}
