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
// Oracles (a violation traps): every buffer piece lies inside a mapped region; a chain walked to
// its end adds up to the readable and writable lengths it was popped with.
// Guest memory: 0x10000–0x20000 and 0x20000–0x30000 (adjacent), a gap, then 0x40000–0x41000.
import Virtio
import VMMSysUtil

private let regionLayout: [(gpa: UInt64, size: Int)] = [(0x10000, 0x10000), (0x20000, 0x10000), (0x40000, 0x1000)]

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
    for region in memory.regions { region.mapping.bytes.initializeMemory(as: UInt8.self, repeating: 0xA5) }
    let ringBase = memory.regions[0].mapping.base
    ringBase.initializeMemory(as: UInt8.self, repeating: 0, count: 0x3000)
    let imageLength = min(size - 3, 0x3000)
    ringBase.copyMemory(from: data + 3, byteCount: imageLength)
    let tamper = UnsafeBufferPointer(start: data + 3 + imageLength, count: min(size - 3 - imageLength, 0x800))

    let config = data[0]
    var features: VirtioFeatures = [.version1]
    if config & 2 != 0 { features.insert(.ringIndirectDescriptors) }
    if config & 4 != 0 { features.insert(.ringEventIndex) }
    if config & 0x80 != 0 { features.insert(.notifyOnEmpty) }
    var queueSize = 1 << Int((config >> 3) & 7)
    if config & 1 != 0, config & 0x40 != 0 { queueSize = max(1, queueSize - 1) }
    let base = UInt32(data[1]) | UInt32(data[2]) << 8
    let addresses = RingAddresses(descriptorTable: 0x10000, driverArea: 0x11000, deviceArea: 0x12000)
    if config & 1 == 0 {
        guard var queue = try? SplitQueue(memory: memory, size: queueSize, addresses: addresses, features: features)
        else { return 0 }
        try? queue.setNextAvailIndex(base)
        exercise(&queue, memory: memory, tamper: tamper)
    } else {
        guard var queue = try? PackedQueue(memory: memory, size: queueSize, addresses: addresses, features: features)
        else { return 0 }
        try? queue.setNextAvailIndex(base)
        exercise(&queue, memory: memory, tamper: tamper)
    }
    return 0
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
