import Testing
import VMMSysUtil
import VMMTestSupport
import VhostUserProtocol

/// The codec over a real socket: a request and its fds sent with one `sendmsg`, received the way a
/// back-end reads (header first, validated, then exactly the payload), then decoded.
@Suite struct SocketTests {
    @Test(.isolatedDescriptors) func memoryTableAndItsDescriptorsCrossASocket() throws {
        let before = openFileDescriptorCount()
        do {
            let (frontend, backend) = try ScmSocket.pair()
            let table = MemoryTable(regions: [traceRegion, traceRegion])
            let bytes = try encoded(.setMemTable(table), needsReply: true)
            let sent = openDescriptors(2)
            try frontend.send(bytes, fds: sent)

            let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 4096, alignment: 16)
            defer { buffer.deallocate() }
            let headerBytes = UnsafeMutableRawBufferPointer(rebasing: buffer[0..<MessageHeader.byteCount])
            let received = try backend.receiveExactly(into: headerBytes, maxFDs: MemoryTable.maximumRegionCount)
            let header = try MessageHeader(decoding: UnsafeRawBufferPointer(headerBytes))
            try header.validate(.frontendRequest)  // before reading the payload
            let payload = UnsafeMutableRawBufferPointer(
                rebasing: buffer[MessageHeader.byteCount..<(MessageHeader.byteCount + Int(header.size))])
            let extra = try backend.receiveExactly(into: payload, maxFDs: 0)
            let nothingExtra = extra.isEmpty
            #expect(nothingExtra)

            let message = try Message.decode(
                header: header, payload: UnsafeRawBufferPointer(payload), descriptors: MessageDescriptors(received))
            let (body, needsReply, count) = (message.body, message.needsReply, message.descriptors.count)
            #expect(body == .setMemTable(table))
            #expect(needsReply)
            #expect(count == 2)
            for fd in sent { _ = FileDescriptor(adopting: fd) }  // our copies: dropping closes them
        }
        #expect(openFileDescriptorCount() == before)
    }
}
