import VirtioNet

/// The net device's own command-line options (after the common vhost-user ones).
///
/// Thread-safety: a value type.
struct NetOptions {
    enum PortKind: Equatable {
        case tap(String)
        case switchPorts
        case sink
        case source
    }

    var port: PortKind?
    var mac: MacAddress?
    var queuePairs = 1
    var queueSize = 1024
    var frameLength = 64
    var switchQueue = 256

    static let usage = """
          --tap=NAME             forward to the host TAP interface NAME (created if needed; Linux:
                                 vnet headers and offloads, one TAP queue per queue pair)
          --switch               a learning switch between the sockets: repeat --socket-path, one port each
          --sink                 drop every frame the driver sends (benchmark, like testpmd rxonly)
          --source               fill every receive buffer with a generated frame (benchmark, like testpmd txonly)
          --mac=ADDRESS          the device's MAC (default: a stable locally administered address per socket)
          --queue-pairs=N        receive/transmit queue pairs, 1...64 (default 1; not with --switch)
          --queue-size=N         largest queue size, a power of two 64...32768 (default 1024)
          --frame-size=N         --source frame length in bytes, 60...1514 (default 64)
          --switch-queue=N       --switch: frames queued per port before drops, 16...65536 (default 256)
        """

    /// Parses `arguments` (`--name VALUE` or `--name=VALUE`).
    ///
    /// - Throws: `NetOptionsError` for an unknown option, a missing or invalid value, or not
    ///   exactly one of --tap, --switch, --sink, --source.
    static func parse(_ arguments: [String]) throws(NetOptionsError) -> NetOptions {
        var options = NetOptions()
        var index = 0
        func value(_ name: String, _ argument: String) throws(NetOptionsError) -> String {
            if let equals = argument.firstIndex(of: "=") { return String(argument[argument.index(after: equals)...]) }
            index += 1
            guard index < arguments.count else { throw NetOptionsError("\(name) needs a value") }
            return arguments[index]
        }
        func number(_ name: String, _ argument: String, _ range: ClosedRange<Int>) throws(NetOptionsError) -> Int {
            let text = try value(name, argument)
            guard let n = Int(text), range.contains(n) else {
                throw NetOptionsError("\(name): '\(text)' is not a number in \(range.lowerBound)...\(range.upperBound)")
            }
            return n
        }
        func setPort(_ kind: PortKind) throws(NetOptionsError) {
            guard options.port == nil else { throw NetOptionsError("give one of --tap, --switch, --sink, --source") }
            options.port = kind
        }
        while index < arguments.count {
            let argument = arguments[index]
            let name = argument.split(separator: "=", maxSplits: 1).first.map(String.init) ?? argument
            switch name {
            case "--tap": try setPort(.tap(try value(name, argument)))
            case "--switch": try setPort(.switchPorts)
            case "--sink": try setPort(.sink)
            case "--source": try setPort(.source)
            case "--mac":
                let text = try value(name, argument)
                guard let mac = MacAddress(text), !mac.isMulticast else {
                    throw NetOptionsError("--mac: '\(text)' is not a unicast MAC address")
                }
                options.mac = mac
            case "--queue-pairs": options.queuePairs = try number(name, argument, 1...64)
            case "--queue-size":
                options.queueSize = try number(name, argument, 64...32768)
                guard options.queueSize & (options.queueSize - 1) == 0 else {
                    throw NetOptionsError("--queue-size: \(options.queueSize) is not a power of two")
                }
            case "--frame-size": options.frameLength = try number(name, argument, 60...1514)
            case "--switch-queue": options.switchQueue = try number(name, argument, 16...65536)
            default: throw NetOptionsError("unknown option '\(argument)' (see --help)")
            }
            index += 1
        }
        guard options.port != nil else { throw NetOptionsError("give one of --tap, --switch, --sink, --source") }
        if options.port == .switchPorts && options.queuePairs != 1 {
            throw NetOptionsError("--switch ports have one queue pair")
        }
        return options
    }
}

/// A bad net-device command line.
struct NetOptionsError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
