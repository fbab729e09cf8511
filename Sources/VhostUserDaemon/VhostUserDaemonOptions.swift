#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import ArgumentParser
import VhostUserBackend

/// The options every vhost-user back-end program takes, with the names of QEMU's "vhost-user
/// back-end program conventions" (vhost-user specification, "Backend program conventions"):
/// `--socket-path PATH`, `--fd N`, `--print-capabilities`, plus `--allow-uid UID` and
/// `--peer-timeout-ms MS`. Every option takes `--name VALUE` and `--name=VALUE`.
///
/// A program includes it with `@OptionGroup var daemon: VhostUserDaemonOptions` (see
/// `VhostUserDaemonCommand`), beside its device's own options.
///
/// Thread-safety: a value type.
public struct VhostUserDaemonOptions: ParsableArguments, Sendable {
    /// UNIX sockets to create and listen on (mode 0600): one, unless the program's device is a set
    /// of ports (`VhostUserDaemonCommand.makeDevices`, e.g. a switch), one per socket.
    @Option(
        name: .customLong("socket-path"),
        help: ArgumentHelp(
            "Listen on a new UNIX socket at <path> (mode 0600); repeatable only where each socket is a port.",
            valueName: "path"))
    public var socketPaths: [String] = []

    /// The socket to listen on (the last `--socket-path`), or nil with `--fd`.
    public var socketPath: String? { socketPaths.last }

    /// Poll mode: after serving its rings a worker keeps polling them (notifications off) for
    /// this many microseconds before it sleeps on kicks again (`VhostUserSessionOptions.pollTime`).
    @Option(
        name: .customLong("poll-us"),
        help: ArgumentHelp(
            "Keep polling the rings for <us> microseconds after each burst before sleeping on kicks (0: never poll; large: poll like a DPDK PMD).",
            valueName: "us"))
    public var pollMicroseconds = 0

    /// An inherited socket: listening (then accepted on) or connected (then served once).
    @Option(
        help: ArgumentHelp(
            "Serve inherited socket <n>: a listening one is accepted on, a connected one served once.",
            valueName: "n"))
    public var fd: Int32?

    /// Only front-ends running as one of these users are served; any other peer is disconnected
    /// (its uid from `getpeereid`) before a byte is read. Empty: no uid check (the socket's 0600
    /// mode still limits who can connect to its owner and root).
    @Option(
        name: .customLong("allow-uid"),
        help: ArgumentHelp(
            "Serve only front-ends running as <uid> (repeatable; default: any peer that can open the socket).",
            valueName: "uid"))
    public var allowedUIDs: [uid_t] = []

    /// How long a front-end may take to finish a message it began, or to read a reply, before it
    /// is disconnected.
    @Option(
        name: .customLong("peer-timeout-ms"),
        help: ArgumentHelp(
            "Disconnect a front-end that stops mid-message, or stops reading replies, for <ms> milliseconds.",
            valueName: "ms"))
    public var peerTimeoutMilliseconds: Int = Int(VhostUserServer.defaultPeerTimeout.components.seconds * 1000)

    /// Print the capabilities JSON and exit 0. Per QEMU's conventions every other argument is then
    /// ignored: `VhostUserDaemonCommand.main()` answers it before parsing the rest.
    @Flag(help: "Print the capabilities JSON and exit.")
    public var printCapabilities = false

    public init() {}

    /// The peer timeout as a duration.
    public var peerTimeout: Duration { .milliseconds(peerTimeoutMilliseconds) }

    /// `allowedUIDs` as the listener's filter: nil when no `--allow-uid` was given.
    public var allowedSet: Set<uid_t>? { allowedUIDs.isEmpty ? nil : Set(allowedUIDs) }

    /// The longest accepted `--peer-timeout-ms`: an hour.
    static let peerTimeoutRange = 1...3_600_000

    /// Exactly one of `--socket-path` and `--fd`; a descriptor number and a timeout in range.
    ///
    /// - Throws: `ValidationError` naming the option.
    public mutating func validate() throws {
        if printCapabilities { return }
        if socketPath != nil && fd != nil { throw ValidationError("--socket-path and --fd exclude each other") }
        guard (0...10_000_000).contains(pollMicroseconds) else {
            throw ValidationError("--poll-us: \(pollMicroseconds) is not in 0...10000000")
        }
        if socketPath == nil && fd == nil { throw ValidationError("--socket-path or --fd is required") }
        if let fd, fd < 0 { throw ValidationError("--fd: '\(fd)' is not a descriptor number") }
        guard Self.peerTimeoutRange.contains(peerTimeoutMilliseconds) else {
            throw ValidationError("--peer-timeout-ms: \(peerTimeoutMilliseconds) is not in 1...3600000")
        }
    }

    /// Whether `arguments` ask for the capabilities (before a `--` that ends the options).
    static func asksForCapabilities(_ arguments: [String]) -> Bool {
        arguments.prefix { $0 != "--" }.contains("--print-capabilities")
    }
}
