import VhostUserProtocol
import Virtio

extension VhostUserFrontend {
    /// Reads `size` bytes (at most 256) of device config space at `offset` with `GET_CONFIG`.
    ///
    /// - Returns: exactly `size` bytes (little-endian virtio layout).
    /// - Throws: `.notNegotiated(.config)`; `.protocolViolation` when the reply's size differs from
    ///   the request's (a back-end that failed answers with size 0); `.configOffsetMismatch`.
    public func readConfig(offset: UInt32 = 0, size: Int) throws(FrontendError) -> [UInt8] {
        try require(.config)
        let request = ConfigSpace(offset: offset, data: [UInt8](repeating: 0, count: max(0, size)))
        try channel.send(.getConfig(request))
        let reply = try channel.receiveReply(to: .getConfig) { (header, payload, fds) throws(ProtocolError) in
            try Reply.config(requestedSize: request.data.count, header: header, payload: payload, descriptors: fds)
        }
        guard reply.offset == offset else {
            channel.poison()
            throw .configOffsetMismatch(expected: offset, received: reply.offset)
        }
        return reply.data
    }

    /// Writes `bytes` (at most 256) into device config space at `offset` with `SET_CONFIG`
    /// (flags 0: a driver write).
    ///
    /// - Throws: `.notNegotiated(.config)`, or a transport/ack error.
    public func writeConfig(offset: UInt32 = 0, bytes: [UInt8]) throws(FrontendError) {
        try require(.config)
        try sendAcknowledged(.setConfig(ConfigSpace(offset: offset, data: bytes)))
    }

    /// Sends `RESET_DEVICE` (RESET_DEVICE negotiated): the back-end disables and stops every ring
    /// and resets its device state; every queue of ours is forgotten.
    ///
    /// - Throws: `.notNegotiated(.resetDevice)`, or a transport/ack error.
    public func resetDevice() throws(FrontendError) {
        try require(.resetDevice)
        for queue in queues.values { queue.isStarted = false }
        queues = [:]
        driverReady = false
        try sendAcknowledged(.resetDevice)
    }
}
