/// Why a guest memory table was refused, or why an access into it failed.
public enum GuestMemoryError: Error, Hashable, Sendable, CustomStringConvertible {
    /// A region has size zero.
    case emptyRegion(guestPhysicalAddress: UInt64)
    /// `address + size` of a region does not fit in 64 bits (guest-physical or front-end address).
    case regionOverflow(address: UInt64, size: UInt64)
    /// The region is larger than the mapping that backs it.
    case mappingTooSmall(guestPhysicalAddress: UInt64, size: UInt64, mappingSize: Int)
    /// Two regions overlap in guest-physical or in front-end address space.
    case overlappingRegions(first: UInt64, second: UInt64)
    /// `[address, address + length)` is not entirely backed by guest memory (or overflows).
    case outsideMemory(address: UInt64, length: UInt64)

    public var description: String {
        switch self {
        case let .emptyRegion(gpa): return "guest memory region at 0x\(String(gpa, radix: 16)) is empty"
        case let .regionOverflow(address, size):
            return "guest memory region 0x\(String(address, radix: 16)) + \(size) overflows 64 bits"
        case let .mappingTooSmall(gpa, size, mappingSize):
            return
                "guest memory region at 0x\(String(gpa, radix: 16)) of \(size) bytes exceeds its \(mappingSize)-byte mapping"
        case let .overlappingRegions(first, second):
            return "guest memory regions at 0x\(String(first, radix: 16)) and 0x\(String(second, radix: 16)) overlap"
        case let .outsideMemory(address, length):
            return "guest range 0x\(String(address, radix: 16)) + \(length) is not inside guest memory"
        }
    }
}
