#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Testing

/// The number of descriptors this process has open, read from /proc/self/fd or /dev/fd.
///
/// Tests record it before and after: a difference is a leak. The count excludes the descriptor
/// used to read the directory itself. It fails closed: outside a `.isolatedDescriptors` child
/// (where other tests open and close descriptors at the same time) or when the directory cannot
/// be read, it records an issue, so a check that cannot see a leak fails instead of passing.
public func openFileDescriptorCount(sourceLocation: SourceLocation = #_sourceLocation) -> Int {
    guard isDescriptorIsolated else {
        Issue.record(
            "descriptors counted outside isolation: give the test or its suite the .isolatedDescriptors trait",
            sourceLocation: sourceLocation)
        return -1
    }
    settleForeignDescriptors(warmUp: false)
    guard let table = openDescriptorTable() else {
        Issue.record(
            "cannot read the descriptor table (errno \(errno)): descriptors not counted", sourceLocation: sourceLocation
        )
        return -1
    }
    DescriptorBaseline.recordFirst(table)
    return table.count
}

/// This process's descriptors and what each refers to (the readlink of /proc/self/fd/N on Linux;
/// the number alone elsewhere), without the directory stream's own; nil if it cannot be read.
///
/// On Linux, timerfds are left out: nothing in this package creates one, while libdispatch
/// creates one per clock the first time a timer of that clock is armed, which the test runtime
/// (swift-testing, Swift concurrency) may do at any moment of a test, so they are never ours.
/// (A package change that starts using timerfds must take this out.)
func openDescriptorTable() -> [Int32: String]? {
    #if os(Linux)
    let path = "/proc/self/fd"
    #else
    let path = "/dev/fd"
    #endif
    guard let dir = opendir(path) else { return nil }
    let own = dirfd(dir)
    defer { closedir(dir) }
    var table: [Int32: String] = [:]
    while let entry = readdir(dir) {
        let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
            String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
        }
        guard let fd = Int32(name), fd != own else { continue }
        #if os(Linux)
        var target = [CChar](repeating: 0, count: 256)
        let n = readlink("\(path)/\(name)", &target, target.count - 1)
        let link = n > 0 ? String(decoding: target[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self) : "?"
        if link == "anon_inode:[timerfd]" { continue }
        table[fd] = link
        #else
        table[fd] = ""
        #endif
    }
    return table
}

/// The descriptor table at a child's first count, so that a test whose count did not come back
/// can say which descriptors differ (printed to the child's output, which the parent reports).
enum DescriptorBaseline {
    nonisolated(unsafe) private static var first: [Int32: String]?
    nonisolated(unsafe) private static let lock: UnsafeMutablePointer<pthread_mutex_t> = {
        let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
        pthread_mutex_init(mutex, nil)
        return mutex
    }()

    static func recordFirst(_ table: [Int32: String]) {
        pthread_mutex_lock(lock)
        if first == nil { first = table }
        pthread_mutex_unlock(lock)
    }

    /// Descriptors opened or closed since the first count, one per line; empty if none.
    static func differences() -> String {
        pthread_mutex_lock(lock)
        let baseline = first
        pthread_mutex_unlock(lock)
        guard let baseline, let now = openDescriptorTable() else { return "" }
        var lines: [String] = []
        for (fd, target) in now.sorted(by: { $0.key < $1.key }) where baseline[fd] != target {
            lines.append("  open now: fd \(fd) -> \(target)" + (baseline[fd].map { " (was \($0))" } ?? ""))
        }
        for (fd, target) in baseline.sorted(by: { $0.key < $1.key }) where now[fd] == nil {
            lines.append("  closed since: fd \(fd) -> \(target)")
        }
        return lines.joined(separator: "\n")
    }
}

/// Runs `body` and returns how many descriptors it left open (negative if it closed some).
public func descriptorsLeaked<T>(
    sourceLocation: SourceLocation = #_sourceLocation,
    _ body: () throws -> T
) rethrows -> (result: T, leaked: Int) {
    let before = openFileDescriptorCount(sourceLocation: sourceLocation)
    let result = try body()
    return (result, openFileDescriptorCount(sourceLocation: sourceLocation) - before)
}

/// Brings descriptors that are not ours to a fixed state before a count.
///
/// libkqueue (the kqueue backend on Linux, `VMM_LIBKQUEUE`) owns descriptors of its own: per
/// kqueue an epoll fd, a close-detection pipe and a wake eventfd, freed by its monitoring thread
/// some time after we close the kqueue, and a process-wide epoll fd and eventfd created with the
/// first kqueue. `warmUp` opens one kqueue kept for the process's life (so the monitoring thread
/// and the process-wide pair stay up), then waits, bounded, until the thread frees a probe kqueue
/// (it starts asynchronously, and until it runs a drain returns at once). Every count first asks
/// libkqueue to finish freeing closed kqueues (`libkqueue_drain_pending_close`, a handshake with
/// its monitoring thread, not a sleep). What remains in the count is ours: our kqueue descriptor
/// itself is still counted. Without libkqueue linked in (the symbols are absent) this does nothing.
func settleForeignDescriptors(warmUp: Bool) {
    #if os(Linux)
    guard let drainSymbol = dlsym(nil, "libkqueue_drain_pending_close") else { return }
    typealias Drain = @convention(c) () -> Void
    let drain = unsafeBitCast(drainSymbol, to: Drain.self)
    if warmUp, let createSymbol = dlsym(nil, "kqueue") {
        typealias Create = @convention(c) () -> Int32
        let create = unsafeBitCast(createSymbol, to: Create.self)
        _ = create()  // never closed: libkqueue's monitoring thread lives as long as one kqueue does
        let before = openDescriptorTable()?.count
        let probe = create()
        if probe >= 0 { close(probe) }
        for _ in 0..<2000 {
            drain()
            if openDescriptorTable()?.count == before { break }
            usleep(1000)
        }
    }
    drain()
    #endif
}
