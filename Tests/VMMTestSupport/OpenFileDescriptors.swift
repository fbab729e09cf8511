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
        Issue.record("descriptors counted outside isolation: give the test or its suite the .isolatedDescriptors trait",
                     sourceLocation: sourceLocation)
        return -1
    }
    settleForeignDescriptors(warmUp: false)
    #if os(Linux)
    let path = "/proc/self/fd"
    #else
    let path = "/dev/fd"
    #endif
    guard let dir = opendir(path) else {
        Issue.record("cannot read \(path) (errno \(errno)): descriptors not counted", sourceLocation: sourceLocation)
        return -1
    }
    defer { closedir(dir) }
    var count = 0
    while let entry = readdir(dir) {
        let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
            String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
        }
        if name != "." && name != ".." { count += 1 }
    }
    return count - 1  // the directory stream's own descriptor
}

/// Runs `body` and returns how many descriptors it left open (negative if it closed some).
public func descriptorsLeaked<T>(sourceLocation: SourceLocation = #_sourceLocation,
                                 _ body: () throws -> T) rethrows -> (result: T, leaked: Int) {
    let before = openFileDescriptorCount(sourceLocation: sourceLocation)
    let result = try body()
    return (result, openFileDescriptorCount(sourceLocation: sourceLocation) - before)
}

/// Brings descriptors that are not ours to a fixed state before a count.
///
/// libkqueue (the kqueue backend on Linux, `VMM_LIBKQUEUE`) owns descriptors of its own: per
/// kqueue an epoll fd and a close-detection pipe end, freed by its monitoring thread some time
/// after we close the kqueue, and a process-wide epoll fd and eventfd created with the first
/// kqueue and kept until exit. `warmUp` creates and closes one kqueue so the process-wide pair
/// exists before a baseline is taken; every count first asks libkqueue to finish freeing closed
/// kqueues (`libkqueue_drain_pending_close`, a handshake with its monitoring thread, not a
/// sleep). What remains in the count is ours: our kqueue descriptor itself is still counted.
/// Without libkqueue linked in (the symbols are absent) this does nothing.
func settleForeignDescriptors(warmUp: Bool) {
    #if os(Linux)
    guard let drain = dlsym(nil, "libkqueue_drain_pending_close") else { return }
    typealias Drain = @convention(c) () -> Void
    if warmUp, let create = dlsym(nil, "kqueue") {
        typealias Create = @convention(c) () -> Int32
        let fd = unsafeBitCast(create, to: Create.self)()
        if fd >= 0 { close(fd) }
    }
    unsafeBitCast(drain, to: Drain.self)()
    #endif
}
