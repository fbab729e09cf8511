#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Role `notifier`: exercised by the EventNotifier cross-process tests.
func runNotifierRole(_ arguments: [String]) -> Int32 {
    report("vmm-test-peer notifier: no scenario \(arguments)")
    return 2
}
