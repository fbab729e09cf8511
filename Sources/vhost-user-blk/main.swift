#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Logging
import VhostUserBackend
import VirtioBlock

// vhost-user-blk: serves a raw disk image to one front-end at a time (QEMU's back-end program
// conventions; capabilities as QEMU's contrib vhost-user-blk prints them).
VhostUserDaemon.main(name: "vhost-user-blk", deviceType: .block, capabilityFeatures: ["read-only", "blk-file"],
                     deviceUsage: BlockOptions.usage) { arguments in
    let options = try BlockOptions.parse(arguments.remaining)
    let file = try BlockBackingFile(path: options.file ?? "", readOnly: options.readOnly)
    let device = BlockDevice(file: file, queueCount: options.queueCount, queueSize: options.queueSize,
                             iopsLimit: options.iopsLimit)
    // SIGHUP: the image may have grown; serve the new size and tell the front-end.
    let logger = Logger(label: "vhost-user-blk")
    try VhostUserDaemon.onSignal(SIGHUP) { device.imageMayHaveGrown(logger: logger) }
    return device
}
