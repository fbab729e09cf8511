/// A back-end → front-end request with its typed payload (the vhost-user specification's
/// "Back-end message types"), without fds.
///
/// `BackendChannelMessage` pairs it with the fds that arrived on the back-end channel.
/// Thread-safety: a value type; freely shareable.
public enum BackendMessage: Hashable, Sendable {
    /// Reports an IOTLB miss or access failure (IOTLB message).
    case iotlbMessage(IOTLBMessage)
    /// Config space changed; the front-end re-reads it.
    case configChange
    /// Maps or removes a ring's host notifier.
    /// Carries one fd unless `file.hasFile` is false (which removes the notifier).
    case vringHostNotifier(VringArea)
    /// In-band used-buffer notification (vring state).
    case vringCall(VringState)
    /// In-band ring error (vring state).
    case vringErr(VringState)
    /// Registers as exporter of a UUID (shared object).
    case sharedObjectAdd(SharedObject)
    /// Unregisters a UUID (shared object).
    case sharedObjectRemove(SharedObject)
    /// Imports an object by UUID (shared object; reply: `u64` + fd).
    case sharedObjectLookup(SharedObject)

    /// The request code.
    public var request: BackendRequest {
        switch self {
        case .iotlbMessage: .iotlbMessage
        case .configChange: .configChange
        case .vringHostNotifier: .vringHostNotifier
        case .vringCall: .vringCall
        case .vringErr: .vringErr
        case .sharedObjectAdd: .sharedObjectAdd
        case .sharedObjectRemove: .sharedObjectRemove
        case .sharedObjectLookup: .sharedObjectLookup
        }
    }

    /// How many fds travel with this request.
    public var descriptorCount: Int {
        switch self {
        case .vringHostNotifier(let area): area.file.hasFile ? 1 : 0
        default: 0
        }
    }

    /// Decodes the payload of a back-end request whose header already passed validation.
    static func decode(_ request: BackendRequest, payload: UnsafeRawBufferPointer) throws(ProtocolError) -> Self {
        let any = AnyRequest.backend(request)
        switch request {
        case .iotlbMessage: return .iotlbMessage(try IOTLBMessage(decoding: payload, for: any))
        case .configChange:
            try requirePayloadSize(payload, 0, any)
            return .configChange
        case .vringHostNotifier: return .vringHostNotifier(try VringArea(decoding: payload, for: any))
        case .vringCall: return .vringCall(try VringState(decoding: payload, for: any))
        case .vringErr: return .vringErr(try VringState(decoding: payload, for: any))
        case .sharedObjectAdd: return .sharedObjectAdd(try SharedObject(decoding: payload, for: any))
        case .sharedObjectRemove: return .sharedObjectRemove(try SharedObject(decoding: payload, for: any))
        case .sharedObjectLookup: return .sharedObjectLookup(try SharedObject(decoding: payload, for: any))
        }
    }

    /// Appends the payload bytes (not the header) to `buffer`.
    func encodePayload(into buffer: inout [UInt8]) {
        switch self {
        case .configChange: break
        case .iotlbMessage(let message): message.encode(into: &buffer)
        case .vringHostNotifier(let area): area.encode(into: &buffer)
        case .vringCall(let state), .vringErr(let state): state.encode(into: &buffer)
        case .sharedObjectAdd(let object), .sharedObjectRemove(let object), .sharedObjectLookup(let object):
            object.encode(into: &buffer)
        }
    }
}
