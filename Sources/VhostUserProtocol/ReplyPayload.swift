/// The payload of a reply: a REPLY_ACK or `u64` answer, or a request's own typed reply.
///
/// Thread-safety: a value type; freely shareable.
public enum ReplyPayload: Hashable, Sendable {
    /// No payload (`POSTCOPY_ADVISE`; a `GET_CONFIG` failure).
    case empty
    /// A `u64`: the answer to `GET_FEATURES` and friends, or an ack (0 = success).
    case u64(UInt64)
    /// `GET_VRING_BASE`: the ring index and its base.
    case vringState(VringState)
    /// `GET_CONFIG`: the config bytes, same offset and size as requested.
    case config(ConfigSpace)
    /// `GET_INFLIGHT_FD`: the buffer description (its fd travels separately).
    case inflight(InflightDescription)
    /// Postcopy `SET_MEM_TABLE`: the table with the back-end's addresses.
    case memoryTable(MemoryTable)
    /// Postcopy `ADD_MEM_REG`: the region with the back-end's address.
    case memoryRegion(SingleMemoryRegion)
    /// `GET_SHARED_OBJECT`: the UUID echoed.
    case sharedObject(SharedObject)

    func encode(into buffer: inout [UInt8]) {
        switch self {
        case .empty: break
        case .u64(let value): buffer.appendWire(value)
        case .vringState(let state): state.encode(into: &buffer)
        case .config(let config): config.encode(into: &buffer)
        case .inflight(let inflight): inflight.encode(into: &buffer)
        case .memoryTable(let table): table.encode(into: &buffer)
        case .memoryRegion(let region): region.encode(into: &buffer)
        case .sharedObject(let object): object.encode(into: &buffer)
        }
    }
}
