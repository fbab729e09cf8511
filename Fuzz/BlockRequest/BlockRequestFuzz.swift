// libFuzzer target: virtio-blk request parsing and execution over split and packed rings.
//
// Input layout:
//   [0]     bit 0: packed; bit 1: INDIRECT_DESC; bit 2: EVENT_IDX; bits 3–5: log2 queue size (1…128);
//           bit 6: read-only image; bit 7: write-through (flush after writes)
//   [1..2]  vring base (split: next avail index; packed: slot | wrap << 15), little-endian
//   [3..]   up to 0x3000 bytes: the ring image at guest-physical 0x10000 (descriptor table/ring at
//           +0, avail ring/driver event area at +0x1000, used ring/device event area at +0x2000)
//   rest    up to 0x4000 bytes at guest-physical 0x20000: request headers, data, segments
// Guest memory: 0x10000–0x20000 and 0x20000–0x30000 (adjacent), a gap, then 0x40000–0x41000.
// The image is a 64-sector shared-memory file (opened through /proc/self/fd); the device allows
// 8 segments of at most 4 KiB, 16-sector discard / write-zeroes ranges, 4 ranges per request.
// Invariants checked (a violation traps, which libFuzzer reports): every popped chain is handled
// and completed, with its whole writable length, and the image never changes size (no I/O beyond
// capacity).
import CVMMPlatform
import Virtio
import VirtioBlock
import VMMSysUtil

private let regionLayout: [(gpa: UInt64, size: Int)] = [(0x10000, 0x10000), (0x20000, 0x10000), (0x40000, 0x1000)]
private let imageSize = 64 * 512

private let fuzzMemory: GuestMemory? = {
    var regions: [GuestMemoryRegion] = []
    for (gpa, size) in regionLayout {
        guard let shared = try? SharedMemory(size: size) else { return nil }
        regions.append(GuestMemoryRegion(guestPhysicalAddress: gpa, mapping: shared.mapping))
    }
    return try? GuestMemory(regions: regions)
}()

/// The image (kept for the process's life) and processors over it, writable and read-only.
/// nonisolated(unsafe): libFuzzer calls the target from one thread.
nonisolated(unsafe) private let fuzzImage: (image: SharedMemory, writable: BlockRequestProcessor, readOnly: BlockRequestProcessor)? = {
    guard let image = try? SharedMemory(size: imageSize),
          let writable = try? BlockBackingFile(path: "/proc/self/fd/\(image.descriptor)"),
          let readOnly = try? BlockBackingFile(path: "/proc/self/fd/\(image.descriptor)", readOnly: true) else { return nil }
    var configuration = BlockConfiguration(capacity: writable.capacity, segmentMax: 8, sizeMax: 4096)
    configuration.maxDiscardSectors = 16
    configuration.maxWriteZeroesSectors = 16
    configuration.maxDiscardSegments = 4
    configuration.maxWriteZeroesSegments = 4
    return (image, BlockRequestProcessor(file: writable, configuration: configuration),
            BlockRequestProcessor(file: readOnly, configuration: configuration))
}()

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> Int32 {
    guard size >= 3, let memory = fuzzMemory, let image = fuzzImage else { return 0 }
    for region in memory.regions { region.mapping.bytes.initializeMemory(as: UInt8.self, repeating: 0xA5) }
    let ringBase = memory.regions[0].mapping.base
    ringBase.initializeMemory(as: UInt8.self, repeating: 0, count: 0x3000)
    let imageLength = min(size - 3, 0x3000)
    ringBase.copyMemory(from: data + 3, byteCount: imageLength)
    let dataLength = min(size - 3 - imageLength, 0x4000)
    memory.regions[1].mapping.base.copyMemory(from: data + 3 + imageLength, byteCount: dataLength)

    let config = data[0]
    var features: VirtioFeatures = [.version1]
    if config & 2 != 0 { features.insert(.ringIndirectDescriptors) }
    if config & 4 != 0 { features.insert(.ringEventIndex) }
    let queueSize = 1 << Int((config >> 3) & 7)
    let processor = config & 0x40 != 0 ? image.readOnly : image.writable
    processor.writeThrough = config & 0x80 != 0
    let base = UInt32(data[1]) | UInt32(data[2]) << 8
    let addresses = RingAddresses(descriptorTable: 0x10000, driverArea: 0x11000, deviceArea: 0x12000)
    if config & 1 == 0 {
        guard var queue = try? SplitQueue(memory: memory, size: queueSize, addresses: addresses, features: features) else { return 0 }
        try? queue.setNextAvailIndex(base)
        exercise(&queue, processor)
    } else {
        features.insert(.ringPacked)
        guard var queue = try? PackedQueue(memory: memory, size: queueSize, addresses: addresses, features: features) else { return 0 }
        try? queue.setNextAvailIndex(base)
        exercise(&queue, processor)
    }
    if lseek(image.image.descriptor, 0, SEEK_END) != off_t(imageSize) { fatalError("image size changed") }
    return 0
}

private func exercise<Q: DeviceQueue & ~Copyable>(_ queue: inout Q, _ processor: BlockRequestProcessor) {
    for _ in 0..<(4 * queue.size + 4) {
        guard let chain = try? queue.pop() else { break }
        // Nothing rewrites the ring between pop and handle here, so handle must answer every
        // chain (it throws only for a chain the guest changed after the pop), with its whole
        // writable length (the status byte is the last writable byte) or 0 without one.
        let written: UInt32
        do {
            written = try processor.handle(chain)
        } catch {
            fatalError("a popped chain was not handled: \(error)")
        }
        if written != chain.writableLength { fatalError("completed with \(written) of \(chain.writableLength) writable bytes") }
        do {
            try queue.push(chain, written: written)
        } catch {
            fatalError("completion refused: \(error)")
        }
    }
}
