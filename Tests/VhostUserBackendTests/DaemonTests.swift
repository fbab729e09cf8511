import Testing
import VMMSysUtil
import VMMTestSupport
import Virtio
@testable import VhostUser

@Suite("Back-end programs: options, and vhost-user-rng across processes")
struct DaemonTests {
    @Test func parsesTheConventionalOptions() throws {
        let spaced = try VhostUserDaemonArguments.parse(["--socket-path", "/tmp/x.sock", "--blk-file", "img", "--read-only"])
        #expect(spaced.socketPath == "/tmp/x.sock")
        #expect(spaced.fd == nil)
        #expect(spaced.remaining == ["--blk-file", "img", "--read-only"])
        let joined = try VhostUserDaemonArguments.parse(["--fd=4", "--num-queues=2"])
        #expect(joined.fd == 4)
        #expect(joined.remaining == ["--num-queues=2"])
        // --print-capabilities ignores everything else.
        #expect(try VhostUserDaemonArguments.parse(["--print-capabilities"]).printCapabilities)
        #expect(try VhostUserDaemonArguments.parse(["--help"]).help)
        for bad in [[], ["--socket-path"], ["--fd", "x"], ["--fd=-1"], ["--socket-path=a", "--fd=3"]] {
            #expect(throws: VhostUserDaemonError.self) { try VhostUserDaemonArguments.parse(bad) }
        }
    }

    @Test func rngServesRandomBytesToAFrontendInAnotherProcess() throws {
        let baseline = openFileDescriptorCount()
        let child: PeerProcess
        do {
            let (frontendSide, backendSide) = try ScmSocket.pair()
            // A connected socket as --fd: served once, then the program exits 0.
            child = try PeerProcess.spawn("vhost-user-rng", arguments: ["--fd", "3"],
                                          mapping: [(backendSide.descriptor, 3)])
            let frontend = TestFrontend(socket: frontendSide)
            let rig = try GuestRig()
            let offered = ProtocolFeatures(rawValue: try frontend.u64(.getProtocolFeatures))
            for (body, fds) in rig.startRequests(features: drivenFeatures, protocolFeatures: offered) {
                if case .setProtocolFeatures = body {
                    try frontend.send(body, fds: fds)
                } else {
                    #expect(try frontend.u64(body, needsReply: true, fds: fds) == 0, "\(body)")
                }
            }
            for slot in 0..<3 { try rig.postWritable(slot: slot, length: 4096) }
            try rig.kick.notify()
            var lengths: [UInt32] = []
            while lengths.count < 3, let used = try reapWaiting(rig) { lengths.append(used.length) }
            #expect(lengths == [4096, 4096, 4096])
            let bytes = (0..<3).flatMap { rig.bytes(slot: $0, count: 4096) }
            #expect(Set(bytes).count > 200, "12 KiB of random bytes use (almost) every byte value")
            #expect(bytes.filter { $0 == 0 }.count < 200)
        }
        #expect(child.waitForExit() == 0)
        #expect(openFileDescriptorCount() == baseline)
    }
}
