import Logging
import VhostUserBackend
import VirtioNet

// vhost-user-net: a virtio-net back-end whose frames go to a TAP interface, a built-in learning
// switch between its sockets, or a benchmark sink/source (QEMU's back-end program conventions).
VhostUserDaemon.main(name: "vhost-user-net", deviceType: .network, deviceUsage: NetOptions.usage) { arguments in
    let options = try NetOptions.parse(arguments.remaining)
    let logger = Logger(label: "vhost-user-net")
    let sockets = arguments.socketPaths.isEmpty ? ["fd:\(arguments.fd ?? -1)"] : arguments.socketPaths
    func mac(_ socket: String) -> MacAddress { options.mac ?? MacAddress.stable(seed: socket) }
    func device(_ port: any NetPort, _ socket: String) -> NetDevice {
        NetDevice(port: port, mac: mac(socket), pairs: options.queuePairs, maxQueueSize: options.queueSize, logger: logger)
    }
    switch options.port {
    case .switchPorts:
        guard sockets.count >= 2 else { throw NetOptionsError("--switch needs at least two --socket-path") }
        let fabric = try SwitchFabric(ports: sockets.count, queueCapacity: options.switchQueue)
        // Each port's default MAC differs (its socket path); --mac would give every port the same.
        guard options.mac == nil else { throw NetOptionsError("--mac does not apply to --switch ports") }
        let devices = sockets.enumerated().map { device(SwitchPort(fabric: fabric, index: $0), $1) }
        fabric.counters = devices.map(\.counters)
        return devices
    case .tap(let name):
        guard sockets.count == 1 else { throw NetOptionsError("one --socket-path (repeat it only with --switch)") }
        return [device(try TapPort(name: name, pairs: options.queuePairs, logger: logger), sockets[0])]
    case .sink:
        guard sockets.count == 1 else { throw NetOptionsError("one --socket-path (repeat it only with --switch)") }
        return [device(SinkPort(maxFrameLength: SwitchFabric.maxFrameLength), sockets[0])]
    case .source, nil:
        guard sockets.count == 1 else { throw NetOptionsError("one --socket-path (repeat it only with --switch)") }
        return [device(SourcePort(frameLength: options.frameLength, destination: mac(sockets[0]),
                                  maxFrameLength: SwitchFabric.maxFrameLength), sockets[0])]
    }
}
