/// Back-end → front-end request codes, sent on the back-end channel (vhost-user table 2.2, 1-8).
///
/// The proposed `SHMEM_MAP/UNMAP` (9/10) and `MEM_READ/WRITE` (11/12) are not listed; they decode
/// to `ProtocolError.unknownRequest`.
/// Thread-safety: a value type; freely shareable.
public enum BackendRequest: UInt32, CaseIterable, Hashable, Sendable, CustomStringConvertible {
    /// Reports an IOTLB miss or access failure (IOTLB message).
    case iotlbMessage = 1
    /// Config space changed; the front-end re-reads it.
    case configChange = 2
    /// Maps (or, without fd, removes) a ring's host notifier (vring area).
    case vringHostNotifier = 3
    /// In-band used-buffer notification (vring state).
    case vringCall = 4
    /// In-band ring error (vring state).
    case vringErr = 5
    /// Registers as exporter of a UUID (shared object).
    case sharedObjectAdd = 6
    /// Unregisters a UUID (shared object).
    case sharedObjectRemove = 7
    /// Imports an object by UUID (shared object; reply: `u64` + fd).
    case sharedObjectLookup = 8

    /// The name used by the vhost-user document, without the `VHOST_USER_` prefix.
    public var description: String {
        switch self {
        case .iotlbMessage: "BACKEND_IOTLB_MSG"
        case .configChange: "BACKEND_CONFIG_CHANGE_MSG"
        case .vringHostNotifier: "BACKEND_VRING_HOST_NOTIFIER_MSG"
        case .vringCall: "BACKEND_VRING_CALL"
        case .vringErr: "BACKEND_VRING_ERR"
        case .sharedObjectAdd: "BACKEND_SHARED_OBJECT_ADD"
        case .sharedObjectRemove: "BACKEND_SHARED_OBJECT_REMOVE"
        case .sharedObjectLookup: "BACKEND_SHARED_OBJECT_LOOKUP"
        }
    }

    /// The request payload sizes allowed (the vhost-user specification's "Back-end message types").
    var requestShape: PayloadShape {
        switch self {
        case .iotlbMessage: .fixed(IOTLBMessage.wireSize)
        case .configChange: .empty
        case .vringHostNotifier: .fixed(VringArea.wireSize)
        case .vringCall, .vringErr: .fixed(VringState.wireSize)
        case .sharedObjectAdd, .sharedObjectRemove, .sharedObjectLookup: .fixed(SharedObject.wireSize)
        }
    }

    /// Every front-end reply on the back-end channel is a `u64` (an ack, or the lookup result).
    var replyLimit: Int { 8 }
}
