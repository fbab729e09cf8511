import Testing
import VMMSysUtil
import VMMTestSupport
import VhostUserProtocol

@Suite struct RoundTripTests {
    @Test func samplesCoverEveryRequest() {
        let covered = Set(frontendSamples.map(\.request))
        #expect(covered == Set(FrontendRequest.allCases).subtracting([.createCryptoSession]))
        #expect(Set(backendSamples.map(\.request)) == Set(BackendRequest.allCases))
    }

    @Test(.isolatedDescriptors, arguments: frontendSamples)
    func frontendRequestRoundTrips(_ sample: FrontendMessage) throws {
        let before = openFileDescriptorCount()
        for needsReply in [false, true] {
            let bytes = try encoded(sample, needsReply: needsReply)
            let (header, payload) = try split(bytes)
            #expect(header.request == sample.request.rawValue)
            #expect(header.flags.rawValue == (needsReply ? 0x9 : 0x1))
            #expect(Int(header.size) == payload.count)
            let (body, count, decodedNeedsReply) = try decodeBody(bytes, descriptors: sample.descriptorCount)
            #expect(body == sample)
            #expect(count == sample.descriptorCount)
            #expect(decodedNeedsReply == needsReply)
        }
        #expect(openFileDescriptorCount() == before)
    }

    @Test(.isolatedDescriptors, arguments: backendSamples)
    func backendRequestRoundTrips(_ sample: BackendMessage) throws {
        let before = openFileDescriptorCount()
        var bytes: [UInt8] = []
        try Message.encodeRequest(sample, needsReply: true, into: &bytes)
        let fds = openDescriptors(sample.descriptorCount)
        let result = bytes.withUnsafeBytes { raw in
            Result { () throws(ProtocolError) in
                let message = try BackendChannelMessage.decode(
                    bytes: raw, descriptors: MessageDescriptors(adopting: fds))
                return (message.body, message.descriptors.count, message.needsReply)
            }
        }
        let (body, count, needsReply) = try result.get()
        #expect(body == sample)
        #expect(count == sample.descriptorCount)
        #expect(needsReply)
        #expect(openFileDescriptorCount() == before)
    }

    @Test(.isolatedDescriptors) func decodedMessageOwnsItsDescriptorsUntilTaken() throws {
        let before = openFileDescriptorCount()
        let bytes = try encoded(.setVringKick(VringFileIndex(index: 0, hasFile: true)))
        let fds = openDescriptors(1)
        var taken: FileDescriptor?
        do {
            var message = try withBytes(bytes) { raw throws(ProtocolError) in
                try Message.decode(bytes: raw, descriptors: MessageDescriptors(adopting: fds))
            }
            #expect(message.descriptors.rawValue(at: 0) == fds[0])
            taken = message.takeDescriptor()
            let secondIsMissing = isNone(message.takeDescriptor())
            #expect(secondIsMissing)
        }
        // The message is gone; the taken fd is still open and now ours.
        let takenNumber = number(of: taken)
        #expect(takenNumber == fds[0])
        #expect(openFileDescriptorCount() == before + 1)
        taken = nil
        #expect(openFileDescriptorCount() == before)
    }

    @Test func memoryTableDescriptorsStayInRegionOrder() throws {
        let table = MemoryTable(regions: [traceRegion, traceRegion, traceRegion])
        let bytes = try encoded(.setMemTable(table))
        let fds = openDescriptors(3)
        let message = try withBytes(bytes) { raw throws(ProtocolError) in
            try Message.decode(bytes: raw, descriptors: MessageDescriptors(adopting: fds))
        }
        #expect((0..<3).map { message.descriptors.rawValue(at: $0) } == fds.map { Optional($0) })
        #expect(message.descriptors.rawValue(at: 3) == nil)
    }

    @Test func frontendRepliesRoundTrip() throws {
        var bytes: [UInt8] = []
        try Message.encodeReply(to: .getFeatures, .u64(0x1_7000_1244), into: &bytes)
        #expect(try replyU64(bytes, to: .getFeatures) == 0x1_7000_1244)

        try Message.encodeReply(to: .getVringBase, .vringState(VringState(index: 0, num: 356)), into: &bytes)
        var (header, payload) = try split(bytes)
        let state = try payload.withUnsafeBytes { raw in
            try Reply.vringState(header: header, payload: raw, descriptors: MessageDescriptors())
        }
        #expect(state == VringState(index: 0, num: 356))

        let config = ConfigSpace(offset: 0, data: (0..<57).map { UInt8($0) })
        try Message.encodeReply(to: .getConfig, .config(config), into: &bytes)
        (header, payload) = try split(bytes)
        let decodedConfig = try payload.withUnsafeBytes { raw in
            try Reply.config(requestedSize: 57, header: header, payload: raw, descriptors: MessageDescriptors())
        }
        #expect(decodedConfig == config)
    }

    @Test(.isolatedDescriptors) func inflightReplyCarriesItsDescriptor() throws {
        let before = openFileDescriptorCount()
        let inflight = InflightDescription(mmapSize: 4160, mmapOffset: 0, queueCount: 1, queueSize: 128)
        var bytes: [UInt8] = []
        try Message.encodeReply(to: .getInflightFD, .inflight(inflight), into: &bytes)
        let (header, payload) = try split(bytes)
        let fds = openDescriptors(1)
        do {
            var reply = try withBytes(payload) { raw throws(ProtocolError) in
                try Reply.inflight(header: header, payload: raw, descriptors: MessageDescriptors(adopting: fds))
            }
            let description = reply.description
            let fd = reply.takeDescriptor()
            let descriptor = number(of: fd)
            #expect(description == inflight)
            #expect(descriptor == fds[0])
        }
        #expect(openFileDescriptorCount() == before)
    }

    @Test(.isolatedDescriptors) func deviceStateReplyCarriesAnFdUnlessBitEight() throws {
        let before = openFileDescriptorCount()
        for (value, count) in [(UInt64(0), 1), (0x100, 0), (0x101, 0)] {
            var bytes: [UInt8] = []
            try Message.encodeReply(to: .setDeviceStateFD, .u64(value), into: &bytes)
            let (header, payload) = try split(bytes)
            let fds = openDescriptors(count)
            var reply = try withBytes(payload) { raw throws(ProtocolError) in
                try Reply.deviceState(header: header, payload: raw, descriptors: MessageDescriptors(adopting: fds))
            }
            let error = reply.error
            let fd = reply.takeDescriptor()
            #expect(error == UInt8(value & 0xff))
            #expect(number(of: fd) == fds.first)
        }
        #expect(openFileDescriptorCount() == before)
    }

    @Test(.isolatedDescriptors) func messagesCanBeBuiltDirectlyWithTheirDescriptors() throws {
        let before = openFileDescriptorCount()
        let message = try Message(
            .setVringCall(VringFileIndex(index: 0, hasFile: true)),
            descriptors: MessageDescriptors(adopting: openDescriptors(1)))
        #expect(message.descriptors.count == 1)
        _ = consume message
        #expect(throws: ProtocolError.missingDescriptors(request: .frontend(.setMemTable), expected: 1, received: 0)) {
            _ = try Message(.setMemTable(MemoryTable(regions: [traceRegion])))
        }
        #expect(openFileDescriptorCount() == before)
    }

    @Test func backendChannelAckRoundTrips() throws {
        var bytes: [UInt8] = []
        try Message.encodeReply(to: BackendRequest.sharedObjectLookup, .u64(0), into: &bytes)
        let (header, payload) = try split(bytes)
        #expect(header.flags.rawValue == 0x5)
        let ack = try payload.withUnsafeBytes { raw in
            try Reply.u64(
                to: BackendRequest.sharedObjectLookup, header: header, payload: raw, descriptors: MessageDescriptors())
        }
        #expect(ack == 0)
    }
}

/// Decodes a `u64` reply to `request` from whole message bytes.
func replyU64(_ bytes: [UInt8], to request: FrontendRequest, descriptors: Int = 0) throws -> UInt64 {
    let (header, payload) = try split(bytes)
    let fds = openDescriptors(descriptors)
    return try payload.withUnsafeBytes { raw in
        try Reply.u64(to: request, header: header, payload: raw, descriptors: MessageDescriptors(adopting: fds))
    }
}
