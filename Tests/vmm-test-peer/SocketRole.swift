#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Role `socket`: exercised by the ScmSocket and SharedMemory cross-process tests.
func runSocketRole(_ arguments: [String]) -> Int32 {
    report("vmm-test-peer socket: no scenario \(arguments)")
    return 2
}
