import VhostUser
import Virtio
import VirtioBlock

/// virtio-blk (device ID 2) over vhost-user: a raw image served by one `BlockRequestProcessor`
/// per request queue, each used only by that queue's worker thread.
///
/// Thread-safety: `Sendable` per the `VhostUserDevice` contract: the processors are touched by
/// `process` only for their own queue (one call per queue at a time), and by `featuresNegotiated` /
/// `reset` only while no worker is inside `process`.
final class BlockDevice: VhostUserDevice, @unchecked Sendable {
    let deviceType = VirtioDeviceType.block
    let deviceFeatures: UInt64
    /// QEMU's vhost-user-blk front-end refuses a back-end without GET_CONFIG.
    var requiredProtocolFeatures: ProtocolFeatures { .config }
    let queueCount: Int
    let maxQueueSize: Int
    let configSize = BlockConfiguration.size
    let configuration: BlockConfiguration
    let file: BlockBackingFile
    // @unchecked Sendable is sound: see the type's thread-safety note.
    private let processors: [BlockRequestProcessor]

    /// A device serving `file` on `queueCount` queues of at most `queueSize` descriptors.
    init(file: BlockBackingFile, queueCount: Int, queueSize: Int) {
        self.file = file
        self.queueCount = queueCount
        maxQueueSize = queueSize
        // Header and status take two descriptors of a chain that is not indirect.
        let segmentMax = UInt32(max(1, min(126, queueSize - 2)))
        let configuration = BlockConfiguration(capacity: file.capacity, blockSize: file.logicalBlockSize,
                                               queueCount: UInt16(queueCount), segmentMax: segmentMax)
        self.configuration = configuration
        deviceFeatures = configuration.features(readOnly: file.isReadOnly)
        processors = (0..<queueCount).map { _ in BlockRequestProcessor(file: file, configuration: configuration) }
    }

    func readConfig(offset: Int, into buffer: UnsafeMutableRawBufferPointer) {
        // The framework checked the range against `configSize`; `read` checks again and copies nothing if wrong.
        if !configuration.read(offset: offset, into: buffer), !buffer.isEmpty {
            buffer.initializeMemory(as: UInt8.self, repeating: 0)
        }
    }

    func process(_ queue: inout VhostUserQueue) throws {
        guard queue.index >= 0, queue.index < processors.count else { return }
        let processor = processors[queue.index]
        while let chain = try queue.pop() {
            let written = try processor.handle(chain)
            try queue.complete(chain, written: written)
        }
    }

    func featuresNegotiated(_ features: UInt64) {
        // Spec 5.2.6.3: without FLUSH (and CONFIG_WCE, never offered) writes must be durable when
        // they complete.
        let writeThrough = features & BlockFeature.flush == 0
        for processor in processors { processor.writeThrough = writeThrough }
    }

    func reset() {
        for processor in processors { processor.writeThrough = false }
    }
}
