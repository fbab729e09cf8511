/// The two virtqueue layouts (VIRTIO 1.2 §2.7 "Split Virtqueues", §2.8 "Packed Virtqueues"); packed
/// is used when `VIRTIO_F_RING_PACKED` is negotiated.
///
/// Thread-safety: a value type.
public enum RingLayout: String, Hashable, Sendable, CaseIterable {
    case split
    case packed
}

/// Descriptor flag bits shared by the split and packed layouts (little-endian `flags` field).
@usableFromInline
enum DescriptorFlag {
    @usableFromInline static let next: UInt16 = 1
    @usableFromInline static let write: UInt16 = 2
    @usableFromInline static let indirect: UInt16 = 4
    /// Packed only.
    @usableFromInline static let avail: UInt16 = 1 << 7
    /// Packed only.
    @usableFromInline static let used: UInt16 = 1 << 15
}

/// Split-ring flags in the avail/used rings.
enum SplitRingFlag {
    /// `avail->flags`: the driver does not want used-buffer notifications (no EVENT_IDX).
    static let noInterrupt: UInt16 = 1
    /// `used->flags`: the device does not want available-buffer notifications (no EVENT_IDX).
    static let noNotify: UInt16 = 1
}

/// Packed event-suppression `flags` values.
@usableFromInline
enum PackedEventFlag {
    @usableFromInline static let enable: UInt16 = 0
    @usableFromInline static let disable: UInt16 = 1
    @usableFromInline static let desc: UInt16 = 2
}

/// Largest queue size either layout allows.
let maximumQueueSize = 32768

/// Most entries accepted in one indirect table (Linux vhost's UIO_MAXIOV is 1024; the queue size
/// bounds chains anyway). Bounds the work one descriptor can cause.
@inline(__always)
func indirectEntryLimit(queueSize: Int) -> Int { max(queueSize, 1024) }

/// The virtio used-buffer / available-buffer event test (`vring_need_event`), all in 16 bits:
/// whether moving an index from `old` to `new` crossed `eventIndex`.
@inline(__always)
public func vringNeedEvent(eventIndex: UInt16, new: UInt16, old: UInt16) -> Bool {
    (new &- eventIndex &- 1) < (new &- old)
}

/// Where a queue's three parts live, and in which address space.
///
/// Split: descriptor table, available ring (driver area), used ring (device area).
/// Packed: descriptor ring, driver event suppression, device event suppression.
public struct RingAddresses: Hashable, Sendable {
    /// How the addresses are to be translated.
    public enum Space: Hashable, Sendable {
        /// Guest-physical addresses (a driver's view, tests).
        case guestPhysical
        /// Front-end user addresses (vhost-user `SET_VRING_ADDR`).
        case frontendUser
    }

    /// Descriptor table (split) or descriptor ring (packed); 16-aligned.
    public var descriptorTable: UInt64
    /// Available ring (split, 2-aligned) or driver event-suppression area (packed, 4-aligned).
    public var driverArea: UInt64
    /// Used ring (split, 4-aligned) or device event-suppression area (packed, 4-aligned).
    public var deviceArea: UInt64
    /// The address space of the three addresses.
    public var space: Space

    /// Collects the three addresses; they are validated when a queue is configured.
    public init(descriptorTable: UInt64, driverArea: UInt64, deviceArea: UInt64, space: Space = .guestPhysical) {
        self.descriptorTable = descriptorTable
        self.driverArea = driverArea
        self.deviceArea = deviceArea
        self.space = space
    }

    /// Translates one ring part, checking alignment and that all `length` bytes are in one region.
    func translate(
        _ part: RingPart, in memory: GuestMemory, alignment: UInt64,
        length: UInt64
    ) throws(VirtqueueError) -> UnsafeMutableRawPointer {
        let address: UInt64
        switch part {
        case .descriptorTable: address = descriptorTable
        case .driverArea: address = driverArea
        case .deviceArea: address = deviceArea
        }
        guard address & (alignment - 1) == 0 else { throw .misalignedRing(part, address: address) }
        let pointer: UnsafeMutableRawPointer?
        switch space {
        case .guestPhysical: pointer = memory.pointer(guestPhysical: address, length: length)
        case .frontendUser: pointer = memory.pointer(userAddress: address, length: length)
        }
        guard let pointer else { throw .ringOutsideMemory(part, address: address, length: length) }
        // The host pointer keeps the guest address's alignment only if the mapping does; atomics
        // and aligned loads below need it, so check the host side as well.
        guard UInt(bitPattern: pointer) & UInt(alignment - 1) == 0 else {
            throw .misalignedRing(part, address: address)
        }
        return pointer
    }
}
