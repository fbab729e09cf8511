#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Testing
import VMMSysUtil
import VMMTestSupport
import Virtio
@testable import VhostUserProtocol
@testable import VhostUserBackend

/// A front-end that exits leaves the back-end writing into call fds nobody reads. With the pipe
/// backend each such write raises SIGPIPE in the writing thread, whose default action would end
/// the process hosting the framework (a VMM, this test): the queue workers block it and take
/// the EPIPE. The ring goes on serving (its used entries still land in guest memory).
@Suite struct GoneCallReaderTests {
    @Test func aCallPipeWithoutReaderDoesNotEndTheProcess() throws {
        let session = try VhostUserSession(device: PatternDevice())
        defer { session.close() }
        let rig = try GuestRig()
        // The call fd: the write end of a pipe whose read end is closed as soon as the session
        // has its copy (the front-end "exited").
        var call: EventNotifier? = try EventNotifier(backend: .pipe)
        for (body, fds) in rig.startRequests(
            features: drivenFeatures, protocolFeatures: session.offeredProtocolFeatures)
        {
            let sent = body.request == .setVringCall ? [call!.notifyDescriptor] : fds
            _ = try session.handle(message(body, fds: sent))
        }
        call = nil
        for round in 0..<3 {
            try rig.postWritable(slot: round, length: 32)
            try rig.kick.notify()
            var used: UsedBuffer?
            let deadline = ContinuousClock.now + .seconds(5)
            while used == nil, ContinuousClock.now < deadline {
                used = try rig.reap()
                if used == nil { usleep(1000) }
            }
            #expect(used?.length == 32, "round \(round): the chain was not served")
        }
        withExtendedLifetime(rig) {}
    }
}
