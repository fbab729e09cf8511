// Shared by every Poller backend (and so covered by the Linux tests): the registration table that
// turns kernel reports into PollEvents and drops stale ones, the lock guarding it, and timeouts.
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// One registered descriptor.
struct Registration {
    var token: UInt64
    var interest: PollInterest
    /// Tags the kernel registration (epoll data, kevent udata, the poll snapshot) so reports made
    /// for an earlier registration of the same fd number are recognised and dropped. Never 0.
    var generation: UInt32
}

/// The generation reserved for the poller's own wake-up descriptor.
let wakeGeneration: UInt32 = 0

/// The registrations, guarded by a mutex. Backends hold the lock across their kernel call when
/// changing a registration, so the table and the kernel always agree.
final class RegistrationTable: @unchecked Sendable {
    struct State {
        var entries = RegistrationSlots()
        private var lastGeneration: UInt32 = wakeGeneration
        /// Bumped on every change, so the poll backend knows when to rebuild its pollfd array.
        var version: UInt64 = 0
        /// Set by the poll backend while it is blocked in poll(2) on a snapshot of the table.
        var pollerIsWaiting = false
        /// Set by the poll backend's `wake()`, so its waiter returns instead of just rebuilding.
        var wakeRequested = false

        /// The next generation, skipping the wake-up's.
        mutating func newGeneration() -> UInt32 {
            lastGeneration &+= 1
            if lastGeneration == wakeGeneration { lastGeneration &+= 1 }
            return lastGeneration
        }

        /// A new registration for `fd`, not yet stored (the backend stores it once the kernel agreed).
        mutating func prepareAdd(_ fd: Int32, interest: PollInterest, token: UInt64) throws(SystemCallError)
            -> Registration
        {
            guard fd >= 0 else { throw SystemCallError("Poller.register", .badFileDescriptor) }
            guard entries[fd] == nil else { throw SystemCallError("Poller.register", .fileExists) }
            return Registration(token: token, interest: interest, generation: newGeneration())
        }

        mutating func store(_ fd: Int32, _ registration: Registration) {
            entries[fd] = registration
            version &+= 1
        }

        func existing(_ fd: Int32, operation: String) throws(SystemCallError) -> Registration {
            guard let registration = entries[fd] else { throw SystemCallError(operation, .noSuchFile) }
            return registration
        }

        mutating func remove(_ fd: Int32) throws(SystemCallError) -> Registration {
            guard let registration = entries.removeValue(forKey: fd) else {
                throw SystemCallError("Poller.deregister", .noSuchFile)
            }
            version &+= 1
            return registration
        }

        /// The event to deliver for a kernel report, or `nil` if the report is stale (the fd was
        /// deregistered, or re-registered since) or carries nothing the interest asked for.
        func resolve(_ fd: Int32, generation: UInt32, readable: Bool, writable: Bool, hangup: Bool) -> PollEvent? {
            guard let registration = entries[fd], registration.generation == generation else { return nil }
            let event = PollEvent(
                token: registration.token,
                isReadable: readable && registration.interest.contains(.readable),
                isWritable: writable && registration.interest.contains(.writable),
                isHangup: hangup)
            guard event.isReadable || event.isWritable || event.isHangup else { return nil }
            return event
        }
    }

    private let mutex = ConditionLock()
    private var state = State()

    func withLock<Result, Failure: Error>(_ body: (inout State) throws(Failure) -> Result) throws(Failure) -> Result {
        mutex.lock()
        defer { mutex.unlock() }
        return try body(&state)
    }
}

/// A wait timeout in whole milliseconds for epoll_wait/poll: rounded up (so a short timeout never
/// becomes a busy loop), -1 for forever, clamped to Int32.max, 0 for negative durations.
func pollMilliseconds(_ timeout: Duration?) -> Int32 {
    guard let timeout else { return -1 }
    let (seconds, attoseconds) = timeout.components
    if seconds < 0 || (seconds == 0 && attoseconds <= 0) { return 0 }
    let attosecondsPerMillisecond: Int64 = 1_000_000_000_000_000
    let (wholeMs, overflow) = seconds.multipliedReportingOverflow(by: 1000)
    if overflow { return Int32.max }
    let partMs = (attoseconds + attosecondsPerMillisecond - 1) / attosecondsPerMillisecond
    let total = wholeMs.addingReportingOverflow(partMs)
    if total.overflow || total.partialValue > Int64(Int32.max) { return Int32.max }
    return Int32(total.partialValue)
}

/// A wait timeout as a timespec for kevent: rounded up to whole nanoseconds, 0 for negative
/// durations, clamped to 100 years (beyond that "forever" is `nil`, which the caller passes).
func pollTimespec(_ timeout: Duration) -> timespec {
    let (seconds, attoseconds) = timeout.components
    if seconds < 0 || (seconds == 0 && attoseconds <= 0) { return timespec(tv_sec: 0, tv_nsec: 0) }
    let attosecondsPerNanosecond: Int64 = 1_000_000_000
    var wholeSeconds = min(seconds, 100 * 365 * 24 * 3600)
    var nanoseconds = (attoseconds + attosecondsPerNanosecond - 1) / attosecondsPerNanosecond
    if nanoseconds >= 1_000_000_000 {
        wholeSeconds += 1
        nanoseconds -= 1_000_000_000
    }
    return timespec(tv_sec: .init(wholeSeconds), tv_nsec: .init(nanoseconds))
}
