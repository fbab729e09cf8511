/// Front-end → back-end request codes (vhost-user table 2.1, codes 1-43).
///
/// Decoding an unknown number yields `ProtocolError.unknownRequest`, never a crash. Code 0 (`NONE`)
/// is not a request. `GET_SHMEM_CONFIG` (44) is only proposed upstream and is not listed.
/// Thread-safety: a value type; freely shareable.
public enum FrontendRequest: UInt32, CaseIterable, Hashable, Sendable, CustomStringConvertible {
    /// Asks for the back-end's feature bits (reply: `u64`).
    case getFeatures = 1
    /// Acknowledges the feature bits to use (`u64`).
    case setFeatures = 2
    /// Starts the session (sent once per connection).
    case setOwner = 3
    /// Deprecated; at most disables the rings.
    case resetOwner = 4
    /// Replaces the guest memory map (memory table, one fd per region).
    case setMemTable = 5
    /// Installs the dirty-page bitmap (log description, one fd).
    case setLogBase = 6
    /// Gives the eventfd to signal after logging (one fd).
    case setLogFD = 7
    /// Sets a ring's queue size (vring state).
    case setVringNum = 8
    /// Sets a ring's addresses (vring address).
    case setVringAddr = 9
    /// Sets where a ring resumes (vring state).
    case setVringBase = 10
    /// Stops a ring and asks where it stopped (reply: vring state).
    case getVringBase = 11
    /// Sets a ring's kick fd (`u64` index, bit 8 = no fd).
    case setVringKick = 12
    /// Sets a ring's call fd (`u64` index, bit 8 = no fd).
    case setVringCall = 13
    /// Sets a ring's error fd (`u64` index, bit 8 = no fd).
    case setVringErr = 14
    /// Asks for the protocol feature bits (reply: `u64`).
    case getProtocolFeatures = 15
    /// Acknowledges the protocol features to use (`u64`).
    case setProtocolFeatures = 16
    /// Asks for the most queues supported (reply: `u64`, PF_MQ).
    case getQueueNum = 17
    /// Enables (1) or disables (0) a ring (vring state).
    case setVringEnable = 18
    /// Asks a net back-end to announce the guest MAC (`u64`, PF_RARP).
    case sendRARP = 19
    /// Sets the net MTU (`u64`, PF_NET_MTU).
    case netSetMTU = 20
    /// Gives the back-end channel socket (one fd, PF_BACKEND_REQ).
    case setBackendRequestFD = 21
    /// Updates or invalidates an IOTLB entry (IOTLB message).
    case iotlbMessage = 22
    /// Sets a legacy ring's endianness (vring state, PF_CROSS_ENDIAN).
    case setVringEndian = 23
    /// Reads device config space (config; reply: config of the same size).
    case getConfig = 24
    /// Writes device config space (config).
    case setConfig = 25
    /// vhost-crypto only; not supported by this codec.
    case createCryptoSession = 26
    /// vhost-crypto only (`u64` session id).
    case closeCryptoSession = 27
    /// Postcopy migration is coming (reply: userfaultfd).
    case postcopyAdvise = 28
    /// Switches to postcopy (reply: `u64`).
    case postcopyListen = 29
    /// Postcopy is over (reply: `u64`).
    case postcopyEnd = 30
    /// Asks for an inflight buffer (inflight description; reply: description + fd).
    case getInflightFD = 31
    /// Hands the inflight buffer back (inflight description, one fd).
    case setInflightFD = 32
    /// vhost-user-gpu private socket (one fd).
    case gpuSetSocket = 33
    /// Disables all rings and resets the device (PF_RESET_DEVICE).
    case resetDevice = 34
    /// In-band kick (vring state, PF_INBAND_NOTIFICATIONS).
    case vringKick = 35
    /// Asks how many regions the back-end can map (reply: `u64`).
    case getMaxMemSlots = 36
    /// Maps one more region (single region, one fd).
    case addMemReg = 37
    /// Unmaps one region (single region).
    case remMemReg = 38
    /// Sets the virtio device status byte (`u64`, PF_STATUS).
    case setStatus = 39
    /// Asks for the device status (reply: `u64`).
    case getStatus = 40
    /// Looks up an exported object by UUID (shared object).
    case getSharedObject = 41
    /// Sets up device-state migration (transfer parameters, one fd).
    case setDeviceStateFD = 42
    /// Asks whether the state transfer succeeded (reply: `u64`).
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

    /// The request payload sizes allowed (the vhost-user specification's "Front-end message
    /// types" and the payload layouts of its "Message specification").
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

    /// The largest reply payload a back-end may send for this request: its own reply ("Front-end
    /// message types") or a
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
