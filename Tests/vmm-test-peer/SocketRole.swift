#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import VMMSysUtil

/// Role `socket`: exercised by the ScmSocket and SharedMemory cross-process tests.
///
/// The parent maps its end of a socketpair to fd 3. Scenarios:
/// - `memory`: receive one message `[size: UInt64 LE][offset: UInt64 LE]` carrying one memory fd;
///   map `[offset, offset + size)`, check the parent's pattern, overwrite it with the reply pattern,
///   then send the ack `[ok, receivedFDWasCloseOnExec]` (two bytes, 1 or 0).
/// - `notifiers ROUNDS`: receive one byte carrying a kick and a call descriptor (EventNotifier ends);
///   ROUNDS times wait on the kick and notify the call; then send
///   `[kickWasCloseOnExec, callWasCloseOnExec]`.
///
/// Every wait is bounded by SO_RCVTIMEO, so a broken parent makes this exit rather than hang.
func runSocketRole(_ arguments: [String]) -> Int32 {
    let socket = ScmSocket(adopting: FileDescriptor(adopting: 3))
    var timeout = timeval(tv_sec: 20, tv_usec: 0)
    guard setsockopt(3, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size)) == 0 else {
        report("vmm-test-peer socket: setsockopt(SO_RCVTIMEO) failed: errno \(errno)")
        return 1
    }
    switch arguments.first {
    case "memory":
        return runMemoryScenario(socket)
    case "notifiers":
        guard arguments.count == 2, let rounds = Int(arguments[1]), rounds >= 0 else {
            report("vmm-test-peer socket notifiers: expected a round count, got \(arguments)")
            return 2
        }
        return runNotifierScenario(socket, rounds: rounds)
    default:
        report("vmm-test-peer socket: no scenario \(arguments)")
        return 2
    }
}

/// The byte the parent writes at offset `index` of the region (the tests use the same formula).
func parentPattern(_ index: Int) -> UInt8 { UInt8(truncatingIfNeeded: index &* 31 &+ 7) }
/// The byte this peer writes back at offset `index` (the tests use the same formula).
func childPattern(_ index: Int) -> UInt8 { UInt8(truncatingIfNeeded: index &* 17 &+ 3) }

private func runMemoryScenario(_ socket: ScmSocket) -> Int32 {
    let header = UnsafeMutableRawBufferPointer.allocate(byteCount: 16, alignment: 8)
    defer { header.deallocate() }
    var ok: UInt8 = 0
    var closeOnExec: UInt8 = 0
    do {
        var fds = try socket.receiveExactly(into: header, maxFDs: 1)
        let size = UInt64(littleEndian: header.loadUnaligned(fromByteOffset: 0, as: UInt64.self))
        let offset = UInt64(littleEndian: header.loadUnaligned(fromByteOffset: 8, as: UInt64.self))
        guard let memory = fds.take(at: 0) else {
            report("vmm-test-peer socket memory: no descriptor arrived")
            try socket.send([0, 0])
            return 1
        }
        closeOnExec = try memory.isCloseOnExec() ? 1 : 0
        let mapping = try SharedMemory.map(received: memory, size: size, offset: offset)
        let bytes = mapping.bytes
        let start = Int(offset)
        var mismatch: Int?
        for index in 0..<bytes.count where bytes[index] != parentPattern(start + index) {
            mismatch = index
            break
        }
        if let mismatch {
            report("vmm-test-peer socket memory: pattern mismatch at \(mismatch)")
        } else {
            for index in 0..<bytes.count { bytes[index] = childPattern(start + index) }
            ok = 1
        }
        try socket.send([ok, closeOnExec])
    } catch {
        report("vmm-test-peer socket memory: \(error)")
        return 1
    }
    return ok == 1 ? 0 : 1
}

/// `notifiers ROUNDS`: receive one byte carrying two fds, a kick (we wait on it) and a call (we
/// notify it); then ROUNDS times: wait for a kick, notify the call. Finally send
/// `[kickWasCloseOnExec, callWasCloseOnExec]`. SIGALRM bounds the whole scenario.
private func runNotifierScenario(_ socket: ScmSocket, rounds: Int) -> Int32 {
    alarm(60)
    let header = UnsafeMutableRawBufferPointer.allocate(byteCount: 1, alignment: 1)
    defer { header.deallocate() }
    do {
        var fds = try socket.receiveExactly(into: header, maxFDs: 2)
        guard let kickFD = fds.take(at: 0), let callFD = fds.take(at: 1) else {
            report("vmm-test-peer socket notifiers: expected two descriptors, got \(fds.count)")
            return 1
        }
        let flags: [UInt8] = [try kickFD.isCloseOnExec() ? 1 : 0, try callFD.isCloseOnExec() ? 1 : 0]
        let kick = try EventNotifier(waitingOn: kickFD)
        let call = try EventNotifier(notifyingThrough: callFD)
        for _ in 0..<rounds {
            try kick.wait()
            try call.notify()
        }
        try socket.send(flags)
    } catch {
        report("vmm-test-peer socket notifiers: \(error)")
        return 1
    }
    return 0
}
