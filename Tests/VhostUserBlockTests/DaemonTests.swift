import Testing
import VMMSysUtil
import VMMTestSupport
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The `vhost-user-blk` program, run as a separate process: command line, capabilities, and what a
/// front-end sees at connect time (features, protocol features, queue count, config space).
@Suite("vhost-user-blk daemon", .serialized)
struct DaemonTests {
    /// Runs the daemon with `arguments` to completion; returns (exit status, stdout, stderr).
    func run(_ arguments: [String]) throws -> (Int32, String, String) {
        var out: [Int32] = [0, 0]
        var err: [Int32] = [0, 0]
        guard pipe(&out) == 0, pipe(&err) == 0 else { throw Failure(description: "pipe failed") }
        let process = try PeerProcess.spawn(
            "vhost-user-blk", arguments: arguments, mapping: [(out[1], 1), (err[1], 2)])
        close(out[1])
        close(err[1])
        defer {
            close(out[0])
            close(err[0])
        }
        let status = process.waitForExit()
        return (status, drain(out[0]), drain(err[0]))
    }

    func drain(_ fd: Int32) -> String {
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n <= 0 { break }
            bytes += chunk[0..<n]
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    @Test("--print-capabilities prints QEMU's block capabilities and exits 0")
    func capabilities() throws {
        let (status, out, _) = try run(["--print-capabilities"])
        #expect(status == 0)
        #expect(out == #"{"features":["read-only","blk-file"],"type":"block"}"# + "\n")
        // QEMU's conventions: every other argument is ignored.
        let (ignoringStatus, ignoring, _) = try run(["--bogus", "--print-capabilities", "--num-queues=0"])
        #expect(ignoringStatus == 0 && ignoring == out)
        let (helpStatus, help, _) = try run(["--help"])
        #expect(
            helpStatus == 0 && help.contains("--blk-file") && help.contains("--num-queues")
                && help.contains("--socket-path"))
        #expect(
            help.contains("--peer-timeout-ms") && help.contains("--allow-uid") && help.contains("--print-capabilities"))
        let (versionStatus, version, _) = try run(["--version"])
        #expect(versionStatus == 0 && !version.isEmpty)
        let (completionStatus, completion, _) = try run(["--generate-completion-script", "bash"])
        #expect(completionStatus == 0 && completion.contains("--blk-file") && completion.contains("--socket-path"))
    }

    @Test("bad command lines exit 64 naming the option, setup failures 1; no socket is created")
    func badArguments() throws {
        let image = try TemporaryFile(size: 4096)
        let socket = "/tmp/vhost-user-blk-test-\(getpid()).sock"
        let usage: Int32 = 64, failure: Int32 = 1
        let cases: [([String], Int32, String)] = [
            (["--socket-path", socket], usage, "--blk-file"),
            (["--socket-path", socket, "--blk-file", image.path, "--bogus"], usage, "--bogus"),
            (["--socket-path", socket, "--blk-file", image.path, "--queue-size", "100"], usage, "power of two"),
            (["--socket-path", socket, "--blk-file", image.path, "--queue-size=2"], usage, "--queue-size"),
            (["--socket-path", socket, "--blk-file", image.path, "--num-queues", "0"], usage, "--num-queues"),
            (["--socket-path", socket, "--blk-file", image.path, "--num-queues"], usage, "--num-queues"),
            (["--socket-path", socket, "--blk-file", image.path, "--read-only=yes"], usage, "--read-only"),
            (["--socket-path", socket, "--blk-file", image.path, "--iops-limit", "0"], usage, "--iops-limit"),
            (["--socket-path", socket, "--blk-file", image.path, "--iops-limit=ten"], usage, "--iops-limit"),
            (["--socket-path", socket, "--blk-file", image.path, "--peer-timeout-ms=-5"], usage, "--peer-timeout-ms"),
            (["--socket-path", socket, "--blk-file", image.path, "--cache", "directsync"], usage, "--cache"),
            (["--socket-path", socket, "--blk-file", image.path, "--aio=posix"], usage, "--aio"),
            (["--socket-path", socket, "--blk-file", image.path, "--cache"], usage, "--cache"),
            (["--socket-path", socket, "--blk-file", image.path, "--poll-us", "-1"], usage, "--poll-us"),
            (["--socket-path", socket, "--blk-file", "/nonexistent/image"], failure, "No such file"),
            (
                ["--socket-path", socket, "--blk-file", "/tmp", "--read-only"], failure,
                "not a regular file or block device"
            ),
            (["--socket-path", socket, "--blk-file", "/dev/null"], failure, "not a regular file or block device"),
            (["--blk-file", image.path], usage, "--socket-path or --fd"),
        ]
        for (arguments, expected, message) in cases {
            let (status, _, err) = try run(arguments)
            #expect(status == expected, "\(arguments)")
            #expect(err.contains(message), "\(arguments): \(err)")
            #expect(access(socket, F_OK) != 0, "\(arguments) created the socket")
        }
    }

    @Test("a front-end sees the device's features, CONFIG, queue count and config space", arguments: [false, true])
    func handshake(readOnly: Bool) throws {
        let image = try TemporaryFile(size: 1 << 20)
        var arguments = ["--blk-file=\(image.path)", "--num-queues", "3", "--queue-size", "64"]
        if readOnly { arguments.append("--read-only") }
        let daemon = try Daemon(arguments: arguments)
        let frontEnd = daemon.frontEnd

        let features = try frontEnd.requestU64(1)
        let device: UInt64 = 1 << 1 | 1 << 2 | 1 << 6 | 1 << 9 | 1 << 12 | 1 << 32
        let expected = device | (readOnly ? 1 << 5 : 1 << 13 | 1 << 14)
        #expect(features & 0xFF_FFFF == expected & 0xFF_FFFF)
        #expect(features & (1 << 32) != 0 && features & (1 << 30) != 0)
        let protocolFeatures = try frontEnd.requestU64(15)
        #expect(protocolFeatures & (1 << 9) != 0, "CONFIG must be offered")
        #expect(protocolFeatures & 1 != 0, "MQ must be offered")
        try frontEnd.send(16, payload: le(protocolFeatures & (1 << 9 | 1)))
        #expect(try frontEnd.requestU64(17) == 3)

        // GET_CONFIG as QEMU 7.2 asks: offset 0, 57 bytes, flags 0.
        let config = try frontEnd.getConfig(offset: 0, size: 57)
        #expect(config.count == 57)
        #expect(value(config, 0, 8) == 2048)  // 1 MiB in sectors
        #expect(value(config, 12, 4) == 62)  // seg_max: queue size - 2
        #expect(value(config, 20, 4) == 512)
        #expect(value(config, 34, 2) == 3)
        #expect(try frontEnd.getConfig(offset: 34, size: 2) == Array(config[34..<36]))
    }

    @Test(
        "SIGTERM and SIGINT end the daemon with status 0 with an inherited --fd, listening or connected",
        arguments: [(true, SIGTERM), (false, SIGINT), (false, SIGTERM)])
    func signalWithInheritedSocket(listening: Bool, signal: Int32) throws {
        let image = try TemporaryFile(size: 1 << 20)
        let path = "/tmp/vhost-user-blk-fd-\(getpid()).sock"
        let process: PeerProcess
        let frontEnd: FrontEnd
        // Ours, kept until the end (its socket file removed then).
        let listener: ScmListener?
        if listening {
            let ours = try ScmListener(path: path)
            listener = ours
            process = try PeerProcess.spawn(
                "vhost-user-blk", arguments: ["--fd", "3", "--blk-file", image.path],
                mapping: [(ours.descriptor, 3)])
            frontEnd = FrontEnd(socket: try ScmSocket.connect(path: path))
        } else {
            listener = nil
            let (ours, theirs) = try ScmSocket.pair()
            process = try PeerProcess.spawn(
                "vhost-user-blk", arguments: ["--fd=3", "--blk-file=\(image.path)"],
                mapping: [(theirs.descriptor, 3)])
            frontEnd = FrontEnd(socket: ours)
        }
        try frontEnd.socket.setReceiveTimeout(.seconds(10))
        #expect(try frontEnd.requestU64(1) & (1 << 32) != 0, "served: VERSION_1 offered")
        kill(process.pid, signal)
        #expect(process.exitStatus() == 0)
        #expect(throws: (any Error).self) { _ = try frontEnd.requestU64(1) }
        withExtendedLifetime(listener) {}
    }
}
