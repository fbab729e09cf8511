import Virtio

/// A front-end → back-end request with its typed payload (the vhost-user specification's
/// "Front-end message types"), without fds.
///
/// `Message` pairs it with the fds that arrived; a front-end encodes it with
/// `Message.encodeRequest` and passes its fds to the transport separately.
/// `CREATE_CRYPTO_SESSION` has no case: its payload is device-private and unsupported.
/// Thread-safety: a value type; freely shareable.
public enum FrontendMessage: Hashable, Sendable {
    /// Asks for the back-end's feature bits (reply: `u64`).
    case getFeatures
    /// Acknowledges the feature bits to use (`u64`).
    case setFeatures(VirtioFeatures)
    /// Starts the session (sent once per connection).
    case setOwner
    /// Deprecated; at most disables the rings.
    case resetOwner
    /// Replaces the guest memory map.
    /// Carries one fd per region, in order.
    case setMemTable(MemoryTable)
    /// Installs the dirty-page bitmap.
    /// Carries one fd (the bitmap).
    case setLogBase(LogDescription)
    /// Gives the eventfd to signal after logging.
    /// Carries one fd (an eventfd).
    case setLogFD
    /// Sets a ring's queue size (vring state).
    case setVringNum(VringState)
    /// Sets a ring's addresses (vring address).
    case setVringAddr(VringAddress)
    /// Sets where a ring resumes (vring state).
    case setVringBase(VringState)
    /// Stops a ring and asks where it stopped (reply: vring state).
    case getVringBase(VringState)
    /// Sets a ring's kick fd.
    /// Carries one fd unless `hasFile` is false.
    case setVringKick(VringFileIndex)
    /// Sets a ring's call fd.
    /// Carries one fd unless `hasFile` is false.
    case setVringCall(VringFileIndex)
    /// Sets a ring's error fd.
    /// Carries one fd unless `hasFile` is false.
    case setVringErr(VringFileIndex)
    /// Asks for the protocol feature bits (reply: `u64`).
    case getProtocolFeatures
    /// Acknowledges the protocol features to use (`u64`).
    case setProtocolFeatures(ProtocolFeatures)
    /// Asks for the most queues supported (reply: `u64`, PF_MQ).
    case getQueueNum
    /// Enables (1) or disables (0) a ring (vring state).
    case setVringEnable(VringState)
    /// Asks a net back-end to announce the guest MAC (PF_RARP).
    /// The guest MAC in the first 6 bytes of the `u64`, in memory order.
    case sendRARP(UInt64)
    /// Sets the net MTU (`u64`, PF_NET_MTU).
    case netSetMTU(UInt64)
    /// Gives the back-end channel socket (PF_BACKEND_REQ).
    /// Carries one fd (the back-end channel socket).
    case setBackendRequestFD
    /// Updates or invalidates an IOTLB entry (IOTLB message).
    case iotlbMessage(IOTLBMessage)
    /// Sets a legacy ring's endianness (vring state, PF_CROSS_ENDIAN).
    case setVringEndian(VringState)
    /// Reads device config space (config; reply: config of the same size).
    case getConfig(ConfigSpace)
    /// Writes device config space (config).
    case setConfig(ConfigSpace)
    /// vhost-crypto only (`u64` session id).
    case closeCryptoSession(UInt64)
    /// Postcopy migration is coming (reply: userfaultfd).
    case postcopyAdvise
    /// Switches to postcopy (reply: `u64`).
    case postcopyListen
    /// Postcopy is over (reply: `u64`).
    case postcopyEnd
    /// Asks for an inflight buffer (inflight description; reply: description + fd).
    case getInflightFD(InflightDescription)
    /// Hands the inflight buffer back.
    /// Carries one fd (the inflight buffer).
    case setInflightFD(InflightDescription)
    /// vhost-user-gpu private socket.
    /// Carries one fd (the vhost-user-gpu socket).
    case gpuSetSocket
    /// Disables all rings and resets the device (PF_RESET_DEVICE).
    case resetDevice
    /// In-band kick (vring state, PF_INBAND_NOTIFICATIONS).
    case vringKick(VringState)
    /// Asks how many regions the back-end can map (reply: `u64`).
    case getMaxMemSlots
    /// Maps one more region.
    /// Carries one fd (the region's memory).
    case addMemReg(SingleMemoryRegion)
    /// Unmaps one region.
    /// Carries no fd (one that arrives anyway is closed: some front-ends send it).
    case remMemReg(SingleMemoryRegion)
    /// Sets the virtio device status byte (`u64`, PF_STATUS).
    case setStatus(UInt64)
    /// Asks for the device status (reply: `u64`).
    case getStatus
    /// Looks up an exported object by UUID (shared object).
    case getSharedObject(SharedObject)
    /// Sets up device-state migration.
    /// Carries one fd (the state transfer pipe).
    case setDeviceStateFD(DeviceStateTransfer)
    /// Asks whether the state transfer succeeded (reply: `u64`).
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
