extension FrontendMessage {
    /// Appends the payload bytes (not the header) to `buffer`.
    func encodePayload(into buffer: inout [UInt8]) {
        switch self {
        case .getFeatures, .setOwner, .resetOwner, .setLogFD, .getProtocolFeatures, .getQueueNum,
            .setBackendRequestFD, .postcopyAdvise, .postcopyListen, .postcopyEnd, .gpuSetSocket,
            .resetDevice, .getMaxMemSlots, .getStatus, .checkDeviceState:
            break
        case .setFeatures(let features): buffer.appendWire(features.rawValue)
        case .setProtocolFeatures(let features): buffer.appendWire(features.rawValue)
        case .sendRARP(let value), .netSetMTU(let value), .closeCryptoSession(let value), .setStatus(let value):
            buffer.appendWire(value)
        case .setMemTable(let table): table.encode(into: &buffer)
        case .setLogBase(let log): log.encode(into: &buffer)
        case .setVringNum(let state), .setVringBase(let state), .getVringBase(let state),
            .setVringEnable(let state), .setVringEndian(let state), .vringKick(let state):
            state.encode(into: &buffer)
        case .setVringAddr(let address): address.encode(into: &buffer)
        case .setVringKick(let file), .setVringCall(let file), .setVringErr(let file): file.encode(into: &buffer)
        case .iotlbMessage(let message): message.encode(into: &buffer)
        case .getConfig(let config), .setConfig(let config): config.encode(into: &buffer)
        case .getInflightFD(let inflight), .setInflightFD(let inflight): inflight.encode(into: &buffer)
        case .addMemReg(let region), .remMemReg(let region): region.encode(into: &buffer)
        case .getSharedObject(let object): object.encode(into: &buffer)
        case .setDeviceStateFD(let transfer): transfer.encode(into: &buffer)
        }
    }
}
