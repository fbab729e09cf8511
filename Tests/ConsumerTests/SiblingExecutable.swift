#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The path of an executable built beside the test binary (SwiftPM puts every product of the
/// package in one folder), as a VMM's own tests would find their helper programs.
func siblingExecutable(_ name: String) -> String? {
    #if os(Linux)
    var buffer = [CChar](repeating: 0, count: 4096)
    let count = readlink("/proc/self/exe", &buffer, buffer.count - 1)
    guard count > 0 else { return nil }
    let me = String(decoding: buffer[0..<count].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    #else
    guard let first = CommandLine.arguments.first, let resolved = realpath(first, nil) else { return nil }
    defer { free(resolved) }
    let me = String(cString: resolved)
    #endif
    // The test binary may sit inside a bundle (…/X.xctest/Contents/MacOS/X): try each parent.
    var folder = me
    while let slash = folder.lastIndex(of: "/"), slash != folder.startIndex {
        folder = String(folder[..<slash])
        let candidate = folder + "/" + name
        if access(candidate, X_OK) == 0 { return candidate }
    }
    return nil
}
