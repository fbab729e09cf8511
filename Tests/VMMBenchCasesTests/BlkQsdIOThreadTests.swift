#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import Testing
@testable import vmm_bench

/// `vmm-bench blk --qsd-iothread`: qemu-storage-daemon measured with its export in an iothread
/// (whose event loop polls) beside qsd in its main loop.
@Suite("vmm-bench blk qsd in an iothread")
struct BlkQsdIOThreadTests {
    @Test func flagAddsAnIOThreadTwinOfEveryQsdConfiguration() throws {
        let plain = BlkBench.backends(try BlkCommand.parse(["--direct", "--aio", "native"])).map(\.name)
        #expect(plain == ["ours-native", "qsd-io_uring", "qsd-native"])
        let both = BlkBench.backends(try BlkCommand.parse(["--direct", "--aio", "native", "--qsd-iothread"]))
        #expect(
            both.map(\.name)
                == ["ours-native", "qsd-io_uring", "qsd-native", "qsd-io_uring-iothread", "qsd-native-iothread"])
        let cached = BlkBench.backends(try BlkCommand.parse(["--backend", "qsd", "--qsd-iothread"])).map(\.name)
        #expect(cached == ["qsd", "qsd-iothread"])
    }

    @Test func iothreadCommandLineBindsTheExportToIt() throws {
        let command = try BlkBackend(kind: .qsd, aio: "native", direct: true, iothread: true)
            .command(image: "/i", socket: "/s", queues: 4)
        #expect(command.contains("iothread,id=iothread0"))
        #expect(command.contains { $0.hasPrefix("type=vhost-user-blk,") && $0.hasSuffix(",iothread=iothread0") })
        let mainLoop = try BlkBackend(kind: .qsd, aio: "native", direct: true).command(
            image: "/i", socket: "/s", queues: 4)
        #expect(!mainLoop.contains { $0.contains("iothread") })
    }

    /// The real qemu-storage-daemon accepts that command line and serves requests from its
    /// iothread: a short depth-4 read load over vhost-user completes.
    @Test(.enabled(if: access(BlkBackendKind.qsdPath, X_OK) == 0, "needs /usr/bin/qemu-storage-daemon"))
    func qsdServesFromItsIOThread() throws {
        let scratch = try BlkScratch(cleanupOnSignal: false)
        defer { scratch.remove() }
        try scratch.createImage(size: 4 << 20)
        let socket = scratch.file("qsd.sock")
        let backend = BlkBackend(kind: .qsd, aio: nil, direct: false, iothread: true)
        let daemon = try BlkDaemon(
            try backend.command(image: scratch.image, socket: socket, queues: 2), socket: socket,
            log: scratch.file("qsd.log"), cpu: nil, restoreCPU: nil)
        defer { daemon.stop() }
        let session = try BlkSession(socket: socket, maxQueues: 2)
        defer { session.close() }
        #expect(session.queues.count == 2)
        let result = try session.driveBriefly(.read, depth: 4, queues: 0..<2, warmup: 20_000_000, duration: 100_000_000)
        #expect(result.requests > 0)
    }
}
