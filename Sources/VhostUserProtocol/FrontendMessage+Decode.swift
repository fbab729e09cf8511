import Virtio

extension FrontendMessage {
    /// Decodes the payload of a front-end request whose header already passed validation.
    ///
    /// - Throws: `ProtocolError` when the payload breaks its layout's rules.
    static func decode(_ request: FrontendRequest, payload: UnsafeRawBufferPointer) throws(ProtocolError) -> Self {
        let any = AnyRequest.frontend(request)
        func u64() throws(ProtocolError) -> UInt64 {
            try requirePayloadSize(payload, 8, any)
            var reader = WireReader(payload)
            return reader.read()
        }
        func empty() throws(ProtocolError) {
            try requirePayloadSize(payload, 0, any)
        }
        switch request {
        case .getFeatures:
            try empty()
            return .getFeatures
        case .setFeatures: return .setFeatures(VirtioFeatures(rawValue: try u64()))
        case .setOwner:
            try empty()
            return .setOwner
        case .resetOwner:
            try empty()
            return .resetOwner
        case .setMemTable: return .setMemTable(try MemoryTable(decoding: payload, for: any))
        case .setLogBase: return .setLogBase(try LogDescription(decoding: payload, for: any))
        case .setLogFD:
            try empty()
            return .setLogFD
        case .setVringNum: return .setVringNum(try VringState(decoding: payload, for: any))
        case .setVringAddr: return .setVringAddr(try VringAddress(decoding: payload, for: any))
        case .setVringBase: return .setVringBase(try VringState(decoding: payload, for: any))
        case .getVringBase: return .getVringBase(try VringState(decoding: payload, for: any))
        case .setVringKick: return .setVringKick(try VringFileIndex(decoding: payload, for: any))
        case .setVringCall: return .setVringCall(try VringFileIndex(decoding: payload, for: any))
        case .setVringErr: return .setVringErr(try VringFileIndex(decoding: payload, for: any))
        case .getProtocolFeatures:
            try empty()
            return .getProtocolFeatures
        case .setProtocolFeatures: return .setProtocolFeatures(ProtocolFeatures(rawValue: try u64()))
        case .getQueueNum:
            try empty()
            return .getQueueNum
        case .setVringEnable: return .setVringEnable(try VringState(decoding: payload, for: any))
        case .sendRARP: return .sendRARP(try u64())
        case .netSetMTU: return .netSetMTU(try u64())
        case .setBackendRequestFD:
            try empty()
            return .setBackendRequestFD
        case .iotlbMessage: return .iotlbMessage(try IOTLBMessage(decoding: payload, for: any))
        case .setVringEndian: return .setVringEndian(try VringState(decoding: payload, for: any))
        case .getConfig: return .getConfig(try ConfigSpace(decoding: payload, for: any))
        case .setConfig: return .setConfig(try ConfigSpace(decoding: payload, for: any))
        case .createCryptoSession: throw .unsupportedRequest(any)
        case .closeCryptoSession: return .closeCryptoSession(try u64())
        case .postcopyAdvise:
            try empty()
            return .postcopyAdvise
        case .postcopyListen:
            try empty()
            return .postcopyListen
        case .postcopyEnd:
            try empty()
            return .postcopyEnd
        case .getInflightFD: return .getInflightFD(try InflightDescription(decoding: payload, for: any))
        case .setInflightFD: return .setInflightFD(try InflightDescription(decoding: payload, for: any))
        case .gpuSetSocket:
            try empty()
            return .gpuSetSocket
        case .resetDevice:
            try empty()
            return .resetDevice
        case .vringKick: return .vringKick(try VringState(decoding: payload, for: any))
        case .getMaxMemSlots:
            try empty()
            return .getMaxMemSlots
        case .addMemReg: return .addMemReg(try SingleMemoryRegion(decoding: payload, for: any))
        case .remMemReg: return .remMemReg(try SingleMemoryRegion(decoding: payload, for: any))
        case .setStatus: return .setStatus(try u64())
        case .getStatus:
            try empty()
            return .getStatus
        case .getSharedObject: return .getSharedObject(try SharedObject(decoding: payload, for: any))
        case .setDeviceStateFD: return .setDeviceStateFD(try DeviceStateTransfer(decoding: payload, for: any))
        case .checkDeviceState:
            try empty()
            return .checkDeviceState
        }
    }
}
