// libFuzzer target: the split and packed chain walkers and guest-memory translation.
//
// Input layout:
//   [0]     bit 0: packed; bit 1: INDIRECT_DESC; bit 2: EVENT_IDX; bits 3–5: log2 queue size (1…128);
//           bit 6: packed size one less (not a power of two); bit 7: NOTIFY_ON_EMPTY
//   [1..2]  vring base (split: next avail index; packed: slot | wrap << 15), little-endian
//   [3..]   up to 0x3000 bytes: the ring image at guest-physical 0x10000 (descriptor table/ring at
//           +0, avail ring/driver event area at +0x1000, used ring/device event area at +0x2000)
//   rest    up to 0x800 bytes written over the descriptor table after the first pop (a guest
//           rewriting descriptors under the device)
// Each input runs in order (every chain walked, written and pushed at once; the tamper applied).
// Without a tamper it runs again from the same image out of order: chains are held, completed in
// an order drawn from the input, and walked again while the others complete.
// Oracles (a violation traps): every buffer piece lies inside a mapped region; a chain walked to
// its end adds up to the readable and writable lengths it was popped with; out of order, a chain
// walks right after pop, and walks again to the same pieces after each completion of another
// (packed completions write used descriptors into ring slots a held chain was popped from, VIRTIO
// 1.2 §2.8), unless an indirect table lies where the device writes (the ring area).
// Guest memory: 0x10000–0x20000 and 0x20000–0x30000 (adjacent), a gap, then 0x40000–0x41000.
import Virtio
import VMMSysUtil

private let regionLayout: [(gpa: UInt64, size: Int)] = [(0x10000, 0x10000), (0x20000, 0x10000), (0x40000, 0x1000)]
/// The ring image; the device writes only here (used entries, event areas) when it writes no buffer.
private let ringArea: Range<UInt64> = 0x10000..<0x13000

private let fuzzMemory: GuestMemory? = {
    var regions: [GuestMemoryRegion] = []
    for (gpa, size) in regionLayout {
        guard let shared = try? SharedMemory(size: size) else { return nil }
        regions.append(GuestMemoryRegion(guestPhysicalAddress: gpa, mapping: shared.mapping))
    }
    return try? GuestMemory(regions: regions)
}()

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> Int32 {
    guard size >= 3, let memory = fuzzMemory else { return 0 }
    let image = UnsafeRawBufferPointer(start: data + 3, count: min(size - 3, 0x3000))
    let tamper = UnsafeBufferPointer(start: data + 3 + image.count, count: min(size - 3 - image.count, 0x800))

    let config = data[0]
    let packed = config & 1 != 0
    var features: VirtioFeatures = [.version1]
    if config & 2 != 0 { features.insert(.ringIndirectDescriptors) }
    if config & 4 != 0 { features.insert(.ringEventIndex) }
    if config & 0x80 != 0 { features.insert(.notifyOnEmpty) }
    var queueSize = 1 << Int((config >> 3) & 7)
    if packed, config & 0x40 != 0 { queueSize = max(1, queueSize - 1) }
    let base = UInt32(data[1]) | UInt32(data[2]) << 8
    let addresses = RingAddresses(descriptorTable: 0x10000, driverArea: 0x11000, deviceArea: 0x12000)
    let stable = !indirectTableInRingArea(image, packed: packed, queueSize: queueSize)
    for held in tamper.isEmpty ? [false, true] : [false] {
        load(image, into: memory)
        // Out of order, the completion order comes from the input (its size and base).
        let run = Run(
            memory: memory, base: base, tamper: tamper, held: held, stable: stable,
            seed: UInt64(size) &* 0x9E37_79B9_7F4A_7C15 ^ UInt64(base))
        if packed {
            guard
                var queue = try? PackedQueue(memory: memory, size: queueSize, addresses: addresses, features: features)
            else { return 0 }
            run.drive(&queue)
        } else {
            guard var queue = try? SplitQueue(memory: memory, size: queueSize, addresses: addresses, features: features)
            else { return 0 }
            run.drive(&queue)
        }
    }
    return 0
}

/// One pass over a loaded image: in order (with the tamper) or out of order.
private struct Run {
    let memory: GuestMemory
    let base: UInt32
    let tamper: UnsafeBufferPointer<UInt8>
    let held: Bool
    let stable: Bool
    let seed: UInt64

    func drive<Q: DeviceQueue & ~Copyable>(_ queue: inout Q) {
        try? queue.setNextAvailIndex(base)
        if held {
            exerciseHeld(&queue, memory: memory, stable: stable, seed: seed)
        } else {
            exercise(&queue, memory: memory, tamper: tamper)
        }
    }
}

/// Fills the regions with a pattern and the ring area with `image` (zero beyond it).
private func load(_ image: UnsafeRawBufferPointer, into memory: GuestMemory) {
    for region in memory.regions { region.mapping.bytes.initializeMemory(as: UInt8.self, repeating: 0xA5) }
    let ringBase = memory.regions[0].mapping.base
    ringBase.initializeMemory(as: UInt8.self, repeating: 0, count: ringArea.count)
    if let source = image.baseAddress { ringBase.copyMemory(from: source, byteCount: image.count) }
}

/// Whether a descriptor of the image's table (split) or ring (packed) points an indirect table
/// into the ring area, where the device's used entries would change it under a held chain.
private func indirectTableInRingArea(_ image: UnsafeRawBufferPointer, packed: Bool, queueSize: Int) -> Bool {
    for slot in 0..<queueSize where slot * 16 + 16 <= image.count {
        let address = UInt64(littleEndian: image.loadUnaligned(fromByteOffset: slot * 16, as: UInt64.self))
        let length = UInt64(UInt32(littleEndian: image.loadUnaligned(fromByteOffset: slot * 16 + 8, as: UInt32.self)))
        let flags = UInt16(
            littleEndian: image.loadUnaligned(fromByteOffset: slot * 16 + (packed ? 14 : 12), as: UInt16.self))
        guard flags & 4 != 0 else { continue }
        let (end, overflow) = address.addingReportingOverflow(length)
        if overflow || (address < ringArea.upperBound && end > ringArea.lowerBound) { return true }
    }
    return false
}

/// Pops every chain, touches every byte of every buffer, copies through the helpers, pushes.
private func exercise<Q: DeviceQueue & ~Copyable>(
    _ queue: inout Q, memory: GuestMemory, tamper: UnsafeBufferPointer<UInt8>
) {
    var scratch = [UInt8](repeating: 0, count: 256)
    var sum: UInt64 = 0
    queue.disableNotifications()
    for round in 0..<(4 * queue.size + 4) {
        guard let chain = try? queue.pop() else { break }
        if round == 0, let source = tamper.baseAddress, tamper.count > 0 {
            memory.regions[0].mapping.base.copyMemory(from: source, byteCount: tamper.count)
        }
        // Oracles: every piece lies inside one mapped region, and a walk that completes adds up
        // to the lengths the chain was popped with (a walk may throw: the guest rewrote it).
        var buffers = chain.buffers()
        var readable: UInt64 = 0
        var writable: UInt64 = 0
        var walked = true
        while true {
            let next: GuestBuffer?
            do { next = try buffers.next() } catch {
                walked = false
                break
            }
            guard let piece = next else { break }
            checkInsideMemory(piece.bytes, memory)
            if piece.isWritable { writable += UInt64(piece.bytes.count) } else { readable += UInt64(piece.bytes.count) }
            for i in 0..<piece.bytes.count { sum &+= UInt64(piece.bytes[i]) }
            if piece.isWritable { piece.bytes[piece.bytes.count - 1] = 0x5A }
        }
        if walked && (readable != UInt64(chain.readableLength) || writable != UInt64(chain.writableLength)) {
            fatalError(
                "walked \(readable)+\(writable) bytes, popped as \(chain.readableLength)+\(chain.writableLength)")
        }
        let read = scratch.withUnsafeMutableBytes { (try? chain.readReadable(into: $0, fromOffset: Int(sum & 7))) ?? 0 }
        let written = scratch.withUnsafeBytes {
            (try? chain.writeWritable(UnsafeRawBufferPointer(rebasing: $0[0..<min(read + 3, 256)]))) ?? 0
        }
        _ = try? queue.push(chain, written: UInt32(written))
        if round & 3 == 0 { _ = queue.needsNotification() }
    }
    _ = queue.enableNotifications()
    _ = queue.needsNotification()
    _ = queue.nextAvailIndex
    if sum == 0x1234_5678_9abc { print("unlikely") }
}

/// Traps unless `bytes` lies wholly inside one region's mapping.
private func checkInsideMemory(_ bytes: UnsafeMutableRawBufferPointer, _ memory: GuestMemory) {
    guard let start = bytes.baseAddress, bytes.count > 0 else { fatalError("an empty buffer piece") }
    for region in memory.regions {
        let base = region.mapping.base
        if start >= base && start + bytes.count <= base + Int(region.size) { return }
    }
    fatalError("a buffer piece at \(start) (\(bytes.count) bytes) is outside every mapped region")
}

/// One piece of a walk: where, how long, and whether writable.
private struct Piece: Equatable {
    let start: UnsafeMutableRawPointer?
    let count: Int
    let isWritable: Bool
}

/// Walks `chain` to its end, checking every piece lies inside memory; nil if the walk throws.
private func walk(_ chain: Chain, _ memory: GuestMemory) -> [Piece]? {
    var pieces: [Piece] = []
    var buffers = chain.buffers()
    while true {
        let next: GuestBuffer?
        do { next = try buffers.next() } catch { return nil }
        guard let piece = next else { return pieces }
        checkInsideMemory(piece.bytes, memory)
        pieces.append(Piece(start: piece.bytes.baseAddress, count: piece.bytes.count, isWritable: piece.isWritable))
    }
}

/// Out of order, writing no buffer: holds up to eight chains, completes them (nothing written)
/// in an order drawn from `seed`, and walks every chain still held again after each completion.
private func exerciseHeld<Q: DeviceQueue & ~Copyable>(
    _ queue: inout Q, memory: GuestMemory, stable: Bool, seed: UInt64
) {
    var random = seed
    var held: [(chain: Chain, pieces: [Piece])] = []
    func completeOne(_ queue: inout Q) {
        random = random &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
        let (chain, _) = held.remove(at: Int((random >> 33) % UInt64(held.count)))
        _ = try? queue.push(chain, written: 0)
        guard stable else { return }
        for (other, pieces) in held where walk(other, memory) != pieces {
            fatalError("held chain \(other.id) walks differently after chain \(chain.id) completed")
        }
    }
    for _ in 0..<(4 * queue.size + 4) {
        // A broken queue or an empty ring ends the popping; the held chains complete below.
        guard let chain = try? queue.pop() else { break }
        // Nothing changed the memory since pop: the walk succeeds and adds up.
        guard let pieces = walk(chain, memory) else { fatalError("chain \(chain.id) does not walk right after pop") }
        let readable = pieces.filter { !$0.isWritable }.reduce(0) { $0 + $1.count }
        let writable = pieces.filter(\.isWritable).reduce(0) { $0 + $1.count }
        if readable != Int(chain.readableLength) || writable != Int(chain.writableLength) {
            fatalError(
                "walked \(readable)+\(writable) bytes, popped as \(chain.readableLength)+\(chain.writableLength)")
        }
        held.append((chain, pieces))
        if held.count == 8 {
            for _ in 0..<Int(random & 7) + 1 { completeOne(&queue) }
        }
    }
    while !held.isEmpty { completeOne(&queue) }
}
