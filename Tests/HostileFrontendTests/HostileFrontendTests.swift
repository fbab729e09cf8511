#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Logging
import Testing
import VMMSysUtil
import VMMTestSupport
import Virtio
@testable import VhostUserProtocol
@testable import VhostUserBackend

/// An entropy device like vhost-user-rng's (the executable's own type cannot be imported): every
/// writable byte becomes 0x5A.
final class FillDevice: VhostUserDevice, @unchecked Sendable {
    let deviceType = VirtioDeviceType.entropy
    let deviceFeatures: VirtioFeatures = .version1
    let queueCount = 1
    let maxQueueSize = 1024
    let configSize = 8

    func readConfig(offset: Int, into buffer: UnsafeMutableRawBufferPointer) {
        buffer.initializeMemory(as: UInt8.self, repeating: 0)
    }

    func process(_ queue: inout VhostUserQueue) throws {
        while let chain = try queue.pop() {
            var written: UInt32 = 0
            var buffers = chain.buffers()
            while let buffer = try buffers.next() {
                guard buffer.isWritable else { continue }
                buffer.bytes.initializeMemory(as: UInt8.self, repeating: 0x5A)
                written += UInt32(buffer.bytes.count)
            }
            try queue.complete(chain, written: written)
        }
    }
}

/// Which device the well-formed session after each attack talks to.
enum Served {
    /// `FillDevice` (0x5A bytes), vhost-user-rng (random bytes: only the length is checked),
    /// vhost-user-blk, vhost-user-net --source (a 64-byte frame behind a 12-byte header on ring 0).
    case entropy, randomEntropy, block, netSource

    /// Posts one well-formed request and checks the completion (rng: 64 bytes; blk: read sector 0).
    func roundTrip(_ guest: Guest) throws -> Bool {
        switch self {
        case .entropy, .randomEntropy:
            try guest.driver.post([DriverBuffer(address: Guest.bufferBase, length: 64, isWritable: true)])
        case .netSource:
            try guest.driver.post([DriverBuffer(address: Guest.bufferBase, length: 2048, isWritable: true)])
        case .block:
            let header = guest.pointer(Guest.bufferBase)
            header.storeBytes(of: UInt32(0).littleEndian, toByteOffset: 0, as: UInt32.self)  // IN
            header.storeBytes(of: UInt32(0), toByteOffset: 4, as: UInt32.self)
            header.storeBytes(of: UInt64(0).littleEndian, toByteOffset: 8, as: UInt64.self)  // sector 0
            guest.pointer(Guest.bufferBase + 0x2000).storeBytes(of: UInt8(0xFF), as: UInt8.self)
            try guest.driver.post([
                DriverBuffer(address: Guest.bufferBase, length: 16, isWritable: false),
                DriverBuffer(address: Guest.bufferBase + 0x1000, length: 512, isWritable: true),
                DriverBuffer(address: Guest.bufferBase + 0x2000, length: 1, isWritable: true),
            ])
        }
        try guest.kick.notify()
        guard let used = try guest.awaitUsed() else { return false }
        switch self {
        case .entropy:
            return used.length == 64 && guest.pointer(Guest.bufferBase).load(as: UInt8.self) == 0x5A
        case .randomEntropy:
            return used.length == 64
        case .block:
            return used.length == 513 && guest.pointer(Guest.bufferBase + 0x2000).load(as: UInt8.self) == 0
        case .netSource:
            return used.length == 12 + 64
        }
    }
}

/// A well-formed front-end session: negotiate, start ring 0, one request served.
func wellFormedSession(_ wire: Wire, _ served: Served) throws -> Bool {
    let guest = try Guest()
    guard try guest.start(wire) else { return false }
    return try served.roundTrip(guest)
}

@Suite("Hostile front-end: every class of bad input over a real socket")
struct HostileFrontendTests {
    /// In process: a `VhostUserServer` serving `FillDevice` on one end of a socket pair. Every
    /// variant of the attack is refused (a NACK or a close; the err fd where a ring breaks), the
    /// session ends as refused for bad messages, no fd is left open, and a well-formed session on
    /// a new connection is served by the same server.
    @Test(.isolatedDescriptors, arguments: HostileClass.allCases)
    func inProcessServerRefuses(_ hostile: HostileClass) throws {
        var logger = Logger(label: "hostile")
        logger.logLevel = .critical
        let server = VhostUserServer(device: FillDevice(), logger: logger)
        let baseline = openFileDescriptorCount()
        for variant in 0...hostile.variants {
            let wellFormed = variant == hostile.variants
            let box = EndBox()
            let thread: TestThread
            do {
                let (ours, theirs) = try ScmSocket.pair()
                thread = startThread { box.set(server.serve(theirs)) }
                let wire = Wire(ours)
                if wellFormed {
                    #expect(try wellFormedSession(wire, .entropy), "a well-formed session after \(hostile)")
                } else {
                    let answer = try hostile.attack(wire, try Guest(), variant: variant)
                    #expect(answer.isRefusal, "\(hostile) variant \(variant): \(answer)")
                }
            }
            // Our end is closed: the server sees end of stream (if it had not closed already).
            thread.join()
            if !wellFormed && !hostile.breaksARing && hostile != .truncatedPayloadThenClose {
                #expect(
                    box.reason?.endedByServer == true,
                    "\(hostile) variant \(variant) ended as \(String(describing: box.reason))")
            }
            #expect(openFileDescriptorCount() == baseline, "fds after \(hostile), variant \(variant)")
        }
    }

    /// Across processes: the real daemons (vhost-user-rng, vhost-user-blk, vhost-user-net) get
    /// every variant of every attack in turn on their listening socket, refuse each (NACK, close,
    /// or err fd), stay up, keep their fd count, and serve a well-formed session after each attack.
    @Test(arguments: ["vhost-user-rng", "vhost-user-blk", "vhost-user-net"])
    func daemonRefusesEveryClass(_ program: String) throws {
        let directory = "/tmp/hostile-\(getpid())-\(program)"
        #expect(mkdir(directory, 0o700) == 0)
        defer { rmdir(directory) }
        let path = directory + "/sock"
        let image = directory + "/image"
        var arguments = ["--socket-path", path]
        if program == "vhost-user-blk" {
            let fd = open(image, O_CREAT | O_RDWR | O_CLOEXEC, 0o600)
            #expect(ftruncate(fd, 1 << 20) == 0)
            close(fd)
            arguments += ["--blk-file", image]
        }
        if program == "vhost-user-net" { arguments.append("--source") }
        defer { unlink(image) }
        let served: Served =
            program == "vhost-user-blk" ? .block : program == "vhost-user-net" ? .netSource : .randomEntropy
        let child = try PeerProcess.spawn(program, arguments: arguments, mapping: [])
        defer {
            // SIGKILL: spawned children inherit the test runner's signal mask (SIGTERM may be blocked).
            kill(child.pid, SIGKILL)
            _ = child.waitForExit()
            unlink(path)
        }
        // Connecting (with retries) is the readiness check: the listener binds, then listens.
        let connect = { Wire(try ScmSocket.connectRetrying(path: path)) }
        // The daemon's open fds, counted while a fresh connection is open (so the previous session
        // has been torn down: one front-end at a time).
        func daemonDescriptors() throws -> Int {
            let wire = try connect()
            guard try wire.u64(.getFeatures) != nil else { throw AttackSetupFailed(step: "GET_FEATURES") }
            #if os(Linux)
            return try countEntries("/proc/\(child.pid)/fd")
            #else
            return 0
            #endif
        }
        // libkqueue (VMM_POLLER=kqueue on Linux) closes its own descriptors lazily on a helper
        // thread, so one count can include a descriptor it is about to close: counts are taken once
        // they settle (bounded). A leak never settles back: the final count stays above the first.
        func settledDescriptors() throws -> Int {
            var count = try daemonDescriptors()
            for _ in 0..<20 {
                usleep(50_000)
                let again = try daemonDescriptors()
                if again == count { break }
                count = again
            }
            return count
        }
        let before = try settledDescriptors()
        for hostile in HostileClass.allCases {
            for variant in 0..<hostile.variants {
                let answer = try hostile.attack(try connect(), try Guest(), variant: variant)
                #expect(answer.isRefusal, "\(program): \(hostile) variant \(variant): \(answer)")
            }
            #expect(kill(child.pid, 0) == 0, "\(program) died on \(hostile)")
            #expect(try wellFormedSession(try connect(), served), "\(program): a well-formed session after \(hostile)")
        }
        var after = try settledDescriptors()
        for _ in 0..<50 where after != before {
            usleep(100_000)
            after = try settledDescriptors()
        }
        #expect(after == before, "\(program)'s open fds after every class")
    }
}

/// Entries of a directory (not . and ..).
func countEntries(_ path: String) throws -> Int {
    guard let directory = opendir(path) else { throw SystemCallError("opendir", .current) }
    defer { closedir(directory) }
    var count = 0
    while let entry = readdir(directory) {
        let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        if name != "." && name != ".." { count += 1 }
    }
    return count
}

extension VhostUserServer.EndReason {
    /// The server ended the session itself (refused a request, or the socket failed: the kernel
    /// truncating a descriptor flood), rather than seeing the front-end go away.
    var endedByServer: Bool {
        if case .disconnected = self { return false }
        return true
    }
}

final class EndBox: @unchecked Sendable {
    private let lock = ConditionLock()
    private var stored: VhostUserServer.EndReason?
    func set(_ reason: VhostUserServer.EndReason) { lock.withLock { stored = reason } }
    var reason: VhostUserServer.EndReason? { lock.withLock { stored } }
}
