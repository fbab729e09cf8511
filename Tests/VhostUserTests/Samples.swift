import VhostUserProtocol

/// One region as QEMU 7.2 sent it in the blk trace.
let traceRegion = MemoryRegion(
    guestPhysicalAddress: 0, size: 0x1000_0000, userAddress: 0x7f6d_93ff_f000, mmapOffset: 0)

let sampleUUID = SharedObject(uuid: (0..<16).map { UInt8($0) * 17 })!

/// A valid sample of every front-end request the codec decodes (all of table 2.1 except
/// CREATE_CRYPTO_SESSION).
let frontendSamples: [FrontendMessage] = [
    .getFeatures,
    .setFeatures([.version1, .protocolFeatures, .ringEventIndex]),
    .setOwner,
    .resetOwner,
    .setMemTable(MemoryTable(regions: [traceRegion])),
    .setMemTable(MemoryTable(regions: [])),
    .setMemTable(
        MemoryTable(
            regions: (0..<8).map {
                MemoryRegion(
                    guestPhysicalAddress: UInt64($0) << 30, size: 1 << 30,
                    userAddress: 0x7f00_0000_0000 + (UInt64($0) << 30), mmapOffset: UInt64($0) * 4096)
            })),
    .setLogBase(LogDescription(size: 0x2000, offset: 0x1000)),
    .setLogFD,
    .setVringNum(VringState(index: 1, num: 256)),
    .setVringAddr(
        VringAddress(
            index: 0, flags: .log, descriptorTable: 0x7f6d_a3fd_c000, usedRing: 0x7f6d_a3fd_d000,
            availableRing: 0x7f6d_a3fd_c800, logGuestAddress: 0xffd_e000)),
    .setVringBase(VringState(index: 0, num: 0x8001_0004)),
    .getVringBase(VringState(index: 2, num: 0)),
    .setVringKick(VringFileIndex(index: 0, hasFile: true)),
    .setVringKick(VringFileIndex(index: 255, hasFile: false)),
    .setVringCall(VringFileIndex(index: 3, hasFile: true)),
    .setVringCall(VringFileIndex(index: 3, hasFile: false)),
    .setVringErr(VringFileIndex(index: 1, hasFile: true)),
    .getProtocolFeatures,
    .setProtocolFeatures([.multiqueue, .replyAck, .config]),
    .getQueueNum,
    .setVringEnable(VringState(index: 0, num: 1)),
    .sendRARP(0x0000_5634_1200_5452),
    .netSetMTU(1500),
    .setBackendRequestFD,
    .iotlbMessage(IOTLBMessage(iova: 0x1000, size: 0x2000, userAddress: 0x7f00_0000_1000, permissions: 3, type: 2)),
    .setVringEndian(VringState(index: 0, num: 1)),
    .getConfig(ConfigSpace(offset: 0, flags: 0, data: [UInt8](repeating: 0, count: 57))),
    .setConfig(ConfigSpace(offset: 32, flags: 0, data: [1])),
    .setConfig(ConfigSpace(offset: 0, flags: 1, data: (0..<256).map { UInt8($0) })),
    .closeCryptoSession(7),
    .postcopyAdvise,
    .postcopyListen,
    .postcopyEnd,
    .getInflightFD(InflightDescription(mmapSize: 0, mmapOffset: 0, queueCount: 1, queueSize: 128)),
    .setInflightFD(InflightDescription(mmapSize: 8256, mmapOffset: 0, queueCount: 2, queueSize: 256)),
    .gpuSetSocket,
    .resetDevice,
    .vringKick(VringState(index: 0, num: 0)),
    .getMaxMemSlots,
    .addMemReg(SingleMemoryRegion(region: traceRegion)),
    .remMemReg(SingleMemoryRegion(region: traceRegion)),
    .setStatus(0xb),
    .getStatus,
    .getSharedObject(sampleUUID),
    .setDeviceStateFD(DeviceStateTransfer(direction: .load)),
    .checkDeviceState,
]

/// A valid sample of every back-end request (table 2.2).
let backendSamples: [BackendMessage] = [
    .iotlbMessage(IOTLBMessage(iova: 0x4000, size: 0, userAddress: 0, permissions: 1, type: 1)),
    .configChange,
    .vringHostNotifier(VringArea(file: VringFileIndex(index: 1, hasFile: true), size: 4096, offset: 8192)),
    .vringHostNotifier(VringArea(file: VringFileIndex(index: 1, hasFile: false), size: 0, offset: 0)),
    .vringCall(VringState(index: 0, num: 0)),
    .vringErr(VringState(index: 1, num: 0)),
    .sharedObjectAdd(sampleUUID),
    .sharedObjectRemove(sampleUUID),
    .sharedObjectLookup(sampleUUID),
]
