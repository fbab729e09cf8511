import Virtio

/// A ring's record in the INFLIGHT_SHMFD region, in the layout of the ring: split or packed.
/// Non-copyable for the same reason as `DeviceRing`: one writer, and updates move the record out
/// and back in instead of copying its tables.
///
/// Thread-safety: owned by the ring's `VhostUserQueue` (its worker thread).
enum InflightTracker: ~Copyable {
    /// The front-end set no inflight region.
    case none
    case split(InflightSplitQueue)
    case packed(InflightPackedQueue)

    var isNone: Bool {
        switch self {
        case .none: true
        default: false
        }
    }

    /// Runs `split` or `packed` on the record in place; returns `otherwise` when there is none.
    @inline(__always)
    mutating func apply<R>(
        otherwise: R, _ split: (inout InflightSplitQueue) -> R, _ packed: (inout InflightPackedQueue) -> R
    ) -> R {
        switch consume self {
        case .none:
            self = .none
            return otherwise
        case .split(var record):
            let result = split(&record)
            self = .split(record)
            return result
        case .packed(var record):
            let result = packed(&record)
            self = .packed(record)
            return result
        }
    }
}
