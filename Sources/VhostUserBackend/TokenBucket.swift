import VhostUserProtocol
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import VMMSysUtil

/// A token bucket: at most `rate` grants per second on average, with bursts of at most `burst`
/// (tokens accrue continuously up to `burst`). Used to cap a device's request rate (for example
/// vhost-user-blk's `--iops-limit`) with `VhostUserQueue.acquire(_:)`, which waits on the queue's
/// worker thread and gives way when the framework needs the worker.
///
/// Thread-safety: all methods may be called from any thread (a mutex; one bucket may pace
/// several queues).
public final class TokenBucket: @unchecked Sendable {
    /// Grants per second.
    public let rate: UInt64
    /// Largest number of grants available at once.
    public let burst: UInt64
    /// Longest single sleep in `VhostUserQueue.acquire(_:)`: bounds how long the control thread
    /// can wait for a pacing worker to park (10 ms).
    public static let maximumSleep: UInt64 = 10_000_000

    private let lock = ConditionLock()
    // Guarded by `lock`: tokens in nanosecond-tokens (1 token = 1e9 units), to stay in integers.
    private var level: UInt64
    private var last: UInt64

    /// - Parameters:
    ///   - rate: grants per second, 1 or more (0 is treated as 1).
    ///   - burst: bucket size, at least 1 (default: a tenth of a second's worth, at least 1).
    ///     The bucket starts full.
    public init(rate: UInt64, burst: UInt64? = nil) {
        self.rate = max(1, min(rate, 1_000_000_000))
        self.burst = max(1, min(burst ?? self.rate / 10, 1_000_000))
        level = self.burst * Self.unit
        last = Self.now()
    }

    private static let unit: UInt64 = 1_000_000_000

    /// Takes one token if there is one and returns 0; otherwise takes nothing and returns the
    /// nanoseconds until one will be there.
    public func tryTake() -> UInt64 {
        let now = Self.now()
        return lock.withLock {
            refill(now)
            if level >= Self.unit {
                level -= Self.unit
                return 0
            }
            // level grows by `rate` units per nanosecond; round up so the wake-up is not early.
            return (Self.unit - level + rate - 1) / rate
        }
    }

    /// Gives back a token taken with `tryTake` (or `acquire`) and not used.
    public func refund() {
        lock.withLock { level = min(level + Self.unit, burst * Self.unit) }
    }

    private func refill(_ now: UInt64) {
        guard now > last else { return }
        let elapsed = now - last
        last = now
        // elapsed * rate overflows only after ~18 s at 1e9/s; cap elapsed at the time to fill.
        let fill = burst * Self.unit / rate + 1
        level = min(level + min(elapsed, fill) * rate, burst * Self.unit)
    }

    static func now() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
    }

    static func sleep(nanoseconds: UInt64) {
        var request = timespec(tv_sec: Int(nanoseconds / 1_000_000_000), tv_nsec: Int(nanoseconds % 1_000_000_000))
        var remaining = timespec()
        // An early wake-up (EINTR) is harmless: the caller re-checks the bucket.
        _ = nanosleep(&request, &remaining)
    }
}
