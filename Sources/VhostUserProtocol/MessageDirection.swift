/// Which kind of message a receiver expects, which fixes the request number space (front-end or
/// back-end requests) and whether the REPLY flag must be clear or set.
///
/// Thread-safety: a value type; freely shareable.
public enum MessageDirection: Hashable, Sendable, CustomStringConvertible {
    /// A front-end request on the main socket, as a back-end receives it. REPLY must be clear.
    case frontendRequest
    /// A back-end's reply to a front-end request, as a front-end receives it. Flags must be 0x5.
    case backendReply
    /// A back-end request on the back-end channel (`SET_BACKEND_REQ_FD`), as a front-end receives it.
    case backendRequest
    /// A front-end's reply to a back-end request, as a back-end receives it. Flags must be 0x5.
    case frontendReply

    /// Whether messages in this direction are replies.
    public var isReply: Bool {
        switch self {
        case .frontendRequest, .backendRequest: false
        case .backendReply, .frontendReply: true
        }
    }

    /// Whether the request codes of this direction are front-end request codes (table 2.1).
    public var usesFrontendCodes: Bool {
        switch self {
        case .frontendRequest, .backendReply: true
        case .backendRequest, .frontendReply: false
        }
    }

    public var description: String {
        switch self {
        case .frontendRequest: "front-end request"
        case .backendReply: "back-end reply"
        case .backendRequest: "back-end request"
        case .frontendReply: "front-end reply"
        }
    }
}
