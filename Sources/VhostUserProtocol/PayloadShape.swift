/// The payload sizes a request code allows, checked from the header alone so a receiver can refuse
/// a message before reading its payload.
enum PayloadShape: Equatable, Sendable {
    /// No payload: size 0.
    case empty
    /// A fixed-size struct: size exactly this.
    case fixed(Int)
    /// `SET_MEM_TABLE`: 8 + 32·n with n ≤ 8 (`VHOST_MEMORY_BASELINE_NREGIONS`).
    case memoryTable
    /// `GET/SET_CONFIG`: 12 + size with size ≤ 256 (`VHOST_USER_MAX_CONFIG_SIZE`).
    case config
    /// A request this codec does not decode (its layout is device-private).
    case unsupported

    /// The largest size this shape allows.
    var maximum: Int {
        switch self {
        case .empty, .unsupported: 0
        case .fixed(let size): size
        case .memoryTable: MemoryTable.headerSize + MemoryTable.maximumRegionCount * MemoryRegion.wireSize
        case .config: ConfigSpace.headerSize + ConfigSpace.maximumDataSize
        }
    }

    /// Throws unless `size` fits this shape: exact for fixed payloads, bounded and well-formed
    /// for variable ones. The count of regions or config bytes is checked again
    /// against the payload's own fields when it is decoded.
    func check(size: UInt32, request: AnyRequest) throws(ProtocolError) {
        switch self {
        case .unsupported:
            throw .unsupportedRequest(request)
        case .empty:
            if size != 0 { throw .payloadSize(request: request, size: Int(clamping: size), expected: 0) }
        case .fixed(let expected):
            if size != expected { throw .payloadSize(request: request, size: Int(clamping: size), expected: expected) }
        case .memoryTable, .config:
            let maximum = self.maximum
            guard size <= maximum else { throw .payloadTooLarge(request: request, size: size, limit: maximum) }
            let size = Int(size)
            let minimum = self == .memoryTable ? MemoryTable.headerSize : ConfigSpace.headerSize
            if size < minimum { throw .payloadTooSmall(request: request, size: size, minimum: minimum) }
            if self == .memoryTable && (size - minimum) % MemoryRegion.wireSize != 0 {
                throw .memoryTableSize(request: request, size: size)
            }
        }
    }
}
