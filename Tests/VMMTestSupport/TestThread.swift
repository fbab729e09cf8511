#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Testing
import VMMSysUtil

/// A thread running a test body (shared by the test targets). Tests synchronise with it through
/// notifiers and bounded polls; `join` is bounded too, so a bug fails the test instead of hanging it.
public struct TestThread: Sendable {
    fileprivate let thread: JoinableThread?
    fileprivate let finished: FinishFlag

    /// Waits up to `seconds` for the body to return, then joins the thread (so what it captured
    /// is released). A body still running then is left running (the thread is detached when the
    /// last copy of this value goes) and an issue is recorded. Returns whether it finished.
    @discardableResult
    public func join(seconds: Int = 30, sourceLocation: SourceLocation = #_sourceLocation) -> Bool {
        guard let thread else { return true }
        for _ in 0..<(seconds * 1000) where !finished.isSet { usleep(1000) }
        guard finished.isSet else {
            Issue.record("a test thread did not finish within \(seconds) s", sourceLocation: sourceLocation)
            return false
        }
        thread.join()
        return true
    }
}

/// Set once by a thread body that returned; read by `join`.
final class FinishFlag: Sendable {
    private let lock = ConditionLock()
    nonisolated(unsafe) private var value = false

    func set() { lock.withLock { value = true } }
    var isSet: Bool { lock.withLock { value } }
}

/// Runs `body` on a new thread (or, if no thread can be created, right here).
@discardableResult
public func startThread(_ body: @escaping @Sendable () -> Void) -> TestThread {
    let finished = FinishFlag()
    do {
        return TestThread(
            thread: try JoinableThread {
                body()
                finished.set()
            }, finished: finished)
    } catch {
        body()
        finished.set()
        return TestThread(thread: nil, finished: finished)
    }
}
