import Testing
import VMMSysUtil
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A thread that blocked SIGPIPE and notifies a pipe whose reader is gone (a front-end that
/// exited) gets EPIPE; without the block the signal would end the test process.
@Suite struct BrokenPipeSignalTests {
    @Test func aNotifyIntoAPipeWithoutReaderFailsWithEPIPEOnABlockingThread() throws {
        var ends: [Int32] = [-1, -1]
        try #require(pipe(&ends) == 0)
        let reader = FileDescriptor(adopting: ends[0])
        let notifier = try EventNotifier(notifyingThrough: FileDescriptor(adopting: ends[1]))
        _ = consume reader
        let result = ErrorBox()
        let thread = try JoinableThread {
            do {
                try BrokenPipeSignal.blockOnThisThread()
                try notifier.notify()
                result.set("notify succeeded")
            } catch {
                result.set((error as? SystemCallError)?.errno == .brokenPipe ? "EPIPE" : "\(error)")
            }
        }
        thread.join()
        #expect(result.value == "EPIPE")
    }
}

/// A string written by one thread and read after it was joined.
private final class ErrorBox: @unchecked Sendable {
    private let lock = ConditionLock()
    private var text = ""
    func set(_ value: String) { lock.withLock { text = value } }
    var value: String { lock.withLock { text } }
}
