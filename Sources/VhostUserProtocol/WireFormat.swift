/// Reads native-endian integers from a payload at explicit offsets.
///
/// Every payload decoder checks the byte count before reading, so reads never run past the end;
/// the guard below still returns 0 instead of trapping, so a decoder bug cannot become a crash
/// on peer input.
struct WireReader {
    private let bytes: UnsafeRawBufferPointer
    private var offset = 0

    init(_ bytes: UnsafeRawBufferPointer) {
        self.bytes = bytes
    }

    mutating func read<T: FixedWidthInteger & BitwiseCopyable>(_: T.Type = T.self) -> T {
        let end = offset + MemoryLayout<T>.size
        guard end <= bytes.count else {
            offset = bytes.count
            return 0
        }
        // Safe: offset..<end lies inside `bytes` (checked above); loadUnaligned has no alignment need.
        let value = bytes.loadUnaligned(fromByteOffset: offset, as: T.self)
        offset = end
        return value
    }

    mutating func skip(_ count: Int) {
        offset = min(offset + count, bytes.count)
    }
}

extension Array where Element == UInt8 {
    /// Appends `value` in native byte order, the order of every vhost-user header and payload field.
    mutating func appendWire<T: FixedWidthInteger & BitwiseCopyable>(_ value: T) {
        Swift.withUnsafeBytes(of: value) { append(contentsOf: $0) }
    }

    /// Appends `count` zero bytes (C struct padding).
    mutating func appendPadding(_ count: Int) {
        append(contentsOf: repeatElement(0, count: count))
    }
}
