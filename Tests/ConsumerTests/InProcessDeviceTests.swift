import Testing
import VMMSysUtil
import Virtio
import VhostUserProtocol
import VhostUserBackend
import VhostUserFrontend

/// A small device a VMM author writes: answers each chain with its readable bytes upper-cased.
/// Its mutable state is read by the test thread and written by queue workers, so it is guarded
/// by a lock, as `VhostUserDevice` documents.
final class UppercaseDevice: VhostUserDevice, @unchecked Sendable {
    let deviceType = VirtioDeviceType.console
    let deviceFeatures: VirtioFeatures = .version1
    let queueCount = 1
    let maxQueueSize = 256
    let configSize = 0

    private let lock = ConditionLock()
    private var served = 0  // guarded by `lock`
    private var acked: VirtioFeatures = []  // guarded by `lock`

    var servedChains: Int { lock.withLock { served } }
    var negotiatedFeatures: VirtioFeatures { lock.withLock { acked } }

    func process(_ queue: inout VhostUserQueue) throws {
        var scratch = [UInt8](repeating: 0, count: 256)
        while let chain = try queue.pop() {
            let count = try scratch.withUnsafeMutableBytes { try chain.readReadable(into: $0) }
            for index in 0..<count where (0x61...0x7A).contains(scratch[index]) { scratch[index] -= 0x20 }
            let written = try scratch.withUnsafeBytes {
                try chain.writeWritable(UnsafeRawBufferPointer(rebasing: $0[0..<count]))
            }
            try queue.complete(chain, written: UInt32(written))
            lock.withLock { served += 1 }
        }
    }

    func featuresNegotiated(_ features: UInt64) {
        lock.withLock { acked = VirtioFeatures(rawValue: features) }
    }
}

/// The device served in this process by `VhostUserServer` on one end of a socket pair and driven
/// through the other by `VhostUserFrontend`, as a VMM that embeds a back-end would.
@Suite struct InProcessDeviceTests {
    @Test func aFrontendDrivesAnInProcessDevice() throws {
        let device = UppercaseDevice()
        let server = VhostUserServer(device: device)
        let (backendEnd, frontendEnd) = try ScmSocket.pair()
        let finished = try EventNotifier()
        let serving = try JoinableThread {
            _ = server.serve(backendEnd)
            try? finished.notify()
        }

        // The front-end takes the only reference to its end, so `disconnect()` closes it and the
        // server sees the end of the session.
        let frontend = VhostUserFrontend(socket: consume frontendEnd, timeout: .seconds(10))
        let negotiated = try frontend.negotiate(
            features: [.version1, .ringEventIndex], protocolFeatures: [.replyAck, .status])
        #expect(negotiated.features.isSuperset(of: [.version1, .ringEventIndex]))
        #expect(try frontend.getStatus().isSuperset(of: [.acknowledge, .driver, .featuresOK]))
        let memory = try frontend.setMemory([FrontendMemoryRegion(try SharedMemory(size: 1 << 20))])
        let queue = try frontend.startQueue(index: 0, size: 64, ringAddress: 0)
        #expect(queue.layout == .split)
        try frontend.setDriverReady()
        #expect(try frontend.getStatus().contains(.driverOK))

        let text = Array("hello, vhost-user".utf8)
        try text.withUnsafeBytes { try memory.write(guestPhysical: 0x1_0000, bytes: $0) }
        let id = try queue.post([
            DriverBuffer(address: 0x1_0000, length: UInt32(text.count), isWritable: false),
            DriverBuffer(address: 0x2_0000, length: UInt32(text.count), isWritable: true),
        ])
        try queue.kick()
        let used = try #require(try queue.waitForUsed(timeout: .seconds(10)), "no completion")
        #expect(used.id == id && used.length == UInt32(text.count))
        var answer = [UInt8](repeating: 0, count: text.count)
        try answer.withUnsafeMutableBytes { try memory.read(guestPhysical: 0x2_0000, into: $0) }
        #expect(answer == Array("HELLO, VHOST-USER".utf8))

        #expect(try frontend.stopQueue(queue) == 1)
        try frontend.disconnect()
        // Bounded: join only once the server said its session ended.
        try #require(try finished.wait(timeout: .seconds(10)), "the server did not see the disconnect")
        serving.join()
        #expect(device.servedChains == 1)
        #expect(device.negotiatedFeatures.contains(.version1))
    }
}
