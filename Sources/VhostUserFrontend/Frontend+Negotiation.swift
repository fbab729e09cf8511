import VhostUserProtocol
import Virtio

/// What a front-end and back-end agreed on.
///
/// Thread-safety: a value type; freely shareable.
public struct NegotiatedFeatures: Hashable, Sendable {
    /// The back-end's `GET_FEATURES` answer.
    public internal(set) var offeredFeatures: VirtioFeatures
    /// The features sent with `SET_FEATURES` (offered ∩ wanted, plus PROTOCOL_FEATURES if offered).
    public internal(set) var features: VirtioFeatures
    /// The back-end's `GET_PROTOCOL_FEATURES` answer (empty if it lacks PROTOCOL_FEATURES).
    public internal(set) var offeredProtocolFeatures: ProtocolFeatures
    /// The protocol features sent with `SET_PROTOCOL_FEATURES`.
    public internal(set) var protocolFeatures: ProtocolFeatures
    /// `GET_QUEUE_NUM`: how many queues the back-end supports (nil without MQ).
    public internal(set) var queueCount: Int?
    /// `GET_MAX_MEM_SLOTS`: how many regions it can map (nil without CONFIGURE_MEM_SLOTS).
    public internal(set) var memorySlots: Int?
}

extension VhostUserFrontend {
    /// The protocol features this front-end implements and will accept: MQ, REPLY_ACK, CONFIG,
    /// INFLIGHT_SHMFD, RESET_DEVICE, CONFIGURE_MEM_SLOTS, STATUS, LOG_SHMFD (`startLogging`),
    /// BACKEND_REQ (`openBackendChannel`).
    public static let supportedProtocolFeatures: ProtocolFeatures = [
        .multiqueue, .replyAck, .config, .inflightSharedMemory, .resetDevice, .configureMemorySlots, .status,
        .logSharedMemory, .backendRequest,
    ]

    /// Feature bits this front-end never acks in negotiation: it has no IOTLB (ACCESS_PLATFORM) and
    /// no notification data in an eventfd kick (NOTIFICATION_DATA); LOG_ALL is acked only while
    /// logging (`startLogging`), as QEMU does during a migration.
    public static let unsupportedFeatures: VirtioFeatures = [.accessPlatform, .logAll, .notificationData]

    /// Negotiates as QEMU does: `GET_FEATURES`; if PROTOCOL_FEATURES is offered,
    /// `GET_PROTOCOL_FEATURES` and `SET_PROTOCOL_FEATURES` with offered ∩ `protocolFeatures` ∩
    /// `supportedProtocolFeatures`; `GET_QUEUE_NUM` (MQ); `GET_MAX_MEM_SLOTS` (CONFIGURE_MEM_SLOTS);
    /// `SET_OWNER`; `SET_FEATURES` with offered ∩ `features` (minus `unsupportedFeatures`, plus
    /// PROTOCOL_FEATURES when offered); with STATUS, `SET_STATUS` (ACKNOWLEDGE | DRIVER |
    /// FEATURES_OK) and `GET_STATUS` to check FEATURES_OK stuck.
    ///
    /// Check the result for the features you need: nothing is refused for being missing. After a
    /// failure `negotiated` stays nil; reconnect before trying again.
    /// - Throws: `FrontendError` (`.negotiationState` when called twice, `.featuresRejected`).
    @discardableResult
    public func negotiate(
        features: VirtioFeatures, protocolFeatures: ProtocolFeatures = VhostUserFrontend.supportedProtocolFeatures
    ) throws(FrontendError) -> NegotiatedFeatures {
        guard negotiated == nil else { throw .negotiationState(negotiated: true) }
        wantedFeatures = (features, protocolFeatures)
        do {
            let result = try exchangeFeatures(features: features, protocolFeatures: protocolFeatures)
            if sessionFeatures == nil { sessionFeatures = result.features }
            return result
        } catch {
            // `negotiated` is set only by a complete negotiation.
            negotiated = nil
            throw error
        }
    }

    private func exchangeFeatures(
        features: VirtioFeatures, protocolFeatures: ProtocolFeatures
    ) throws(FrontendError) -> NegotiatedFeatures {
        let offered = VirtioFeatures(rawValue: try channel.requestU64(.getFeatures))
        var result = NegotiatedFeatures(
            offeredFeatures: offered, features: [], offeredProtocolFeatures: [], protocolFeatures: [],
            queueCount: nil, memorySlots: nil)
        if offered.contains(.protocolFeatures) {
            let offeredProtocol = ProtocolFeatures(rawValue: try channel.requestU64(.getProtocolFeatures))
            let chosen = offeredProtocol.intersection(protocolFeatures).intersection(Self.supportedProtocolFeatures)
            try channel.send(.setProtocolFeatures(chosen))
            result.offeredProtocolFeatures = offeredProtocol
            result.protocolFeatures = chosen
        }
        // From here on REPLY_ACK (if chosen) applies: `sendAcknowledged` reads `negotiated`.
        negotiated = result
        if result.protocolFeatures.contains(.multiqueue) {
            result.queueCount = Int(clamping: try channel.requestU64(.getQueueNum))
        }
        if result.protocolFeatures.contains(.configureMemorySlots) {
            result.memorySlots = Int(clamping: try channel.requestU64(.getMaxMemSlots))
        }
        try sendAcknowledged(.setOwner)
        var acked = offered.intersection(features).subtracting(Self.unsupportedFeatures)
        if offered.contains(.protocolFeatures) { acked.insert(.protocolFeatures) }
        try sendAcknowledged(.setFeatures(acked))
        result.features = acked
        negotiated = result
        if result.protocolFeatures.contains(.status) {
            try setStatus([.acknowledge, .driver, .featuresOK])
            let status = try getStatus()
            guard status.contains(.featuresOK) else {
                throw .featuresRejected(status: status)
            }
        }
        return result
    }

    /// Sends `SET_STATUS` (STATUS negotiated).
    ///
    /// - Throws: `.notNegotiated(.status)`, or a transport/ack error.
    public func setStatus(_ status: VirtioDeviceStatus) throws(FrontendError) {
        try require(.status)
        try sendAcknowledged(.setStatus(UInt64(status.rawValue)))
        self.status = status
    }

    /// Sends `GET_STATUS` (STATUS negotiated) and returns the device status byte.
    ///
    /// - Throws: `.notNegotiated(.status)`, `.protocolViolation` if the reply has bits above 7 set
    ///   (reported as `reservedBits`), or a transport error.
    public func getStatus() throws(FrontendError) -> VirtioDeviceStatus {
        try require(.status)
        let value = try channel.requestU64(.getStatus)
        guard value <= 0xFF else {
            channel.poison()
            throw .protocolViolation(.reservedBits(request: .frontend(.getStatus), value: value))
        }
        return VirtioDeviceStatus(rawValue: UInt8(value))
    }

    /// With STATUS negotiated, adds DRIVER_OK to the status (after the queues are started, as a
    /// guest driver does); without it, does nothing.
    ///
    /// - Throws: a transport or ack error.
    public func setDriverReady() throws(FrontendError) {
        guard try requireNegotiated().protocolFeatures.contains(.status) else { return }
        try setStatus(status.union(.driverOK))
        driverReady = true
    }
}
