import ArgumentParser
import Logging
import VhostUserDaemon
import VirtioNet

/// vhost-user-net: a virtio-net back-end whose frames go to a TAP interface, a built-in learning
/// switch between its sockets, or a benchmark sink/source (QEMU's back-end program conventions).
@main
struct NetDaemon: VhostUserDaemonCommand {
    static let configuration = CommandConfiguration(
        commandName: "vhost-user-net",
        abstract: "A virtio-net vhost-user back-end: TAP interface, learning switch, or benchmark sink/source.",
        version: vhostUserPackageVersion)

    @OptionGroup var daemon: VhostUserDaemonOptions
    @OptionGroup(title: "Net device options") var net: NetOptions

    /// The socket names, for default MAC addresses (one per port).
    private var sockets: [String] { daemon.socketPaths.isEmpty ? ["fd:\(daemon.fd ?? -1)"] : daemon.socketPaths }

    private func device(_ port: any NetPort, socket: String) -> NetDevice {
        NetDevice(
            port: port, mac: net.macAddress ?? MacAddress.stable(seed: socket), pairs: net.queuePairs,
            maxQueueSize: net.queueSize, logger: Logger(label: "vhost-user-net"))
    }

    func makeDevice() throws -> NetDevice {
        guard sockets.count == 1 else { throw ValidationError("repeat --socket-path only with --switch") }
        let socket = sockets[0]
        if let name = net.tap {
            return device(
                try TapPort(name: name, pairs: net.queuePairs, logger: Logger(label: "vhost-user-net")), socket: socket)
        }
        if net.sink { return device(SinkPort(maxFrameLength: SwitchFabric.maxFrameLength), socket: socket) }
        let mac = net.macAddress ?? MacAddress.stable(seed: socket)
        return device(
            SourcePort(frameLength: net.frameLength, destination: mac, maxFrameLength: SwitchFabric.maxFrameLength),
            socket: socket)
    }

    /// `--switch`: one device per socket, all ports of one fabric; otherwise the one device.
    func makeDevices() throws -> [NetDevice] {
        guard net.switchPorts else { return [try makeDevice()] }
        guard sockets.count >= 2 else { throw ValidationError("--switch needs at least two --socket-path") }
        let fabric = try SwitchFabric(ports: sockets.count, queueCapacity: net.switchQueue)
        let devices = sockets.enumerated().map { device(SwitchPort(fabric: fabric, index: $0), socket: $1) }
        fabric.counters = devices.map(\.counters)
        return devices
    }
}
