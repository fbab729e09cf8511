/// A request code from either number space, for error reports.
///
/// Thread-safety: a value type; freely shareable.
public enum AnyRequest: Hashable, Sendable, CustomStringConvertible {
    /// A front-end → back-end request (table 2.1).
    case frontend(FrontendRequest)
    /// A back-end → front-end request (table 2.2).
    case backend(BackendRequest)

    /// The request number on the wire.
    public var code: UInt32 {
        switch self {
        case .frontend(let request): request.rawValue
        case .backend(let request): request.rawValue
        }
    }

    public var description: String {
        switch self {
        case .frontend(let request): request.description
        case .backend(let request): request.description
        }
    }
}
