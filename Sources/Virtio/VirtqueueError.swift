/// Which part of a virtqueue an address refers to.
public enum RingPart: String, Hashable, Sendable {
    /// Split descriptor table or packed descriptor ring.
    case descriptorTable
    /// Split available ring or packed driver event-suppression area.
    case driverArea
    /// Split used ring or packed device event-suppression area.
    case deviceArea
}

/// Everything that can be wrong with a virtqueue's configuration or with what the driver put in it.
///
/// Any error thrown by `pop()` marks the queue broken: the device stops using it, and every later
/// `pop()` throws the same error again (see `DeviceQueue.brokenReason`).
public enum VirtqueueError: Error, Hashable, Sendable, CustomStringConvertible {
    /// Queue size not allowed (split: a power of two 1…32768; packed: 1…32768).
    case invalidQueueSize(Int)
    /// A ring part is not aligned as the spec requires (16 / 2 / 4; packed 16 / 4 / 4).
    case misalignedRing(RingPart, address: UInt64)
    /// A ring part does not lie entirely inside one guest memory region.
    case ringOutsideMemory(RingPart, address: UInt64, length: UInt64)
    /// A vhost-user vring base value with bits that cannot be valid for this queue.
    case invalidRingBase(UInt32)
    /// The available index ran more than the queue size ahead of the device's position.
    case availIndexTooFarAhead(availIndex: UInt16, nextAvail: UInt16, queueSize: Int)
    /// A head or `next` descriptor index is not below the queue (or indirect table) size.
    case descriptorIndexOutOfRange(index: UInt16, limit: Int)
    /// A chain has more descriptors than allowed (queue size, or indirect table size): also how a
    /// loop in the `next` links shows up.
    case chainTooLong(limit: Int)
    /// An indirect descriptor inside an indirect table.
    case nestedIndirect
    /// An indirect descriptor with NEXT set (or, packed, not alone in its chain).
    case misplacedIndirect
    /// An indirect descriptor although `VIRTIO_F_INDIRECT_DESC` was not negotiated.
    case indirectNotNegotiated
    /// An indirect table length of zero, not a multiple of 16, or more entries than allowed.
    case invalidIndirectLength(UInt32)
    /// A descriptor of length zero (refused, as QEMU and libvhost-user do).
    case zeroLengthDescriptor
    /// `addr + len` of a descriptor overflows 64 bits.
    case addressOverflow(address: UInt64, length: UInt32)
    /// A buffer or indirect table is not entirely inside guest memory.
    case bufferOutsideMemory(address: UInt64, length: UInt64)
    /// A device-readable descriptor follows a device-writable one.
    case readableAfterWritable
    /// The total length of a chain's readable or writable part exceeds 2^32 - 1.
    case chainLengthOverflow
    /// The driver made available a head (split) or buffer id (packed) that is still in flight.
    case bufferInUse(id: UInt16)
    /// Packed: a buffer id not below the queue size.
    case bufferIDOutOfRange(id: UInt16, queueSize: Int)
    /// Packed: the chains in flight would hold more descriptors than the ring has slots, so the
    /// driver reused slots the device had not marked used (VIRTIO 1.2 §2.8).
    case tooManyDescriptorsInFlight(limit: Int)
    /// The guest rewrote a chain's descriptors while the device was using it.
    case chainChanged
    /// Device bug: pushing a chain that is not in flight on this queue.
    case notInFlight(id: UInt16)
    /// Device bug: `written` exceeds the chain's writable bytes.
    case writtenExceedsWritable(written: UInt32, writable: UInt32)

    public var description: String {
        switch self {
        case let .invalidQueueSize(size): return "invalid queue size \(size)"
        case let .misalignedRing(part, address): return "\(part.rawValue) at 0x\(hex(address)) is misaligned"
        case let .ringOutsideMemory(part, address, length):
            return "\(part.rawValue) [0x\(hex(address)), +\(length)) is not inside one guest memory region"
        case let .invalidRingBase(value): return "invalid vring base 0x\(hex(UInt64(value)))"
        case let .availIndexTooFarAhead(availIndex, nextAvail, queueSize):
            return "avail idx \(availIndex) is more than the queue size \(queueSize) ahead of \(nextAvail)"
        case let .descriptorIndexOutOfRange(index, limit): return "descriptor index \(index) is not below \(limit)"
        case let .chainTooLong(limit): return "descriptor chain longer than \(limit) (or a loop)"
        case .nestedIndirect: return "indirect descriptor inside an indirect table"
        case .misplacedIndirect: return "indirect descriptor chained to other descriptors"
        case .indirectNotNegotiated: return "indirect descriptor without VIRTIO_F_INDIRECT_DESC"
        case let .invalidIndirectLength(length): return "invalid indirect table length \(length)"
        case .zeroLengthDescriptor: return "descriptor of length zero"
        case let .addressOverflow(address, length): return "descriptor 0x\(hex(address)) + \(length) overflows"
        case let .bufferOutsideMemory(address, length):
            return "buffer [0x\(hex(address)), +\(length)) is not inside guest memory"
        case .readableAfterWritable: return "device-readable descriptor after a device-writable one"
        case .chainLengthOverflow: return "chain length exceeds 2^32 - 1 bytes"
        case let .bufferInUse(id): return "buffer \(id) made available while still in flight"
        case let .bufferIDOutOfRange(id, queueSize): return "buffer id \(id) is not below the queue size \(queueSize)"
        case let .tooManyDescriptorsInFlight(limit):
            return "more descriptors in flight than the \(limit) ring slots"
        case .chainChanged: return "descriptor chain changed while in use"
        case let .notInFlight(id): return "buffer \(id) pushed but not in flight"
        case let .writtenExceedsWritable(written, writable):
            return "\(written) bytes reported written into \(writable) writable bytes"
        }
    }
}

private func hex(_ value: UInt64) -> String { String(value, radix: 16) }
