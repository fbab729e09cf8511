#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The path of a product built beside the running test binary (e.g. `vmm-test-peer`).
///
/// SwiftPM puts executables in the same folder as the test bundle; on Darwin the bundle's
/// binary sits three levels deeper, so parent folders are tried in turn.
public func builtProductPath(_ name: String) -> String? {
    var buffer = [CChar](repeating: 0, count: 4096)
    #if os(Linux)
    let n = readlink("/proc/self/exe", &buffer, buffer.count - 1)
    guard n > 0 else { return nil }
    var dir = String(decoding: buffer[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    #else
    var dir = CommandLine.arguments[0]
    #endif
    for _ in 0..<5 {
        guard let slash = dir.lastIndex(of: "/") else { return nil }
        dir = String(dir[..<slash])
        let candidate = dir + "/" + name
        if access(candidate, X_OK) == 0 { return candidate }
    }
    return nil
}
