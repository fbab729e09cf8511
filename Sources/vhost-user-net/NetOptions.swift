import ArgumentParser
import VirtioNet

/// The net device's own command-line options (beside the common vhost-user ones): exactly one
/// port kind, the MAC, queue geometry, and the benchmark and switch knobs.
///
/// Thread-safety: a value type.
struct NetOptions: ParsableArguments {
    @Option(
        help: ArgumentHelp(
            "Forward to the host TAP interface <name> (created if needed; Linux: vnet headers and offloads, one TAP queue per queue pair).",
            valueName: "name"))
    var tap: String?

    @Flag(
        name: .customLong("switch"), help: "A learning switch between the sockets: repeat --socket-path, one port each."
    )
    var switchPorts = false

    @Flag(help: "Drop every frame the driver sends (benchmark, like testpmd rxonly).")
    var sink = false

    @Flag(help: "Fill every receive buffer with a generated frame (benchmark, like testpmd txonly).")
    var source = false

    @Option(
        help: ArgumentHelp(
            "The device's MAC (default: a stable locally administered address per socket).",
            valueName: "address"))
    var mac: String?

    @Option(help: ArgumentHelp("Receive/transmit queue pairs, 1...64 (not with --switch).", valueName: "n"))
    var queuePairs = 1

    @Option(help: ArgumentHelp("Largest queue size, a power of two 64...32768.", valueName: "n"))
    var queueSize = 1024

    @Option(
        name: .customLong("frame-size"),
        help: ArgumentHelp("--source frame length in bytes, 60...1514.", valueName: "n"))
    var frameLength = 64

    @Option(help: ArgumentHelp("--switch: frames queued per port before they are dropped, 16...65536.", valueName: "n"))
    var switchQueue = 256

    /// The parsed `--mac`.
    var macAddress: MacAddress? { mac.flatMap { MacAddress($0) } }

    /// One port kind; every number in its range.
    ///
    /// - Throws: `ValidationError` naming the option.
    mutating func validate() throws {
        let kinds = [tap != nil, switchPorts, sink, source].filter { $0 }.count
        guard kinds == 1 else { throw ValidationError("give exactly one of --tap, --switch, --sink, --source") }
        if let mac {
            guard let address = MacAddress(mac), !address.isMulticast else {
                throw ValidationError("--mac: '\(mac)' is not a unicast MAC address")
            }
            guard !switchPorts else {
                throw ValidationError("--mac does not apply to --switch ports (each has its own)")
            }
        }
        guard (1...64).contains(queuePairs) else {
            throw ValidationError("--queue-pairs: \(queuePairs) is not in 1...64")
        }
        guard !switchPorts || queuePairs == 1 else { throw ValidationError("--switch ports have one queue pair") }
        guard (64...32768).contains(queueSize), queueSize & (queueSize - 1) == 0 else {
            throw ValidationError("--queue-size: \(queueSize) is not a power of two in 64...32768")
        }
        guard (60...1514).contains(frameLength) else {
            throw ValidationError("--frame-size: \(frameLength) is not in 60...1514")
        }
        guard (16...65536).contains(switchQueue) else {
            throw ValidationError("--switch-queue: \(switchQueue) is not in 16...65536")
        }
    }
}
