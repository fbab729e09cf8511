import Testing
import Virtio
@testable import VirtioBlock
import VMMSysUtil
import VMMTestSupport
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

struct SetupError: Error, CustomStringConvertible {
    var description: String
}

/// A raw image in a temporary file, removed when released.
final class TestImage {
    let path: String

    init(bytes: [UInt8], directory: String = "/tmp") throws {
        var template = Array("\(directory)/virtio-blk-test-XXXXXX".utf8CString)
        let fd = template.withUnsafeMutableBufferPointer { mkstemp($0.baseAddress!) }
        guard fd >= 0 else { throw SetupError(description: "mkstemp failed") }
        defer { close(fd) }
        path = template.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
        let written = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        guard written == bytes.count else { throw SetupError(description: "write failed") }
    }

    convenience init(sectors: Int, seed: UInt64 = 1, directory: String = "/tmp") throws {
        var random = SplitMix(seed: seed)
        try self.init(bytes: random.bytes(sectors * 512), directory: directory)
    }

    deinit { unlink(path) }

    func contents() throws -> [UInt8] {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw SetupError(description: "open failed") }
        defer { close(fd) }
        let size = Int(lseek(fd, 0, SEEK_END))
        var bytes = [UInt8](repeating: 0, count: size)
        let got = bytes.withUnsafeMutableBytes { pread(fd, $0.baseAddress, size, 0) }
        guard got == size else { throw SetupError(description: "pread failed") }
        return bytes
    }
}

/// The inode number of `path`.
func inodeNumber(_ path: String) throws -> UInt64 {
    var status = stat()
    guard stat(path, &status) == 0 else { throw SetupError(description: "stat failed") }
    return UInt64(status.st_ino)
}

enum Layout: String, CaseIterable, Sendable {
    case split, packed
}

/// A request header's bytes.
func header(_ type: UInt32, sector: UInt64 = 0, reserved: UInt32 = 0) -> [UInt8] {
    withUnsafeBytes(of: type.littleEndian) { Array($0) } + withUnsafeBytes(of: reserved.littleEndian) { Array($0) }
        + withUnsafeBytes(of: sector.littleEndian) { Array($0) }
}

/// A discard / write-zeroes segment's bytes.
func rangeSegment(sector: UInt64, sectors: UInt32, flags: UInt32 = 0) -> [UInt8] {
    withUnsafeBytes(of: sector.littleEndian) { Array($0) } + withUnsafeBytes(of: sectors.littleEndian) { Array($0) }
        + withUnsafeBytes(of: flags.littleEndian) { Array($0) }
}

/// Splits `total` bytes at the given cut sizes (the remainder is the last piece; empty cuts skipped).
func pieces(_ total: Int, _ cuts: [Int] = []) -> [Int] {
    var result: [Int] = []
    var left = total
    for cut in cuts where cut > 0 && cut < left {
        result.append(cut)
        left -= cut
    }
    if left > 0 { result.append(left) }
    return result
}

/// What the driver saw when a request completed.
struct Completion {
    /// The used length the device reported.
    var used: UInt32
    /// The whole writable part after completion (data, then the status byte last).
    var writable: [UInt8]
    var status: UInt8? { writable.last }
    var data: [UInt8] { Array(writable.dropLast()) }
}

/// A driver queue and a device queue over shared guest memory, and a block processor between them:
/// each `submit` posts one request the way a guest would, lets the device pop and handle it, reaps
/// the completion and checks that no byte outside the chain's writable buffers changed.
final class BlockRig {
    static let base: UInt64 = 0x10_0000
    static let ringsSize: UInt64 = 0x1_0000
    static let indirectTable: UInt64 = base + 0xC000
    static let dataStart: UInt64 = base + ringsSize
    static let memorySize = 8 << 20
    static let canary: UInt8 = 0xEE
    static let gap: UInt64 = 40

    let shared: SharedMemory
    let memory: GuestMemory
    let driver: any DriverQueue
    var device: any DeviceQueue & ~Copyable
    let processor: BlockRequestProcessor
    /// Requests `finish` saw go to the asynchronous queue.
    private(set) var asynchronous = 0

    init(
        layout: Layout, file: BlockBackingFile, configuration: BlockConfiguration? = nil, queueSize: Int = 16,
        startIndex: UInt16 = 0, io: (any AsyncFileQueue)? = nil
    ) throws {
        shared = try SharedMemory(size: Self.memorySize)
        memory = try GuestMemory(regions: [GuestMemoryRegion(guestPhysicalAddress: Self.base, mapping: shared.mapping)])
        let addresses = RingAddresses(
            descriptorTable: Self.base, driverArea: Self.base + 0x4000,
            deviceArea: Self.base + 0x8000)
        var features: VirtioFeatures = [.ringIndirectDescriptors, .ringEventIndex, .version1]
        switch layout {
        case .split:
            driver = try DriverSplitQueue(
                memory: memory, size: queueSize, addresses: addresses, features: features,
                startIndex: startIndex)
            var queue = try SplitQueue(memory: memory, size: queueSize, addresses: addresses, features: features)
            try queue.setNextAvailIndex(UInt32(startIndex))
            device = consume queue
        case .packed:
            features.insert(.ringPacked)
            driver = try DriverPackedQueue(memory: memory, size: queueSize, addresses: addresses, features: features)
            device = try PackedQueue(memory: memory, size: queueSize, addresses: addresses, features: features)
        }
        processor = BlockRequestProcessor(
            file: file, configuration: configuration ?? BlockConfiguration(capacity: file.capacity),
            io: io, slotCount: queueSize)
    }

    /// Starts `chain` on the processor and, if it went asynchronous, waits (at most 10 s) for it.
    func finish(_ chain: Chain) throws -> UInt32 {
        switch try processor.start(chain) {
        case let .completed(written): return written
        case .needsDrain: throw SetupError(description: "needsDrain with nothing in flight")
        case let .submitted(slot):
            asynchronous += 1
            #expect(processor.commit())
            var written: UInt32?
            for _ in 0..<1000 where written == nil {
                _ = processor.waitForCompletions(milliseconds: 10)
                processor.reap { done, bytes in
                    #expect(done == slot)
                    written = bytes
                }
            }
            guard let written else { throw SetupError(description: "no completion within 10 s") }
            return written
        }
    }

    /// Posts `readable` (split into `readableSplit` pieces) and `writableSplit` writable pieces,
    /// in separate, non-adjacent buffers (as an indirect table if `indirect`).
    func submit(
        readable: [UInt8], readableSplit: [Int]? = nil, writableSplit: [Int], indirect: Bool = false,
        sourceLocation: SourceLocation = #_sourceLocation
    ) throws -> Completion {
        let readablePieces = readableSplit ?? pieces(readable.count)
        guard readablePieces.reduce(0, +) == readable.count else { throw SetupError(description: "bad readable split") }
        // Fill the data area with a canary so stray writes show.
        let extent =
            readable.count + writableSplit.reduce(0, +) + (readablePieces.count + writableSplit.count + 1)
            * Int(Self.gap)
        guard Int(Self.dataStart - Self.base) + extent <= Self.memorySize else {
            throw SetupError(description: "request too big")
        }
        let area = shared.mapping.base + Int(Self.dataStart - Self.base)
        area.initializeMemory(as: UInt8.self, repeating: Self.canary, count: extent)

        var buffers: [DriverBuffer] = []
        var address = Self.dataStart
        var offset = 0
        for size in readablePieces {
            try readable[offset..<(offset + size)].withUnsafeBytes {
                try memory.write(guestPhysical: address, bytes: $0)
            }
            buffers.append(DriverBuffer(address: address, length: UInt32(size), isWritable: false))
            address += UInt64(size) + Self.gap
            offset += size
        }
        var writableBuffers: [DriverBuffer] = []
        for size in writableSplit {
            writableBuffers.append(DriverBuffer(address: address, length: UInt32(size), isWritable: true))
            address += UInt64(size) + Self.gap
        }
        buffers += writableBuffers
        let id = try driver.post(buffers, indirectTable: indirect ? Self.indirectTable : nil)

        guard let chain = try device.pop() else { throw SetupError(description: "device saw no chain") }
        #expect(chain.id == id, sourceLocation: sourceLocation)
        let written = try finish(chain)
        try device.push(chain, written: written)
        #expect(try device.pop() == nil, sourceLocation: sourceLocation)
        guard let used = try driver.reap() else { throw SetupError(description: "driver reaped nothing") }
        #expect(used.id == id, sourceLocation: sourceLocation)

        var writable: [UInt8] = []
        for buffer in writableBuffers { writable += try readGuest(buffer.address, Int(buffer.length)) }
        // Readable buffers unchanged, gaps untouched.
        var position = Self.dataStart
        offset = 0
        for size in readablePieces {
            #expect(
                try readGuest(position, size) == Array(readable[offset..<(offset + size)]), "readable buffer modified",
                sourceLocation: sourceLocation)
            #expect(
                try readGuest(position + UInt64(size), Int(Self.gap)).allSatisfy { $0 == Self.canary },
                "write outside the chain", sourceLocation: sourceLocation)
            position += UInt64(size) + Self.gap
            offset += size
        }
        for size in writableSplit {
            #expect(
                try readGuest(position + UInt64(size), Int(Self.gap)).allSatisfy { $0 == Self.canary },
                "write outside the chain", sourceLocation: sourceLocation)
            position += UInt64(size) + Self.gap
        }
        return Completion(used: used.length, writable: writable)
    }

    func readGuest(_ address: UInt64, _ count: Int) throws -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: count)
        try bytes.withUnsafeMutableBytes { try memory.read(guestPhysical: address, into: $0) }
        return bytes
    }

    // Convenience requests.

    func read(
        sector: UInt64, bytes: Int, split: [Int]? = nil, indirect: Bool = false,
        sourceLocation: SourceLocation = #_sourceLocation
    ) throws -> Completion {
        try submit(
            readable: header(0, sector: sector), writableSplit: split ?? [bytes, 1], indirect: indirect,
            sourceLocation: sourceLocation)
    }

    func write(
        sector: UInt64, data: [UInt8], split: [Int]? = nil, indirect: Bool = false,
        sourceLocation: SourceLocation = #_sourceLocation
    ) throws -> Completion {
        try submit(
            readable: header(1, sector: sector) + data, readableSplit: split ?? [16, data.count].filter { $0 > 0 },
            writableSplit: [1], indirect: indirect, sourceLocation: sourceLocation)
    }

    func ranges(_ type: UInt32, _ segments: [[UInt8]], sourceLocation: SourceLocation = #_sourceLocation) throws
        -> Completion
    {
        try submit(readable: header(type) + segments.flatMap { $0 }, writableSplit: [1], sourceLocation: sourceLocation)
    }
}

func sectorRange(_ image: [UInt8], _ sector: Int, _ count: Int) -> [UInt8] {
    Array(image[(sector * 512)..<((sector + count) * 512)])
}

/// How a test's processor reaches the image: through the page cache synchronously (as before
/// `--cache`), or bypassing it (O_DIRECT) synchronously, or through each asynchronous engine.
///
/// `direct4K` and `direct4KAsync` behave as on a disk with 4 KiB sectors whatever this disk is
/// (buffers and offsets aligned to 4 KiB): requests of single sectors are read-modify-written.
enum BlockMode: String, CaseIterable, Sendable, CustomTestStringConvertible {
    case buffered, direct, directThreads, directIOUring, direct4K, direct4KAsync

    var testDescription: String { rawValue }

    /// Opens `image` for this mode.
    func open(_ image: TestImage, readOnly: Bool = false, usesSpaceCalls: Bool = true) throws -> BlockBackingFile {
        let fourK = self == .direct4K || self == .direct4KAsync
        return try BlockBackingFile(
            path: image.path, readOnly: readOnly, cache: self == .buffered ? .writeback : .none,
            usesSpaceCalls: usesSpaceCalls, directAlignment: fourK ? (4096, 4096) : nil)
    }

    /// The asynchronous queue this mode uses (nil when synchronous, or io_uring when the kernel or
    /// build has none: the caller then skips).
    func queue(capacity: Int) throws -> (any AsyncFileQueue)? {
        switch self {
        case .buffered, .direct, .direct4K: return nil
        case .directThreads: return try AsyncFileEngine(kind: .threads, threadCount: 3).makeQueue(capacity: capacity)
        case .direct4KAsync: return try AsyncFileEngine(kind: .preferred, threadCount: 3).makeQueue(capacity: capacity)
        case .directIOUring:
            guard AsyncFileEngineKind.preferred == .ioUring else { return nil }
            return try AsyncFileEngine(kind: .ioUring).makeQueue(capacity: capacity)
        }
    }

    /// A rig for `file` in this mode, or nil if this system cannot run the mode (io_uring absent).
    func rig(
        _ layout: Layout, _ file: BlockBackingFile, configuration: BlockConfiguration? = nil,
        queueSize: Int = 16
    ) throws -> BlockRig? {
        // Twice the ring, as the daemon makes it: room for the ranges of DISCARD / WRITE_ZEROES.
        let io = try queue(capacity: 2 * queueSize)
        if self == .directIOUring && io == nil { return nil }
        return try BlockRig(layout: layout, file: file, configuration: configuration, queueSize: queueSize, io: io)
    }
}
