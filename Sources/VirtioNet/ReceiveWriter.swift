import Virtio

/// Puts packets into a receive queue (VIRTIO 1.2 section 5.1.6.3-4): one chain per packet, or with
/// MRG_RXBUF as many as the packet needs, `num_buffers` set in the first. Chains popped for a
/// packet that did not fit wait, in order, for the next packet (the ring gives no way to hand a
/// chain back), so a packet is never split over a chain it cannot fill.
///
/// Bad chains are answered, never fatal: a chain with fewer writable bytes than a header is
/// completed with length 0 (`rxBadChains`); a packet longer than one chain (without MRG_RXBUF) or
/// than every buffer the ring can hold (with it) is dropped (`rxTooLong`) and the chains are kept.
///
/// Thread-safety: owned by the receive queue's worker. Its held chains belong to the queue's
/// current memory and ring: `giveBack(to:counters:)` them before the ring stops or is rebuilt
/// (`discard()` when it restarted without that chance).
public struct ReceiveWriter: ~Copyable {
    /// The header size the driver uses (`netHeaderSize`).
    public private(set) var headerSize: Int
    public private(set) var mergeable: Bool
    /// VIRTIO_F_IN_ORDER: chains are completed in the order they were popped, bad ones included.
    public private(set) var inOrder: Bool
    /// Chains popped and not yet used, oldest first (a ring buffer of `capacity`).
    @usableFromInline let held: UnsafeMutablePointer<Chain>
    @usableFromInline let allocated: Int
    @usableFromInline var capacity: Int
    @usableFromInline var first = 0
    @usableFromInline var count = 0

    /// A writer for `features`, holding at most `queueSize` chains (the ring's size: never more
    /// can be in flight), with room for rings of up to `maxQueueSize` (`start` again for each
    /// ring start without allocating).
    public init(features: UInt64, queueSize: Int, maxQueueSize: Int? = nil) {
        allocated = max(1, maxQueueSize ?? queueSize, queueSize)
        held = .allocate(capacity: allocated)
        headerSize = 12
        mergeable = false
        inOrder = false
        capacity = 1
        start(features: features, queueSize: queueSize)
    }

    deinit { held.deallocate() }

    /// Prepares for a (re)started ring: its features and size; held chains are forgotten.
    public mutating func start(features: UInt64, queueSize: Int) {
        headerSize = netHeaderSize(features: features)
        mergeable = features & NetFeature.mergeableRxBuffers != 0
        inOrder = features & NetFeature.inOrder != 0
        capacity = min(max(1, queueSize), allocated)
        discard()
    }

    /// The ring-buffer slot `offset` places after `first` (offset <= capacity; no division).
    @inlinable @inline(__always)
    func slot(_ offset: Int) -> Int {
        let position = first + offset
        return position >= capacity ? position - capacity : position
    }

    /// Chains held for the next packet.
    public var heldCount: Int { count }

    /// Chains `deliver` pops at once when it holds none left.
    public static let popBurst = 32

    /// Held chains (from the front) whose buffers are hinted into the cache ahead of the frames
    /// written into them: enough to overlap the driver-owned lines' misses, few enough not to run
    /// out of the core's outstanding-miss slots (two lines a chain).
    @usableFromInline static let prefetchDistance = 6

    /// The frame bytes after the header whose lines `prefetch` hints for writing: a small frame's
    /// (a longer one's later lines follow in order, which the hardware prefetcher sees).
    @usableFromInline static let prefetchFrameBytes = 64

    /// Hints a held chain's buffer into the cache ahead of the frame written into it: the header's
    /// line for reading (it is compared before it is stored), the frame's lines for writing. A
    /// frame line left out waits, store buffer full, for the driver's core to give it up: that
    /// wait was half the 64-byte receive path's cost.
    @inlinable @inline(__always)
    func prefetch(_ chain: Chain) {
        chain.prefetch(header: headerSize, frame: Self.prefetchFrameBytes)
    }

    /// Returns every held chain to the driver unused (length 0), oldest first, and counts them
    /// (`rxReturnedUnused`): before the ring stops or its memory changes, after which they would
    /// be stale. The driver gets its buffers back (a used buffer too short for a header is one it
    /// frees and replaces) instead of losing them, and the ring's position accounts for them.
    ///
    /// - Throws: a `VirtqueueError` from the queue (the ring is broken).
    public mutating func giveBack<Queue: NetQueue & ~Copyable>(to queue: inout Queue, counters: NetCounters)
        throws(VirtqueueError)
    {
        while count > 0 {
            try queue.complete(held[first], written: 0)
            counters.add(held[first].writableLength < UInt32(headerSize) ? .rxBadChains : .rxReturnedUnused)
            first = slot(1)
            count -= 1
        }
        first = 0
    }

    /// Forgets the held chains (the ring stopped or its memory changed: they are stale).
    public mutating func discard() {
        first = 0
        count = 0
    }

    /// Pops up to `wanted` more chains and holds them for the next packets; returns how many it
    /// took (fewer when the ring runs dry or the writer holds a ring's worth).
    ///
    /// For bursts: popping a burst's chains before writing any frame keeps the ring reads apart
    /// from the frame stores into guest memory. Interleaved, each pop waits for the previous
    /// frame's stores to leave the store buffer, which dominated the per-frame cost.
    ///
    /// - Throws: a `VirtqueueError` from the queue (the ring is broken).
    @inlinable
    public mutating func reserve<Queue: NetQueue & ~Copyable>(
        _ wanted: Int, from queue: inout Queue, counters: NetCounters
    ) throws(VirtqueueError) -> Int {
        let before = count
        var popped = 0
        while popped < wanted, count < capacity {
            // One burst pop into the free part of the ring buffer up to its wrap point.
            let start = slot(count)
            let room = min(wanted - popped, capacity - count, capacity - start)
            let got = try queue.pop(into: UnsafeMutableBufferPointer(start: held + start, count: room))
            popped += got
            try keepUsable(at: start, got, in: &queue, counters: counters)
            if got < room { break }
        }
        if inOrder && count > 0 && held[first].writableLength < UInt32(headerSize) {
            try returnBadChainsAtFront(to: &queue, counters: counters)
        }
        return max(0, count - before)
    }

    /// Takes the `popped` chains just popped into `held[start...]` (at the back of the held
    /// ones), and hints the buffers of those near the front into the cache (`prefetchDistance`).
    /// Section 5.1.6.3.1: every receive buffer holds at least a header; a chain that does not is
    /// returned empty (`rxBadChains`) between packets, never among a packet's chains (which stay
    /// adjacent in the used ring): at once, or in order held too and returned when it reaches the
    /// front (`returnBadChainsAtFront`).
    @inlinable @inline(__always)
    mutating func keepUsable<Queue: NetQueue & ~Copyable>(
        at start: Int, _ popped: Int, in queue: inout Queue, counters: NetCounters
    ) throws(VirtqueueError) {
        var kept = 0
        for index in start..<start + popped {
            let chain = held[index]
            if chain.writableLength >= UInt32(headerSize) || inOrder {
                if count + kept < Self.prefetchDistance { prefetch(chain) }
                // Moved down only behind a returned chain (each store here delays the frames').
                if index != start + kept { held[start + kept] = chain }
                kept += 1
            } else {
                try queue.complete(chain, written: 0)
                counters.add(.rxBadChains)
            }
        }
        count += kept
    }

    /// In order: returns (empty) the bad chains held at the front, whose turn it now is.
    @inlinable
    mutating func returnBadChainsAtFront<Queue: NetQueue & ~Copyable>(to queue: inout Queue, counters: NetCounters)
        throws(VirtqueueError)
    {
        while count > 0, held[first].writableLength < UInt32(headerSize) {
            try queue.complete(held[first], written: 0)
            counters.add(.rxBadChains)
            first = slot(1)
            count -= 1
        }
    }

    /// Writes `packet` (a 12-byte `NetHeader` followed by the frame; the writer sets
    /// `num_buffers` in it) into the queue.
    ///
    /// - Returns: `.delivered`, `.noBuffers` (nothing written: keep the packet and retry when the
    ///   driver adds buffers, or drop it) or `.dropped` (count it).
    /// - Throws: a `VirtqueueError` from the queue (the ring is broken).
    @inlinable
    public mutating func deliver<Queue: NetQueue & ~Copyable>(
        _ packet: UnsafeMutableRawBufferPointer, to queue: inout Queue, counters: NetCounters
    ) throws(VirtqueueError) -> DeliveryResult {
        var tally = ReceiveTally()
        defer { tally.publish(to: counters) }
        return try deliver(packet, to: &queue, counters: counters, tally: &tally)
    }

    /// `deliver(_:to:counters:)` for bursts: the frame and its bytes are added to `tally` (plain
    /// integers) instead of `counters`; publish the tally once per burst. Each counter add is a
    /// locked instruction, which on x86 also waits for the frame's stores into guest memory: per
    /// frame, that wait was the largest cost of the receive path. Drops are still counted at once.
    @inlinable
    public mutating func deliver<Queue: NetQueue & ~Copyable>(
        _ packet: UnsafeMutableRawBufferPointer, to queue: inout Queue, counters: NetCounters,
        tally: inout ReceiveTally
    ) throws(VirtqueueError) -> DeliveryResult {
        guard packet.count >= NetHeader.size else { return .dropped(.rxTooLong) }
        let frameLength = packet.count - NetHeader.size
        let total = headerSize + frameLength
        if inOrder && count > 0 && held[first].writableLength < UInt32(headerSize) {
            try returnBadChainsAtFront(to: &queue, counters: counters)
        }
        // Gather chains until they can hold the packet.
        var used = 0
        var room = 0
        while true {
            if used == count {
                guard count < capacity else {
                    // Every buffer the ring can hold is not enough.
                    return .dropped(.rxTooLong)
                }
                // A burst at once: ports that deliver frame by frame (TAP, switch) pop like the
                // benchmark ports do.
                guard try reserve(Self.popBurst, from: &queue, counters: counters) > 0, used < count else {
                    return .noBuffers
                }
            }
            let length = held[slot(used)].writableLength
            // A bad chain held in order (see `keepUsable`) behind this packet's first chains: it
            // must not be used before them and cannot carry the packet's rest. The packet is
            // dropped (a misbehaving driver delays only its own packets; ones that fit before the
            // bad chain still pass, then it is returned from the front).
            if length < UInt32(headerSize) { return .dropped(.rxTooLong) }
            room += Int(length)
            used += 1
            if room >= total { break }
            if !mergeable {
                // One chain per packet: this one is too short for it; it waits for a shorter one.
                return .dropped(.rxTooLong)
            }
        }
        // Section 5.1.6.3.1: num_buffers is 1 without MRG_RXBUF, else the buffers used.
        // Stored only when it changes: the copy below loads the header right after, and a load
        // over a just-stored field waits until every earlier store (the previous frame's, into
        // guest lines still on the driver's core) has left the store buffer.
        let bufferCount = UInt16(used).littleEndian
        if packet.load(fromByteOffset: 10, as: UInt16.self) != bufferCount {
            packet.storeBytes(of: bufferCount, toByteOffset: 10, as: UInt16.self)
        }
        // The bytes the driver gets: the header it expects, then the frame, contiguous (a
        // legacy 10-byte header is moved up against the frame).
        let skip = NetHeader.size - headerSize
        if skip > 0 {
            let base = packet.baseAddress!
            (base + skip).copyMemory(from: base, byteCount: headerSize)
        }
        var remaining = UnsafeRawBufferPointer(rebasing: packet[skip...])
        for index in 0..<used {
            let chain = held[slot(index)]
            let take = min(remaining.count, Int(chain.writableLength))
            let written: Int
            if index == 0 && take > headerSize {
                // Header and frame apart: drivers put the header just before a cache-line aligned
                // data area, and one copy of both would store the frame with unaligned wide
                // stores that each span two of the driver's lines. The header is stored only
                // where it differs from what the buffer holds (`updateWritable`): a recycled
                // buffer most often holds this very header, and its line then stays shared with
                // the driver's core, which reads it next.
                let header = try chain.updateWritable(UnsafeRawBufferPointer(rebasing: remaining[..<headerSize]))
                written =
                    try header
                    + chain.writeWritable(
                        UnsafeRawBufferPointer(rebasing: remaining[headerSize..<take]), atOffset: headerSize)
            } else {
                written = try chain.writeWritable(UnsafeRawBufferPointer(rebasing: remaining[..<take]))
            }
            remaining = UnsafeRawBufferPointer(rebasing: remaining[take...])
            try queue.complete(chain, written: UInt32(written))
        }
        first = slot(used)
        count -= used
        // Keep the next `prefetchDistance` held chains on their way into the cache: the one that
        // just moved into that window.
        if count >= Self.prefetchDistance { prefetch(held[slot(Self.prefetchDistance - 1)]) }
        tally.frames &+= 1
        tally.bytes &+= UInt64(frameLength)
        return .delivered
    }
}

/// Frames and bytes delivered and not yet added to a `NetCounters` (`rxFrames`, `rxBytes`).
///
/// Thread-safety: a value type, owned by one receive worker.
public struct ReceiveTally: Sendable {
    public var frames: UInt64 = 0
    public var bytes: UInt64 = 0

    @inlinable
    public init() {}

    /// Adds the tally to `counters` (two relaxed atomic adds, none if empty) and clears it.
    @inlinable @inline(__always)
    public mutating func publish(to counters: NetCounters) {
        guard frames > 0 else { return }
        counters.add(.rxFrames, frames)
        counters.add(.rxBytes, bytes)
        self = ReceiveTally()
    }
}

/// What `ReceiveWriter.deliver` did with a packet.
///
/// Thread-safety: a value type.
public enum DeliveryResult: Hashable, Sendable {
    case delivered
    /// The driver has not posted enough buffers yet; nothing was written.
    case noBuffers
    /// Dropped for this reason (the caller counts it).
    case dropped(NetCounter)
}
