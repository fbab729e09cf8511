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

/// Where a thread running `VhostUserServer.run` reports how it ended.
final class RunOutcome: @unchecked Sendable {
    private let lock = ConditionLock()
    private var stored: Result<Void, ScmSocketError>?
    func set(_ outcome: Result<Void, ScmSocketError>) { lock.withLock { stored = outcome } }
    var outcome: Result<Void, ScmSocketError>? { lock.withLock { stored } }
}

/// In-process hosting: a VMM runs a back-end on its own threads and stops it.
@Suite("VhostUserServer.stop", .serialized)
struct ServerStopTests {
    /// Starts a session whose ring is served by a worker thread, and checks that it works.
    func startServedSession(_ frontend: TestFrontend, _ rig: GuestRig) throws {
        try frontend.start(rig)
        try rig.postWritable(slot: 0, length: 16)
        try rig.kick.notify()
        #expect(try reapWaiting(rig)?.length == 16)
    }

    @Test(.isolatedDescriptors) func stopEndsRunWithASessionOpenAndLeavesNothingBehind() throws {
        let baseline = openFileDescriptorCount()
        let path = "/tmp/vhost-user-stop-\(getpid()).sock"
        let device = PatternDevice(pattern: 0x11)
        let server = VhostUserServer(device: device)
        let outcome = RunOutcome()
        let thread = try BoundedThread {
            do throws(ScmSocketError) {
                try server.run(socketPath: path)
                outcome.set(.success(()))
            } catch {
                outcome.set(.failure(error))
            }
        }
        do {
            let frontend = TestFrontend(socket: try connectWhenListening(path))
            let rig = try GuestRig()
            try startServedSession(frontend, rig)
            #expect(!server.isStopped)
            server.stop()
            #expect(thread.join(), "run did not return after stop()")
            guard case .success = outcome.outcome else {
                Issue.record("run ended with \(String(describing: outcome.outcome))")
                return
            }
            // The session was closed (the device reset) and the connection shut down.
            #expect(device.resetCount >= 1)
            #expect(throws: ScmSocketError.self) { _ = try frontend.reply() }
            #expect(access(path, F_OK) != 0, "the socket file is removed")
        }
        #expect(openFileDescriptorCount() == baseline)
        // Stopped for good: a later run returns at once, and its listener is gone too.
        try server.run(socketPath: path)
        #expect(access(path, F_OK) != 0)
        #expect(openFileDescriptorCount() == baseline)
    }

    @Test(.isolatedDescriptors) func stopEndsServeOfAConnectedSocketAndAnIdleRun() throws {
        let baseline = openFileDescriptorCount()
        do {
            let server = VhostUserServer(device: PatternDevice())
            let (frontendSide, backendSide) = try ScmSocket.pair()
            let box = EndBox()
            let thread = try BoundedThread { box.set(server.serve(backendSide)) }
            let frontend = TestFrontend(socket: frontendSide)
            let rig = try GuestRig()
            try startServedSession(frontend, rig)
            server.stop()
            #expect(thread.join())
            guard case .stopped = box.reason else {
                Issue.record("serve ended with \(String(describing: box.reason))")
                return
            }
            #expect(throws: ScmSocketError.self) { _ = try frontend.reply() }
        }
        do {
            // No front-end ever connects: stop() ends the wait for one.
            let server = VhostUserServer(device: PatternDevice())
            let listener = try ScmListener(path: "/tmp/vhost-user-idle-\(getpid()).sock")
            let thread = try BoundedThread { try? server.run(listener: listener) }
            usleep(20_000)
            #expect(!thread.isDone)
            server.stop()
            #expect(thread.join())
        }
        do {
            // Stopped before it runs: returns at once.
            let server = VhostUserServer(device: PatternDevice())
            server.stop()
            let (_, backendSide) = try ScmSocket.pair()
            guard case .stopped = server.serve(backendSide) else {
                Issue.record("serve after stop() did not return .stopped")
                return
            }
        }
        #expect(openFileDescriptorCount() == baseline)
    }
}
