// The far side of the cross-process tests. argv[1] names a role; each role lives in its own file.
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

let arguments = Array(CommandLine.arguments.dropFirst())
guard let role = arguments.first else {
    report("usage: vmm-test-peer ROLE [ARGS...]")
    exit(2)
}
let rest = Array(arguments.dropFirst())
switch role {
case "notifier": exit(runNotifierRole(rest))
case "socket": exit(runSocketRole(rest))
default:
    report("vmm-test-peer: unknown role \(role)")
    exit(2)
}

/// Writes a line to standard error (fd 2) without touching the C `stderr` global.
func report(_ text: String) {
    var line = text + "\n"
    line.withUTF8 { _ = write(2, $0.baseAddress, $0.count) }
}
