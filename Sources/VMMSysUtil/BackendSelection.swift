#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// A backend named in a `VMM_*` environment variable (or passed to an initialiser) is not a
/// backend of that primitive at all, or is one this OS lacks.
///
/// Thrown instead of silently falling back, so a test matrix or a user's override can never be
/// quietly ignored. Thread-safety: a value type.
public struct BackendSelectionError: Error, Hashable, Sendable, CustomStringConvertible {
    /// The environment variable (or `"initialiser"` for an explicit choice).
    public let source: String
    /// The value that was asked for.
    public let requested: String
    /// The backends this build can use, in the order of preference.
    public let available: [String]
    /// Every backend name the primitive knows, available here or not.
    public let known: [String]

    /// Whether `requested` is a known backend name (then this OS lacks it) rather than a typo.
    public var isKnown: Bool { known.contains(requested) }

    public init(source: String, requested: String, available: [String], known: [String]) {
        self.source = source
        self.requested = requested
        self.available = available
        self.known = known
    }

    public var description: String {
        let availableHere = "available here: \(available.joined(separator: ", "))"
        if isKnown {
            return "\(source)=\(requested): this system lacks the \(requested) backend (\(availableHere))"
        }
        return
            "\(source)=\(requested): unknown backend name (known: \(known.joined(separator: ", ")); \(availableHere))"
    }
}

/// A primitive's backend enum: named in an environment variable, some members unavailable per OS.
public protocol SelectableBackend: RawRepresentable, CaseIterable, Sendable, Hashable
where RawValue == String {
    /// The variable that sets the process-wide default, e.g. `VMM_POLLER`.
    static var environmentVariable: String { get }
    /// The preferred backend on this OS when the variable is unset.
    static var native: Self { get }
    /// Whether this build of the package can use the backend on this OS.
    var isAvailable: Bool { get }
}

extension SelectableBackend {
    /// The backends this build can use.
    public static var availableBackends: [Self] { allCases.filter(\.isAvailable) }

    /// Parses a backend name, refusing unknown or unavailable ones.
    ///
    /// - Throws: `BackendSelectionError` (its `isKnown` tells the two apart).
    public static func named(_ name: String, source: String = "initialiser") throws(BackendSelectionError) -> Self {
        guard let backend = Self(rawValue: name), backend.isAvailable else {
            throw selectionError(source: source, requested: name)
        }
        return backend
    }

    /// The error for `requested`, listing the known and the available backends.
    static func selectionError(source: String, requested: String) -> BackendSelectionError {
        BackendSelectionError(
            source: source, requested: requested, available: availableBackends.map(\.rawValue),
            known: allCases.map(\.rawValue))
    }

    /// The backend the environment variable names, or `native` when it is unset or empty.
    ///
    /// Reads the environment on every call; callers cache it (see each primitive's `default`).
    /// - Throws: `BackendSelectionError` for an unknown or unavailable name.
    public static func fromEnvironment() throws(BackendSelectionError) -> Self {
        guard let raw = getenv(environmentVariable), raw.pointee != 0 else { return native }
        return try named(String(cString: raw), source: environmentVariable)
    }

    /// Throws unless this backend is available here.
    ///
    /// - Throws: `BackendSelectionError`.
    public func checkAvailable() throws(BackendSelectionError) {
        guard isAvailable else { throw Self.selectionError(source: "initialiser", requested: rawValue) }
    }
}
