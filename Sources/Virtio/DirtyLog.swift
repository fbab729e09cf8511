import CVMMPlatform
import VMMSysUtil

/// The dirty-page log of a live migration (vhost-user `VHOST_F_LOG_ALL` with
/// `VHOST_USER_PROTOCOL_F_LOG_SHMFD`): a bitmap in memory shared with the front-end, one bit per
/// 4 KiB page of guest-physical address space starting at address 0. Page `p` is bit `p % 8` of
/// byte `p / 8` (vhost-user specification, "Migration": `VHOST_LOG_PAGE` is 0x1000).
///
/// The back-end sets bits with an atomic OR after it wrote the guest memory they stand for; the
/// front-end reads and clears them at the same time (atomic exchange, `takeDirtyPages()`), so
/// neither side ever does a plain read-modify-write of the bitmap. Every bit is bounds-checked
/// against the mapping: a page beyond the log is not logged and no byte outside the mapping is
/// touched, whatever address the caller passes (sessions also refuse logs, memory tables and ring
/// log addresses the log does not cover, so with an accepted configuration nothing is dropped).
///
/// Thread-safety: `@unchecked Sendable` is sound because the object is immutable and every access
/// to the shared bitmap is atomic; marking is safe from any number of threads at once.
public final class DirtyLog: @unchecked Sendable {
    /// Bytes of guest memory one bit stands for (`VHOST_LOG_PAGE`).
    public static let pageSize: UInt64 = 0x1000
    /// The mapping of the bitmap (kept alive by the log).
    public let mapping: MemoryMapping
    /// Bytes of bitmap.
    public var byteCount: Int { mapping.size }
    /// Pages the bitmap covers: guest-physical addresses below `pageCount × pageSize`.
    public let pageCount: UInt64
    private let bits: UnsafeMutablePointer<UInt8>

    /// A log over `mapping` (the front-end's fd mapped at its `mmap_offset`).
    ///
    /// Thread-safety: the mapping must be writable; nothing else in this process may write it.
    public init(mapping: MemoryMapping) {
        self.mapping = mapping
        // Safe: the mapping is `size` bytes of shared memory, alive as long as `self`.
        bits = mapping.base.bindMemory(to: UInt8.self, capacity: mapping.size)
        pageCount = UInt64(mapping.size) &* 8
    }

    /// Bytes of bitmap needed to log writes up to guest-physical address `lastAddress` included.
    public static func requiredSize(lastAddress: UInt64) -> UInt64 {
        lastAddress / pageSize / 8 + 1
    }

    /// Bytes of bitmap needed to cover every region of `memory` (0 for no regions).
    public static func requiredSize(for memory: GuestMemory) -> UInt64 {
        // GuestMemory checked that no region's end overflows.
        memory.regions.map { requiredSize(lastAddress: $0.guestPhysicalAddress + $0.size - 1) }.max() ?? 0
    }

    /// Whether every page of `[address, address + length)` has a bit in the log (length > 0).
    public func covers(guestPhysical address: UInt64, length: UInt64) -> Bool {
        guard length > 0 else { return false }
        let (last, overflow) = address.addingReportingOverflow(length - 1)
        return !overflow && last / Self.pageSize < pageCount
    }

    /// Marks the pages of `[address, address + length)` dirty (nothing for a zero length). Pages
    /// beyond the log are skipped. One atomic OR per bitmap byte touched.
    public func mark(guestPhysical address: UInt64, length: UInt64) {
        guard length > 0 else { return }
        let first = address / Self.pageSize
        let (end, overflow) = address.addingReportingOverflow(length - 1)
        let last = min(overflow ? UInt64.max / Self.pageSize : end / Self.pageSize, pageCount &- 1)
        guard pageCount > 0, first <= last else { return }
        var page = first
        while page <= last {
            let byte = page / 8
            var mask: UInt8 = 0
            // The bits of this byte in the range, set together.
            while page <= last, page / 8 == byte {
                mask |= 1 << UInt8(page % 8)
                page &+= 1
            }
            // Safe: byte ≤ last / 8 < pageCount / 8 = byteCount.
            vmm_atomic_or_u8(bits + Int(byte), mask)
        }
    }

    /// Marks the pages holding the first `written` bytes of `chain`'s writable buffers: what a
    /// device declares it wrote when it completes the chain. Buffers come from the chain's own
    /// validated record (or a validated re-walk), translated back to guest-physical addresses.
    /// If the guest rewrote a long chain since pop (the re-walk throws), the pages seen so far are
    /// marked: a driver that changes a chain it made available has no claim on its contents.
    public func markWritten(_ chain: Chain, written: UInt32) {
        guard written > 0 else { return }
        var left = UInt64(written)
        var buffers = chain.buffers()
        let regions = chain.start.regions
        while left > 0, let buffer = try? buffers.next() {
            guard buffer.isWritable, let base = buffer.bytes.baseAddress else { continue }
            let length = min(left, UInt64(buffer.bytes.count))
            if let address = regions.guestPhysical(host: base) { mark(guestPhysical: address, length: length) }
            left -= length
        }
    }

    /// Whether page `page` is marked (a relaxed look; for tests and diagnostics).
    public func isDirty(page: UInt64) -> Bool {
        guard page < pageCount else { return false }
        // Safe: page / 8 < byteCount.
        return vmm_load_relaxed_u8(bits + Int(page / 8)) & (1 << UInt8(page % 8)) != 0
    }

    /// The front-end's side: the dirty pages, in ascending order, each bit cleared as it is read
    /// (atomic exchange per byte, so a bit the back-end sets meanwhile is never lost).
    public func takeDirtyPages() -> [UInt64] {
        var pages: [UInt64] = []
        for byte in 0..<mapping.size {
            // Safe: byte < byteCount. A relaxed load first skips clean bytes without a write.
            guard vmm_load_relaxed_u8(bits + byte) != 0 else { continue }
            let value = vmm_atomic_exchange_u8(bits + byte, 0)
            for bit in 0..<8 where value & (1 << UInt8(bit)) != 0 {
                pages.append(UInt64(byte) * 8 + UInt64(bit))
            }
        }
        return pages
    }
}
