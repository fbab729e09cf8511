#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import CVMMPlatform
import VMMSysUtil

/// The fds carried by each message: eventfds or pipes created once, sent again every iteration.
final class PayloadDescriptors {
    let notifiers: [RawNotifier]
    let fds: UnsafeMutableBufferPointer<Int32>
    init(count: Int) throws {
        let kind = try EventNotifierBackend.native.checkedAvailable().rawKind
        notifiers = try (0..<count).map { _ in try RawNotifier(kind) }
        fds = .allocate(capacity: count)
        for (index, notifier) in notifiers.enumerated() { fds[index] = notifier.readFD }
    }
    deinit { fds.deallocate() }
}

/// `ScmSocket.send` of a 12-byte message with N fds, then `receive` (the received fds are closed
/// by `ReceivedFileDescriptors`' deinit).
final class OursScm: BenchRunner {
    let sender: ScmSocket
    let receiver: ScmSocket
    let payload: PayloadDescriptors
    let message = UnsafeMutableRawBufferPointer.allocate(byteCount: 12, alignment: 8)
    let inbox = UnsafeMutableRawBufferPointer.allocate(byteCount: 64, alignment: 8)

    init(fdCount: Int) throws {
        (sender, receiver) = try ScmSocket.pair()
        payload = try PayloadDescriptors(count: fdCount)
        message.initializeMemory(as: UInt8.self, repeating: 0x5a)
    }
    deinit {
        message.deallocate()
        inbox.deallocate()
    }

    func run(_ iterations: Int) throws {
        let fds = UnsafeBufferPointer(payload.fds)
        let bytes = UnsafeRawBufferPointer(message)
        for _ in 0..<iterations {
            try sender.send(bytes, fds: fds)
            let received = try receiver.receive(into: inbox, maxFDs: 8)
            _ = consume received
        }
    }
}

/// Raw twin: `sendmsg` with an SCM_RIGHTS control message, `recvmsg(MSG_CMSG_CLOEXEC)`, `close`
/// each received fd, on a `socketpair(AF_UNIX, SOCK_STREAM)`.
final class RawScm: BenchRunner {
    let sockets: (Int32, Int32)
    let payload: PayloadDescriptors
    let message = UnsafeMutableRawBufferPointer.allocate(byteCount: 12, alignment: 8)
    let inbox = UnsafeMutableRawBufferPointer.allocate(byteCount: 64, alignment: 8)
    let sendControl: UnsafeMutableRawBufferPointer
    let receiveControl: UnsafeMutableRawBufferPointer
    let count: Int

    init(fdCount: Int) throws {
        var pair: [Int32] = [-1, -1]
        #if os(Linux)
        let type = Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue)
        #else
        let type = SOCK_STREAM
        #endif
        _ = try check("socketpair", socketpair(AF_UNIX, type, 0, &pair))
        sockets = (pair[0], pair[1])
        payload = try PayloadDescriptors(count: fdCount)
        count = fdCount
        message.initializeMemory(as: UInt8.self, repeating: 0x5a)
        sendControl = .allocate(byteCount: vmm_cmsg_space(fdCount * 4), alignment: 8)
        receiveControl = .allocate(byteCount: vmm_cmsg_space(8 * 4), alignment: 8)
    }
    deinit {
        _ = systemClose(sockets.0)
        _ = systemClose(sockets.1)
        message.deallocate()
        inbox.deallocate()
        sendControl.deallocate()
        receiveControl.deallocate()
    }

    func run(_ iterations: Int) throws {
        for _ in 0..<iterations {
            try sendOnce()
            try receiveOnce()
        }
    }

    @inline(__always)
    private func sendOnce() throws {
        var iov = iovec(iov_base: message.baseAddress, iov_len: 12)
        try withUnsafeMutablePointer(to: &iov) { iovPointer in
            var header = msghdr()
            header.msg_iov = iovPointer
            header.msg_iovlen = 1
            header.msg_control = sendControl.baseAddress
            header.msg_controllen = .init(sendControl.count)
            guard let cmsg = vmm_cmsg_firsthdr(&header) else { throw BenchSkipped("no room for cmsg") }
            cmsg.pointee.cmsg_level = SOL_SOCKET
            cmsg.pointee.cmsg_type = Int32(SCM_RIGHTS)
            cmsg.pointee.cmsg_len = .init(vmm_cmsg_len(count * 4))
            // Why it is safe: sendControl holds CMSG_SPACE(count * 4) bytes.
            UnsafeMutableRawPointer(vmm_cmsg_data(cmsg)).copyMemory(
                from: payload.fds.baseAddress!, byteCount: count * 4)
            _ = try check("sendmsg", sendmsg(sockets.0, &header, vmm_msg_nosignal()))
        }
    }

    @inline(__always)
    private func receiveOnce() throws {
        var iov = iovec(iov_base: inbox.baseAddress, iov_len: inbox.count)
        try withUnsafeMutablePointer(to: &iov) { iovPointer in
            var header = msghdr()
            header.msg_iov = iovPointer
            header.msg_iovlen = 1
            header.msg_control = receiveControl.baseAddress
            header.msg_controllen = .init(receiveControl.count)
            _ = try check("recvmsg", recvmsg(sockets.1, &header, vmm_msg_cmsg_cloexec()))
            var cmsg = vmm_cmsg_firsthdr(&header)
            while let current = cmsg {
                if current.pointee.cmsg_level == SOL_SOCKET && current.pointee.cmsg_type == Int32(SCM_RIGHTS) {
                    let n = vmm_cmsg_payload_length(current) / 4
                    let data = UnsafeRawPointer(vmm_cmsg_data(current))
                    for index in 0..<n {
                        _ = systemClose(data.loadUnaligned(fromByteOffset: index * 4, as: Int32.self))
                    }
                }
                cmsg = vmm_cmsg_nxthdr(&header, current)
            }
        }
    }
}

enum ScmCases {
    static func all() -> [BenchCase] {
        [1, 8].map { fdCount in
            BenchCase(group: "scm", name: "send-receive-12B/\(fdCount)-fd", backend: "-") { implementation, _ in
                switch implementation {
                case .ours: return try OursScm(fdCount: fdCount)
                case .raw: return try RawScm(fdCount: fdCount)
                }
            }
        }
    }
}
