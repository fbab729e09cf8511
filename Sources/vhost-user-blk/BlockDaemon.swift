#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import ArgumentParser
import Logging
import VhostUserDaemon
import VirtioBlock
import VMMSysUtil

/// vhost-user-blk: serves a raw disk image to one front-end at a time (QEMU's back-end program
/// conventions; capabilities as QEMU's contrib vhost-user-blk prints them).
@main
struct BlockDaemon: VhostUserDaemonCommand {
    static let configuration = CommandConfiguration(
        commandName: "vhost-user-blk",
        abstract: "A virtio-blk vhost-user back-end serving a raw disk image.",
        discussion: """
            SIGHUP: measure the image again; a larger image is served at once and the front-end is \
            told (config change), so the guest sees the new capacity without a reboot. The image is \
            not locked: two daemons may serve it at once, as a live migration between two back-ends \
            needs; keep other writers away yourself.
            """,
        version: vhostUserPackageVersion)
    static let capabilityFeatures = ["read-only", "blk-file"]

    @OptionGroup var daemon: VhostUserDaemonOptions
    @OptionGroup(title: "Block device options") var block: BlockOptions

    func makeDevice() throws -> BlockDevice {
        let file = try BlockBackingFile(path: block.blkFile, readOnly: block.readOnly, cache: block.cache)
        let engine = try block.engine.map { kind throws(AsyncFileEngineError) in try AsyncFileEngine(kind: kind) }
        let device = try BlockDevice(
            file: file, queueCount: block.queueCount, queueSize: block.queueSize,
            iopsLimit: block.iopsLimit, engine: engine)
        // SIGHUP: the image may have grown; serve the new size and tell the front-end.
        let logger = Logger(label: "vhost-user-blk")
        try SignalThread.start(onEach: SIGHUP) { device.imageMayHaveGrown(logger: logger) }
        return device
    }
}
