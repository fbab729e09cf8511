import ArgumentParser
import VhostUserDaemon

/// vhost-user-console: a virtio-console back-end whose host side is a Unix socket.
///
///     vhost-user-console --socket-path VHOST.sock --host-socket HOST.sock
///
/// Connect to HOST.sock (e.g. `socat - UNIX-CONNECT:HOST.sock`) to talk to the guest's hvc0.
@main
struct ConsoleDaemon: VhostUserDaemonCommand {
    static let configuration = CommandConfiguration(
        commandName: "vhost-user-console",
        abstract: "A virtio-console vhost-user back-end whose host side is a Unix socket.",
        version: vhostUserPackageVersion)

    @OptionGroup var daemon: VhostUserDaemonOptions

    @Option(name: .long, help: "Unix socket the host client connects to (mode 0600).")
    var hostSocket: String

    func makeDevice() throws -> ConsoleDevice { try ConsoleDevice(hostSocket: hostSocket) }
}
