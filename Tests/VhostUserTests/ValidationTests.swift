import Testing
import VMMTestSupport
import VhostUserProtocol

/// One test per header, payload and fd-count rule; each also checks that no fd leaked.
@Suite(.isolatedDescriptors) struct ValidationTests {
    let getFeatures = FrontendRequest.getFeatures.rawValue
    let setVringNum = FrontendRequest.setVringNum.rawValue
    let setMemTable = FrontendRequest.setMemTable.rawValue
    let setConfig = FrontendRequest.setConfig.rawValue
    let setVringKick = FrontendRequest.setVringKick.rawValue

    @Test(.isolatedDescriptors) func truncatedHeaderIsRefused() {
        expectRefused([1, 0, 0, 0, 1], descriptors: 1, .truncatedHeader(byteCount: 5))
    }

    @Test(.isolatedDescriptors) func badVersionIsRefused() {
        expectRefused(wire(getFeatures, flags: 0x0), descriptors: 1, .unsupportedVersion(flags: 0))
        expectRefused(wire(getFeatures, flags: 0x2), .unsupportedVersion(flags: 2))
        expectRefused(wire(getFeatures, flags: 0x3), .unsupportedVersion(flags: 3))
    }

    @Test(.isolatedDescriptors) func unknownFlagsAreRefused() {
        expectRefused(wire(getFeatures, flags: 0x11), descriptors: 1, .unknownFlags(flags: 0x11))
        expectRefused(wire(getFeatures, flags: 0x8000_0001), .unknownFlags(flags: 0x8000_0001))
    }

    @Test(.isolatedDescriptors) func replyFlagOnRequestIsRefused() {
        expectRefused(
            wire(getFeatures, flags: 0x5), descriptors: 2,
            .replyFlagOnRequest(request: .frontend(.getFeatures), flags: 0x5))
    }

    @Test func needReplyIsAcceptedOnRequests() throws {
        let (body, _, needsReply) = try decodeBody(wire(getFeatures, flags: 0x9))
        #expect(body == .getFeatures)
        #expect(needsReply)
    }

    @Test(.isolatedDescriptors) func sizeTooLargeIsRefusedFromTheHeaderAlone() {
        // A reader checks this before reading the payload.
        let header = MessageHeader(request: setConfig, flags: .version1, size: 269)
        #expect(throws: ProtocolError.payloadTooLarge(request: .frontend(.setConfig), size: 269, limit: 268)) {
            try header.validate(.frontendRequest)
        }
        let huge = MessageHeader(request: getFeatures, flags: .version1, size: .max)
        #expect(throws: ProtocolError.payloadSize(request: .frontend(.getFeatures), size: Int(UInt32.max), expected: 0))
        {
            try huge.validate(.frontendRequest)
        }
        expectRefused(
            wire(setMemTable, Bytes().u32(9).zeros(4 + 9 * 32)), descriptors: 8,
            .payloadTooLarge(request: .frontend(.setMemTable), size: 296, limit: 264))
        #expect(MessageHeader.maximumPayloadSize == 268)
    }

    @Test(.isolatedDescriptors) func sizeNotMatchingTheFixedPayloadIsRefused() {
        let error = ProtocolError.payloadSize(request: .frontend(.setVringNum), size: 4, expected: 8)
        expectRefused(wire(setVringNum, Bytes().u32(0)), descriptors: 1, error)
        #expect(error.description == "SET_VRING_NUM: payload size 4, expected 8")
        expectRefused(
            wire(getFeatures, Bytes().u64(0)), .payloadSize(request: .frontend(.getFeatures), size: 8, expected: 0))
        expectRefused(
            wire(FrontendRequest.setVringAddr.rawValue, Bytes().zeros(32)),
            .payloadSize(request: .frontend(.setVringAddr), size: 32, expected: 40))
    }

    @Test(.isolatedDescriptors) func payloadShorterOrLongerThanTheHeaderSaysIsRefused() {
        expectRefused(
            wire(setVringNum, size: 8, Bytes().u32(0)), descriptors: 1,
            .payloadLengthMismatch(request: .frontend(.setVringNum), headerSize: 8, received: 4))
        expectRefused(
            wire(setVringNum, size: 8, Bytes().u64(0).u32(0)),
            .payloadLengthMismatch(request: .frontend(.setVringNum), headerSize: 8, received: 12))
    }

    @Test(.isolatedDescriptors) func memoryTableWithMoreThanEightRegionsIsRefused() {
        expectRefused(
            wire(setMemTable, Bytes().u32(9).zeros(4 + 32)), descriptors: 1,
            .tooManyMemoryRegions(request: .frontend(.setMemTable), count: 9))
        expectRefused(
            wire(setMemTable, Bytes().u32(.max).zeros(4)),
            .tooManyMemoryRegions(request: .frontend(.setMemTable), count: .max))
    }

    @Test(.isolatedDescriptors) func memoryTableCountNotMatchingSizeIsRefused() {
        expectRefused(
            wire(setMemTable, Bytes().u32(2).zeros(4 + 32)), descriptors: 2,
            .memoryRegionCountMismatch(request: .frontend(.setMemTable), count: 2, size: 40))
        expectRefused(
            wire(setMemTable, Bytes().u32(1).zeros(4 + 33)), descriptors: 1,
            .memoryTableSize(request: .frontend(.setMemTable), size: 41))
        expectRefused(
            wire(setMemTable, Bytes().u32(0)),
            .payloadTooSmall(request: .frontend(.setMemTable), size: 4, minimum: 8))
    }

    @Test(.isolatedDescriptors) func configLargerThan256IsRefused() {
        expectRefused(
            wire(setConfig, Bytes().u32(0).u32(257).u32(0).zeros(57)),
            .configSizeMismatch(request: .frontend(.setConfig), configSize: 257, payloadSize: 69))
        expectRefused(
            wire(setConfig, Bytes().u32(0).u32(257).u32(0).zeros(257)),
            .payloadTooLarge(request: .frontend(.setConfig), size: 269, limit: 268))
        var buffer: [UInt8] = []
        #expect(throws: ProtocolError.payloadTooLarge(request: .frontend(.setConfig), size: 269, limit: 268)) {
            try Message.encodeRequest(
                .setConfig(ConfigSpace(offset: 0, data: [UInt8](repeating: 0, count: 257))), into: &buffer)
        }
    }

    @Test(.isolatedDescriptors) func configSizeNotMatchingIsRefused() {
        expectRefused(
            wire(FrontendRequest.getConfig.rawValue, Bytes().u32(0).u32(56).u32(0).zeros(57)), descriptors: 1,
            .configSizeMismatch(request: .frontend(.getConfig), configSize: 56, payloadSize: 69))
        expectRefused(
            wire(setConfig, Bytes().u32(0).u32(0)),
            .payloadTooSmall(request: .frontend(.setConfig), size: 8, minimum: 12))
    }

    @Test(.isolatedDescriptors) func unknownRequestNumbersAreRefused() {
        for code: UInt32 in [0, 44, 45, 1000, .max] {
            expectRefused(wire(code), descriptors: 1, .unknownRequest(code: code, direction: .frontendRequest))
        }
        let backend = MessageHeader(request: 9, flags: .version1, size: 0)
        #expect(throws: ProtocolError.unknownRequest(code: 9, direction: .backendRequest)) {
            try backend.validate(.backendRequest)
        }
    }

    @Test(.isolatedDescriptors) func cryptoSessionIsRefusedAsUnsupported() {
        expectRefused(
            wire(FrontendRequest.createCryptoSession.rawValue), descriptors: 1,
            .unsupportedRequest(.frontend(.createCryptoSession)))
    }

    @Test(.isolatedDescriptors) func tooManyDescriptorsAreRefusedAndClosed() {
        expectRefused(
            wire(getFeatures), descriptors: 1,
            .unexpectedDescriptors(request: .frontend(.getFeatures), expected: 0, received: 1))
        let table = Bytes().u32(2).zeros(4 + 64)
        expectRefused(
            wire(setMemTable, table), descriptors: 3,
            .unexpectedDescriptors(request: .frontend(.setMemTable), expected: 2, received: 3))
        expectRefused(
            wire(FrontendRequest.setBackendRequestFD.rawValue), descriptors: 8,
            .unexpectedDescriptors(request: .frontend(.setBackendRequestFD), expected: 1, received: 8))
    }

    @Test(.isolatedDescriptors) func tooFewDescriptorsAreRefusedAndClosed() {
        let table = Bytes().u32(2).zeros(4 + 64)
        expectRefused(
            wire(setMemTable, table), descriptors: 1,
            .missingDescriptors(request: .frontend(.setMemTable), expected: 2, received: 1))
        expectRefused(
            wire(setVringKick, Bytes().u64(0)),
            .missingDescriptors(request: .frontend(.setVringKick), expected: 1, received: 0))
        expectRefused(
            wire(FrontendRequest.addMemReg.rawValue, Bytes().zeros(40)),
            .missingDescriptors(request: .frontend(.addMemReg), expected: 1, received: 0))
    }

    @Test(.isolatedDescriptors) func kickWithTheNoFileFlagAndAFileIsRefused() {
        for request in [FrontendRequest.setVringKick, .setVringCall, .setVringErr] {
            expectRefused(
                wire(request.rawValue, Bytes().u64(0x100)), descriptors: 1,
                .unexpectedDescriptors(request: .frontend(request), expected: 0, received: 1))
        }
    }

    @Test(.isolatedDescriptors) func kickWithReservedBitsIsRefused() {
        expectRefused(
            wire(setVringKick, Bytes().u64(0x200)), descriptors: 1,
            .reservedBits(request: .frontend(.setVringKick), value: 0x200))
        expectRefused(
            wire(setVringKick, Bytes().u64(1 << 63)),
            .reservedBits(request: .frontend(.setVringKick), value: 1 << 63))
    }

    @Test(.isolatedDescriptors) func removeRegionToleratesOneDescriptorAndClosesIt() throws {
        let before = openFileDescriptorCount()
        let (body, count, _) = try decodeBody(
            wire(FrontendRequest.remMemReg.rawValue, Bytes().zeros(40)), descriptors: 1)
        #expect(body.request == .remMemReg)
        #expect(count == 0)
        #expect(openFileDescriptorCount() == before)
        expectRefused(
            wire(FrontendRequest.remMemReg.rawValue, Bytes().zeros(40)), descriptors: 2,
            .unexpectedDescriptors(request: .frontend(.remMemReg), expected: 0, received: 2))
    }

    @Test func replyFlagsMustBeExactlyReplyAndVersion() {
        for flags: UInt32 in [0x1, 0xD, 0x4] {
            let header = MessageHeader(request: getFeatures, flags: MessageFlags(rawValue: flags), size: 8)
            let error: ProtocolError =
                flags == 0x4
                ? .unsupportedVersion(flags: 0x4) : .malformedReplyFlags(request: .frontend(.getFeatures), flags: flags)
            #expect(throws: error) { try header.validate(.backendReply) }
        }
        expectReplyRefused(
            wire(getFeatures, flags: 0x1, Bytes().u64(0)), to: .getFeatures, descriptors: 1,
            .malformedReplyFlags(request: .frontend(.getFeatures), flags: 0x1))
    }

    @Test func replyToAnotherRequestIsRefused() {
        expectReplyRefused(
            wire(FrontendRequest.getQueueNum.rawValue, flags: 0x5, Bytes().u64(1)), to: .getFeatures,
            .replyMismatch(expected: .frontend(.getFeatures), received: 17))
    }

    @Test func u64ReplyMustBeExactlyEightBytes() {
        expectReplyRefused(
            wire(getFeatures, flags: 0x5, Bytes().u32(1)), to: .getFeatures, descriptors: 1,
            .payloadSize(request: .frontend(.getFeatures), size: 4, expected: 8))
        expectReplyRefused(
            wire(getFeatures, flags: 0x5, Bytes().u64(1).u64(2)), to: .getFeatures,
            .payloadTooLarge(request: .frontend(.getFeatures), size: 16, limit: 8))
        expectReplyRefused(
            wire(getFeatures, flags: 0x5, Bytes().u64(1)), to: .getFeatures, descriptors: 1,
            .unexpectedDescriptors(request: .frontend(.getFeatures), expected: 0, received: 1))
    }

    @Test func failedConfigReplyIsRefused() throws {
        // libvhost-user answers a failed GET_CONFIG with size 0.
        let bytes = wire(FrontendRequest.getConfig.rawValue, flags: 0x5)
        let (header, payload) = try split(bytes)
        #expect(throws: ProtocolError.payloadSize(request: .frontend(.getConfig), size: 0, expected: 69)) {
            try withBytes(payload) { raw throws(ProtocolError) in
                _ = try Reply.config(requestedSize: 57, header: header, payload: raw, descriptors: MessageDescriptors())
            }
        }
    }

    @Test(.isolatedDescriptors) func inflightReplyWithoutItsDescriptorIsRefused() throws {
        let bytes = wire(
            FrontendRequest.getInflightFD.rawValue, flags: 0x5, Bytes().u64(4096).u64(0).u16(1).u16(128).zeros(4))
        let (header, payload) = try split(bytes)
        let before = openFileDescriptorCount()
        for count in [0, 2] {
            let fds = openDescriptors(count)
            let error: ProtocolError =
                count == 0
                ? .missingDescriptors(request: .frontend(.getInflightFD), expected: 1, received: 0)
                : .unexpectedDescriptors(request: .frontend(.getInflightFD), expected: 1, received: 2)
            #expect(throws: error) {
                try withBytes(payload) { raw throws(ProtocolError) in
                    _ = try Reply.inflight(header: header, payload: raw, descriptors: MessageDescriptors(adopting: fds))
                }
            }
        }
        #expect(openFileDescriptorCount() == before)
    }

    @Test(.isolatedDescriptors) func deviceStateReplyRules() throws {
        let before = openFileDescriptorCount()
        let cases: [(UInt64, Int, ProtocolError)] = [
            (0, 0, .missingDescriptors(request: .frontend(.setDeviceStateFD), expected: 1, received: 0)),
            (0x100, 1, .unexpectedDescriptors(request: .frontend(.setDeviceStateFD), expected: 0, received: 1)),
            (0x200, 1, .reservedBits(request: .frontend(.setDeviceStateFD), value: 0x200)),
        ]
        for (value, count, error) in cases {
            let (header, payload) = try split(wire(42, flags: 0x5, Bytes().u64(value)))
            let fds = openDescriptors(count)
            #expect(throws: error) {
                try withBytes(payload) { raw throws(ProtocolError) in
                    _ = try Reply.deviceState(
                        header: header, payload: raw, descriptors: MessageDescriptors(adopting: fds))
                }
            }
        }
        #expect(openFileDescriptorCount() == before)
    }

    @Test func encoderRefusesMoreThanEightRegions() {
        var buffer: [UInt8] = []
        let table = MemoryTable(regions: Array(repeating: traceRegion, count: 9))
        #expect(throws: ProtocolError.payloadTooLarge(request: .frontend(.setMemTable), size: 296, limit: 264)) {
            try Message.encodeRequest(.setMemTable(table), into: &buffer)
        }
    }

    @Test func encoderRefusesOversizedReplies() {
        var buffer: [UInt8] = []
        #expect(throws: ProtocolError.payloadTooLarge(request: .frontend(.getFeatures), size: 24, limit: 8)) {
            try Message.encodeReply(
                to: .getFeatures,
                .inflight(InflightDescription(mmapSize: 0, mmapOffset: 0, queueCount: 0, queueSize: 0)), into: &buffer)
        }
    }

    @Test(.isolatedDescriptors) func backendChannelRulesApply() {
        let before = openFileDescriptorCount()
        let cases: [([UInt8], Int, ProtocolError)] = [
            (
                wire(3, Bytes().u64(0x101).u64(0).u64(0)), 1,
                .unexpectedDescriptors(request: .backend(.vringHostNotifier), expected: 0, received: 1)
            ),
            (
                wire(3, Bytes().u64(1).u64(4096).u64(0)), 0,
                .missingDescriptors(request: .backend(.vringHostNotifier), expected: 1, received: 0)
            ),
            (wire(2, flags: 0x5), 0, .replyFlagOnRequest(request: .backend(.configChange), flags: 0x5)),
            (wire(9), 1, .unknownRequest(code: 9, direction: .backendRequest)),
            (wire(4, Bytes().u32(0)), 0, .payloadSize(request: .backend(.vringCall), size: 4, expected: 8)),
        ]
        for (bytes, count, error) in cases {
            let fds = openDescriptors(count)
            #expect(throws: error) {
                try withBytes(bytes) { raw throws(ProtocolError) in
                    _ = try BackendChannelMessage.decode(bytes: raw, descriptors: MessageDescriptors(adopting: fds))
                }
            }
        }
        #expect(openFileDescriptorCount() == before)
    }

    @Test func descriptionsNameWhatWasSentAndWhy() {
        #expect(
            ProtocolError.unknownRequest(code: 44, direction: .frontendRequest).description
                == "unknown request 44 for a front-end request")
        #expect(
            ProtocolError.unexpectedDescriptors(request: .frontend(.setVringKick), expected: 0, received: 1).description
                == "SET_VRING_KICK: 1 fds received, expected 0 (all closed)")
        #expect(
            ProtocolError.malformedReplyFlags(request: .frontend(.getFeatures), flags: 0xd).description
                == "GET_FEATURES reply: flags 0xd, expected 0x5 (REPLY | version 1)")
    }
}

/// Expects a `u64` reply to `request` to be refused with `expected`, with every fd closed.
func expectReplyRefused(
    _ bytes: [UInt8], to request: FrontendRequest, descriptors: Int = 0, _ expected: ProtocolError,
    sourceLocation: SourceLocation = #_sourceLocation
) {
    let before = openFileDescriptorCount()
    #expect(throws: expected, sourceLocation: sourceLocation) {
        _ = try replyU64(bytes, to: request, descriptors: descriptors)
    }
    #expect(openFileDescriptorCount() == before, "descriptors leaked", sourceLocation: sourceLocation)
}
