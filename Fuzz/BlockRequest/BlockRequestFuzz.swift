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
// Differential: the same input is then run again on a second image, a file opened with the page
// cache bypassed (O_DIRECT: guest buffers at odd addresses and odd sizes go through the bounce
// buffer) whose reads, writes and flushes go through the asynchronous engine one request at a
// time; afterwards both images must hold the same bytes. (Skipped where the temporary directory
// refuses O_DIRECT.)
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
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
nonisolated(unsafe) private let fuzzImage:
    (image: SharedMemory, writable: BlockRequestProcessor, readOnly: BlockRequestProcessor)? = {
        guard let image = try? SharedMemory(size: imageSize),
            let writable = try? BlockBackingFile(path: "/proc/self/fd/\(image.descriptor)"),
            let readOnly = try? BlockBackingFile(path: "/proc/self/fd/\(image.descriptor)", readOnly: true)
        else { return nil }
        let configuration = fuzzConfiguration(writable.capacity)
        return (
            image, BlockRequestProcessor(file: writable, configuration: configuration),
            BlockRequestProcessor(file: readOnly, configuration: configuration)
        )
    }()

/// The differential side: a 64-sector file in TMPDIR (or /var/tmp) opened with `cache: .none`,
/// and processors over it (writable, read-only) submitting through the preferred engine.
nonisolated(unsafe) private let directImage:
    (fd: Int32, writable: BlockRequestProcessor, readOnly: BlockRequestProcessor)? = {
        let directory = getenv("TMPDIR").map { String(cString: $0) } ?? "/var/tmp"
        var template = Array("\(directory)/blk-fuzz-XXXXXX".utf8CString)
        let fd = template.withUnsafeMutableBufferPointer { mkstemp($0.baseAddress!) }
        guard fd >= 0 else { return nil }
        let path = template.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
        defer { unlink(path) }
        guard ftruncate(fd, off_t(imageSize)) == 0,
            let writable = try? BlockBackingFile(path: path, cache: .none),
            let readOnly = try? BlockBackingFile(path: path, readOnly: true, cache: .none),
            writable.capacity == UInt64(imageSize / 512),
            let engine = try? AsyncFileEngine(kind: .preferred, threadCount: 2),
            // Twice the slots, as the daemon: room for the ranges of DISCARD / WRITE_ZEROES in the engine.
            let writableQueue = try? engine.makeQueue(capacity: 16),
            let readOnlyQueue = try? engine.makeQueue(capacity: 16)
        else { return nil }
        return (
            fd,
            BlockRequestProcessor(
                file: writable, configuration: fuzzConfiguration(writable.capacity), io: writableQueue, slotCount: 8),
            BlockRequestProcessor(
                file: readOnly, configuration: fuzzConfiguration(readOnly.capacity), io: readOnlyQueue, slotCount: 8)
        )
    }()

private func fuzzConfiguration(_ capacity: UInt64) -> BlockConfiguration {
    var configuration = BlockConfiguration(capacity: capacity, segmentMax: 8, sizeMax: 4096)
    configuration.maxDiscardSectors = 16
    configuration.maxWriteZeroesSectors = 16
    configuration.maxDiscardSegments = 4
    configuration.maxWriteZeroesSegments = 4
    return configuration
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> Int32 {
    guard size >= 3, let memory = fuzzMemory, let image = fuzzImage else { return 0 }
    run(data, size, memory, image.writable, image.readOnly)
    if lseek(image.image.descriptor, 0, SEEK_END) != off_t(imageSize) { fatalError("image size changed") }
    guard let direct = directImage else { return 0 }
    // Both images start equal; the same requests must leave them equal.
    guard copyImage(from: image.image.descriptor, to: direct.fd) else { return 0 }
    run(data, size, memory, image.writable, image.readOnly)
    run(data, size, memory, direct.writable, direct.readOnly)
    if !sameImage(image.image.descriptor, direct.fd) { fatalError("the direct / asynchronous image differs") }
    return 0
}

/// Lays out guest memory from the input and serves its ring with the processor it selects.
private func run(
    _ data: UnsafePointer<UInt8>, _ size: Int, _ memory: GuestMemory,
    _ writable: BlockRequestProcessor, _ readOnly: BlockRequestProcessor
) {
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
    let processor = config & 0x40 != 0 ? readOnly : writable
    processor.writeThrough = config & 0x80 != 0
    let base = UInt32(data[1]) | UInt32(data[2]) << 8
    let addresses = RingAddresses(descriptorTable: 0x10000, driverArea: 0x11000, deviceArea: 0x12000)
    if config & 1 == 0 {
        guard var queue = try? SplitQueue(memory: memory, size: queueSize, addresses: addresses, features: features)
        else { return }
        try? queue.setNextAvailIndex(base)
        exercise(&queue, processor)
    } else {
        features.insert(.ringPacked)
        guard var queue = try? PackedQueue(memory: memory, size: queueSize, addresses: addresses, features: features)
        else { return }
        try? queue.setNextAvailIndex(base)
        exercise(&queue, processor)
    }
}

/// Copies the whole image `source` over `destination` (through the page cache: a plain pwrite).
private func copyImage(from source: Int32, to destination: Int32) -> Bool {
    var bytes = [UInt8](repeating: 0, count: imageSize)
    return bytes.withUnsafeMutableBytes { raw in
        pread(source, raw.baseAddress, imageSize, 0) == imageSize
            && pwrite(destination, raw.baseAddress, imageSize, 0) == imageSize
    }
}

/// Whether the two images hold the same bytes.
private func sameImage(_ a: Int32, _ b: Int32) -> Bool {
    var first = [UInt8](repeating: 0, count: imageSize)
    var second = [UInt8](repeating: 1, count: imageSize)
    let readA = first.withUnsafeMutableBytes { pread(a, $0.baseAddress, imageSize, 0) }
    let readB = second.withUnsafeMutableBytes { pread(b, $0.baseAddress, imageSize, 0) }
    return readA == imageSize && readB == imageSize && first == second
}

private func exercise<Q: DeviceQueue & ~Copyable>(_ queue: inout Q, _ processor: BlockRequestProcessor) {
    for _ in 0..<(4 * queue.size + 4) {
        guard let chain = try? queue.pop() else { break }
        // Nothing rewrites the ring between pop and handle here, so every chain must be answered
        // (handling throws only for a chain the guest changed after the pop), with its whole
        // writable length (the status byte is the last writable byte) or 0 without one.
        let written: UInt32
        do {
            written = try finish(chain, processor)
        } catch {
            fatalError("a popped chain was not handled: \(error)")
        }
        if written != chain.writableLength {
            fatalError("completed with \(written) of \(chain.writableLength) writable bytes")
        }
        do {
            try queue.push(chain, written: written)
        } catch {
            fatalError("completion refused: \(error)")
        }
    }
}

/// Performs one chain: synchronously, or through the processor's engine (waiting, at most 10 s,
/// for its completion: one request in flight, so the order is the ring's).
private func finish(_ chain: Chain, _ processor: BlockRequestProcessor) throws(VirtqueueError) -> UInt32 {
    switch try processor.start(chain) {
    case let .completed(written): return written
    case .needsDrain: fatalError("needsDrain with nothing in flight")
    case .submitted:
        processor.commit()
        var written: UInt32?
        for _ in 0..<1000 where written == nil {
            _ = processor.waitForCompletions(milliseconds: 10)
            processor.reap { _, bytes in written = bytes }
        }
        guard let written else { fatalError("no completion within 10 s") }
        return written
    }
}
