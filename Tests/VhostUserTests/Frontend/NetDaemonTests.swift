#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Testing
import VMMTestSupport
import VhostUserFrontend
import Virtio
import VirtioNet

/// `vhost-user-net` in its own process against the front-end library as the driver: the
/// benchmark ports, the switch, the control queue and bad input, split and packed rings. Every
/// wait is bounded (10 s; 300 ms where nothing must arrive).
@Suite(.enabled(if: builtProductPath("vhost-user-net") != nil, "needs the vhost-user-net product"))
struct NetDaemonTests {
    static let quiet: Duration = .milliseconds(300)

    enum Layout: String, CaseIterable, Sendable { case split, packed }

    static func features(_ layout: Layout, _ extra: UInt64 = 0) -> VirtioFeatures {
        var features = NetGuest.features.union(VirtioFeatures(rawValue: extra))
        if layout == .packed { features.insert(.ringPacked) }
        return features
    }

    /// Runs `body` with a daemon on `ports` sockets in a fresh directory.
    func withDaemon(_ arguments: [String], ports: Int = 1, _ body: ([String]) throws -> Void) throws {
        let directory = try TemporaryDirectory()
        let sockets = (0..<ports).map { directory.path + "/net\($0).sock" }
        defer {
            if getenv("NET_TEST_KEEP") == nil {
                directory.remove(sockets.map { String($0.split(separator: "/").last!) } + ["net.log"])
            }
        }
        let daemon = try startNetDaemon(arguments, sockets: sockets, log: directory.path + "/net.log")
        do {
            try body(sockets)
        } catch {
            daemon.stop()
            throw error
        }
        daemon.stop()
    }

    @Test(arguments: Layout.allCases)
    func sourceFillsEveryReceiveBuffer(layout: Layout) throws {
        try withDaemon(["--source"]) { sockets in
            let guest = try NetGuest(socket: sockets[0], features: Self.features(layout))
            #expect(guest.negotiated.features.contains(VirtioFeatures(rawValue: NetFeature.mergeableRxBuffers)))
            #expect(guest.negotiated.features.contains(.ringPacked) == (layout == .packed))
            let mac = try guest.frontend.readConfig(size: 6)
            for round in 0..<3 {
                try guest.postReceiveBuffers(40)
                for _ in 0..<40 {
                    let packet = try #require(try guest.receive(), "round \(round)")
                    #expect(packet.count == NetHeader.size + 64)
                    #expect(Array(packet[10..<12]) == [1, 0], "num_buffers")
                    #expect(Array(packet[12..<18]) == mac, "to the device's MAC")
                }
            }
        }
    }

    @Test(arguments: Layout.allCases)
    func sinkTakesFramesAndAnswersBadChains(layout: Layout) throws {
        try withDaemon(["--sink"]) { sockets in
            let guest = try NetGuest(socket: sockets[0], features: Self.features(layout))
            let frame = testFrame(to: .broadcast, from: MacAddress("52:54:00:00:00:01")!)
            for _ in 0..<100 {
                let id = try guest.send(frame)
                #expect(try guest.transmitted() == UsedBuffer(id: id, length: 0))
            }
            // Header only, shorter than an Ethernet header, a writable buffer, a non-zero num_buffers,
            // checksum offload that was not negotiated: each completed, none breaks the queue.
            let bad: [(frame: [UInt8], header: [UInt8], writable: Int)] = [
                ([], [UInt8](repeating: 0, count: 12), 0),
                ([1, 2, 3], [UInt8](repeating: 0, count: 12), 0),
                (frame, [UInt8](repeating: 0, count: 12), 16),
                (frame, [UInt8](repeating: 0, count: 10) + [5, 0], 0),
                (frame, [1, 0, 0, 0, 0, 0, 14, 0, 16, 0, 0, 0], 0),
            ]
            for chain in bad {
                let id = try guest.send(chain.frame, header: chain.header, writable: chain.writable)
                #expect(try guest.transmitted() == UsedBuffer(id: id, length: 0))
            }
            let id = try guest.send(frame)
            #expect(try guest.transmitted() == UsedBuffer(id: id, length: 0))
        }
    }

    @Test(arguments: Layout.allCases)
    func pollModeDeliversEveryFrame(layout: Layout) throws {
        try withDaemon(["--source", "--poll-us", "200000"]) { sockets in
            let guest = try NetGuest(socket: sockets[0], features: Self.features(layout))
            for _ in 0..<5 {
                try guest.postReceiveBuffers(20)
                for _ in 0..<20 { _ = try #require(try guest.receive()) }
            }
        }
    }

    @Test(arguments: Layout.allCases)
    func switchLearnsFloodsAndNeverBlocksOnAStalledPort(layout: Layout) throws {
        try withDaemon(["--switch", "--switch-queue", "16"], ports: 3) { sockets in
            let guests = try sockets.map { try NetGuest(socket: $0, features: Self.features(layout)) }
            let macs = (0..<3).map { MacAddress(rawValue: 0x02_00_00_00_00_02 | UInt64($0) << 40) }
            let (a, b, c) = (guests[0], guests[1], guests[2])
            try a.postReceiveBuffers(64)
            try b.postReceiveBuffers(64)
            // C posts nothing yet: a stalled receiver.
            // Broadcast from A floods to B (and C's queue), never back to A.
            let hello = testFrame(to: .broadcast, from: macs[0])
            try a.send(hello)
            _ = try #require(try a.transmitted())
            #expect(try b.receive().map { Array($0[12...]) } == hello)
            #expect(try a.receive(timeout: Self.quiet) == nil, "flooded back to its source")
            // B answers A by unicast (A was learned); A sends to B (B learned now): no flooding.
            let reply = testFrame(to: macs[0], from: macs[1], seed: 1)
            try b.send(reply)
            _ = try #require(try b.transmitted())
            #expect(try a.receive().map { Array($0[12...]) } == reply)
            let direct = testFrame(to: macs[1], from: macs[0], seed: 2)
            try a.send(direct)
            _ = try #require(try a.transmitted())
            #expect(try b.receive().map { Array($0[12...]) } == direct)
            // 40 more broadcasts: C's queue holds 16 (with `hello` among them), the rest are dropped
            // for C only; A's transmit never waits and B gets all of them. B takes each frame before
            // the next is sent, so B's own 16-frame queue never overflows however late B's worker
            // runs (a busy machine): only C, which posts nothing, may lose frames.
            for round in 0..<40 {
                let frame = testFrame(to: .broadcast, from: macs[0], seed: UInt8(10 + round))
                try a.send(frame)
                _ = try #require(try a.transmitted(), "A's transmit waited for a stalled port")
                #expect(try b.receive().map { Array($0[12...]) } == frame)
            }
            // C wakes up: it gets what its queue held, in order, and nothing else.
            try c.postReceiveBuffers(64)
            #expect(try c.receive().map { Array($0[12...]) } == hello)
            var more = 0
            while try c.receive(timeout: Self.quiet) != nil { more += 1 }
            #expect(more == 15)
        }
    }

    /// A receive ring stopped while the daemon keeps its buffer for a frame that does not fit yet
    /// (mergeable: a 600-byte frame, one 128-byte buffer posted) gets the buffer back, used and
    /// empty, before `GET_VRING_BASE` is answered, and the base counts it: the driver loses no
    /// buffer, and the daemon never writes into it after the ring stopped.
    @Test func aBufferHeldForAFrameComesBackWhenTheRingStops() throws {
        try withDaemon(["--switch"], ports: 2) { sockets in
            let a = try NetGuest(socket: sockets[0])
            let b = try NetGuest(socket: sockets[1])
            let frame = testFrame(to: .broadcast, from: MacAddress(rawValue: 0x02_00_00_00_00_0A), payload: 600)
            try a.send(frame)
            _ = try #require(try a.transmitted())
            try b.postReceiveBuffers(1, size: 128)
            // Having taken the buffer (and kept it: the frame needs more), the daemon re-enables
            // notifications for the next available index.
            let deadline = ContinuousClock.now + NetGuest.wait
            while try b.receiveAvailEvent() != 1, ContinuousClock.now < deadline { usleep(1000) }
            try #require(try b.receiveAvailEvent() == 1, "the daemon did not take the receive buffer")
            #expect(try b.rx.reap() == nil, "a 600-byte frame was put into a 128-byte buffer")
            #expect(try b.frontend.stopQueue(b.rx) == 1)
            let used = try #require(try b.rx.reap(), "the held buffer was not given back")
            #expect(used.length == 0)
        }
    }

    @Test func controlQueueAnswersCommands() throws {
        let control =
            NetFeature.controlQueue | NetFeature.controlReceiveMode | NetFeature.controlMACAddress
            | NetFeature.multiQueue | NetFeature.guestAnnounce
        try withDaemon(["--sink", "--queue-pairs", "2"]) { sockets in
            let guest = try NetGuest(socket: sockets[0], features: Self.features(.split, control), controlQueue: 4)
            #expect(guest.negotiated.queueCount == 5)
            #expect(guest.negotiated.features.rawValue & control == control)
            #expect(try guest.frontend.readConfig(offset: 8, size: 2) == [2, 0], "max_virtqueue_pairs")
            #expect(try guest.command([4, 0, 2, 0])?.ack == ControlCommand.ackOK)
            #expect(try guest.command([4, 0, 3, 0])?.ack == ControlCommand.ackError, "more pairs than offered")
            #expect(try guest.command([4])?.ack == ControlCommand.ackError, "short")
            #expect(try guest.command([9, 9, 9])?.ack == ControlCommand.ackError, "unknown")
            #expect(try guest.command([0, 5, 1])?.ack == ControlCommand.ackError, "CTRL_RX_EXTRA not negotiated")
            #expect(try guest.command([0, 0, 0])?.ack == ControlCommand.ackOK, "promiscuous off")
            #expect(try guest.command([3, 0])?.ack == ControlCommand.ackOK, "ANNOUNCE_ACK")
            #expect(try guest.command([3, 0, 0])?.ack == ControlCommand.ackError, "ANNOUNCE_ACK carries no data")
            #expect(try guest.command([0, 0, 1], ackBytes: 0)?.length == 0, "no room for the ack")
            let mac: [UInt8] = [0x52, 0x54, 0, 0x12, 0x34, 0x56]
            #expect(try guest.command([1, 1] + mac)?.ack == ControlCommand.ackOK)
            #expect(try guest.frontend.readConfig(size: 6) == mac)
            #expect(
                try guest.command([1, 0, 1, 0, 0, 0] + mac + [0, 0, 0, 0])?.ack == ControlCommand.ackOK, "MAC table")
            #expect(try guest.command([1, 0, 9, 0, 0, 0])?.ack == ControlCommand.ackError, "table past the data")
        }
    }

    @Test(arguments: Layout.allCases)
    func badReceiveChainsAreAnsweredAndTheDaemonServesTheNextFrontend(layout: Layout) throws {
        try withDaemon(["--source"]) { sockets in
            do {
                let guest = try NetGuest(socket: sockets[0], features: Self.features(layout))
                // A chain of one readable buffer (no writable bytes) and one of 8 writable bytes.
                _ = try guest.rx.post([DriverBuffer(address: 0x20_0000, length: 64, isWritable: false)])
                _ = try guest.rx.post([DriverBuffer(address: 0x20_1000, length: 8, isWritable: true)])
                try guest.postReceiveBuffers(1)
                #expect(try guest.rx.waitForUsed(timeout: NetGuest.wait)?.length == 0)
                #expect(try guest.rx.waitForUsed(timeout: NetGuest.wait)?.length == 0)
                #expect(try guest.receive()?.count == NetHeader.size + 64)
                // A descriptor outside guest memory: the ring is refused (broken), the process lives.
                _ = try guest.rx.post([DriverBuffer(address: 0x4000_0000, length: 2048, isWritable: true)])
                try guest.rx.kick()
                #expect(try guest.receive(timeout: Self.quiet) == nil)
            }
            let next = try NetGuest(socket: sockets[0], features: Self.features(layout))
            try next.postReceiveBuffers(4)
            for _ in 0..<4 { #expect(try next.receive()?.count == NetHeader.size + 64) }
        }
    }
}
