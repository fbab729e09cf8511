#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import VMMSysUtil
import Testing
import VMMTestSupport
import VhostUserProtocol
import Virtio

/// A minimal vhost-user device for one queue, built from Virtio's device-side queues and driven by
/// a fake back-end: it maps the memory it is sent, takes the kick and call fds, and on
/// `SET_VRING_ENABLE` 1 starts a worker thread that answers every chain by writing its readable
/// bytes, each XOR 0xFF, into its writable part. `GET_VRING_BASE` stops the worker and reports
/// the queue's position. Exercises the front-end's data path the way a real back-end does, with
/// event suppression in both directions.
final class LoopbackDevice: @unchecked Sendable {
    // Touched by the fake's thread only, except `queue`, which the worker owns while it runs.
    private var memory: GuestMemory?
    private var size = 0
    private var base: UInt32 = 0
    private var address: VringAddress?
    private var features: VirtioFeatures = []
    private var kick: EventNotifier?
    private var call: EventNotifier?
    private var worker: TestThread?
    private let stop: EventNotifier
    /// What went wrong on the device side, for the test to report.
    private(set) var failure: String?

    init() throws {
        stop = try EventNotifier()
    }

    /// The fake's answer to `message`, or nil to let `WellBehaved` answer.
    func handle(_ message: inout Message) -> FakeReply? {
        switch message.body {
        case .setFeatures(let acked): features = acked
        case .setMemTable(let table):
            var regions: [GuestMemoryRegion] = []
            for (index, region) in table.regions.enumerated() {
                guard let fd = message.descriptors.take(at: index),
                    let mapping = try? SharedMemory.map(received: fd, size: region.size, offset: region.mmapOffset)
                else {
                    failure = "cannot map region \(index)"
                    return .hangUp
                }
                regions.append(
                    GuestMemoryRegion(
                        guestPhysicalAddress: region.guestPhysicalAddress, size: region.size,
                        userAddress: region.userAddress, mmapOffset: region.mmapOffset, mapping: mapping))
            }
            memory = try? GuestMemory(regions: regions)
        case .setVringNum(let state): size = Int(state.num)
        case .setVringBase(let state): base = state.num
        case .setVringAddr(let ring): address = ring
        case .setVringKick:
            guard let fd = message.takeDescriptor() else { return .hangUp }
            kick = try? EventNotifier(waitingOn: fd)
        case .setVringCall:
            guard let fd = message.takeDescriptor() else { return .hangUp }
            call = try? EventNotifier(notifyingThrough: fd)
        case .setVringEnable(let state) where state.num == 1:
            start()
        case .getVringBase(let state):
            let position = finish()
            return .raw(replyBytes(to: .getVringBase, .vringState(VringState(index: state.index, num: position))))
        default: break
        }
        return nil
    }

    private func start() {
        guard let memory, let address, let kick, let call else {
            failure = "enabled before set up"
            return
        }
        let addresses = RingAddresses(
            descriptorTable: address.descriptorTable, driverArea: address.availableRing,
            deviceArea: address.usedRing, space: .frontendUser)
        do {
            var queue: any DeviceQueue & ~Copyable
            if features.contains(.ringPacked) {
                queue = try PackedQueue(memory: memory, size: size, addresses: addresses, features: features)
            } else {
                queue = try SplitQueue(memory: memory, size: size, addresses: addresses, features: features)
            }
            try queue.setNextAvailIndex(base)
            let box = QueueBox(queue)
            let stop = stop
            worker = startThread {
                box.failure = Self.serve(&box.queue, kick: kick, call: call, stop: stop)
            }
            pendingBox = box
        } catch {
            failure = "device queue: \(error)"
        }
    }

    private var pendingBox: QueueBox?

    /// Stops the worker; returns the queue's vring base.
    private func finish() -> UInt32 {
        guard let worker, let box = pendingBox else { return base }
        try? stop.notify()
        worker.join()
        self.worker = nil
        pendingBox = nil
        if let problem = box.failure { failure = problem }
        return box.queue.nextAvailIndex
    }

    /// The worker: wait for a kick (or the stop signal, at most 20 s in all), drain, signal.
    private static func serve(
        _ queue: inout any DeviceQueue & ~Copyable, kick: EventNotifier, call: EventNotifier, stop: EventNotifier
    ) -> String? {
        var scratch = [UInt8](repeating: 0, count: 4096)
        let clock = ContinuousClock()
        let deadline = clock.now + .seconds(20)
        while clock.now < deadline {
            var fds = [
                pollfd(fd: kick.waitDescriptor, events: Int16(POLLIN), revents: 0),
                pollfd(fd: stop.waitDescriptor, events: Int16(POLLIN), revents: 0),
            ]
            guard poll(&fds, 2, 100) >= 0 || errno == EINTR else { return "poll failed" }
            if fds[1].revents != 0 { return nil }
            guard fds[0].revents != 0 else { continue }
            do {
                try kick.wait()
                repeat {
                    queue.disableNotifications()
                    while let chain = try queue.pop() {
                        let count = try scratch.withUnsafeMutableBytes { (raw) throws(VirtqueueError) in
                            try chain.readReadable(into: raw)
                        }
                        for index in 0..<count { scratch[index] ^= 0xFF }
                        let written = try scratch.withUnsafeBytes { (raw) throws(VirtqueueError) in
                            try chain.writeWritable(
                                UnsafeRawBufferPointer(rebasing: raw[0..<min(count, Int(chain.writableLength))]))
                        }
                        try queue.push(chain, written: UInt32(written))
                    }
                } while queue.enableNotifications()
                if queue.needsNotification() { try call.notify() }
            } catch {
                return "device: \(error)"
            }
        }
        return "device worker ran out of time"
    }
}

/// Moves a device queue to the worker thread and back (with what went wrong there); read only
/// after the worker was joined.
private final class QueueBox: @unchecked Sendable {
    var queue: any DeviceQueue & ~Copyable
    var failure: String?
    init(_ queue: consuming any DeviceQueue & ~Copyable) { self.queue = queue }
}
