#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// A backend named in a `VMM_*` environment variable does not exist or is not built for this OS.
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

    public var description: String {
        "\(source)=\(requested): no such backend on this system (available: \(available.joined(separator: ", ")))"
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
    /// - Throws: `BackendSelectionError`.
    public static func named(_ name: String, source: String = "initialiser") throws(BackendSelectionError) -> Self {
        guard let backend = Self(rawValue: name), backend.isAvailable else {
            throw BackendSelectionError(
                source: source, requested: name, available: availableBackends.map(\.rawValue))
        }
        return backend
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
        guard isAvailable else {
            throw BackendSelectionError(
                source: "initialiser", requested: rawValue,
                available: Self.availableBackends.map(\.rawValue))
        }
    }
}
