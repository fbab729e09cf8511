#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Testing
import VMMSysUtil
import VMMTestSupport

/// `TapDevice` on Linux: needs root (CAP_NET_ADMIN) and /dev/net/tun. The interface is not
/// persistent: it disappears when its last queue is closed.
@Suite(.enabled(if: tapAvailable, "needs root and /dev/net/tun (Linux)"))
struct TapDeviceTests {
    @Test(.isolatedDescriptors) func opensQueuesAttachesAndDetachesWithoutLeaking() throws {
        let baseline = openFileDescriptorCount()
        do {
            let name = "vmmt\(getpid() % 100_000)"
            let queues = try TapDevice.open(name: name, queues: 2)
            #expect(queues.count == 2)
            for queue in queues {
                #expect(queue.name == name)
                #expect(queue.carriesOffloads)
                let flags = fcntl(queue.pollDescriptor, F_GETFL)
                #expect(flags & O_NONBLOCK != 0, "non-blocking")
                #expect(fcntl(queue.pollDescriptor, F_GETFD) & FD_CLOEXEC != 0, "close-on-exec")
            }
            // Detach and attach again; asking twice for the same state is not an error.
            try queues[1].setAttached(false)
            try queues[1].setAttached(false)
            try queues[1].setAttached(true)
            try queues[0].setOffloads(checksum: true, tso4: true, tso6: true, ecn: false)
            try queues[0].setOffloads(checksum: false, tso4: false, tso6: false, ecn: false)
            // Nothing is waiting on a fresh interface; a frame written while it is down is lost,
            // reported as "not taken", not as an error.
            var packet = [UInt8](repeating: 0, count: 12 + 60)
            #expect(try packet.withUnsafeMutableBytes { try queues[0].read(into: $0) } == nil)
            for i in 12..<18 { packet[i] = 0xff }
            _ = try packet.withUnsafeBytes { try queues[0].write($0) }
        }
        #expect(openFileDescriptorCount() == baseline)
    }

    @Test func refusesANameTooLong() {
        #expect(throws: SystemCallError.self) { try TapDevice.open(name: String(repeating: "x", count: 40), queues: 1) }
    }
}

private let tapAvailable: Bool = {
    #if os(Linux)
    return geteuid() == 0 && access("/dev/net/tun", R_OK | W_OK) == 0
    #else
    return false
    #endif
}()
