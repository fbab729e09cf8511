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
import VirtioBlock
import VirtioBlockDriver

/// Our daemon serving with the page cache bypassed through an asynchronous engine, paced
/// (`--iops-limit`) so that it holds requests in flight, is killed with SIGKILL; a new daemon on
/// the same socket path resubmits them from the inflight region (INFLIGHT_SHMFD) and every write
/// lands on the image. Every wait is bounded (10 s per completion).
@Suite struct BlockRestartTests {
    static let engines = ["threads", "io_uring"].filter {
        $0 != "io_uring" || AsyncFileEngineKind.preferred == .ioUring
    }
    static let blockSize = 4096
    static let requests = 8

    @Test(.enabled(if: BlockBackend.ours.isAvailable, "needs the vhost-user-blk product"), arguments: engines)
    func killedWithRequestsInFlight(engine: String) throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove(["disk.img", "blk.sock", "first.log", "second.log"]) }
        let image = directory.createFile("disk.img", [UInt8](repeating: 0, count: 1 << 20))
        let socket = directory.path + "/blk.sock"
        let executable = builtProductPath("vhost-user-blk") ?? "vhost-user-blk"
        func start(_ extra: [String], log: String) throws -> SocketDaemon {
            try SocketDaemon.start(
                [executable, "--socket-path", socket, "--blk-file", image, "--cache", "none", "--aio", engine] + extra,
                socket: socket, log: directory.path + "/" + log)
        }
        // One request a second, bursts of one: the first completes at once, the others are
        // popped at once (recorded in flight) and wait in the daemon for their tokens.
        var daemon = try start(["--iops-limit", "1"], log: "first.log")
        defer { daemon.stop() }
        let frontend = try VhostUserFrontend(connectingTo: socket, timeout: .seconds(10))
        let negotiated = try frontend.negotiate(features: [.version1, .ringEventIndex])
        try #require(negotiated.protocolFeatures.contains(.inflightSharedMemory))
        let memory = try frontend.setMemory([FrontendMemoryRegion(try SharedMemory(size: 1 << 20))])
        try frontend.setInflight(try frontend.getInflight(queueCount: 1, queueSize: 64))
        let queue = try frontend.startQueue(index: 0, size: 64, ringAddress: 0)

        var posted: [UInt16: (request: VirtioBlockRequest, sector: UInt64, bytes: [UInt8])] = [:]
        for i in 0..<Self.requests {
            let request = VirtioBlockRequest(at: 0x1_0000 + UInt64(i) * 0x2000, dataLength: UInt32(Self.blockSize))
            let sector = UInt64(i * 2 + 1) * 8
            let bytes = (0..<Self.blockSize).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ i &* 31 &+ 1) }
            try bytes.withUnsafeBytes { try memory.write(guestPhysical: request.dataAddress, bytes: $0) }
            posted[try request.post(.write, sector: sector, on: queue, memory: memory)] = (request, sector, bytes)
        }
        try queue.kickIfNeeded()
        var completed: Set<UInt16> = []
        let first = try #require(try queue.waitForUsed(timeout: .seconds(10)), "no completion within 10 s")
        completed.insert(first.id)

        daemon.crash()
        unlink(socket)
        daemon = try start([], log: "second.log")
        try frontend.reconnect(to: socket)
        while completed.count < Self.requests {
            let used = try #require(
                try queue.waitForUsed(timeout: .seconds(10)), "\(completed.count) of \(Self.requests) completed")
            #expect(posted[used.id] != nil && !completed.contains(used.id), "completion of id \(used.id)")
            completed.insert(used.id)
        }
        for (_, write) in posted {
            #expect(try write.request.status(in: memory) == BlockStatus.ok)
            #expect(readBytes(image, offset: Int(write.sector) * 512, count: Self.blockSize) == write.bytes)
        }
        let log = readFile(directory.path + "/second.log")
        #expect(log.contains("resubmitting"), "the new daemon resubmitted nothing: \(log)")
        #expect(try frontend.stopQueue(queue) == UInt32(Self.requests))
        try frontend.disconnect()
    }
}
