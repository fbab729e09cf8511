import Logging
import VhostUserBackend
import VMMSysUtil
import VirtioNet

/// `--tap NAME`: frames to and from a host TAP interface, one TAP queue per queue pair (see
/// `TapDevice` for the systems). With a kernel that speaks virtio-net headers (Linux), the
/// checksum and segmentation offloads pass through both ways.
///
/// A receive lane reads the TAP only while its ring has buffers: when the driver posts none, the
/// frame read stays in the lane and the TAP is unwatched (the kernel queues, then drops, further
/// frames) until the driver's next kick.
///
/// Thread-safety: each TAP queue is read by its receive lane's worker and written by its transmit
/// queue's worker; `featuresNegotiated` runs while no worker does.
final class TapPort: NetPort {
    let offloadFeatures: UInt64
    /// TSO frames reach 64 KiB plus the Ethernet header.
    let maxFrameLength = 65_550
    private let taps: [TapDevice]
    private let logger: Logger
    /// Frames handed over per callback before the worker looks at its other rings.
    private static let budget = 256
    private static let token: UInt64 = 1

    init(name: String, pairs: Int, logger: Logger) throws {
        taps = try TapDevice.open(name: name, queues: pairs)
        self.logger = logger
        offloadFeatures = taps[0].carriesOffloads ? NetFeature.hostOffloads | NetFeature.guestOffloads : 0
        detachUnusedQueues()
    }

    /// Only queue 0 stays attached until the driver starts the other pairs' receive rings (a
    /// driver uses as many pairs as it likes, `VIRTIO_NET_CTRL_MQ`): the kernel steers the host's
    /// flows over the attached queues only, and a frame steered to a queue nobody reads is lost.
    private func detachUnusedQueues() {
        for tap in taps.dropFirst() {
            do {
                try tap.setAttached(false)
            } catch {
                logger.warning("tap \(tap.name): cannot detach a queue: \(error)")
            }
        }
    }

    func transmit(_ packet: UnsafeMutableRawBufferPointer, pair: Int) -> Bool {
        do {
            return try taps[pair].write(UnsafeRawBufferPointer(packet))
        } catch {
            logger.warning("tap \(taps[pair].name): \(error)")
            return false
        }
    }

    func receiveStarted(_ lane: ReceiveLane, queue: inout VhostUserQueue) throws {
        if lane.pair > 0 {
            do {
                try taps[lane.pair].setAttached(true)
            } catch {
                logger.warning("tap \(taps[lane.pair].name): cannot attach queue \(lane.pair): \(error)")
            }
        }
        try watch(lane, &queue)
    }

    /// A stopped pair's TAP queue is detached again (queue 0 stays), so the kernel no longer
    /// steers flows to a queue nobody reads.
    func receiveStopping(_ lane: ReceiveLane) {
        lane.watching = false
        guard lane.pair > 0 else { return }
        do {
            try taps[lane.pair].setAttached(false)
        } catch {
            logger.warning("tap \(taps[lane.pair].name): cannot detach queue \(lane.pair): \(error)")
        }
    }

    func reset() { detachUnusedQueues() }

    func receive(_ lane: ReceiveLane, queue: inout VhostUserQueue, event: PollEvent?) throws {
        let tap = taps[lane.pair]
        for _ in 0..<Self.budget {
            if lane.pending == 0 {
                guard let count = try? tap.read(into: lane.packet) else { break }
                guard count >= NetHeader.size + 14 else { continue }
                lane.pending = count
            }
            let packet = UnsafeMutableRawBufferPointer(rebasing: lane.packet[..<lane.pending])
            if case .noBuffers = try lane.deliver(packet, to: &queue) {
                // Wait for the driver's buffers (its kick calls `receive` again).
                if lane.watching {
                    queue.unwatch(token: Self.token)
                    lane.watching = false
                }
                return
            }
            lane.pending = 0
        }
        try watch(lane, &queue)
    }

    private func watch(_ lane: ReceiveLane, _ queue: inout VhostUserQueue) throws {
        guard !lane.watching else { return }
        try queue.watch(taps[lane.pair].pollDescriptor, token: Self.token)
        lane.watching = true
    }

    func featuresNegotiated(_ features: UInt64) {
        for tap in taps {
            do {
                try tap.setOffloads(
                    checksum: features & NetFeature.guestChecksum != 0,
                    tso4: features & NetFeature.guestTSO4 != 0,
                    tso6: features & NetFeature.guestTSO6 != 0,
                    ecn: features & NetFeature.guestECN != 0)
            } catch {
                logger.warning("tap \(tap.name): cannot set offloads: \(error)")
            }
        }
    }
}
