#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Testing
import VMMSysUtil
import VMMTestSupport
import VhostUserFrontend
import VhostUserProtocol
import Virtio
import VirtioBlock
import VirtioBlockDriver

/// What a migrating front-end sees of a block back-end in its own process: exactly which guest
/// pages each request dirties (the front-end reads and clears the log), and the back-end channel
/// telling it the disk grew. Every wait is bounded (10 s).
@Suite(.isolatedDescriptors) struct MigrationDaemonTests {
    static let wait: Duration = .seconds(10)
    static let imageSize = 1 << 20

    @Test(.enabled(if: BlockBackend.ours.isAvailable, "needs the vhost-user-blk product"), arguments: [false, true])
    func ourDaemonDirtiesExactlyTheRequestsPages(packed: Bool) throws {
        try dirtiesExactlyTheRequestsPages(on: .ours, packed: packed)
    }

    /// The same expectations hold for libvhost-user's logging: the test measures the front-end too.
    @Test(.enabled(if: BlockBackend.qemuStorageDaemon.isAvailable, "needs /usr/bin/qemu-storage-daemon"))
    func qemuStorageDaemonDirtiesExactlyTheRequestsPages() throws {
        try dirtiesExactlyTheRequestsPages(on: .qemuStorageDaemon)
    }

    /// Packed rings: the back-end marks its whole descriptor ring (and event area) per publication;
    /// at ring address 0 with 128 slots that is page 0 too, so the expectations are the same.
    func dirtiesExactlyTheRequestsPages(on backend: BlockBackend, packed: Bool = false) throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove(["disk.img", "blk.sock", "blk.log"]) }
        let image = directory.createFile("disk.img", (0..<Self.imageSize).map { UInt8(truncatingIfNeeded: $0 &* 7) })
        let daemon = try backend.start(
            socket: directory.path + "/blk.sock", image: image, log: directory.path + "/blk.log")
        defer { daemon.stop() }
        let baseline = openFileDescriptorCount()
        do {
            let frontend = try VhostUserFrontend(connectingTo: directory.path + "/blk.sock", timeout: Self.wait)
            let negotiated = try frontend.negotiate(
                features: packed ? [.version1, .ringPacked] : [.version1, .ringEventIndex])
            #expect(negotiated.features.contains(.ringPacked) == packed)
            #expect(negotiated.offeredFeatures.contains(.logAll))
            #expect(negotiated.protocolFeatures.contains(.logSharedMemory))
            let memory = try frontend.setMemory([FrontendMemoryRegion(try SharedMemory(size: 1 << 20))])
            // Ring at 0: the split used ring (0x940, 1030 bytes), or the packed descriptor ring
            // and event areas (0x808 bytes), lie in page 0.
            let queue = try frontend.startQueue(index: 0, size: 128, ringAddress: 0)
            let usedRing = queue.addresses.deviceArea
            #expect(usedRing / 4096 == (usedRing + 6 + 8 * 128 - 1) / 4096)
            #expect(queue.isPacked == packed)
            let log = try frontend.startLogging().log
            // The back-end may already have logged the used ring's notification fields (it
            // serves the ring again after SET_VRING_ADDR); that page is expected below anyway.
            #expect(log.takeDirtyPages().allSatisfy { $0 == queue.addresses.deviceArea / 4096 })
            // Header in page 0x10 (only read), data in pages 0x11-0x12, status byte in page 0x13.
            let request = VirtioBlockRequest(at: 0x10E00, dataLength: 8192)
            #expect(request.dataAddress == 0x11000 && request.statusAddress == 0x13000)

            func run(_ kind: BlockRequestType) throws {
                let id = try request.post(kind, sector: 8, on: queue, memory: memory)
                try queue.kickIfNeeded()
                let used = try #require(try queue.waitForUsed(timeout: Self.wait), "no completion within the bound")
                #expect(used.id == id)
                #expect(try request.status(in: memory) == BlockStatus.ok)
            }
            let usedPage: UInt64 = 0
            try run(.write)
            #expect(
                dirtyPages(log, including: [usedPage, 0x13]) == [usedPage, 0x13],
                "\(backend): a write dirties the used ring and the status byte")
            try run(.read)
            #expect(
                dirtyPages(log, including: [usedPage, 0x11, 0x12, 0x13]) == [usedPage, 0x11, 0x12, 0x13],
                "\(backend): a read dirties its data too")
            try frontend.stopLogging()
            // Logged before logging stopped (the back-end applied both requests in order).
            _ = log.takeDirtyPages()
            try run(.read)
            #expect(log.takeDirtyPages() == [], "\(backend): nothing is logged once logging stopped")
            try frontend.disconnect()
        }
        #expect(openFileDescriptorCount() == baseline, "descriptors leaked")
    }

    /// A back-end restarted while the guest migrates: the front-end's reconnect hands the same log
    /// to the new back-end with LOG_ALL before the rings, so its first request is logged.
    /// libvhost-user (qemu-storage-daemon) serves split rings only.
    @Test(
        arguments: [(BlockBackend.ours, false), (.ours, true), (.qemuStorageDaemon, false)].filter { $0.0.isAvailable })
    func loggingResumesAfterTheBackendRestarts(on backend: BlockBackend, packed: Bool) throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove(["disk.img", "blk.sock", "blk.log"]) }
        let image = directory.createFile("disk.img", [UInt8](repeating: 3, count: Self.imageSize))
        let socket = directory.path + "/blk.sock"
        var daemon = try backend.start(socket: socket, image: image, log: directory.path + "/blk.log")
        defer { daemon.stop() }
        let baseline = openFileDescriptorCount()
        do {
            let frontend = try VhostUserFrontend(connectingTo: socket, timeout: Self.wait)
            try frontend.negotiate(features: packed ? [.version1, .ringPacked] : [.version1, .ringEventIndex])
            let memory = try frontend.setMemory([FrontendMemoryRegion(try SharedMemory(size: 1 << 20))])
            let queue = try frontend.startQueue(index: 0, size: 128, ringAddress: 0)
            let log = try frontend.startLogging().log
            let request = VirtioBlockRequest(at: 0x10E00, dataLength: 8192)
            func read() throws {
                let id = try request.post(.read, sector: 8, on: queue, memory: memory)
                try queue.kickIfNeeded()
                let used = try #require(try queue.waitForUsed(timeout: Self.wait), "no completion within the bound")
                #expect(used.id == id)
                #expect(try request.status(in: memory) == BlockStatus.ok)
            }
            try read()
            _ = log.takeDirtyPages()

            daemon.stop()
            unlink(socket)
            daemon = try backend.start(socket: socket, image: image, log: directory.path + "/blk.log")
            try frontend.reconnect(to: socket)
            _ = log.takeDirtyPages()  // the new back-end may log the used ring's fields at ring start
            try read()
            #expect(
                dirtyPages(log, including: [0, 0x11, 0x12, 0x13]) == [0, 0x11, 0x12, 0x13],
                "\(backend): the restarted back-end logs its first read")
            try frontend.disconnect()
        }
        #expect(openFileDescriptorCount() == baseline, "descriptors leaked")
    }

    @Test(.enabled(if: BlockBackend.ours.isAvailable, "needs the vhost-user-blk product"))
    func sighupGrowsTheDiskAndTellsTheFrontend() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove(["disk.img", "blk.sock", "blk.log"]) }
        let image = directory.createFile("disk.img", [UInt8](repeating: 1, count: Self.imageSize))
        let daemon = try BlockBackend.ours.start(
            socket: directory.path + "/blk.sock", image: image,
            log: directory.path + "/blk.log")
        defer { daemon.stop() }
        let frontend = try VhostUserFrontend(connectingTo: directory.path + "/blk.sock", timeout: Self.wait)
        let negotiated = try frontend.negotiate(features: [.version1])
        #expect(negotiated.protocolFeatures.contains([.backendRequest, .replyAck, .config]))
        let channel = try frontend.openBackendChannel()
        func capacity() throws -> UInt64 {
            let config = try frontend.readConfig(size: 8)
            return config.withUnsafeBytes { UInt64(littleEndian: $0.loadUnaligned(as: UInt64.self)) }
        }
        #expect(try capacity() == UInt64(Self.imageSize / 512))
        // A SIGHUP with the image unchanged: nothing is sent.
        kill(-daemon.pid, SIGHUP)
        if let unexpected = try channel.receive(timeout: .milliseconds(300)) {
            Issue.record("\(unexpected.request) sent for an image that did not grow")
        }
        // Grown by 1 MiB: the daemon sends CONFIG_CHANGE (NEED_REPLY: REPLY_ACK is negotiated).
        let fd = open(image, O_WRONLY | O_APPEND | O_CLOEXEC)
        try #require(fd >= 0)
        _ = [UInt8](repeating: 2, count: Self.imageSize).withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        close(fd)
        kill(-daemon.pid, SIGHUP)
        guard let message = try channel.receive(timeout: Self.wait) else {
            Issue.record("no config-change message")
            return
        }
        let request = message.request
        let needsReply = message.needsReply
        #expect(request == .configChange)
        #expect(needsReply)
        // QEMU re-reads the config before it answers; so do we.
        #expect(try capacity() == UInt64(2 * Self.imageSize / 512))
        try channel.reply(to: .configChange, 0)
        try frontend.disconnect()
    }
}
