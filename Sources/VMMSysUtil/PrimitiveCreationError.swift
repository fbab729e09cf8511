/// Creating an `EventNotifier` or a `Poller` failed.
///
/// Thread-safety: a value type.
public enum PrimitiveCreationError: Error, Hashable, Sendable, CustomStringConvertible {
    /// The backend asked for (or named by `VMM_EVENT_NOTIFIER` / `VMM_POLLER`) is unknown or not
    /// available on this system.
    case backend(BackendSelectionError)
    /// The kernel objects could not be created (e.g. `.tooManyOpenFiles`).
    case system(SystemCallError)

    public var description: String {
        switch self {
        case .backend(let error): return error.description
        case .system(let error): return error.description
        }
    }
}
