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
@testable import VhostUserDaemon

@Suite("Back-end programs: options, and vhost-user-rng across processes")
struct DaemonTests {
    @Test func parsesTheConventionalOptions() throws {
        let spaced = try VhostUserDaemonOptions.parse(["--socket-path", "/tmp/x.sock", "--peer-timeout-ms", "250"])
        #expect(spaced.socketPath == "/tmp/x.sock")
        #expect(spaced.fd == nil)
        #expect(spaced.peerTimeout == .milliseconds(250))
        let joined = try VhostUserDaemonOptions.parse(["--fd=4"])
        #expect(joined.fd == 4)
        #expect(joined.peerTimeout == VhostUserServer.defaultPeerTimeout)
        // --print-capabilities needs neither socket option.
        #expect(try VhostUserDaemonOptions.parse(["--print-capabilities"]).printCapabilities)
        let restricted = try VhostUserDaemonOptions.parse(["--fd=3", "--allow-uid", "0", "--allow-uid=1000"])
        #expect(restricted.allowedUIDs == [0, 1000])
        #expect(restricted.allowedSet == [0, 1000])
        #expect(joined.allowedSet == nil)
        let bad: [([String], String)] = [
            ([], "--socket-path or --fd"), (["--socket-path"], "--socket-path"), (["--fd", "x"], "--fd"),
            (["--fd=-1"], "--fd"), (["--socket-path=a", "--fd=3"], "exclude each other"),
            (["--fd=3", "--allow-uid"], "--allow-uid"), (["--fd=3", "--allow-uid=-1"], "--allow-uid"),
            (["--fd=3", "--allow-uid", "root"], "--allow-uid"),
            (["--fd=3", "--peer-timeout-ms=0"], "--peer-timeout-ms"),
            (["--fd=3", "--bogus"], "--bogus"),
        ]
        for (arguments, named) in bad {
            do {
                _ = try VhostUserDaemonOptions.parse(arguments)
                Issue.record("\(arguments) parsed")
            } catch {
                let message = VhostUserDaemonOptions.fullMessage(for: error)
                #expect(message.contains(named), "\(arguments): \(message)")
                #expect(VhostUserDaemonOptions.exitCode(for: error) == .validationFailure, "\(arguments)")
            }
        }
    }

    @Test func capabilitiesAreJSONWithTheDeviceTypeName() throws {
        #expect(
            try VhostUserCapabilities(deviceType: .block, features: ["read-only", "blk-file"]).json()
                == #"{"features":["read-only","blk-file"],"type":"block"}"#)
        #expect(try VhostUserCapabilities(deviceType: .entropy).json() == #"{"features":[],"type":"rng"}"#)
        #expect(
            try VhostUserCapabilities(deviceType: VirtioDeviceType(rawValue: 77)).json()
                == #"{"features":[],"type":"77"}"#)
        #expect(VhostUserDaemonOptions.asksForCapabilities(["--bogus", "--print-capabilities"]))
        #expect(!VhostUserDaemonOptions.asksForCapabilities(["--", "--print-capabilities"]))
    }

    @Test(.isolatedDescriptors) func rngServesRandomBytesToAFrontendInAnotherProcess() throws {
        let baseline = openFileDescriptorCount()
        let child: PeerProcess
        do {
            let (frontendSide, backendSide) = try ScmSocket.pair()
            // A connected socket as --fd: served once, then the program exits 0.
            child = try PeerProcess.spawn(
                "vhost-user-rng", arguments: ["--fd", "3"],
                mapping: [(backendSide.descriptor, 3)])
            let frontend = TestFrontend(socket: frontendSide)
            let rig = try GuestRig()
            try frontend.start(rig)
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

    /// `--allow-uid` with a connected `--fd`: a peer of another uid is refused before anything is
    /// read (the program exits 1; the front-end sees end of stream, no reply); its own uid is served.
    @Test(.isolatedDescriptors) func allowUIDRefusesOtherPeersOnAnInheritedConnection() throws {
        let baseline = openFileDescriptorCount()
        for (uid, served) in [(getuid() &+ 1, false), (getuid(), true)] {
            let child: PeerProcess
            do {
                // The front-end's end lives in this scope (closed when it ends); our copy of the
                // daemon's end is dropped at once, so the daemon's exit is seen as end of stream.
                let frontendSide: ScmSocket
                do {
                    let (ours, theirs) = try ScmSocket.pair()
                    child = try PeerProcess.spawn(
                        "vhost-user-rng", arguments: ["--fd", "3", "--allow-uid", "\(uid)"],
                        mapping: [(theirs.descriptor, 3)])
                    frontendSide = ours
                }
                let frontend = TestFrontend(socket: frontendSide)
                if served {
                    #expect(try frontend.u64(.getFeatures) & VirtioFeatures.version1.rawValue != 0)
                } else {
                    // The request may or may not be written before the peer closes; no reply comes.
                    try? frontend.send(.getFeatures)
                    #expect(throws: ScmSocketError.self) { _ = try frontend.reply() }
                }
            }
            // The front-end's end is closed now: a served daemon sees end of stream and exits 0.
            #expect(child.waitForExit() == (served ? 0 : 1))
        }
        #expect(openFileDescriptorCount() == baseline)
    }

    /// `--socket-path`: the socket file is mode 0600, and with `--allow-uid` a peer of another uid
    /// is disconnected unanswered while the daemon stays up for the next one.
    @Test(.isolatedDescriptors) func listeningSocketIsPrivateAndFiltersByUID() throws {
        let baseline = openFileDescriptorCount()
        let path = "/tmp/vhost-user-rng-allow-\(getpid()).sock"
        for (uid, served) in [(getuid() &+ 1, false), (getuid(), true)] {
            let child = try PeerProcess.spawn(
                "vhost-user-rng", arguments: ["--socket-path", path, "--allow-uid", "\(uid)"],
                mapping: [])
            defer {
                // SIGTERM: the daemon removes its socket and exits 0 (even though the test runner,
                // whose signal mask it inherits, blocks SIGTERM).
                kill(child.pid, SIGTERM)
                #expect(child.waitForExit() == 0)
                #expect(access(path, F_OK) != 0)
                unlink(path)
            }
            // A connection is accepted only once the listener has bound, set the mode and listened:
            // the mode checked after it is the final one.
            var first: ScmSocket? = try ScmSocket.connectRetrying(path: path)
            var info = stat()
            #expect(stat(path, &info) == 0)
            #expect(info.st_mode & S_IFMT == S_IFSOCK)
            #expect(info.st_mode & 0o777 == 0o600)
            for _ in 0..<2 {
                let frontend = TestFrontend(socket: try first.take() ?? ScmSocket.connect(path: path))
                if served {
                    #expect(try frontend.u64(.getFeatures) & VirtioFeatures.version1.rawValue != 0)
                } else {
                    try? frontend.send(.getFeatures)
                    #expect(throws: ScmSocketError.self) { _ = try frontend.reply() }
                }
            }
            // Still up after refusing twice: kill(pid, 0) finds it.
            #expect(kill(child.pid, 0) == 0)
        }
        #expect(openFileDescriptorCount() == baseline)
    }
}
