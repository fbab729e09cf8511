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

/// How a back-end program is given its socket.
enum DaemonSocketMode: String, CaseIterable, Sendable {
    /// `--socket-path`: the program listens.
    case socketPath
    /// `--fd 3`, a listening socket (systemd socket activation).
    case listeningFD
    /// `--fd 3`, a connected socket (how test harnesses start back-ends).
    case connectedFD
}

/// vhost-user-rng in its own process, in one socket mode, and a front-end connected to it.
struct RunningDaemon {
    let child: PeerProcess
    let frontend: TestFrontend
    let path: String
    /// The test's own listening socket for `.listeningFD` (its file removed when dropped).
    let listener: ScmListener?

    init(_ mode: DaemonSocketMode, extra: [String] = []) throws {
        path = "/tmp/vhost-user-rng-\(mode.rawValue)-\(getpid()).sock"
        switch mode {
        case .socketPath:
            listener = nil
            child = try PeerProcess.spawn("vhost-user-rng", arguments: ["--socket-path", path] + extra)
            frontend = TestFrontend(socket: try connectWhenListening(path))
        case .listeningFD:
            let ours = try ScmListener(path: path)
            listener = ours
            child = try PeerProcess.spawn(
                "vhost-user-rng", arguments: ["--fd", "3"] + extra, mapping: [(ours.descriptor, 3)])
            frontend = TestFrontend(socket: try ScmSocket.connect(path: path))
        case .connectedFD:
            listener = nil
            let (ours, theirs) = try ScmSocket.pair()
            child = try PeerProcess.spawn(
                "vhost-user-rng", arguments: ["--fd", "3"] + extra, mapping: [(theirs.descriptor, 3)])
            frontend = TestFrontend(socket: ours)
        }
        try frontend.socket.setReceiveTimeout(.seconds(10))
    }
}

/// SIGTERM and SIGINT end a back-end program with status 0 after closing its session, whether it
/// was given `--socket-path` or `--fd` (listening or connected), with or without a front-end.
@Suite("Back-end programs stop cleanly on SIGTERM and SIGINT", .serialized)
struct DaemonSignalTests {
    @Test(arguments: DaemonSocketMode.allCases, [SIGTERM, SIGINT])
    func signalEndsAServingDaemonWithStatusZero(mode: DaemonSocketMode, signal: Int32) throws {
        let daemon = try RunningDaemon(mode)
        // A session is open: the program is past its setup and serving.
        #expect(try daemon.frontend.u64(.getFeatures) & VirtioFeatures.version1.rawValue != 0)
        kill(daemon.child.pid, signal)
        #expect(daemon.child.exitStatus() == 0, "\(mode) \(signal)")
        // The session was closed: the front-end sees end of stream, no reply.
        #expect(throws: ScmSocketError.self) { _ = try daemon.frontend.u64(.getFeatures) }
        if mode == .socketPath { #expect(access(daemon.path, F_OK) != 0, "the socket file is removed") }
    }

    @Test(arguments: [DaemonSocketMode.socketPath, .listeningFD])
    func signalEndsAnIdleDaemonWithStatusZero(mode: DaemonSocketMode) throws {
        let daemon = try RunningDaemon(mode)
        #expect(try daemon.frontend.u64(.getFeatures) != 0)
        // The front-end leaves: the program waits for the next one, and is stopped while waiting.
        try daemon.frontend.socket.setSendTimeout(.seconds(1))
        shutdown(daemon.frontend.socket.descriptor, Int32(SHUT_RDWR))
        usleep(20_000)
        kill(daemon.child.pid, SIGTERM)
        #expect(daemon.child.exitStatus() == 0, "\(mode)")
    }

    /// Cross-process `--peer-timeout-ms`: a front-end that stalls mid-message is dropped (logged
    /// on stderr with what it sent) and the next one is served.
    @Test func stalledFrontendIsDroppedByTheDaemon() throws {
        var errorPipe: [Int32] = [0, 0]
        #expect(pipe(&errorPipe) == 0)
        let path = "/tmp/vhost-user-rng-stall-\(getpid()).sock"
        let child = try PeerProcess.spawn(
            "vhost-user-rng", arguments: ["--socket-path", path, "--peer-timeout-ms", "200"],
            mapping: [(errorPipe[1], 2)])
        close(errorPipe[1])
        defer { close(errorPipe[0]) }
        do {
            let stalled = try connectWhenListening(path)
            try stalled.send([1, 0, 0])
            let next = try ScmSocket.connect(path: path)
            try next.setReceiveTimeout(.seconds(10))
            #expect(try TestFrontend(socket: next).u64(.getFeatures) & VirtioFeatures.version1.rawValue != 0)
        }
        kill(child.pid, SIGTERM)
        #expect(child.exitStatus() == 0)
        var output: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        while true {
            let count = chunk.withUnsafeMutableBytes { read(errorPipe[0], $0.baseAddress, $0.count) }
            if count <= 0 { break }
            output += chunk[0..<count]
        }
        let log = String(decoding: output, as: UTF8.self)
        #expect(
            log.contains("stalled mid-message") && log.contains("3 of 12 bytes") && log.contains("[01 00 00]"), "\(log)"
        )
    }
}
