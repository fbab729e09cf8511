import VMMSysUtil

/// A learning switch's forwarding table: which port each source MAC address was last seen on.
/// A fixed number of slots (open addressing, allocated once): when it is three-quarters full, new
/// addresses are not learned and frames to them are flooded, which is always correct.
///
/// Thread-safety: any thread; one mutex held for a few loads and stores per frame.
public final class MacLearningTable: @unchecked Sendable {
    /// Ports are small integers; `empty` marks a free slot.
    private static let empty: Int32 = -1
    private let mutex = PthreadMutex()
    // Guarded by `mutex`; `capacity` slots each.
    private let keys: UnsafeMutablePointer<UInt64>
    private let ports: UnsafeMutablePointer<Int32>
    private let mask: Int
    private var count = 0
    private let limit: Int

    /// A table of `capacity` slots, rounded up to a power of two (at least 16).
    public init(capacity: Int = 4096) {
        var size = 16
        while size < capacity { size <<= 1 }
        keys = .allocate(capacity: size)
        keys.initialize(repeating: 0, count: size)
        ports = .allocate(capacity: size)
        ports.initialize(repeating: Self.empty, count: size)
        mask = size - 1
        limit = size / 4 * 3
    }

    deinit {
        keys.deallocate()
        ports.deallocate()
    }

    /// Records that `source` sent from `port` (group addresses are never learned), then looks up
    /// `destination`.
    ///
    /// - Returns: the port `destination` was learned on, or nil (unknown or a group address: flood).
    public func learn(source: MacAddress, port: Int, lookup destination: MacAddress) -> Int? {
        mutex.withLock {
            if !source.isMulticast { insert(source, port: Int32(truncatingIfNeeded: port)) }
            guard !destination.isMulticast else { return nil }
            return find(destination).map { Int(ports[$0]) }
        }
    }

    /// The port `mac` was learned on, or nil.
    public func port(of mac: MacAddress) -> Int? {
        mutex.withLock { find(mac).map { Int(ports[$0]) } }
    }

    /// Addresses learned.
    public var learnedCount: Int { mutex.withLock { count } }

    /// Forgets every address learned on `port` (its front-end went away).
    public func forget(port: Int) {
        mutex.withLock {
            var kept: [(UInt64, Int32)] = []
            for slot in 0...mask where ports[slot] != Self.empty && ports[slot] != Int32(truncatingIfNeeded: port) {
                kept.append((keys[slot], ports[slot]))
            }
            ports.update(repeating: Self.empty, count: mask + 1)
            count = 0
            for (key, owner) in kept { insert(MacAddress(rawValue: key), port: owner) }
        }
    }

    /// Slot holding `mac`, or nil. Mutex held.
    private func find(_ mac: MacAddress) -> Int? {
        var slot = Self.hash(mac) & mask
        while ports[slot] != Self.empty {
            if keys[slot] == mac.rawValue { return slot }
            slot = (slot + 1) & mask
        }
        return nil
    }

    /// Learns or moves `mac`; does nothing when full. Mutex held.
    private func insert(_ mac: MacAddress, port: Int32) {
        var slot = Self.hash(mac) & mask
        while ports[slot] != Self.empty {
            if keys[slot] == mac.rawValue {
                ports[slot] = port
                return
            }
            slot = (slot + 1) & mask
        }
        guard count < limit else { return }
        keys[slot] = mac.rawValue
        ports[slot] = port
        count += 1
    }

    private static func hash(_ mac: MacAddress) -> Int {
        // A multiplicative hash spreads the vendor prefix and the low octets over the index bits.
        Int(truncatingIfNeeded: (mac.rawValue &* 0x9E37_79B9_7F4A_7C15) >> 40)
    }
}
