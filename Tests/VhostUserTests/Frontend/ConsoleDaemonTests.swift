#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Testing
import VMMSysUtil
import VMMTestSupport
import VhostUserFrontend
import Virtio

/// The example console back-end (Examples/vhost-user-console), in its own process, driven by its
/// own fd: guest output reaches a host client on its host socket, and what the client sends fills
/// the guest's receive buffers, including bytes sent before the guest posted any.
@Suite(.enabled(if: builtProductPath("vhost-user-console") != nil, "needs the vhost-user-console product"))
struct ConsoleDaemonTests {
    static let wait: Duration = .seconds(10)

    @Test(.isolatedDescriptors, arguments: [false, true])
    func bytesFlowBothWaysThroughTheHostSocket(packed: Bool) throws {
        let executable = try #require(builtProductPath("vhost-user-console"))
        let directory = try TemporaryDirectory()
        defer { directory.remove(["vhost.sock", "host.sock", "console.log"]) }
        let socket = directory.path + "/vhost.sock"
        let hostSocket = directory.path + "/host.sock"
        let daemon = try SocketDaemon.start(
            [executable, "--socket-path", socket, "--host-socket=" + hostSocket],
            socket: socket, log: directory.path + "/console.log")
        defer { daemon.stop() }

        let baseline = openFileDescriptorCount()
        do {
            let frontend = try VhostUserFrontend(connectingTo: socket, timeout: Self.wait)
            var wanted: VirtioFeatures = [.version1, .ringEventIndex]
            if packed { wanted.insert(.ringPacked) }
            let negotiated = try frontend.negotiate(features: wanted)
            #expect(negotiated.features.contains(.ringPacked) == packed)
            let memory = try frontend.setMemory([FrontendMemoryRegion(try SharedMemory(size: 1 << 20))])
            let receive = try frontend.startQueue(index: 0, size: 16, ringAddress: 0)
            let transmit = try frontend.startQueue(index: 1, size: 16, ringAddress: 0x1000)
            try frontend.setDriverReady()
            let client = try ScmSocket.connect(path: hostSocket)

            // Host -> guest before any receive buffer: kept in the socket until the guest posts one.
            try client.send(Array("early".utf8))
            usleep(50_000)
            #expect(try receive.reap() == nil)
            let first = try receive.post([DriverBuffer(address: 0x10000, length: 64, isWritable: true)])
            try receive.kick()
            let early = try #require(try receive.waitForUsed(timeout: Self.wait), "no receive completion")
            #expect(early.id == first)
            #expect(try bytes(memory, at: 0x10000, count: Int(early.length)) == Array("early".utf8))

            // Guest -> host.
            let message = Array("hello from the guest".utf8)
            try message.withUnsafeBytes { try memory.write(guestPhysical: 0x20000, bytes: $0) }
            let sent = try transmit.post([
                DriverBuffer(address: 0x20000, length: UInt32(message.count), isWritable: false)
            ])
            try transmit.kick()
            var received = [UInt8](repeating: 0, count: message.count)
            try received.withUnsafeMutableBytes { _ = try client.receiveExactly(into: $0, maxFDs: 0) }
            #expect(received == message)
            #expect(try transmit.waitForUsed(timeout: Self.wait)?.id == sent)

            // Host -> guest with buffers waiting.
            let second = try receive.post([DriverBuffer(address: 0x11000, length: 64, isWritable: true)])
            try receive.kick()
            try client.send(Array("ping".utf8))
            let ping = try #require(try receive.waitForUsed(timeout: Self.wait), "no receive completion")
            #expect(ping.id == second)
            #expect(try bytes(memory, at: 0x11000, count: Int(ping.length)) == Array("ping".utf8))
            try frontend.disconnect()
        }
        #expect(openFileDescriptorCount() == baseline, "descriptors leaked")
    }

    private func bytes(_ memory: GuestMemory, at address: UInt64, count: Int) throws -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: count)
        try bytes.withUnsafeMutableBytes { try memory.read(guestPhysical: address, into: $0) }
        return bytes
    }
}
