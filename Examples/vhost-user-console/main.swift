import VhostUserBackend
import Virtio

// vhost-user-console: a virtio-console back-end whose host side is a Unix socket.
//   vhost-user-console --socket-path=VHOST.sock --host-socket=HOST.sock
// Connect to HOST.sock (e.g. `socat - UNIX-CONNECT:HOST.sock`) to talk to the guest's hvc0.
VhostUserDaemon.main(name: "vhost-user-console", deviceType: .console,
                     deviceUsage: "  --host-socket=PATH   Unix socket the host client connects to (required)") { arguments in
    var hostSocket: String?
    for argument in arguments.remaining {
        if argument.hasPrefix("--host-socket=") { hostSocket = String(argument.dropFirst("--host-socket=".count)) }
    }
    guard let hostSocket else { throw ConsoleOptionError.missingHostSocket }
    return try ConsoleDevice(hostSocket: hostSocket)
}

enum ConsoleOptionError: Error, CustomStringConvertible {
    case missingHostSocket
    var description: String { "--host-socket=PATH is required" }
}
