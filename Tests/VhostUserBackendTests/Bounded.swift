#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import VMMSysUtil
import VMMTestSupport
@testable import VhostUserBackend
import Logging

/// A thread running `body` whose end can be waited for with a bound.
final class BoundedThread: @unchecked Sendable {
    private let lock = ConditionLock()
    private var done = false
    private var thread: JoinableThread?

    init(_ body: @escaping @Sendable () -> Void) throws {
        thread = try JoinableThread { [unowned self] in
            body()
            lock.withLock { done = true }
        }
    }

    var isDone: Bool { lock.withLock { done } }

    /// Joins the thread if it ended within `seconds`; false (not joined) otherwise.
    func join(within seconds: Double = 10) -> Bool {
        guard eventually(within: seconds, { isDone }) else { return false }
        thread?.join()
        thread = nil
        return true
    }
}

/// Connects to `path` once a listener is there (at most 10 s).
func connectWhenListening(_ path: String) throws -> ScmSocket {
    var lastError: ScmSocketError?
    for _ in 0..<2000 {
        do {
            return try ScmSocket.connect(path: path)
        } catch {
            lastError = error
            usleep(5_000)
        }
    }
    throw lastError ?? .peerClosed
}

/// A swift-log handler that keeps every message, for tests that check what was logged.
final class CapturedLog: @unchecked Sendable {
    private let lock = ConditionLock()
    private var lines: [String] = []

    var messages: [String] { lock.withLock { lines } }
    func append(_ line: String) { lock.withLock { lines.append(line) } }

    var logger: Logger {
        Logger(label: "test") { _ in Handler(log: self) }
    }

    struct Handler: LogHandler {
        let log: CapturedLog
        var metadata: Logger.Metadata = [:]
        var logLevel: Logger.Level = .trace
        subscript(metadataKey key: String) -> Logger.Metadata.Value? {
            get { metadata[key] }
            set { metadata[key] = newValue }
        }
        func log(event: LogEvent) {
            log.append("\(event.level) \(event.message)")
        }
    }
}
