/// One buffer a driver puts in a chain: guest-physical address, length and direction.
public struct DriverBuffer: Hashable, Sendable {
    /// Guest-physical address of the first byte.
    public var address: UInt64
    /// Length in bytes.
    public var length: UInt32
    /// Device-writable (the device fills it) rather than device-readable.
    public var isWritable: Bool

    /// Describes a buffer; nothing is validated (tests post invalid ones on purpose).
    public init(address: UInt64, length: UInt32, isWritable: Bool) {
        self.address = address
        self.length = length
        self.isWritable = isWritable
    }
}

/// A completed buffer as the driver sees it in the used ring.
public struct UsedBuffer: Hashable, Sendable {
    /// Split head index or packed buffer id, as returned by `post`.
    public var id: UInt16
    /// Bytes the device reports written.
    public var length: UInt32

    /// A used entry (for comparisons in tests).
    public init(id: UInt16, length: UInt32) {
        self.id = id
        self.length = length
    }
}

extension UsedBuffer {
    /// In-order reaping (VIRTIO 1.2 sections 2.7.9 and 2.8.8), shared by the driver twins: the
    /// buffer `id`, the next one made available, under the used entry `last` that ends its batch.
    /// It is `last` itself when the ids match (the batch ends, `pending` is cleared); otherwise a
    /// skipped buffer, "assumed to have been used (read or written) by the device completely"
    /// (`skippedLength`), and `last` stays `pending` for the next reap.
    static func inOrder(id: UInt16, skippedLength: UInt32, last: UsedBuffer, pending: inout UsedBuffer?) -> UsedBuffer {
        if id == last.id {
            pending = nil
            return last
        }
        pending = last
        return UsedBuffer(id: id, length: skippedLength)
    }
}

/// Why a driver-side queue could not post or reap.
public enum DriverQueueError: Error, Hashable, Sendable, CustomStringConvertible {
    /// An empty chain was posted.
    case emptyChain
    /// Not enough free descriptors (or buffer ids) for the chain.
    case queueFull
    /// The indirect table or a ring part is not inside guest memory.
    case outsideMemory(address: UInt64)
    /// The device completed an id that is not in flight.
    case unknownUsedID(UInt16)
    /// The queue configuration is invalid (see the wrapped error).
    case configuration(VirtqueueError)

    public var description: String {
        switch self {
        case .emptyChain: return "cannot post an empty chain"
        case .queueFull: return "not enough free descriptors"
        case let .outsideMemory(address): return "0x\(String(address, radix: 16)) is not inside guest memory"
        case let .unknownUsedID(id): return "device completed id \(id), which is not in flight"
        case let .configuration(error): return error.description
        }
    }
}
