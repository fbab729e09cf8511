#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Testing
import VMMSysUtil
import VMMTestSupport
import Virtio
@testable import VhostUserProtocol
@testable import VhostUserBackend

/// Postpones every chain and completes it from another thread after filling its writable bytes:
/// the completion reaches the ring through the deferred-completion channel, not `complete`.
final class DeferringDevice: VhostUserDevice, @unchecked Sendable {
    let deviceType = VirtioDeviceType.entropy
    let deviceFeatures: VirtioFeatures = .version1
    let queueCount = 1
    let maxQueueSize = 256
    let configSize = 0
    let written: UInt32

    init(written: UInt32) { self.written = written }

    func process(_ queue: inout VhostUserQueue) throws {
        while let chain = try queue.pop() {
            let deferred = queue.postpone(chain)
            let count = written
            startThread {
                var left = Int(count)
                var buffers = deferred.chain.buffers()
                while left > 0, let buffer = try? buffers.next() {
                    guard buffer.isWritable else { continue }
                    let part = min(left, buffer.bytes.count)
                    UnsafeMutableRawBufferPointer(rebasing: buffer.bytes[..<part]).initializeMemory(
                        as: UInt8.self, repeating: 0x77)
                    left -= part
                }
                try? deferred.complete(written: count)
            }
        }
    }
}

/// Dirty logging in a session: what is marked, when, and the bad inputs around it.
@Suite("VhostUserSession: dirty logging (LOG_ALL, LOG_SHMFD)")
struct LogTests {
    static let logAll = VirtioFeatures.logAll.rawValue
    /// 1 MiB of guest memory from address 0: 256 pages, 32 bytes of log.
    static let logSize: UInt64 = 32
    static let usedRingPage = GuestRig.addresses.deviceArea / 4096

    /// Turns logging on as QEMU does when a migration starts: SET_LOG_BASE (answered with 0),
    /// SET_FEATURES with LOG_ALL, SET_VRING_ADDR with VHOST_VRING_F_LOG.
    func startLogging(_ session: VhostUserSession, _ rig: GuestRig, log: SharedMemory) throws -> DirtyLog {
        let reply = try session.handle(
            message(.setLogBase(LogDescription(size: Self.logSize, offset: 0)), fds: [log.descriptor]))
        #expect(reply?.payload == .u64(0))
        _ = try session.handle(message(.setFeatures(VirtioFeatures(rawValue: drivenFeatures | Self.logAll))))
        _ = try session.handle(message(.setVringAddr(loggedAddress(rig))))
        #expect(session.isLogging)
        return DirtyLog(mapping: log.mapping)
    }

    func loggedAddress(_ rig: GuestRig, at address: UInt64 = GuestRig.addresses.deviceArea) -> VringAddress {
        var logged = rig.vringAddress()
        logged.flags = .log
        logged.logGuestAddress = address
        return logged
    }

    /// Posts a writable buffer of `length` at `address`, kicks and reaps its completion.
    func serve(_ rig: GuestRig, address: UInt64, length: UInt32) throws -> UsedBuffer? {
        try rig.driver.post([DriverBuffer(address: address, length: length, isWritable: true)])
        try rig.kick.notify()
        return try reapWaiting(rig)
    }

    @Test(.isolatedDescriptors) func completionMarksTheWrittenPagesAndTheUsedRingOnlyWhileLogging() throws {
        let before = openFileDescriptorCount()
        do {
            let session = try VhostUserSession(device: PatternDevice(pattern: 0x5A))
            defer { session.close() }
            let rig = try GuestRig()
            try rig.start(session)
            let shared = try SharedMemory(size: 4096)
            // Before logging: nothing is marked (the log is not even installed).
            #expect(try serve(rig, address: 0x20000, length: 0x100) != nil)
            let log = try startLogging(session, rig, log: shared)
            // Resumed after SET_VRING_ADDR, the worker may already have logged the used ring's
            // notification fields; nothing else is written before a request comes.
            #expect(log.takeDirtyPages().allSatisfy { $0 == Self.usedRingPage })
            // 0x1800 bytes from 0x12800: pages 0x12 and 0x13 only.
            let used = try #require(try serve(rig, address: 0x12800, length: 0x1800))
            #expect(used.length == 0x1800)
            #expect(dirtyPages(log, including: [Self.usedRingPage, 0x12, 0x13]) == [Self.usedRingPage, 0x12, 0x13])
            // Logging off (QEMU: SET_FEATURES without LOG_ALL, then the address without the flag).
            _ = try session.handle(message(.setFeatures(VirtioFeatures(rawValue: drivenFeatures))))
            _ = try session.handle(message(.setVringAddr(rig.vringAddress())))
            #expect(!session.isLogging)
            // The workers were parked for both requests: whatever was logged before is in the log
            // now, and nothing can be logged after.
            _ = log.takeDirtyPages()
            #expect(try serve(rig, address: 0x40000, length: 0x100) != nil)
            #expect(log.takeDirtyPages() == [])
        }
        #expect(openFileDescriptorCount() == before)
    }

    @Test func deferredCompletionsFromAnotherThreadAreLogged() throws {
        let session = try VhostUserSession(device: DeferringDevice(written: 0x1001))
        defer { session.close() }
        let rig = try GuestRig()
        try rig.start(session)
        let log = try startLogging(session, rig, log: try SharedMemory(size: 4096))
        // 0x3000 writable bytes from 0x30000, 0x1001 of them written: pages 0x30 and 0x31.
        let used = try #require(try serve(rig, address: 0x30000, length: 0x3000))
        #expect(used.length == 0x1001)
        #expect(dirtyPages(log, including: [Self.usedRingPage, 0x30, 0x31]) == [Self.usedRingPage, 0x30, 0x31])
    }

    @Test func usedRingIsLoggedAtItsLogAddress() throws {
        let session = try VhostUserSession(device: PatternDevice())
        defer { session.close() }
        let rig = try GuestRig()
        try rig.start(session)
        let log = try startLogging(session, rig, log: try SharedMemory(size: 4096))
        // QEMU names the used ring's guest-physical address; another (in-memory) one is honoured.
        _ = try session.handle(message(.setVringAddr(loggedAddress(rig, at: 0x80000))))
        _ = log.takeDirtyPages()
        #expect(try serve(rig, address: 0x50000, length: 16) != nil)
        #expect(dirtyPages(log, including: [0x50, 0x80]) == [0x50, 0x80])
    }

    @Test(.isolatedDescriptors) func badLogsAndLogAddressesAreRefusedWithoutLeaking() throws {
        let before = openFileDescriptorCount()
        do {
            let session = try VhostUserSession(device: PatternDevice())
            defer { session.close() }
            let rig = try GuestRig()
            // VHOST_VRING_F_LOG without LOG_ALL acked.
            #expect(throws: VhostUserError.self) { _ = try session.handle(message(.setVringAddr(loggedAddress(rig)))) }
            try rig.start(session)
            let log = try SharedMemory(size: 4096)
            func refused(_ description: LogDescription, fd: Int32, _ matches: (VhostUserError) -> Bool) {
                do {
                    _ = try session.handle(message(.setLogBase(description), fds: [fd]))
                    Issue.record("SET_LOG_BASE \(description) accepted")
                } catch let error as VhostUserError {
                    #expect(matches(error), "\(error)")
                } catch {
                    Issue.record("unexpected \(error)")
                }
            }
            // Beyond the fd's size, too small for the memory table, empty, absurdly large.
            refused(LogDescription(size: Self.logSize, offset: 8192), fd: log.descriptor) {
                if case .logMapping(.beyondEndOfFile) = $0 { true } else { false }
            }
            refused(LogDescription(size: Self.logSize - 1, offset: 0), fd: log.descriptor) {
                if case .invalidLog = $0 { true } else { false }
            }
            refused(LogDescription(size: 0, offset: 0), fd: log.descriptor) {
                if case .invalidLog = $0 { true } else { false }
            }
            refused(LogDescription(size: UInt64.max, offset: UInt64.max), fd: log.descriptor) {
                if case .invalidLog = $0 { true } else { false }
            }
            // An fd that cannot be mapped: an eventfd/pipe has no bytes to map.
            let notifier = try EventNotifier()
            refused(LogDescription(size: Self.logSize, offset: 0), fd: notifier.waitDescriptor) {
                if case .logMapping = $0 { true } else { false }
            }
            // A log address outside guest memory.
            _ = try session.handle(message(.setFeatures(VirtioFeatures(rawValue: drivenFeatures | Self.logAll))))
            #expect(throws: VhostUserError.self) {
                _ = try session.handle(message(.setVringAddr(loggedAddress(rig, at: 0x1_0000_0000))))
            }
            // A log address inside memory but beyond an installed log that covers only part of it
            // cannot arise (the log must cover all memory); a memory table the log does not cover
            // is refused while logging.
            _ = try session.handle(
                message(.setLogBase(LogDescription(size: Self.logSize, offset: 0)), fds: [log.descriptor]))
            let bigger = try SharedMemory(size: 2 << 20)
            #expect(throws: VhostUserError.self) {
                _ = try session.handle(
                    message(
                        .setMemTable(
                            MemoryTable(regions: [
                                MemoryRegion(
                                    guestPhysicalAddress: 0, size: 2 << 20, userAddress: GuestRig.userBase,
                                    mmapOffset: 0)
                            ])), fds: [bigger.descriptor]))
            }
            // SET_LOG_FD with something that cannot be signalled.
            #expect(throws: VhostUserError.self) { _ = try session.handle(message(.setLogFD, fds: [log.descriptor])) }
        }
        #expect(openFileDescriptorCount() == before)
    }

    @Test func setLogBaseNeedsLogSharedMemory() throws {
        let session = try VhostUserSession(device: PatternDevice())
        defer { session.close() }
        let rig = try GuestRig()
        try rig.start(session, protocolFeatures: [.replyAck])
        let log = try SharedMemory(size: 4096)
        do {
            _ = try session.handle(
                message(.setLogBase(LogDescription(size: Self.logSize, offset: 0)), fds: [log.descriptor]))
            Issue.record("SET_LOG_BASE accepted without LOG_SHMFD")
        } catch let error as VhostUserError {
            guard case .notNegotiated(.setLogBase) = error else {
                Issue.record("\(error)")
                return
            }
        }
    }
}
