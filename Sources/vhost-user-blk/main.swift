import VhostUserBackend
import VirtioBlock
import VMMSysUtil

// vhost-user-blk: serves a raw disk image to one front-end at a time (QEMU's back-end program
// conventions; capabilities as QEMU's contrib vhost-user-blk prints them).
VhostUserDaemon.main(name: "vhost-user-blk", deviceType: .block, capabilityFeatures: ["read-only", "blk-file"],
                     deviceUsage: BlockOptions.usage) { arguments in
    let options = try BlockOptions.parse(arguments.remaining)
    let file = try BlockBackingFile(path: options.file ?? "", readOnly: options.readOnly, cache: options.cache)
    let engine = try options.engine.map { kind throws(AsyncFileEngineError) in try AsyncFileEngine(kind: kind) }
    return try BlockDevice(file: file, queueCount: options.queueCount, queueSize: options.queueSize,
                           iopsLimit: options.iopsLimit, engine: engine)
}
