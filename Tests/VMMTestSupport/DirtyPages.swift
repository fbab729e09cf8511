#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Virtio

/// Reads and clears `log` until every page of `expected` was seen or `bound` passed, and returns
/// all pages seen, sorted. A back-end marks the used ring's page just after it publishes the used
/// index (a bit must be set after the write it stands for), so a driver that saw a completion may
/// read the log a moment before that bit is set: the test waits for it, and any page beyond
/// `expected` still shows in the result.
public func dirtyPages(_ log: DirtyLog, including expected: Set<UInt64>, bound: Duration = .seconds(2)) -> [UInt64] {
    var seen = Set<UInt64>()
    let deadline = ContinuousClock.now + bound
    while true {
        seen.formUnion(log.takeDirtyPages())
        if seen.isSuperset(of: expected) || ContinuousClock.now >= deadline { break }
        usleep(1000)
    }
    // Anything else the same completion marks is marked by now.
    usleep(10_000)
    seen.formUnion(log.takeDirtyPages())
    return seen.sorted()
}
