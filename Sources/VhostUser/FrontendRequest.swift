/// Front-end → back-end request codes (vhost-user table 2.1, codes 1-43).
///
/// Decoding an unknown number yields `ProtocolError.unknownRequest`, never a crash. Code 0 (`NONE`)
/// is not a request. `GET_SHMEM_CONFIG` (44) is only proposed upstream and is not listed.
/// Thread-safety: a value type; freely shareable.
public enum FrontendRequest: UInt32, CaseIterable, Hashable, Sendable, CustomStringConvertible {
    case getFeatures = 1
    case setFeatures = 2
    case setOwner = 3
    case resetOwner = 4
    case setMemTable = 5
    case setLogBase = 6
    case setLogFD = 7
    case setVringNum = 8
    case setVringAddr = 9
    case setVringBase = 10
    case getVringBase = 11
    case setVringKick = 12
    case setVringCall = 13
    case setVringErr = 14
    case getProtocolFeatures = 15
    case setProtocolFeatures = 16
    case getQueueNum = 17
    case setVringEnable = 18
    case sendRARP = 19
    case netSetMTU = 20
    case setBackendRequestFD = 21
    case iotlbMessage = 22
    case setVringEndian = 23
    case getConfig = 24
    case setConfig = 25
    case createCryptoSession = 26
    case closeCryptoSession = 27
    case postcopyAdvise = 28
    case postcopyListen = 29
    case postcopyEnd = 30
    case getInflightFD = 31
    case setInflightFD = 32
    case gpuSetSocket = 33
    case resetDevice = 34
    case vringKick = 35
    case getMaxMemSlots = 36
    case addMemReg = 37
    case remMemReg = 38
    case setStatus = 39
    case getStatus = 40
    case getSharedObject = 41
    case setDeviceStateFD = 42
    case checkDeviceState = 43

    /// The name used by the vhost-user document, without the `VHOST_USER_` prefix.
    public var description: String {
        switch self {
        case .getFeatures: "GET_FEATURES"
        case .setFeatures: "SET_FEATURES"
        case .setOwner: "SET_OWNER"
        case .resetOwner: "RESET_OWNER"
        case .setMemTable: "SET_MEM_TABLE"
        case .setLogBase: "SET_LOG_BASE"
        case .setLogFD: "SET_LOG_FD"
        case .setVringNum: "SET_VRING_NUM"
        case .setVringAddr: "SET_VRING_ADDR"
        case .setVringBase: "SET_VRING_BASE"
        case .getVringBase: "GET_VRING_BASE"
        case .setVringKick: "SET_VRING_KICK"
        case .setVringCall: "SET_VRING_CALL"
        case .setVringErr: "SET_VRING_ERR"
        case .getProtocolFeatures: "GET_PROTOCOL_FEATURES"
        case .setProtocolFeatures: "SET_PROTOCOL_FEATURES"
        case .getQueueNum: "GET_QUEUE_NUM"
        case .setVringEnable: "SET_VRING_ENABLE"
        case .sendRARP: "SEND_RARP"
        case .netSetMTU: "NET_SET_MTU"
        case .setBackendRequestFD: "SET_BACKEND_REQ_FD"
        case .iotlbMessage: "IOTLB_MSG"
        case .setVringEndian: "SET_VRING_ENDIAN"
        case .getConfig: "GET_CONFIG"
        case .setConfig: "SET_CONFIG"
        case .createCryptoSession: "CREATE_CRYPTO_SESSION"
        case .closeCryptoSession: "CLOSE_CRYPTO_SESSION"
        case .postcopyAdvise: "POSTCOPY_ADVISE"
        case .postcopyListen: "POSTCOPY_LISTEN"
        case .postcopyEnd: "POSTCOPY_END"
        case .getInflightFD: "GET_INFLIGHT_FD"
        case .setInflightFD: "SET_INFLIGHT_FD"
        case .gpuSetSocket: "GPU_SET_SOCKET"
        case .resetDevice: "RESET_DEVICE"
        case .vringKick: "VRING_KICK"
        case .getMaxMemSlots: "GET_MAX_MEM_SLOTS"
        case .addMemReg: "ADD_MEM_REG"
        case .remMemReg: "REM_MEM_REG"
        case .setStatus: "SET_STATUS"
        case .getStatus: "GET_STATUS"
        case .getSharedObject: "GET_SHARED_OBJECT"
        case .setDeviceStateFD: "SET_DEVICE_STATE_FD"
        case .checkDeviceState: "CHECK_DEVICE_STATE"
        }
    }

    /// The request payload sizes allowed (§2.1 and §3 of the digest).
    var requestShape: PayloadShape {
        switch self {
        case .getFeatures, .setOwner, .resetOwner, .setLogFD, .getProtocolFeatures, .getQueueNum,
            .setBackendRequestFD, .postcopyAdvise, .postcopyListen, .postcopyEnd, .gpuSetSocket,
            .resetDevice, .getMaxMemSlots, .getStatus, .checkDeviceState:
            .empty
        case .setFeatures, .setVringKick, .setVringCall, .setVringErr, .setProtocolFeatures, .sendRARP,
            .netSetMTU, .closeCryptoSession, .setStatus:
            .fixed(8)
        case .setVringNum, .setVringBase, .getVringBase, .setVringEnable, .setVringEndian, .vringKick:
            .fixed(VringState.wireSize)
        case .setMemTable: .memoryTable
        // QEMU sends the 16-byte log struct although the document says u64.
        case .setLogBase: .fixed(LogDescription.wireSize)
        case .setVringAddr: .fixed(VringAddress.wireSize)
        case .iotlbMessage: .fixed(IOTLBMessage.wireSize)
        case .getConfig, .setConfig: .config
        case .getInflightFD, .setInflightFD: .fixed(InflightDescription.wireSize)
        case .addMemReg, .remMemReg: .fixed(SingleMemoryRegion.wireSize)
        case .getSharedObject: .fixed(SharedObject.wireSize)
        case .setDeviceStateFD: .fixed(DeviceStateTransfer.wireSize)
        // The crypto session struct is device-private and large; vhost-crypto is out of scope.
        case .createCryptoSession: .unsupported
        }
    }

    /// The largest reply payload a back-end may send for this request: its own reply (§2.1) or a
    /// REPLY_ACK `u64`, whichever is larger. Exact sizes are checked by the `Reply` decoders.
    var replyLimit: Int {
        switch self {
        case .getConfig: PayloadShape.config.maximum
        // Postcopy replies echo the memory table / region with the back-end's addresses.
        case .setMemTable: PayloadShape.memoryTable.maximum
        case .addMemReg: SingleMemoryRegion.wireSize
        case .getInflightFD: InflightDescription.wireSize
        // libvhost-user echoes the 16-byte UUID.
        case .getSharedObject: SharedObject.wireSize
        case .createCryptoSession: 0
        default: 8
        }
    }
}
