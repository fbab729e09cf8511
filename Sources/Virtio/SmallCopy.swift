/// memcpy for guest buffers, with the short sizes that dominate request headers (≤ 16 bytes) done
/// inline with unaligned loads and stores instead of a libc call. Byte-for-byte memcpy semantics:
/// each source byte is read once; alignment never matters.
@inlinable @inline(__always)
func copyGuestBytes(to destination: UnsafeMutableRawPointer, from source: UnsafeRawPointer, count: Int) {
    if count >= 8 && count <= 16 {
        // Two overlapping 8-byte moves cover 8…16 bytes; both loads happen before either store.
        let head = source.loadUnaligned(as: UInt64.self)
        let tail = source.loadUnaligned(fromByteOffset: count - 8, as: UInt64.self)
        destination.storeBytes(of: head, as: UInt64.self)
        destination.storeBytes(of: tail, toByteOffset: count - 8, as: UInt64.self)
    } else {
        destination.copyMemory(from: source, byteCount: count)
    }
}
