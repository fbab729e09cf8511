#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The number of descriptors this process has open, read from /proc/self/fd or /dev/fd.
///
/// Tests record it before and after: a difference is a leak. The count excludes the descriptor
/// used to read the directory itself.
public func openFileDescriptorCount() -> Int {
    #if os(Linux)
    let path = "/proc/self/fd"
    #else
    let path = "/dev/fd"
    #endif
    guard let dir = opendir(path) else { return -1 }
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
public func descriptorsLeaked<T>(_ body: () throws -> T) rethrows -> (result: T, leaked: Int) {
    let before = openFileDescriptorCount()
    let result = try body()
    return (result, openFileDescriptorCount() - before)
}
