// libFuzzer target: the virtio-net packet paths (VirtioNet) over split and packed rings, driven
// by a hostile driver: the same ring image is served as a receive queue (ReceiveWriter, frames
// of fuzzed lengths, with or without MRG_RXBUF), as a transmit queue (TransmitReader) and as a
// control queue (NetControlState.answer).
//
// Input layout:
//   [0]     bit 0: packed; bit 1: INDIRECT_DESC; bit 2: EVENT_IDX; bits 3-5: log2 queue size
//           (1...128); bit 6: MRG_RXBUF; bit 7: legacy driver (no VERSION_1: 10-byte header)
//   [1..2]  vring base (split: next avail index; packed: slot | wrap << 15), little-endian
//   [3]     received frame length selector (frame = 14 + [3] * 36 bytes: 14...9194)
//   [4..]   up to 0x3000 bytes: the ring image at guest-physical 0x10000 (descriptor table/ring at
//           +0, avail ring/driver event area at +0x1000, used ring/device event area at +0x2000)
//   rest    up to 0x4000 bytes at guest-physical 0x20000: buffers (headers, frames, commands)
//   an odd input length negotiates IN_ORDER: the receive pass then also reserves chains ahead
//   (ReceiveWriter.reserve), and every pass must complete chains in the order it popped them;
//   the receive pass ends by giving back the chains it holds (ReceiveWriter.giveBack)
// Guest memory: 0x10000-0x20000 and 0x20000-0x30000 (adjacent), a gap, then 0x40000-0x41000.
// Invariants checked (a violation traps, which libFuzzer reports): every chain the paths complete
// is accepted by the ring (never more than its writable length, never twice), a delivered frame
// is counted, and with IN_ORDER chains are completed in pop order.
import Virtio
import VirtioNet
import VMMSysUtil

private let regionLayout: [(gpa: UInt64, size: Int)] = [(0x10000, 0x10000), (0x20000, 0x10000), (0x40000, 0x1000)]
private let maxFrame = 9234

private let fuzzMemory: GuestMemory? = {
    var regions: [GuestMemoryRegion] = []
    for (gpa, size) in regionLayout {
        guard let shared = try? SharedMemory(size: size) else { return nil }
        regions.append(GuestMemoryRegion(guestPhysicalAddress: gpa, mapping: shared.mapping))
    }
    return try? GuestMemory(regions: regions)
}()

/// Packet and scratch buffers, allocated once. nonisolated(unsafe): libFuzzer calls the target
/// from one thread.
nonisolated(unsafe) private let packet = UnsafeMutableRawBufferPointer.allocate(
    byteCount: NetHeader.size + maxFrame, alignment: 64)
nonisolated(unsafe) private let scratch = UnsafeMutableRawBufferPointer.allocate(
    byteCount: ControlCommand.maximumLength, alignment: 8)

/// A device queue as the paths' `NetQueue`; a refused completion is a bug in the paths.
private struct FuzzQueue<Q: DeviceQueue & ~Copyable>: NetQueue, ~Copyable {
    var queue: Q
    /// IN_ORDER negotiated: completions must follow pops.
    var inOrder = false
    /// Ids popped and not yet completed, oldest first (checked only with `inOrder`).
    var popped: [UInt16] = []
    var completed = 0

    mutating func pop() throws(VirtqueueError) -> Chain? {
        let chain = try queue.pop()
        if let chain { popped.append(chain.id) }
        return chain
    }

    /// The queue's own burst pop (what the daemon's rings run), ids recorded as by `pop()`.
    mutating func pop(into chains: UnsafeMutableBufferPointer<Chain>) throws(VirtqueueError) -> Int {
        let count = try queue.pop(into: chains)
        for chain in chains[..<count] { popped.append(chain.id) }
        return count
    }

    mutating func complete(_ chain: Chain, written: UInt32) throws(VirtqueueError) {
        if inOrder {
            guard completed < popped.count, popped[completed] == chain.id else {
                fatalError("IN_ORDER: chain \(chain.id) completed out of pop order")
            }
            completed += 1
        }
        do {
            // In order, completions are published four at a time (and at the end of a pass), as
            // the daemon publishes a burst: runs of empty completions share used descriptors.
            try queue.stage(chain, written: written)
            if !inOrder || completed % 4 == 0 { queue.publishUsed() }
        } catch {
            fatalError("completion refused: \(error)")
        }
    }
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> Int32 {
    guard size >= 4, let memory = fuzzMemory else { return 0 }
    let config = data[0]
    var ringFeatures: VirtioFeatures = []
    if config & 0x80 == 0 { ringFeatures.insert(.version1) }
    if config & 2 != 0 { ringFeatures.insert(.ringIndirectDescriptors) }
    if config & 4 != 0 { ringFeatures.insert(.ringEventIndex) }
    if config & 1 != 0 { ringFeatures.insert(.ringPacked) }
    if size & 1 == 1 { ringFeatures.insert(.inOrder) }
    var features =
        ringFeatures.rawValue | NetFeature.controlQueue | NetFeature.controlReceiveMode
        | NetFeature.controlMACAddress | NetFeature.multiQueue
    if config & 0x40 != 0 { features |= NetFeature.mergeableRxBuffers }
    let queueSize = 1 << Int((config >> 3) & 7)
    let base = UInt32(data[1]) | UInt32(data[2]) << 8
    let frameLength = 14 + Int(data[3]) * 36
    let addresses = RingAddresses(descriptorTable: 0x10000, driverArea: 0x11000, deviceArea: 0x12000)
    let counters = NetCounters()

    for pass in 0..<3 {
        load(memory, data, size)
        if config & 1 == 0 {
            guard
                var queue = try? SplitQueue(
                    memory: memory, size: queueSize, addresses: addresses, features: ringFeatures)
            else { return 0 }
            try? queue.setNextAvailIndex(base)
            var wrapped = FuzzQueue(queue: consume queue, inOrder: features & NetFeature.inOrder != 0)
            exercise(pass, &wrapped, features: features, frameLength: frameLength, counters: counters)
            wrapped.queue.publishUsed()
        } else {
            guard
                var queue = try? PackedQueue(
                    memory: memory, size: queueSize, addresses: addresses, features: ringFeatures)
            else { return 0 }
            try? queue.setNextAvailIndex(base)
            var wrapped = FuzzQueue(queue: consume queue, inOrder: features & NetFeature.inOrder != 0)
            exercise(pass, &wrapped, features: features, frameLength: frameLength, counters: counters)
            wrapped.queue.publishUsed()
        }
    }
    return 0
}

/// Copies the input's ring image and buffers into guest memory (the rest is a fixed pattern).
private func load(_ memory: GuestMemory, _ data: UnsafePointer<UInt8>, _ size: Int) {
    for region in memory.regions { region.mapping.bytes.initializeMemory(as: UInt8.self, repeating: 0xA5) }
    let ringBase = memory.regions[0].mapping.base
    ringBase.initializeMemory(as: UInt8.self, repeating: 0, count: 0x3000)
    let imageLength = min(size - 4, 0x3000)
    ringBase.copyMemory(from: data + 4, byteCount: imageLength)
    let dataLength = min(size - 4 - imageLength, 0x4000)
    memory.regions[1].mapping.base.copyMemory(from: data + 4 + imageLength, byteCount: dataLength)
}

/// Pass 0: receive (frames until the ring is dry); 1: transmit; 2: control.
private func exercise<Q: DeviceQueue & ~Copyable>(
    _ pass: Int, _ queue: inout FuzzQueue<Q>, features: UInt64, frameLength: Int,
    counters: NetCounters
) {
    let budget = 4 * queue.queue.size + 4
    switch pass {
    case 0:
        var writer = ReceiveWriter(features: features, queueSize: queue.queue.size)
        let frame = UnsafeMutableRawBufferPointer(rebasing: packet[..<(NetHeader.size + frameLength)])
        for round in 0..<budget {
            frame.initializeMemory(as: UInt8.self, repeating: UInt8(truncatingIfNeeded: round))
            let before = counters[.rxFrames]
            if queue.inOrder, (try? writer.reserve(round % 4, from: &queue, counters: counters)) == nil { break }
            guard let result = try? writer.deliver(frame, to: &queue, counters: counters) else { break }
            if result == .delivered, counters[.rxFrames] != before + 1 { fatalError("delivered frame not counted") }
            if result == .noBuffers { break }
        }
        // The ring stops or is re-created: every held chain goes back (empty, in pop order; the
        // queue checks each completion), and none stays held.
        if (try? writer.giveBack(to: &queue, counters: counters)) != nil, writer.heldCount != 0 {
            fatalError("chains still held after giveBack")
        }
    case 1:
        let reader = TransmitReader(features: features)
        for _ in 0..<budget {
            guard let chain = try? queue.pop() else { break }
            if case .frame(let length) = (try? reader.read(chain, into: packet, counters: counters))
                ?? .dropped(.txTooShort),
                length > maxFrame
            {
                fatalError("frame longer than the buffer")
            }
            try? queue.complete(chain, written: 0)
        }
    default:
        var state = NetControlState(mac: MacAddress(rawValue: 0x02), maxQueuePairs: 4)
        for _ in 0..<budget {
            guard let chain = try? queue.pop() else { break }
            guard let answer = try? state.answer(chain, features: features, scratch: scratch) else {
                try? queue.complete(chain, written: 0)
                continue
            }
            if answer.written > chain.writableLength { fatalError("ack beyond the writable part") }
            try? queue.complete(chain, written: answer.written)
        }
    }
}
