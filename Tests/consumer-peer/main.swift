// A child program as a VMM author writes one, importing only the VMMSysUtil product: it gets a
// connected socket as fd 3, receives a shared-memory descriptor and a notifier over it, answers
// through both, and exits. ConsumerTests spawns it with `ChildProcess.spawn`.
//
// Wire: the parent sends 8 bytes (the memory size, little-endian) with two descriptors, the
// shared memory and the notify end of an `EventNotifier`. The child reads the UInt64 at offset 0,
// stores it + 1 at offset 8, notifies, sends the 4 bytes "done" and exits 0. Each failing step
// has its own exit code, so the test says where it broke.
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import VMMSysUtil

/// The step that failed, as the exit code.
enum Step: Int32 {
    case receive = 10, memoryDescriptor, notifierDescriptor, map, notifier, notify, reply
}

func run() -> Int32 {
    // Bounded: never outlive a parent that died without reaping us.
    alarm(30)
    let socket = ScmSocket(adopting: FileDescriptor(adopting: 3))
    var message: ScmMessage
    do {
        message = try socket.receiveExactly(byteCount: 8, maxFDs: 2)
    } catch { return Step.receive.rawValue }
    let size = message.bytes.withUnsafeBytes { UInt64(littleEndian: $0.loadUnaligned(as: UInt64.self)) }
    guard let memoryFD = message.fds.take(at: 0) else { return Step.memoryDescriptor.rawValue }
    guard let notifyFD = message.fds.take(at: 1) else { return Step.notifierDescriptor.rawValue }
    let mapping: MemoryMapping
    do {
        mapping = try SharedMemory.map(received: memoryFD, size: size, offset: 0)
    } catch { return Step.map.rawValue }
    let doorbell: EventNotifier
    do {
        doorbell = try EventNotifier(notifyingThrough: notifyFD)
    } catch { return Step.notifier.rawValue }
    let value = mapping.bytes.load(fromByteOffset: 0, as: UInt64.self)
    mapping.bytes.storeBytes(of: value &+ 1, toByteOffset: 8, as: UInt64.self)
    do {
        try doorbell.notify()
    } catch { return Step.notify.rawValue }
    do {
        try socket.send(Array("done".utf8))
    } catch { return Step.reply.rawValue }
    return 0
}

exit(run())
