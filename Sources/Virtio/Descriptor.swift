/// A descriptor copied out of guest memory exactly once. Only the copy is validated and used, so a
/// guest rewriting the ring concurrently cannot change a value between its check and its use.
@usableFromInline
struct Descriptor {
    @usableFromInline var address: UInt64
    @usableFromInline var length: UInt32
    @usableFromInline var flags: UInt16
    /// Split: index of the next descriptor. Packed: buffer id.
    @usableFromInline var next: UInt16
    /// Set by validation: the local address of the buffer if it lies in one region, else nil.
    @usableFromInline var host: UnsafeMutableRawPointer? = nil

    /// Copies the 16 bytes at `pointer` field by field (unaligned-safe loads, each byte read once).
    /// Split layout: addr, len, flags @12, next @14. Packed layout: addr, len, id @12, flags @14.
    @inlinable @inline(__always)
    init(loading pointer: UnsafeRawPointer, packed: Bool) {
        address = UInt64(littleEndian: pointer.loadUnaligned(as: UInt64.self))
        length = UInt32(littleEndian: pointer.loadUnaligned(fromByteOffset: 8, as: UInt32.self))
        let word12 = UInt16(littleEndian: pointer.loadUnaligned(fromByteOffset: 12, as: UInt16.self))
        let word14 = UInt16(littleEndian: pointer.loadUnaligned(fromByteOffset: 14, as: UInt16.self))
        flags = packed ? word14 : word12
        next = packed ? word12 : word14
    }

    @inlinable @inline(__always) var isWritable: Bool { flags & DescriptorFlag.write != 0 }
    @inlinable @inline(__always) var hasNext: Bool { flags & DescriptorFlag.next != 0 }
    @inlinable @inline(__always) var isIndirect: Bool { flags & DescriptorFlag.indirect != 0 }
}

extension RegionTable {
    /// Copies the descriptor at guest-physical `address` (an indirect-table entry, which may sit at
    /// any alignment and straddle adjacent regions). The caller has checked the table is all memory.
    @inline(__always)
    func loadDescriptor(at address: UInt64, packed: Bool) -> Descriptor? {
        guard let first = piece(at: address, length: 16) else { return nil }
        if first.length == 16 { return Descriptor(loading: first.pointer, packed: packed) }
        // Straddles a region boundary: gather the 16 bytes piecewise into a local copy.
        var bytes: (UInt64, UInt64) = (0, 0)
        return withUnsafeMutableBytes(of: &bytes) { local -> Descriptor? in
            var done = 0
            while done < 16 {
                guard let part = piece(at: address &+ UInt64(done), length: UInt64(16 - done)) else { return nil }
                // Safe: `part` holds `part.length` bytes and `done + part.length <= 16`.
                (local.baseAddress! + done).copyMemory(from: part.pointer, byteCount: Int(part.length))
                done += Int(part.length)
            }
            return Descriptor(loading: UnsafeRawPointer(local.baseAddress!), packed: packed)
        }
    }
}
