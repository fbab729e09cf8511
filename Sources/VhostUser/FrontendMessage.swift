/// A front-end → back-end request with its typed payload (digest table 2.1), without fds.
///
/// `Message` pairs it with the fds that arrived; a front-end encodes it with
/// `Message.encodeRequest` and passes its fds to the transport separately.
/// `CREATE_CRYPTO_SESSION` has no case: its payload is device-private and unsupported.
/// Thread-safety: a value type; freely shareable.
public enum FrontendMessage: Hashable, Sendable {
    case getFeatures
    case setFeatures(VirtioFeatures)
    case setOwner
    case resetOwner
    /// Carries one fd per region, in order.
    case setMemTable(MemoryTable)
    /// Carries one fd (the bitmap).
    case setLogBase(LogDescription)
    /// Carries one fd (an eventfd).
    case setLogFD
    case setVringNum(VringState)
    case setVringAddr(VringAddress)
    case setVringBase(VringState)
    case getVringBase(VringState)
    /// Carries one fd unless `hasFile` is false.
    case setVringKick(VringFileIndex)
    /// Carries one fd unless `hasFile` is false.
    case setVringCall(VringFileIndex)
    /// Carries one fd unless `hasFile` is false.
    case setVringErr(VringFileIndex)
    case getProtocolFeatures
    case setProtocolFeatures(ProtocolFeatures)
    case getQueueNum
    case setVringEnable(VringState)
    /// The guest MAC in the first 6 bytes of the `u64`, in memory order.
    case sendRARP(UInt64)
    case netSetMTU(UInt64)
    /// Carries one fd (the back-end channel socket).
    case setBackendRequestFD
    case iotlbMessage(IOTLBMessage)
    case setVringEndian(VringState)
    case getConfig(ConfigSpace)
    case setConfig(ConfigSpace)
    case closeCryptoSession(UInt64)
    case postcopyAdvise
    case postcopyListen
    case postcopyEnd
    case getInflightFD(InflightDescription)
    /// Carries one fd (the inflight buffer).
    case setInflightFD(InflightDescription)
    /// Carries one fd (the vhost-user-gpu socket).
    case gpuSetSocket
    case resetDevice
    case vringKick(VringState)
    case getMaxMemSlots
    /// Carries one fd (the region's memory).
    case addMemReg(SingleMemoryRegion)
    /// Carries no fd (one that arrives anyway is closed: some front-ends send it).
    case remMemReg(SingleMemoryRegion)
    case setStatus(UInt64)
    case getStatus
    case getSharedObject(SharedObject)
    /// Carries one fd (the state transfer pipe).
    case setDeviceStateFD(DeviceStateTransfer)
    case checkDeviceState

    /// The request code.
    public var request: FrontendRequest {
        switch self {
        case .getFeatures: .getFeatures
        case .setFeatures: .setFeatures
        case .setOwner: .setOwner
        case .resetOwner: .resetOwner
        case .setMemTable: .setMemTable
        case .setLogBase: .setLogBase
        case .setLogFD: .setLogFD
        case .setVringNum: .setVringNum
        case .setVringAddr: .setVringAddr
        case .setVringBase: .setVringBase
        case .getVringBase: .getVringBase
        case .setVringKick: .setVringKick
        case .setVringCall: .setVringCall
        case .setVringErr: .setVringErr
        case .getProtocolFeatures: .getProtocolFeatures
        case .setProtocolFeatures: .setProtocolFeatures
        case .getQueueNum: .getQueueNum
        case .setVringEnable: .setVringEnable
        case .sendRARP: .sendRARP
        case .netSetMTU: .netSetMTU
        case .setBackendRequestFD: .setBackendRequestFD
        case .iotlbMessage: .iotlbMessage
        case .setVringEndian: .setVringEndian
        case .getConfig: .getConfig
        case .setConfig: .setConfig
        case .closeCryptoSession: .closeCryptoSession
        case .postcopyAdvise: .postcopyAdvise
        case .postcopyListen: .postcopyListen
        case .postcopyEnd: .postcopyEnd
        case .getInflightFD: .getInflightFD
        case .setInflightFD: .setInflightFD
        case .gpuSetSocket: .gpuSetSocket
        case .resetDevice: .resetDevice
        case .vringKick: .vringKick
        case .getMaxMemSlots: .getMaxMemSlots
        case .addMemReg: .addMemReg
        case .remMemReg: .remMemReg
        case .setStatus: .setStatus
        case .getStatus: .getStatus
        case .getSharedObject: .getSharedObject
        case .setDeviceStateFD: .setDeviceStateFD
        case .checkDeviceState: .checkDeviceState
        }
    }

    /// How many fds travel with this request.
    public var descriptorCount: Int {
        switch self {
        case .setMemTable(let table): table.regions.count
        case .setVringKick(let file), .setVringCall(let file), .setVringErr(let file): file.hasFile ? 1 : 0
        case .setLogBase, .setLogFD, .setBackendRequestFD, .setInflightFD, .gpuSetSocket, .addMemReg,
            .setDeviceStateFD:
            1
        default: 0
        }
    }
}
