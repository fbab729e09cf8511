#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import VMMSysUtil

/// Polls `condition` every 5 ms for at most `seconds`; whether it became true. For tests, which
/// must never wait without a bound.
public func eventually(within seconds: Double = 10, _ condition: () -> Bool) -> Bool {
    let deadline = ContinuousClock.now + .milliseconds(Int(seconds * 1000))
    while ContinuousClock.now < deadline {
        if condition() { return true }
        usleep(5_000)
    }
    return condition()
}

extension PeerProcess {
    /// The exit status (128 + signal if killed), or nil if the child did not exit within
    /// `seconds` (it is then killed and reaped, so no test waits forever).
    public func exitStatus(within seconds: Double = 10) -> Int32? {
        let child = ChildProcess(pid: pid)
        var status: ChildProcess.ExitStatus?
        guard
            eventually(
                within: seconds,
                {
                    status = try? child.exitStatusIfExited()
                    return status != nil
                })
        else {
            child.terminate(with: SIGKILL, grace: .zero)
            return nil
        }
        return status?.code
    }
}
