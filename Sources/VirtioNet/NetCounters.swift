import CVMMPlatform

/// What a net device counts: frames moved, and every frame or chain it dropped, by reason.
///
/// Thread-safety: a value type naming a counter.
public enum NetCounter: Int, CaseIterable, Sendable {
    /// Frames taken from the driver's transmit queues and handed to the port.
    case txFrames
    /// Their bytes (Ethernet frame, no virtio-net header).
    case txBytes
    /// Transmit chains shorter than a header plus an Ethernet header (header-only chains included).
    case txTooShort
    /// Transmit chains longer than the largest frame the port carries.
    case txTooLong
    /// Transmit chains whose header failed `NetHeader.transmitProblem` (offload not negotiated,
    /// checksum outside the packet, unknown flags or GSO type).
    case txBadHeader
    /// Transmit chains with device-writable buffers (the driver must post read-only ones).
    case txWritableBuffers
    /// Transmit headers with a non-zero `num_buffers` (the driver must send 0; ignored, counted).
    case txNonzeroBufferCount
    /// Frames the port could not take (a full switch queue, a tap that refused the write).
    case txPortDropped
    /// Frames written into the driver's receive queues.
    case rxFrames
    /// Their bytes (Ethernet frame, no virtio-net header).
    case rxBytes
    /// Frames dropped because the driver posted no (or too few) receive buffers in time (or, on a
    /// switch port, no front-end was attached).
    case rxNoBuffers
    /// Frames longer than the posted buffers (without MRG_RXBUF: one chain; with it: the ring).
    case rxTooLong
    /// Receive chains with too few writable bytes for a header (returned used with length 0).
    case rxBadChains
    /// Frames the driver's receive filter (promiscuous, MAC table) refused.
    case rxFiltered
    /// Receive chains held for a frame and returned unused (length 0) because the ring stopped
    /// or was re-created over new memory or addresses (the driver frees and replaces them).
    case rxReturnedUnused
    /// Control commands answered VIRTIO_NET_OK.
    case controlOK
    /// Control commands answered VIRTIO_NET_ERR (unknown, short, not negotiated, out of range).
    case controlError
    /// Control chains without a writable byte for the ack (completed with length 0).
    case controlNoAck
}

/// A set of `NetCounter`s. Each add is one relaxed atomic add, so any thread may count and read.
///
/// Thread-safety: any thread (relaxed atomics; totals, not a consistent snapshot).
public final class NetCounters: @unchecked Sendable {
    @usableFromInline let values: UnsafeMutablePointer<UInt64>

    public init() {
        values = .allocate(capacity: NetCounter.allCases.count)
        values.initialize(repeating: 0, count: NetCounter.allCases.count)
    }

    deinit { values.deallocate() }

    /// Adds `amount` to `counter`.
    @inlinable @inline(__always)
    public func add(_ counter: NetCounter, _ amount: UInt64 = 1) {
        // Safe: rawValue < allCases.count, the allocation's size.
        vmm_add_relaxed_u64(slot(counter), amount)
    }

    /// The current value of `counter`.
    public subscript(counter: NetCounter) -> UInt64 { vmm_load_relaxed_u64(slot(counter)) }

    @inlinable @inline(__always)
    func slot(_ counter: NetCounter) -> UnsafeMutablePointer<UInt64> { values + counter.rawValue }

    /// Every non-zero counter as `name=value`, for logs.
    public var summary: String {
        NetCounter.allCases.compactMap { counter in
            let value = self[counter]
            return value == 0 ? nil : "\(counter)=\(value)"
        }.joined(separator: " ")
    }
}
