import VhostUserProtocol
import Virtio
import VMMSysUtil

/// Why a `VhostUserFrontend` (or one of its queues) could not do what was asked.
///
/// Anything a back-end sends that breaks the protocol is `.protocolViolation` (the codec's
/// `ProtocolError`), `.timedOut`, `.requestFailed` or one of the reply-content cases: never a crash.
/// After a transport or reply error the connection is out of step with the back-end, so every later
/// request throws `.connectionUnusable`.
/// Thread-safety: a value type; freely shareable.
public enum FrontendError: Error, Hashable, Sendable, CustomStringConvertible {
    /// Sending or receiving failed (`.peerClosed` when the back-end went away).
    case socket(ScmSocketError)
    /// A reply broke a protocol rule: wrong flags, size, request code, fd count, ...
    case protocolViolation(ProtocolError)
    /// No (complete) reply to `request` arrived within the frontend's timeout.
    case timedOut(FrontendRequest)
    /// The back-end answered `request` (sent with NEED_REPLY) with a non-zero REPLY_ACK status.
    case requestFailed(FrontendRequest, status: UInt64)
    /// A `GET_VRING_BASE` reply named another ring.
    case vringStateMismatch(expectedIndex: UInt32, receivedIndex: UInt32)
    /// A `GET_CONFIG` reply had another offset than requested.
    case configOffsetMismatch(expected: UInt32, received: UInt32)
    /// A `GET_INFLIGHT_FD` reply describes no buffer, or one this process cannot map.
    case invalidInflightBuffer(InflightDescription)
    /// An earlier failure (or `disconnect()`) left the connection unusable.
    case connectionUnusable
    /// The request needs a protocol feature that was not negotiated.
    case notNegotiated(ProtocolFeatures)
    /// `negotiate` has not run yet (or ran already, for a second `negotiate`).
    case negotiationState(negotiated: Bool)
    /// With `STATUS` negotiated, the back-end cleared FEATURES_OK after `SET_FEATURES`.
    case featuresRejected(status: VirtioDeviceStatus)
    /// The back-end supports fewer queues (`GET_QUEUE_NUM`) than the index asked for.
    case queueIndexOutOfRange(index: Int, queueCount: Int)
    /// The queue index is already started.
    case queueAlreadyStarted(Int)
    /// `reconnect`: the new back-end acked other features than the old one, so the rings in
    /// memory cannot be resumed.
    case featuresChanged(before: VirtioFeatures, after: VirtioFeatures)
    /// `reconnect`: a packed ring can only be resumed once every posted chain was reaped.
    case packedRingBusy(index: Int)
    /// No guest memory: `setMemory` was not called (rings need it) or was given no region.
    case noGuestMemory
    /// More memory regions than one `SET_MEM_TABLE` or the back-end's slots allow.
    case tooManyRegions(count: Int, limit: Int)
    /// The guest memory table is invalid (overlap, empty region, ...).
    case guestMemory(GuestMemoryError)
    /// The ring cannot be placed there, or posting/reaping failed.
    case driverQueue(DriverQueueError)
    /// Mapping the inflight buffer failed.
    case mapping(MappingError)
    /// A notifier backend named by the environment is unknown or unavailable.
    case backendSelection(BackendSelectionError)
    /// A system call failed (creating, signalling or waiting on a notifier, polling).
    case system(SystemCallError)

    public var description: String {
        switch self {
        case .socket(let error): "vhost-user socket: \(error)"
        case .protocolViolation(let error): "back-end broke the protocol: \(error)"
        case .timedOut(let request): "no reply to \(request) in time"
        case .requestFailed(let request, let status): "back-end refused \(request) (status \(status))"
        case .vringStateMismatch(let expected, let received):
            "GET_VRING_BASE for ring \(expected) answered for ring \(received)"
        case .configOffsetMismatch(let expected, let received):
            "GET_CONFIG at offset \(expected) answered with offset \(received)"
        case .invalidInflightBuffer(let description):
            "unusable inflight buffer: size \(description.mmapSize), offset \(description.mmapOffset)"
        case .connectionUnusable: "the connection is unusable after an earlier failure or disconnect"
        case .notNegotiated(let features): "protocol feature 0x\(String(features.rawValue, radix: 16)) not negotiated"
        case .negotiationState(let negotiated):
            negotiated ? "features were negotiated already" : "negotiate features first"
        case .featuresRejected(let status): "back-end rejected the features (status \(status))"
        case .queueIndexOutOfRange(let index, let count): "queue \(index) out of range: back-end has \(count)"
        case .queueAlreadyStarted(let index): "queue \(index) is already started"
        case .featuresChanged(let before, let after):
            "the new back-end acked features 0x\(String(after.rawValue, radix: 16)), "
                + "not 0x\(String(before.rawValue, radix: 16)) as before"
        case .packedRingBusy(let index): "packed queue \(index) has chains in flight; reap them before reconnecting"
        case .noGuestMemory: "no guest memory shared (setMemory not called, or given no region)"
        case .tooManyRegions(let count, let limit): "\(count) memory regions, at most \(limit) allowed"
        case .guestMemory(let error): error.description
        case .driverQueue(let error): error.description
        case .mapping(let error): error.description
        case .backendSelection(let error): error.description
        case .system(let error): error.description
        }
    }
}

/// Converts the errors of `EventNotifier.init` into `FrontendError`.
func frontendError(_ error: PrimitiveCreationError) -> FrontendError {
    switch error {
    case .system(let error): return .system(error)
    case .backend(let error): return .backendSelection(error)
    }
}
