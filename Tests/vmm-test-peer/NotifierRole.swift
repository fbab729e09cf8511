#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import VMMSysUtil

/// Role `notifier`: exercised by the EventNotifier cross-process tests.
///
/// `notifier pingpong ROUNDS`: adopts fd 3 as a kick (we wait on it: an eventfd or a pipe's read
/// end) and fd 4 as a call (we notify it: an eventfd or a pipe's write end), then ROUNDS times
/// waits for a kick and answers with a call. Exits 0 after the last round, 1 on any error
/// (including the parent closing its end early), 2 on bad arguments.
func runNotifierRole(_ arguments: [String]) -> Int32 {
    guard arguments.count == 2, arguments[0] == "pingpong", let rounds = Int(arguments[1]), rounds >= 0 else {
        report("vmm-test-peer notifier: usage: notifier pingpong ROUNDS (got \(arguments))")
        return 2
    }
    do {
        let kick = try EventNotifier(waitingOn: FileDescriptor(adopting: 3))
        let call = try EventNotifier(notifyingThrough: FileDescriptor(adopting: 4))
        for _ in 0..<rounds {
            try kick.wait()
            try call.notify()
        }
        return 0
    } catch {
        report("vmm-test-peer notifier: \(error)")
        return 1
    }
}
