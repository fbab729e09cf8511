#if canImport(Glibc)
import Virtio
import VhostUserProtocol
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import Logging
import VMMSysUtil

/// The socket files the signal handler removes (a null-terminated array of C strings); written
/// once before the handler is installed.
nonisolated(unsafe) private var terminationSocketPaths: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?

/// The options every vhost-user back-end program takes (QEMU's "vhost-user back-end program
/// conventions"): `--socket-path PATH` (or `=PATH`), `--fd N` (or `=N`), `--print-capabilities`,
/// `--help`. Anything else is left in `remaining` for the device's own options.
///
/// Thread-safety: a value type.
public struct VhostUserDaemonArguments: Sendable {
    /// UNIX socket to create and listen on (mode 0600): the last `--socket-path` given.
    public var socketPath: String? { socketPaths.last }
    /// Every `--socket-path`, in order. More than one only for a program whose device is a set of
    /// ports (a switch: one device per socket).
    public var socketPaths: [String] = []
    /// An inherited socket: listening (then accepted on) or connected (then served once).
    public var fd: Int32?
    /// Print the capabilities JSON and exit 0, ignoring everything else.
    public var printCapabilities = false
    /// Print usage and exit 0.
    public var help = false
    /// `--allow-uid UID` (repeatable): only front-ends running as one of these users are served;
    /// any other peer is disconnected (its uid from `getpeereid`) before a byte is read. Empty:
    /// no uid check (the socket's 0600 mode still limits who can connect to its owner and root).
    public var allowedUIDs: [uid_t] = []
    /// `--poll-us N`: after serving a ring, a worker keeps polling its rings (notifications off)
    /// for up to N microseconds before it sleeps on kicks again. 0 (default): sleep at once.
    public var pollMicroseconds = 0
    /// Arguments not recognised here, in order (with their values), for the device to parse.
    public var remaining: [String] = []

    /// Parses `arguments` (without the program name).
    ///
    /// - Throws: `VhostUserDaemonError.usage` for a missing or malformed value, or when both or
    ///   neither of `--socket-path` and `--fd` are given (unless printing capabilities or help).
    public static func parse(_ arguments: [String]) throws(VhostUserDaemonError) -> VhostUserDaemonArguments {
        var parsed = VhostUserDaemonArguments()
        var index = 0
        func value(_ name: String, _ argument: String) throws(VhostUserDaemonError) -> String {
            if let equals = argument.firstIndex(of: "=") { return String(argument[argument.index(after: equals)...]) }
            index += 1
            guard index < arguments.count else { throw .usage("\(name) needs a value") }
            return arguments[index]
        }
        while index < arguments.count {
            let argument = arguments[index]
            let name = argument.split(separator: "=", maxSplits: 1).first.map(String.init) ?? argument
            switch name {
            case "--socket-path": parsed.socketPaths.append(try value(name, argument))
            case "--poll-us":
                let text = try value(name, argument)
                guard let micros = Int(text), micros >= 0, micros <= 10_000_000 else {
                    throw .usage("--poll-us: '\(text)' is not a number of microseconds in 0...10000000")
                }
                parsed.pollMicroseconds = micros
            case "--fd":
                let text = try value(name, argument)
                guard let fd = Int32(text), fd >= 0 else { throw .usage("--fd: '\(text)' is not a descriptor number") }
                parsed.fd = fd
            case "--allow-uid":
                let text = try value(name, argument)
                guard let uid = uid_t(text) else { throw .usage("--allow-uid: '\(text)' is not a user id") }
                parsed.allowedUIDs.append(uid)
            case "--print-capabilities": parsed.printCapabilities = true
            case "--help", "-h": parsed.help = true
            default: parsed.remaining.append(argument)
            }
            index += 1
        }
        if !parsed.printCapabilities && !parsed.help {
            if parsed.socketPath != nil && parsed.fd != nil { throw .usage("--socket-path and --fd exclude each other") }
            if parsed.socketPath == nil && parsed.fd == nil { throw .usage("--socket-path or --fd is required") }
        }
        return parsed
    }

    /// `allowedUIDs` as the listener's filter: nil when no `--allow-uid` was given.
    var allowedSet: Set<uid_t>? { allowedUIDs.isEmpty ? nil : Set(allowedUIDs) }

    /// Usage lines for the common options, to embed in a program's `--help`.
    public static let usage = """
          --socket-path=PATH     listen on a new UNIX socket at PATH (mode 0600)
          --fd=N                 use inherited socket N (listening: accept; connected: serve it)
          --poll-us=N            keep polling the rings for N microseconds after each burst before
                                 sleeping on kicks (0: never poll; large: poll like a DPDK PMD)
          --allow-uid=UID        serve only front-ends running as UID (repeatable; default: any
                                 peer that can open the socket)
          --print-capabilities   print the capabilities JSON and exit
          -h, --help             show this help
        """
}

/// Why a back-end program cannot start.
///
/// Thread-safety: a value type.
public enum VhostUserDaemonError: Error, Sendable, CustomStringConvertible {
    /// Bad command line.
    case usage(String)
    /// The socket could not be created, adopted or accepted on.
    case socket(String)

    public var description: String {
        switch self {
        case .usage(let text): text
        case .socket(let text): text
        }
    }
}

/// Runs a back-end program: parses the common options, prints help or capabilities, builds the
/// device, and serves front-ends until killed. A program's `main.swift` is a call to `main`.
///
/// Thread-safety: call once, from the main thread.
public enum VhostUserDaemon {
    /// Runs the program and never returns (exits 0 after `--help` / `--print-capabilities`, 1 on a
    /// bad command line or setup failure, with a message on stderr).
    ///
    /// - Parameters:
    ///   - name: the program name for messages.
    ///   - deviceType: its `capabilityTypeName` is the capabilities JSON `type`.
    ///   - capabilityFeatures: the capabilities JSON `features` (e.g. blk: `read-only`, `blk-file`).
    ///   - deviceUsage: extra `--help` lines for the device's options.
    ///   - arguments: the command line without the program name.
    ///   - options: session tuning (default `.daemon`: no more worker threads than usable CPUs).
    ///   - makeDevice: builds the device from the parsed arguments (`remaining` holds its options);
    ///     throw to exit 1 with the error's description.
    public static func main(
        name: String, deviceType: VirtioDeviceType, capabilityFeatures: [String] = [], deviceUsage: String = "",
        arguments: [String] = Array(CommandLine.arguments.dropFirst()), options: VhostUserSessionOptions = .daemon,
        makeDevice: (VhostUserDaemonArguments) throws -> any VhostUserDevice
    ) -> Never {
        main(name: name, deviceType: deviceType, capabilityFeatures: capabilityFeatures, deviceUsage: deviceUsage,
             arguments: arguments, options: options) { arguments in
            guard arguments.socketPaths.count <= 1 else {
                throw VhostUserDaemonError.usage("--socket-path given \(arguments.socketPaths.count) times (one device, one socket)")
            }
            return [try makeDevice(arguments)]
        }
    }

    /// Runs a program serving several devices, one per `--socket-path` (each on its own thread,
    /// one front-end at a time per socket): a switch whose ports are devices. Otherwise as
    /// `main(name:...makeDevice:)`.
    ///
    /// - Parameter makeDevices: builds one device per `arguments.socketPaths` element (one for
    ///   `--fd`), in the same order; a different count exits 1.
    public static func main(
        name: String, deviceType: VirtioDeviceType, capabilityFeatures: [String] = [], deviceUsage: String = "",
        arguments: [String] = Array(CommandLine.arguments.dropFirst()), options: VhostUserSessionOptions = .daemon,
        makeDevices: (VhostUserDaemonArguments) throws -> [any VhostUserDevice]
    ) -> Never {
        let parsed: VhostUserDaemonArguments
        do {
            parsed = try VhostUserDaemonArguments.parse(arguments)
        } catch {
            fail(name, "\(error) (see --help)")
        }
        if parsed.printCapabilities {
            let features = capabilityFeatures.map { "\"\($0)\"" }.joined(separator: ", ")
            print("{\"type\": \"\(deviceType.capabilityTypeName ?? "\(deviceType.rawValue)")\", \"features\": [\(features)]}")
            exit(0)
        }
        if parsed.help {
            print("usage: \(name) (--socket-path=PATH | --fd=N) [options]\n\(VhostUserDaemonArguments.usage)")
            if !deviceUsage.isEmpty { print(deviceUsage) }
            exit(0)
        }
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = getenv("VHOST_USER_LOG").flatMap { Logger.Level(rawValue: String(cString: $0)) } ?? .info
            return handler
        }
        // Notifying a pipe whose reader (the front-end) is gone must be an error, not a signal.
        signal(SIGPIPE, SIG_IGN)
        let devices: [any VhostUserDevice]
        do {
            devices = try makeDevices(parsed)
        } catch {
            fail(name, "\(error)")
        }
        guard devices.count == max(1, parsed.socketPaths.count) else {
            fail(name, "\(devices.count) devices for \(max(1, parsed.socketPaths.count)) sockets")
        }
        var options = options
        options.pollTime = .microseconds(parsed.pollMicroseconds)
        let servers = devices.map { VhostUserServer(device: $0, options: options, logger: Logger(label: name)) }
        do {
            try serve(servers, parsed)
        } catch {
            fail(name, "\(error)")
        }
    }

    /// Serves on the sockets the arguments name: `servers[i]` on `socketPaths[i]` (the last on
    /// this thread, the others on threads of their own), or `servers[0]` on `--fd`.
    static func serve(_ servers: [VhostUserServer], _ arguments: VhostUserDaemonArguments) throws(VhostUserDaemonError) -> Never {
        let server = servers[0]
        if !arguments.socketPaths.isEmpty {
            // Before the sockets exist: whoever sees a socket may stop us at once (SIGTERM),
            // and a signal in between would otherwise meet the inherited disposition.
            removeOnTermination(arguments.socketPaths)
            var listeners: [ScmListener] = []
            for path in arguments.socketPaths {
                do {
                    listeners.append(try ScmListener(path: path, mode: 0o600, allowedUIDs: arguments.allowedSet, backlog: 1))
                } catch {
                    throw .socket("cannot listen on \(path): \(error)")
                }
                server.logger.info("listening on \(path)")
            }
            for (index, listener) in listeners.enumerated().dropLast() {
                let (portServer, path) = (servers[index], arguments.socketPaths[index])
                do {
                    _ = try JoinableThread {
                        do {
                            try portServer.run(listener: listener)
                        } catch {
                            fail(portServer.logger.label, "accept on \(path) failed: \(error)")
                        }
                    }
                } catch {
                    throw .socket("cannot start a thread for \(path): \(error)")
                }
            }
            do {
                try servers[listeners.count - 1].run(listener: listeners[listeners.count - 1])
            } catch {
                throw .socket("accept on \(arguments.socketPaths[listeners.count - 1]) failed: \(error)")
            }
        }
        let fd = arguments.fd ?? -1
        var listening: Int32 = 0
        var length = socklen_t(MemoryLayout<Int32>.size)
        guard getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &length) == 0 else {
            throw .socket("--fd \(fd) is not a socket: \(SystemCallError("getsockopt", .current))")
        }
        if listening != 0 {
            do {
                try server.run(listener: ScmListener(adopting: FileDescriptor(adopting: fd), allowedUIDs: arguments.allowedSet))
            } catch {
                throw .socket("accept on fd \(fd) failed: \(error)")
            }
        }
        let connection = ScmSocket(adopting: FileDescriptor(adopting: fd))
        if let allowed = arguments.allowedSet {
            // A connected --fd is checked like an accepted one, before anything is read.
            let credentials: PeerCredentials
            do {
                credentials = try connection.peerCredentials()
            } catch {
                throw .socket("--fd \(fd): cannot read the peer's credentials: \(error)")
            }
            guard allowed.contains(credentials.uid) else {
                throw .socket("--fd \(fd): peer uid \(credentials.uid) is not allowed (--allow-uid)")
            }
        }
        let reason = server.serve(connection)
        server.logger.info("connection ended: \(reason)")
        exit(0)
    }

    /// On SIGTERM or SIGINT: remove the socket file and exit 0 at once (QEMU's conventions ask for
    /// a prompt, clean exit; the kernel reclaims memory, mappings and fds).
    private static func removeOnTermination(_ paths: [String]) {
        let list = UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>.allocate(capacity: paths.count + 1)
        for (index, path) in paths.enumerated() { list[index] = strdup(path) }
        list[paths.count] = nil
        terminationSocketPaths = list
        let handler: @convention(c) (Int32) -> Void = { _ in
            // Only async-signal-safe calls here.
            if var entry = terminationSocketPaths {
                while let path = entry.pointee {
                    unlink(path)
                    entry += 1
                }
            }
            _exit(0)
        }
        signal(SIGTERM, handler)
        signal(SIGINT, handler)
        // The signal mask is inherited across exec: a parent thread that blocks SIGTERM (seen with
        // a test runner's threads: the daemon then ignored SIGTERM) must not make the program
        // ignore the stop request QEMU's conventions rely on.
        var termination = sigset_t()
        sigemptyset(&termination)
        sigaddset(&termination, SIGTERM)
        sigaddset(&termination, SIGINT)
        pthread_sigmask(SIG_UNBLOCK, &termination, nil)
    }

    private static func fail(_ name: String, _ message: String) -> Never {
        var line = "\(name): \(message)\n"
        // write(2) rather than stderr's FILE: nothing else is buffered there, and no global state.
        line.withUTF8 { bytes in _ = write(2, bytes.baseAddress, bytes.count) }
        exit(1)
    }
}
