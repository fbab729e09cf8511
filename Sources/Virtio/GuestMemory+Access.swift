extension GuestMemory {
    /// Copies `buffer.count` bytes starting at guest-physical `address` into `buffer` (memcpy, so
    /// alignment does not matter; each byte is read once). The range may cross adjacent regions.
    ///
    /// - Throws: `GuestMemoryError.outsideMemory` (nothing is copied) if the range is not all memory.
    public func read(guestPhysical address: UInt64, into buffer: UnsafeMutableRawBufferPointer) throws(GuestMemoryError)
    {
        try copy(address, count: buffer.count) { host, offset, count in
            // Safe: `host` is checked to hold `count` bytes; `offset + count <= buffer.count`.
            (buffer.baseAddress! + offset).copyMemory(from: host, byteCount: count)
        }
    }

    /// Copies `bytes` into guest memory at guest-physical `address` (may cross adjacent regions).
    ///
    /// - Throws: `GuestMemoryError.outsideMemory` (nothing is written) if the range is not all memory.
    public func write(guestPhysical address: UInt64, bytes: UnsafeRawBufferPointer) throws(GuestMemoryError) {
        try copy(address, count: bytes.count) { host, offset, count in
            // Safe: as in `read`.
            host.copyMemory(from: bytes.baseAddress! + offset, byteCount: count)
        }
    }

    /// Reads a little-endian integer at any alignment.
    public func load<T: FixedWidthInteger>(_: T.Type = T.self, guestPhysical address: UInt64) throws(GuestMemoryError)
        -> T
    {
        var value = T.zero
        try withUnsafeMutableBytes(of: &value) { (raw) throws(GuestMemoryError) in
            try read(guestPhysical: address, into: raw)
        }
        return T(littleEndian: value)
    }

    /// Writes a little-endian integer at any alignment.
    public func store<T: FixedWidthInteger>(_ value: T, guestPhysical address: UInt64) throws(GuestMemoryError) {
        var le = value.littleEndian
        try withUnsafeBytes(of: &le) { (raw) throws(GuestMemoryError) in
            try write(guestPhysical: address, bytes: raw)
        }
    }

    private func copy(
        _ address: UInt64, count: Int,
        _ body: (UnsafeMutableRawPointer, Int, Int) -> Void
    ) throws(GuestMemoryError) {
        guard count > 0 else { return }
        let table = self.table
        guard table.contains(address, length: UInt64(count)) else {
            throw .outsideMemory(address: address, length: UInt64(count))
        }
        var done = 0
        while done < count {
            // Cannot fail: the whole range was checked above and regions are immutable.
            guard let piece = table.piece(at: address + UInt64(done), length: UInt64(count - done)) else {
                throw .outsideMemory(address: address, length: UInt64(count))
            }
            body(piece.pointer, done, Int(piece.length))
            done += Int(piece.length)
        }
    }
}
