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

/// The front-end against this package's own back-end: the `vhost-user-rng` daemon, in its own
/// process. Skipped when that product was not built beside the tests.
@Suite(.enabled(if: builtProductPath("vhost-user-rng") != nil, "needs the vhost-user-rng product"))
struct EntropyDaemonTests {
    @Test(.isolatedDescriptors, arguments: [(false, false), (true, false), (false, true), (true, true)])
    func readsRandomBytesFromOurDaemon(eventIndex: Bool, packed: Bool) throws {
        let executable = try #require(builtProductPath("vhost-user-rng"))
        let directory = try TemporaryDirectory()
        defer { directory.remove(["rng.sock", "rng.log"]) }
        let socket = directory.path + "/rng.sock"
        let daemon = try SocketDaemon.start(
            [executable, "--socket-path", socket], socket: socket,
            log: directory.path + "/rng.log")
        defer { daemon.stop() }

        let baseline = openFileDescriptorCount()
        do {
            let frontend = try VhostUserFrontend(connectingTo: socket, timeout: .seconds(10))
            var wanted: VirtioFeatures = eventIndex ? [.version1, .ringEventIndex] : [.version1]
            if packed { wanted.insert(.ringPacked) }
            let negotiated = try frontend.negotiate(features: wanted)
            #expect(negotiated.features == wanted.union(.protocolFeatures))
            let memory = try frontend.setMemory([FrontendMemoryRegion(try SharedMemory(size: 1 << 20))])
            let queue = try frontend.startQueue(index: 0, size: 64, ringAddress: 0)
            try frontend.setDriverReady()

            var total = 0
            var histogram = [Int](repeating: 0, count: 256)
            for round in 0..<20 {
                var pending: [UInt16: UInt64] = [:]
                for slot in 0..<(1 + round % 8) {
                    let address = UInt64(0x1_0000 + slot * 4096)
                    try [UInt8](repeating: 0, count: 256).withUnsafeBytes {
                        try memory.write(guestPhysical: address, bytes: $0)
                    }
                    pending[try queue.post([DriverBuffer(address: address, length: 256, isWritable: true)])] = address
                }
                try queue.kickIfNeeded()
                while !pending.isEmpty {
                    let completion = try queue.waitForUsed(timeout: .seconds(10))
                    let used = try #require(completion, "no completion within the bound")
                    let removed = pending.removeValue(forKey: used.id)
                    let address = try #require(removed, "completion of an id not in flight")
                    #expect(used.length == 256)
                    var bytes = [UInt8](repeating: 0, count: 256)
                    try bytes.withUnsafeMutableBytes { try memory.read(guestPhysical: address, into: $0) }
                    for byte in bytes { histogram[Int(byte)] += 1 }
                    total += 1
                }
            }
            // 20 rounds of 256-byte requests: random bytes cover (nearly) every value.
            #expect(histogram.filter { $0 > 0 }.count > 200)
            #expect(queue.isPacked == packed)
            if packed {
                // Both positions at slot total mod 64, wrap counters toggled once per lap from 1.
                let position = UInt32(total % 64) | (total / 64 % 2 == 0 ? 0x8000 : 0)
                #expect(try frontend.stopQueue(queue) == position | position << 16)
            } else {
                #expect(try frontend.stopQueue(queue) == UInt32(total))
            }
            try frontend.disconnect()
        }
        #expect(openFileDescriptorCount() == baseline, "descriptors leaked")
    }
}
