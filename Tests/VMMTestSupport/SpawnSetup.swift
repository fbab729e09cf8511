#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

// posix_spawn's file actions and attributes are structs on Linux and optional pointers on Darwin
// and the BSDs; this is the one place that knows.
#if os(Linux)
public typealias SpawnFileActions = posix_spawn_file_actions_t
public typealias SpawnAttributes = posix_spawnattr_t
#else
public typealias SpawnFileActions = posix_spawn_file_actions_t?
public typealias SpawnAttributes = posix_spawnattr_t?
#endif

/// Runs `body` with fresh posix_spawn file actions (empty: `body` adds its own) and attributes,
/// destroyed when it returns. The attributes give the child a clean signal state: the test
/// runner's threads may block or ignore signals, and a child inherits both across exec. So nothing
/// is blocked, each of `defaultSignals` has its default disposition, and, if `newProcessGroup`,
/// the child leads a process group of its own.
///
/// Thread-safety: the objects are local to the call.
public func withSpawnSetup<R>(
    defaultSignals: [Int32], newProcessGroup: Bool = false,
    _ body: (inout SpawnFileActions, inout SpawnAttributes) throws -> R
) rethrows -> R {
    var actions = SpawnFileActions()
    posix_spawn_file_actions_init(&actions)
    defer { posix_spawn_file_actions_destroy(&actions) }
    var attributes = SpawnAttributes()
    posix_spawnattr_init(&attributes)
    defer { posix_spawnattr_destroy(&attributes) }
    var noSignals = sigset_t()
    sigemptyset(&noSignals)
    posix_spawnattr_setsigmask(&attributes, &noSignals)
    var defaults = sigset_t()
    sigemptyset(&defaults)
    for signal in defaultSignals { sigaddset(&defaults, signal) }
    posix_spawnattr_setsigdefault(&attributes, &defaults)
    var flags = POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF
    if newProcessGroup {
        posix_spawnattr_setpgroup(&attributes, 0)
        flags |= POSIX_SPAWN_SETPGROUP
    }
    posix_spawnattr_setflags(&attributes, Int16(flags))
    return try body(&actions, &attributes)
}
