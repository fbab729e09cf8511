#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import ArgumentParser
import Logging
import VhostUserBackend
import Virtio

/// A device whose virtio type is known before it is made, as `--print-capabilities` needs (it
/// answers without building the device). Declaring `static var virtioDeviceType` is enough: the
/// instance `deviceType` that `VhostUserDevice` asks for defaults to it, so the type is said once.
///
/// Thread-safety: as `VhostUserDevice`.
public protocol VhostUserDaemonDevice: VhostUserDevice {
    /// The device type this program serves.
    static var virtioDeviceType: VirtioDeviceType { get }
}

extension VhostUserDaemonDevice {
    /// `Self.virtioDeviceType`.
    public var deviceType: VirtioDeviceType { Self.virtioDeviceType }
}

/// A vhost-user back-end program: swift-argument-parser parses the common options
/// (`VhostUserDaemonOptions`) and the device's own; `run()` builds the device and serves
/// front-ends until SIGTERM or SIGINT. A program is a type with `@main`:
///
/// ```swift
/// @main
/// struct EntropyDaemon: VhostUserDaemonCommand {
///     static let configuration = CommandConfiguration(commandName: "vhost-user-rng",
///                                                     version: vhostUserPackageVersion)
///     @OptionGroup var daemon: VhostUserDaemonOptions
///     func makeDevice() throws -> EntropyDevice { EntropyDevice() }
/// }
/// ```
///
/// What every program then does:
/// - `--help`, `--version`, shell completions (`--generate-completion-script`), errors that name
///   the bad option (exit status 64), from swift-argument-parser.
/// - `--print-capabilities`: the JSON of `capabilities`, exit 0, every other argument ignored.
/// - `--socket-path PATH`: listens (mode 0600) until stopped; `--fd N`: serves an inherited
///   listening socket until stopped, or an inherited connected one until it ends.
/// - SIGTERM or SIGINT: the session is closed (workers joined, memory unmapped), the socket file
///   removed, exit status 0, in both modes. A second signal exits at once.
/// - Setup failures (bad image, socket in use): a message and exit status 1.
///
/// Thread-safety: `main()` is called once, from the main thread.
public protocol VhostUserDaemonCommand: ParsableCommand {
    associatedtype Device: VhostUserDaemonDevice

    /// The common options (declare as `@OptionGroup var daemon: VhostUserDaemonOptions`).
    var daemon: VhostUserDaemonOptions { get }

    /// The optional features `--print-capabilities` lists (default: none).
    static var capabilityFeatures: [String] { get }

    /// Session tuning (default `.daemon`: no more worker threads than usable CPUs).
    var sessionOptions: VhostUserSessionOptions { get }

    /// Builds the device from the parsed options; throw to exit 1 with the error's description.
    func makeDevice() throws -> Device

    /// The devices to serve, one per `--socket-path` in order (or one for `--fd`). Default:
    /// `[makeDevice()]`, so a repeated `--socket-path` is refused. A program whose device is a set
    /// of ports (a switch) returns one per socket; each is served on its own thread.
    func makeDevices() throws -> [Device]
}

extension VhostUserDaemonCommand {
    public static var capabilityFeatures: [String] { [] }

    public var sessionOptions: VhostUserSessionOptions { .daemon }

    public func makeDevices() throws -> [Device] { [try makeDevice()] }

    /// What `--print-capabilities` prints.
    public static var capabilities: VhostUserCapabilities {
        VhostUserCapabilities(deviceType: Device.virtioDeviceType, features: capabilityFeatures)
    }

    /// The program's name for messages and logs.
    static var programName: String {
        configuration.commandName ?? "vhost-user"
    }

    /// Answers `--print-capabilities` (ignoring every other argument, as QEMU's conventions ask),
    /// otherwise parses the command line and runs; exits with the status described on the protocol.
    public static func main() {
        main(arguments: Array(CommandLine.arguments.dropFirst()))
    }

    /// `main()` with explicit arguments (without the program name).
    public static func main(arguments: [String]) -> Never {
        if VhostUserDaemonOptions.asksForCapabilities(arguments) {
            do {
                print(try capabilities.json())
                Self.exit()
            } catch {
                exit(withError: error)
            }
        }
        do {
            var command = try parseAsRoot(arguments)
            try command.run()
            Self.exit()
        } catch {
            exit(withError: error)
        }
    }

    /// Builds the device and serves front-ends (see the protocol's description).
    ///
    /// - Throws: `VhostUserDaemonError` (exit status 1), or what `makeDevice` throws.
    public func run() throws {
        let name = Self.programName
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = getenv("VHOST_USER_LOG").flatMap { Logger.Level(rawValue: String(cString: $0)) } ?? .info
            return handler
        }
        // Notifying a pipe whose reader (the front-end) is gone must be an error, not a signal.
        signal(SIGPIPE, SIG_IGN)
        // Before any thread exists, so every thread inherits the mask and the signals reach only
        // the thread that waits for them.
        let termination = TerminationSignals.block()
        let devices = try makeDevices()
        let sockets = max(1, daemon.socketPaths.count)
        guard devices.count == sockets else {
            throw ValidationError(
                "--socket-path given \(daemon.socketPaths.count) times for \(devices.count) device(s)")
        }
        var options = sessionOptions
        options.pollTime = .microseconds(daemon.pollMicroseconds)
        let servers = devices.map {
            VhostUserServer(device: $0, options: options, peerTimeout: daemon.peerTimeout, logger: Logger(label: name))
        }
        try termination.stopOnSignal(servers)
        try DaemonServing.serve(servers, daemon)
    }
}
