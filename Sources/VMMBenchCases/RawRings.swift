import CVMMPlatform

/// Why a raw ring iteration failed (only if memory was corrupted: the twin validates like the package).
enum RawRingError: Error {
    case empty
    case badDescriptor
    case loop
}

/// Guest memory for a raw ring: one region at guest-physical 0, translated with one bounds check.
struct RawRegion {
    let base: UnsafeMutableRawPointer
    let size: UInt64

    /// The host pointer for `[address, address + length)`, or a throw if it leaves the region.
    @inline(__always)
    func translate(_ address: UInt64, _ length: UInt32) throws -> UnsafeMutableRawPointer {
        guard address <= size, UInt64(length) <= size &- address else { throw RawRingError.badDescriptor }
        return base + Int(address)
    }
}

/// Ring placement shared by the raw twins: the same layout `VringLoopback` uses.
struct RawRingLayout {
    static let queueSize = 256
    let descriptorTable: UInt64 = 0
    let driverArea: UInt64
    let deviceArea: UInt64
    let data: UInt64

    init() {
        let q = UInt64(Self.queueSize)
        driverArea = 16 * q
        deviceArea = (16 * q + 6 + 2 * q + 64) & ~63
        data = (deviceArea + 6 + 8 * q + 4095) & ~4095
    }

    /// Buffer `index` of a chain of `count`: 64 readable bytes, the last one 1 writable byte when count > 1.
    func buffer(_ index: Int, of count: Int) -> (address: UInt64, length: UInt32, writable: Bool) {
        let writable = count > 1 && index == count - 1
        return (data + UInt64(index) * 512, writable ? 1 : 64, writable)
    }
}

/// Raw twin of the split-queue loopback: a C-style split ring driven by plain loads and stores with
/// the spec's acquire/release points. Per iteration: the driver writes the chain's descriptors and
/// publishes the head (release-store of `avail.idx`); the device pops it (acquire-load), walks the
/// chain validating each index and range, copies 16 bytes from the readable part, pushes a used
/// entry (release-store of `used.idx`); the driver reaps it.
///
/// Thread-safety: one thread.
final class RawSplitRing: BenchRunner {
    private let region: RawRegion
    private let layout = RawRingLayout()
    private let count: Int
    private let descriptors: UnsafeMutableRawPointer
    private let avail: UnsafeMutableRawPointer
    private let used: UnsafeMutableRawPointer
    private var lastAvail: UInt16 = 0
    private var usedIndex: UInt16 = 0
    private var availIndex: UInt16 = 0
    private var lastUsed: UInt16 = 0
    private(set) var checksum: UInt64 = 0

    init(region: RawRegion, descriptorsPerChain: Int) {
        self.region = region
        count = descriptorsPerChain
        descriptors = region.base + Int(layout.descriptorTable)
        avail = region.base + Int(layout.driverArea)
        used = region.base + Int(layout.deviceArea)
    }

    func run(_ iterations: Int) throws {
        let q = UInt16(RawRingLayout.queueSize)
        var scratch: (UInt64, UInt64) = (0, 0)
        for _ in 0..<iterations {
            // Driver: descriptors 0..<count chained, then the avail entry and index.
            for index in 0..<count {
                let buffer = layout.buffer(index, of: count)
                let descriptor = descriptors + 16 * index
                descriptor.storeBytes(of: buffer.address, as: UInt64.self)
                descriptor.storeBytes(of: buffer.length, toByteOffset: 8, as: UInt32.self)
                let flags: UInt16 = (index + 1 < count ? 1 : 0) | (buffer.writable ? 2 : 0)
                descriptor.storeBytes(of: flags, toByteOffset: 12, as: UInt16.self)
                descriptor.storeBytes(of: UInt16(index + 1), toByteOffset: 14, as: UInt16.self)
            }
            (avail + 4 + 2 * Int(availIndex % q)).storeBytes(of: 0, as: UInt16.self)
            availIndex &+= 1
            vmm_store_release_u16(avail + 2, availIndex)

            // Device: pop.
            guard vmm_load_acquire_u16(avail + 2) != lastAvail else { throw RawRingError.empty }
            let head = (avail + 4 + 2 * Int(lastAvail % q)).load(as: UInt16.self)
            lastAvail &+= 1
            guard head < q else { throw RawRingError.badDescriptor }
            // Walk, validating each descriptor; copy 16 bytes from the readable part.
            var index = head
            var steps = 0
            var copied = 0
            while true {
                steps += 1
                guard steps <= Int(q) else { throw RawRingError.loop }
                let descriptor = descriptors + 16 * Int(index)
                let address = descriptor.load(as: UInt64.self)
                let length = descriptor.load(fromByteOffset: 8, as: UInt32.self)
                let flags = descriptor.load(fromByteOffset: 12, as: UInt16.self)
                let pointer = try region.translate(address, length)
                checksum &+= UInt64(length)
                if flags & 2 == 0 && copied < 16 {
                    let n = min(16 - copied, Int(length))
                    withUnsafeMutableBytes(of: &scratch) {
                        $0.baseAddress!.advanced(by: copied).copyMemory(from: pointer, byteCount: n)
                    }
                    copied += n
                }
                guard flags & 1 != 0 else { break }
                index = descriptor.load(fromByteOffset: 14, as: UInt16.self)
                guard index < q else { throw RawRingError.badDescriptor }
            }
            // Device: push.
            let element = used + 4 + 8 * Int(usedIndex % q)
            element.storeBytes(of: UInt32(head), as: UInt32.self)
            element.storeBytes(of: 0, toByteOffset: 4, as: UInt32.self)
            usedIndex &+= 1
            vmm_store_release_u16(used + 2, usedIndex)

            // Driver: reap.
            guard vmm_load_acquire_u16(used + 2) != lastUsed else { throw RawRingError.empty }
            checksum &+= UInt64((used + 4 + 8 * Int(lastUsed % q)).load(as: UInt32.self))
            lastUsed &+= 1
        }
        checksum &+= scratch.0
    }
}

/// Raw twin of the packed-queue loopback: descriptors written in ring order with the avail/used
/// flag bits of the current wrap, the head's flags stored last with release; the device checks the
/// head's flags with acquire, walks the consecutive chain, copies 16 bytes, writes the used
/// descriptor (id, length, flags with release); the driver reaps it with acquire.
///
/// Thread-safety: one thread.
final class RawPackedRing: BenchRunner {
    private static let next: UInt16 = 1
    private static let write: UInt16 = 2
    private static let availBit: UInt16 = 1 << 7
    private static let usedBit: UInt16 = 1 << 15

    private let region: RawRegion
    private let layout = RawRingLayout()
    private let count: Int
    private let ring: UnsafeMutableRawPointer
    // Driver.
    private var driverNext = 0
    private var driverWrap = true
    private var reapNext = 0
    private var reapWrap = true
    // Device.
    private var deviceNext = 0
    private var deviceWrap = true
    private var usedNext = 0
    private var usedWrap = true
    private(set) var checksum: UInt64 = 0

    init(region: RawRegion, descriptorsPerChain: Int) {
        self.region = region
        count = descriptorsPerChain
        ring = region.base + Int(layout.descriptorTable)
    }

    @inline(__always)
    private static func advance(_ position: inout Int, _ wrap: inout Bool, by n: Int) {
        position += n
        if position >= RawRingLayout.queueSize {
            position -= RawRingLayout.queueSize
            wrap.toggle()
        }
    }

    func run(_ iterations: Int) throws {
        let q = RawRingLayout.queueSize
        var scratch: (UInt64, UInt64) = (0, 0)
        for _ in 0..<iterations {
            // Driver: write the chain, head flags last.
            let id: UInt16 = 0
            let headPosition = driverNext
            var headFlags: UInt16 = 0
            var position = driverNext
            var wrap = driverWrap
            for index in 0..<count {
                let buffer = layout.buffer(index, of: count)
                let descriptor = ring + 16 * position
                descriptor.storeBytes(of: buffer.address, as: UInt64.self)
                descriptor.storeBytes(of: buffer.length, toByteOffset: 8, as: UInt32.self)
                descriptor.storeBytes(of: id, toByteOffset: 12, as: UInt16.self)
                var flags: UInt16 = (index + 1 < count ? Self.next : 0) | (buffer.writable ? Self.write : 0)
                flags |= wrap ? Self.availBit : Self.usedBit
                if index == 0 {
                    headFlags = flags
                } else {
                    descriptor.storeBytes(of: flags, toByteOffset: 14, as: UInt16.self)
                }
                Self.advance(&position, &wrap, by: 1)
            }
            vmm_store_release_u16(ring + 16 * headPosition + 14, headFlags)
            driverNext = position
            driverWrap = wrap

            // Device: pop.
            let head = ring + 16 * deviceNext
            let flags = vmm_load_acquire_u16(head + 14)
            guard (flags & Self.availBit != 0) == deviceWrap, (flags & Self.usedBit != 0) != deviceWrap else {
                throw RawRingError.empty
            }
            var walked = 0
            var copied = 0
            var chainID: UInt16 = 0
            position = deviceNext
            wrap = deviceWrap
            while true {
                walked += 1
                guard walked <= q else { throw RawRingError.loop }
                let descriptor = ring + 16 * position
                let address = descriptor.load(as: UInt64.self)
                let length = descriptor.load(fromByteOffset: 8, as: UInt32.self)
                chainID = descriptor.load(fromByteOffset: 12, as: UInt16.self)
                let descriptorFlags = walked == 1 ? flags : descriptor.load(fromByteOffset: 14, as: UInt16.self)
                let pointer = try region.translate(address, length)
                checksum &+= UInt64(length)
                if descriptorFlags & Self.write == 0 && copied < 16 {
                    let n = min(16 - copied, Int(length))
                    withUnsafeMutableBytes(of: &scratch) {
                        $0.baseAddress!.advanced(by: copied).copyMemory(from: pointer, byteCount: n)
                    }
                    copied += n
                }
                Self.advance(&position, &wrap, by: 1)
                guard descriptorFlags & Self.next != 0 else { break }
            }
            deviceNext = position
            deviceWrap = wrap
            // Device: push (id and length, then flags with release).
            let usedDescriptor = ring + 16 * usedNext
            usedDescriptor.storeBytes(of: chainID, toByteOffset: 12, as: UInt16.self)
            usedDescriptor.storeBytes(of: 0, toByteOffset: 8, as: UInt32.self)
            let usedFlags: UInt16 = usedWrap ? Self.availBit | Self.usedBit : 0
            vmm_store_release_u16(usedDescriptor + 14, usedFlags)
            Self.advance(&usedNext, &usedWrap, by: walked)

            // Driver: reap.
            let reaped = ring + 16 * reapNext
            let reapFlags = vmm_load_acquire_u16(reaped + 14)
            guard (reapFlags & Self.availBit != 0) == reapWrap, (reapFlags & Self.usedBit != 0) == reapWrap else {
                throw RawRingError.empty
            }
            checksum &+= UInt64(reaped.load(fromByteOffset: 12, as: UInt16.self))
            Self.advance(&reapNext, &reapWrap, by: count)
        }
        checksum &+= scratch.0
    }
}
