import VhostUserBackend
import VhostUserDaemon
import Virtio

/// virtio-rng (entropy device, ID 4): one queue of device-writable buffers, filled with random bytes.
final class EntropyDevice: VhostUserDaemonDevice {
    static let virtioDeviceType = VirtioDeviceType.entropy
    let deviceFeatures: VirtioFeatures = [.version1, .ringPacked]
    let queueCount = 1
    let maxQueueSize = 1024
    let configSize = 0
    /// Bytes given per request at most: a guest cannot make us spend unbounded entropy on one chain.
    static let requestLimit = 65536

    func process(_ queue: inout VhostUserQueue) throws {
        var random = SystemRandomNumberGenerator()
        while let chain = try queue.pop() {
            var written = 0
            var buffers = chain.buffers()
            // Readable descriptors are a driver bug on this queue: skipped, never read.
            while let buffer = try buffers.next(), written < Self.requestLimit {
                guard buffer.isWritable else { continue }
                let bytes = UnsafeMutableRawBufferPointer(rebasing: buffer.bytes.prefix(Self.requestLimit - written))
                var offset = 0
                while offset + 8 <= bytes.count {
                    bytes.storeBytes(of: random.next() as UInt64, toByteOffset: offset, as: UInt64.self)
                    offset += 8
                }
                while offset < bytes.count {
                    bytes[offset] = UInt8.random(in: .min ... .max, using: &random)
                    offset += 1
                }
                written += bytes.count
            }
            try queue.complete(chain, written: UInt32(written))
        }
    }
}
