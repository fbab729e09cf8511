import VMMSysUtil

/// A thread running a test body (shared by the test targets). Tests synchronise with it through
/// notifiers and bounded polls; they join it only once it has signalled that it finished, so a bug
/// fails the test instead of hanging it.
public struct TestThread: Sendable {
    fileprivate let thread: JoinableThread?

    /// Waits until the thread has exited (and released what its body captured).
    public func join() { thread?.join() }
}

/// Runs `body` on a new thread (or, if no thread can be created, right here).
@discardableResult
public func startThread(_ body: @escaping @Sendable () -> Void) -> TestThread {
    do {
        return TestThread(thread: try JoinableThread(body))
    } catch {
        body()
        return TestThread(thread: nil)
    }
}
