import VhostUserProtocol
import VMMSysUtil
import Virtio

/// Why a back-end session refused a front-end request, or failed to serve it.
///
/// Every case says what the peer sent and which rule it broke; `description` renders it for logs.
/// The server logs it, answers a NEED_REPLY request with a failure ack, and closes the connection.
/// Thread-safety: a value type; freely shareable.
public enum VhostUserError: Error, Sendable, CustomStringConvertible {
    /// The message itself was malformed (header, payload layout, fd count).
    case protocolViolation(ProtocolError)
    /// A request whose protocol feature was not negotiated (or that this back-end never offers).
    case notNegotiated(FrontendRequest)
    /// `SET_FEATURES` acked bits that were not offered.
    case unofferedFeatures(acked: UInt64, offered: UInt64)
    /// `SET_PROTOCOL_FEATURES` acked bits that were not offered.
    case unofferedProtocolFeatures(acked: UInt64, offered: UInt64)
    /// `SET_FEATURES` changed a ring-format bit while a ring is started.
    case featuresChangedWhileStarted(old: UInt64, new: UInt64)
    /// A ring index at or beyond the device's queue count.
    case queueIndexOutOfRange(FrontendRequest, index: UInt32, queueCount: Int)
    /// `SET_VRING_NUM` with a size that is zero, not a power of two, or above the maximum.
    case invalidQueueSize(index: Int, size: UInt32, maximum: Int)
    /// `SET_VRING_BASE` with bits that cannot be a ring base (split: above 0xFFFF).
    case invalidRingBase(index: Int, base: UInt32)
    /// `SET_VRING_ENABLE` with a value other than 0 or 1.
    case invalidEnable(index: Int, value: UInt32)
    /// A ring-configuration request for a started ring (stop it with `GET_VRING_BASE` first).
    case ringStarted(FrontendRequest, index: Int)
    /// `SET_VRING_ADDR` asked for used-ring logging (`VHOST_VRING_F_LOG`) while `VHOST_F_LOG_ALL`
    /// is not acked.
    case ringLoggingNotNegotiated(index: Int)
    /// A ring's used-ring log address (`log_guest_addr`) range is not guest memory, or not covered
    /// by the dirty log.
    case invalidRingLogAddress(index: Int, address: UInt64, length: UInt64, reason: String)
    /// `SET_LOG_BASE` with a size that is zero, too large, or too small for the memory the log
    /// must cover; or a memory table the active log does not cover.
    case invalidLog(size: UInt64, offset: UInt64, required: UInt64)
    /// The log fd could not be mapped (not mappable, or the range is beyond its end).
    case logMapping(MappingError)
    /// `SET_LOG_FD` with an fd that cannot be signalled.
    case invalidLogNotifier(SystemCallError)
    /// `SET_BACKEND_REQ_FD` with an fd that is not a stream socket.
    case invalidBackendChannel(reason: String)
    /// A back-end channel request failed: no channel, closed, or its socket failed.
    case backendChannel(BackendRequest, reason: String)
    /// The front-end did not answer a back-end channel request with REPLY_ACK in time; the channel
    /// is closed (a late answer would desynchronise it).
    case backendChannelTimeout(BackendRequest)
    /// The front-end answered a back-end channel request with a failure (non-zero) ack.
    case backendChannelRefused(BackendRequest, ack: UInt64)
    /// The ring could not be configured in guest memory (misaligned, outside memory, ...).
    case ringSetup(index: Int, VirtqueueError)
    /// A received kick/call/err fd that is not an eventfd, pipe or socket of the right direction.
    case invalidNotifier(FrontendRequest, index: Int, SystemCallError)
    /// A memory region could not be mapped (empty, overflowing, beyond the end of its fd, ...).
    case memoryMapping(MappingError)
    /// The memory table is inconsistent (overlaps, overflow).
    case memoryTable(GuestMemoryError)
    /// More regions than `GET_MAX_MEM_SLOTS` allows.
    case tooManyMemoryRegions(count: Int, limit: Int)
    /// `REM_MEM_REG` named a region that is not mapped.
    case memoryRegionNotFound(guestPhysicalAddress: UInt64, size: UInt64)
    /// A region change would leave a started ring outside guest memory.
    case memoryInUse(index: Int, VirtqueueError)
    /// `GET/SET_CONFIG` beyond the device's config space, or with flags other than 0 and 1.
    case configOutOfRange(offset: UInt32, size: Int, flags: UInt32, configSize: Int)
    /// The device refused a `SET_CONFIG` write.
    case configWriteRefused(offset: Int, size: Int)
    /// `SET_STATUS` with bits that are not a virtio status byte.
    case invalidStatus(UInt64)
    /// `GET/SET_INFLIGHT_FD` with a queue count or size this device cannot have, or a buffer too small.
    case invalidInflight(InflightDescription, reason: String)
    /// The inflight buffer of a ring holds entries that cannot be valid (hostile or corrupt).
    case corruptInflight(index: Int, reason: String)
    /// Creating or mapping the inflight buffer failed.
    case inflightMemory(SharedMemoryError)
    /// Starting a queue worker thread or its poller failed.
    case worker(String)
    /// A device event source could not be watched (`VhostUserQueue.watch`).
    case eventSource(index: Int, String)
    /// The device declares a feature bit the framework cannot serve (refused at session creation).
    case unservableFeature(bit: Int, reason: String)

    public var description: String {
        switch self {
        case .protocolViolation(let error): "protocol violation: \(error)"
        case .notNegotiated(let request): "\(request): its protocol feature was not negotiated (or is not offered)"
        case .unofferedFeatures(let acked, let offered):
            "SET_FEATURES: acked \(hexString(acked)) includes \(hexString(acked & ~offered)), not offered (offered \(hexString(offered)))"
        case .unofferedProtocolFeatures(let acked, let offered):
            "SET_PROTOCOL_FEATURES: acked \(hexString(acked)) includes \(hexString(acked & ~offered)), not offered"
        case .featuresChangedWhileStarted(let old, let new):
            "SET_FEATURES: ring format bits changed (\(hexString(old)) -> \(hexString(new))) while a ring is started"
        case .queueIndexOutOfRange(let request, let index, let count):
            "\(request): ring index \(index), the device has \(count) queue(s)"
        case .invalidQueueSize(let index, let size, let maximum):
            "SET_VRING_NUM: ring \(index) size \(size) is not a power of two in 1...\(maximum)"
        case .invalidRingBase(let index, let base):
            "SET_VRING_BASE: ring \(index) base \(hexString(UInt64(base))) cannot be this ring's base"
        case .invalidEnable(let index, let value): "SET_VRING_ENABLE: ring \(index) value \(value), expected 0 or 1"
        case .ringStarted(let request, let index):
            "\(request): ring \(index) is started; stop it (GET_VRING_BASE) first"
        case .ringLoggingNotNegotiated(let index):
            "SET_VRING_ADDR: ring \(index) asks for used-ring logging without VHOST_F_LOG_ALL acked"
        case .invalidRingLogAddress(let index, let address, let length, let reason):
            "ring \(index): used-ring log range \(hexString(address)) + \(length) \(reason)"
        case .invalidLog(let size, let offset, let required):
            "dirty log of \(size) bytes at offset \(offset): must be 1...\(hexString(maximumLogSize)) bytes and cover guest memory (\(required) bytes)"
        case .logMapping(let error): "dirty log: \(error)"
        case .invalidLogNotifier(let error): "SET_LOG_FD: fd refused: \(error)"
        case .invalidBackendChannel(let reason): "SET_BACKEND_REQ_FD: \(reason)"
        case .backendChannel(let request, let reason): "back-end channel \(request): \(reason)"
        case .backendChannelTimeout(let request):
            "back-end channel \(request): the front-end did not answer in time; channel closed"
        case .backendChannelRefused(let request, let ack):
            "back-end channel \(request): the front-end answered \(ack) (failure)"
        case .ringSetup(let index, let error): "ring \(index): \(error)"
        case .invalidNotifier(let request, let index, let error): "\(request): ring \(index) fd refused: \(error)"
        case .memoryMapping(let error): "memory region: \(error)"
        case .memoryTable(let error): "memory table: \(error)"
        case .tooManyMemoryRegions(let count, let limit): "\(count) memory regions, at most \(limit) supported"
        case .memoryRegionNotFound(let address, let size):
            "REM_MEM_REG: no region at \(hexString(address)) of \(size) bytes"
        case .memoryInUse(let index, let error): "memory change would unmap started ring \(index): \(error)"
        case .configOutOfRange(let offset, let size, let flags, let configSize):
            "config access offset \(offset) size \(size) flags \(flags): config space is \(configSize) bytes, flags 0 or 1"
        case .configWriteRefused(let offset, let size): "SET_CONFIG of \(size) bytes at \(offset) refused by the device"
        case .invalidStatus(let value): "SET_STATUS: \(hexString(value)) is not a virtio status byte"
        case .invalidInflight(let description, let reason):
            "inflight buffer (queues \(description.queueCount), size \(description.queueSize), mmap \(description.mmapSize) at \(description.mmapOffset)): \(reason)"
        case .corruptInflight(let index, let reason): "ring \(index) inflight record: \(reason)"
        case .inflightMemory(let error): "inflight buffer: \(error)"
        case .worker(let reason): "queue worker: \(reason)"
        case .eventSource(let index, let reason): "ring \(index) event source: \(reason)"
        case .unservableFeature(let bit, let reason): "device feature bit \(bit) cannot be served: \(reason)"
        }
    }
}

func hexString(_ value: UInt64) -> String { "0x" + String(value, radix: 16) }
