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

/// A vhost-user-blk back-end to run in its own process.
enum BlockBackend: String, Sendable {
    /// Debian's qemu-storage-daemon (QEMU 7.2): an independent implementation.
    case qemuStorageDaemon = "qemu-storage-daemon"
    /// This package's `vhost-user-blk`.
    case ours = "vhost-user-blk"

    var isAvailable: Bool {
        switch self {
        case .qemuStorageDaemon: StorageDaemon.isInstalled
        case .ours: builtProductPath("vhost-user-blk") != nil
        }
    }

    /// Serves `image` (writable) on `socket`.
    func start(socket: String, image: String, log: String) throws -> SocketDaemon {
        switch self {
        case .qemuStorageDaemon:
            return try StorageDaemon.start(socket: socket, image: image, log: log)
        case .ours:
            let executable = builtProductPath("vhost-user-blk") ?? "vhost-user-blk"
            return try SocketDaemon.start(
                [executable, "--socket-path", socket, "--blk-file", image],
                socket: socket, log: log)
        }
    }
}

/// The front-end against block back-ends in their own processes: Debian's qemu-storage-daemon
/// (skipped when not installed) and our vhost-user-blk. Every wait is bounded (10 s per reply or
/// completion).
@Suite(.isolatedDescriptors) struct BlockDaemonTests {
    @Test(.enabled(if: BlockBackend.qemuStorageDaemon.isAvailable, "needs /usr/bin/qemu-storage-daemon"))
    func writesAndReadsThroughQemuStorageDaemon() throws {
        try writesAndReadsBlocks(on: .qemuStorageDaemon)
    }

    @Test(.enabled(if: BlockBackend.ours.isAvailable, "needs the vhost-user-blk product"))
    func writesAndReadsThroughOurDaemon() throws {
        try writesAndReadsBlocks(on: .ours)
    }

    @Test(.enabled(if: BlockBackend.qemuStorageDaemon.isAvailable, "needs /usr/bin/qemu-storage-daemon"))
    func resumesAfterQemuStorageDaemonIsRestarted() throws {
        try resumesAfterRestart(of: .qemuStorageDaemon)
    }

    @Test(.isolatedDescriptors, .enabled(if: BlockBackend.ours.isAvailable, "needs the vhost-user-blk product"))
    func resumesAfterOurDaemonIsRestarted() throws {
        try resumesAfterRestart(of: .ours)
    }

    static let imageSize = 4 << 20
    static let blockSize = 4096
    static let wait: Duration = .seconds(10)
    /// VIRTIO_BLK_F_FLUSH.
    static let flushFeature = VirtioFeatures(bit: 9)

    /// A recognisable 4 KiB block for `sector` in round `round`.
    static func pattern(sector: UInt64, round: UInt8) -> [UInt8] {
        (0..<blockSize).map { UInt8(truncatingIfNeeded: Int(sector) &* 131 &+ $0 &* 7) ^ round }
    }

    func writesAndReadsBlocks(on backend: BlockBackend) throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove(["disk.img", "qsd.sock", "qsd.log"]) }
        var random = SystemRandomNumberGenerator()
        var original = [UInt8](repeating: 0, count: Self.imageSize)
        original.withUnsafeMutableBytes { bytes in
            for offset in stride(from: 0, to: bytes.count, by: 8) {
                bytes.storeBytes(of: random.next() as UInt64, toByteOffset: offset, as: UInt64.self)
            }
        }
        let image = directory.createFile("disk.img", original)
        let daemon = try backend.start(
            socket: directory.path + "/qsd.sock", image: image, log: directory.path + "/qsd.log")
        defer { daemon.stop() }

        let baseline = openFileDescriptorCount()
        var written: [UInt64: [UInt8]] = [:]
        do {
            let frontend = try VhostUserFrontend(connectingTo: directory.path + "/qsd.sock", timeout: Self.wait)
            let negotiated = try frontend.negotiate(
                features: [.version1, .ringEventIndex, .ringIndirectDescriptors, Self.flushFeature])
            #expect(negotiated.features.contains([.version1, .ringEventIndex, .protocolFeatures, Self.flushFeature]))
            #expect(negotiated.protocolFeatures.contains([.replyAck, .config]))
            #expect(negotiated.queueCount == 1, "\(backend)")

            let config = try frontend.readConfig(size: 8)
            let capacity = config.withUnsafeBytes { UInt64(littleEndian: $0.loadUnaligned(as: UInt64.self)) }
            #expect(capacity == UInt64(Self.imageSize / 512))

            let shared = try SharedMemory(size: 1 << 20)
            let memory = try frontend.setMemory([FrontendMemoryRegion(shared)])
            let queue = try frontend.startQueue(index: 0, size: 128, ringAddress: 0)
            let slots = (0..<32).map {
                VirtioBlockRequest(at: 0x1_0000 + UInt64($0) * 8192, dataLength: UInt32(Self.blockSize))
            }
            var posted = 0

            /// Waits for `count` completions and checks each has status OK.
            func complete(_ ids: [UInt16: VirtioBlockRequest]) throws {
                var pending = ids
                while !pending.isEmpty {
                    let completion = try queue.waitForUsed(timeout: Self.wait)
                    let used = try #require(completion, "no completion within the bound")
                    let removed = pending.removeValue(forKey: used.id)
                    let slot = try #require(removed, "completion of unknown id \(used.id)")
                    #expect(try slot.status(in: memory) == BlockStatus.ok)
                }
            }

            // Queue depth 1: write a block, read it back, at the first, an early, a middle and the last block.
            let sectorsPerBlock = UInt64(Self.blockSize / 512)
            for sector in [0, sectorsPerBlock, 1000, capacity - sectorsPerBlock] {
                let bytes = Self.pattern(sector: sector, round: 1)
                try bytes.withUnsafeBytes { try memory.write(guestPhysical: slots[0].dataAddress, bytes: $0) }
                let id = try slots[0].post(.write, sector: sector, on: queue, memory: memory)
                try queue.kickIfNeeded()
                try complete([id: slots[0]])
                let readID = try slots[1].post(.read, sector: sector, on: queue, memory: memory)
                try queue.kickIfNeeded()
                try complete([readID: slots[1]])
                var back = [UInt8](repeating: 0, count: Self.blockSize)
                try back.withUnsafeMutableBytes { try memory.read(guestPhysical: slots[1].dataAddress, into: $0) }
                #expect(back == bytes, "sector \(sector) read back differs")
                written[sector] = bytes
                posted += 2
            }

            // Queue depth 32: 32 writes in flight, then 32 reads in flight, then a flush.
            let batch = (0..<32).map { 2048 + UInt64($0) * 24 }
            var ids: [UInt16: VirtioBlockRequest] = [:]
            for (slot, sector) in zip(slots, batch) {
                let bytes = Self.pattern(sector: sector, round: 2)
                try bytes.withUnsafeBytes { try memory.write(guestPhysical: slot.dataAddress, bytes: $0) }
                ids[try slot.post(.write, sector: sector, on: queue, memory: memory)] = slot
                written[sector] = bytes
            }
            try queue.kickIfNeeded()
            try complete(ids)
            ids = [:]
            for slot in slots {
                // Zero the data first, so the comparison below sees what the read brought.
                try [UInt8](repeating: 0, count: Self.blockSize).withUnsafeBytes {
                    try memory.write(guestPhysical: slot.dataAddress, bytes: $0)
                }
                ids[try slot.post(.read, sector: batch[ids.count], on: queue, memory: memory)] = slot
            }
            try queue.kickIfNeeded()
            try complete(ids)
            for (slot, sector) in zip(slots, batch) {
                var back = [UInt8](repeating: 0, count: Self.blockSize)
                try back.withUnsafeMutableBytes { try memory.read(guestPhysical: slot.dataAddress, into: $0) }
                #expect(back == written[sector], "sector \(sector) read back differs")
            }
            let flush = try slots[0].post(.flush, sector: 0, on: queue, memory: memory)
            try queue.kickIfNeeded()
            try complete([flush: slots[0]])
            posted += 2 * batch.count + 1

            // GET_VRING_BASE: the daemon consumed exactly what we posted.
            #expect(try frontend.stopQueue(queue) == UInt32(posted))
            try frontend.disconnect()
        }
        #expect(openFileDescriptorCount() == baseline, "descriptors leaked")

        // The image on disk holds every block written, and nothing else changed.
        var expected = original
        for (sector, bytes) in written {
            expected.replaceSubrange(Int(sector) * 512..<Int(sector) * 512 + Self.blockSize, with: bytes)
        }
        let onDisk = readBytes(image, offset: 0, count: Self.imageSize)
        #expect(onDisk.count == Self.imageSize)
        #expect(onDisk == expected, "image on disk differs from what was written")
    }
}

extension BlockDaemonTests {
    func resumesAfterRestart(of backend: BlockBackend) throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove(["disk.img", "qsd.sock", "qsd.log"]) }
        let image = directory.createFile("disk.img", [UInt8](repeating: 0, count: 1 << 20))
        let socket = directory.path + "/qsd.sock"
        var daemon = try backend.start(socket: socket, image: image, log: directory.path + "/qsd.log")
        defer { daemon.stop() }

        let baseline = openFileDescriptorCount()
        do {
            let frontend = try VhostUserFrontend(connectingTo: socket, timeout: Self.wait)
            let negotiated = try frontend.negotiate(features: [.version1, .ringEventIndex])
            let memory = try frontend.setMemory([FrontendMemoryRegion(try SharedMemory(size: 1 << 20))])
            // QEMU 7.2's daemon offers no INFLIGHT_SHMFD; ours does: then the buffer is fetched,
            // handed back, and handed to the restarted daemon by `reconnect`.
            #expect(negotiated.protocolFeatures.contains(.inflightSharedMemory) == (backend == .ours))
            if negotiated.protocolFeatures.contains(.inflightSharedMemory) {
                let inflight = try frontend.getInflight(queueCount: 1, queueSize: 64)
                #expect(inflight.description.queueCount == 1 && inflight.description.queueSize == 64)
                #expect(inflight.mapping.size > 0)
                try frontend.setInflight(inflight)
            }
            let queue = try frontend.startQueue(index: 0, size: 64, ringAddress: 0)
            let slot = VirtioBlockRequest(at: 0x1_0000, dataLength: UInt32(Self.blockSize))

            func run(_ kind: BlockRequestType, sector: UInt64) throws {
                let id = try slot.post(kind, sector: sector, on: queue, memory: memory)
                try queue.kickIfNeeded()
                let used = try #require(try queue.waitForUsed(timeout: Self.wait), "no completion within the bound")
                #expect(used.id == id)
                #expect(try slot.status(in: memory) == BlockStatus.ok)
            }
            func data() throws -> [UInt8] {
                var bytes = [UInt8](repeating: 0, count: Self.blockSize)
                try bytes.withUnsafeMutableBytes { try memory.read(guestPhysical: slot.dataAddress, into: $0) }
                return bytes
            }
            func fill(_ bytes: [UInt8]) throws {
                try bytes.withUnsafeBytes { try memory.write(guestPhysical: slot.dataAddress, bytes: $0) }
            }

            let first = Self.pattern(sector: 16, round: 3)
            try fill(first)
            try run(.write, sector: 16)
            try run(.flush, sector: 0)

            // The daemon goes away; a new one serves the same image on the same path.
            daemon.stop()
            unlink(socket)
            daemon = try backend.start(socket: socket, image: image, log: directory.path + "/qsd.log")
            let inflightBefore = frontend.inflight
            try frontend.reconnect(to: socket)
            #expect(frontend.inflight === inflightBefore)

            try fill([UInt8](repeating: 0, count: Self.blockSize))
            try run(.read, sector: 16)
            #expect(try data() == first, "data written before the restart reads back after it")
            let second = Self.pattern(sector: 24, round: 4)
            try fill(second)
            try run(.write, sector: 24)
            try fill([UInt8](repeating: 0, count: Self.blockSize))
            try run(.read, sector: 24)
            #expect(try data() == second)
            // The new daemon resumed at the used index (2) and consumed 3 more chains.
            #expect(try frontend.stopQueue(queue) == 5)
            try frontend.disconnect()
        }
        #expect(openFileDescriptorCount() == baseline, "descriptors leaked")
    }
}
