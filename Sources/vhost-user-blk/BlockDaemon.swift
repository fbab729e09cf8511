import ArgumentParser
import VhostUserDaemon
import VirtioBlock

/// vhost-user-blk: serves a raw disk image to one front-end at a time (QEMU's back-end program
/// conventions; capabilities as QEMU's contrib vhost-user-blk prints them).
@main
struct BlockDaemon: VhostUserDaemonCommand {
    static let configuration = CommandConfiguration(
        commandName: "vhost-user-blk",
        abstract: "A virtio-blk vhost-user back-end serving a raw disk image.",
        version: vhostUserPackageVersion)
    static let capabilityFeatures = ["read-only", "blk-file"]

    @OptionGroup var daemon: VhostUserDaemonOptions
    @OptionGroup(title: "Block device options") var block: BlockOptions

    func makeDevice() throws -> BlockDevice {
        let file = try BlockBackingFile(path: block.blkFile, readOnly: block.readOnly)
        return BlockDevice(file: file, queueCount: block.queueCount, queueSize: block.queueSize,
                           iopsLimit: block.iopsLimit)
    }
}
