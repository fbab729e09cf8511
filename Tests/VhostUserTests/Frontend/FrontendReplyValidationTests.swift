import Testing
import VMMSysUtil
import VMMTestSupport
import VhostUserFrontend

/// Every malformed reply a back-end can send becomes a typed `FrontendError` (never a crash or a
/// hang), no fd leaks, and the connection is unusable afterwards.
@Suite struct FrontendReplyValidationTests {
    /// Connects to a fake that answers GET_FEATURES with `reply`, expects `negotiate` to throw
    /// `expected`, then checks the connection is refused and nothing leaked.
    func expectRefused(
        _ expected: FrontendError, timeout: Duration = .seconds(5), sourceLocation: SourceLocation = #_sourceLocation,
        reply: @escaping @Sendable () -> FakeReply
    ) throws {
        let before = openFileDescriptorCount()
        do {
            let (frontend, fake) = try connectedToFake(timeout: timeout) { message in
                message.request == .getFeatures ? reply() : .nothing
            }
            #expect(throws: expected, sourceLocation: sourceLocation) {
                try frontend.negotiate(features: [.version1])
            }
            #expect(!frontend.isConnected, sourceLocation: sourceLocation)
            #expect(throws: FrontendError.connectionUnusable, sourceLocation: sourceLocation) {
                try frontend.negotiate(features: [.version1])
            }
            withExtendedLifetime(frontend) {}
            _ = consume frontend
            fake.join()
            #expect(fake.failure == nil, "fake back-end: \(fake.failure ?? "")", sourceLocation: sourceLocation)
        }
        #expect(openFileDescriptorCount() == before, "descriptors leaked", sourceLocation: sourceLocation)
    }

    @Test(.isolatedDescriptors) func replyWithoutReplyFlagIsRefused() throws {
        try expectRefused(.protocolViolation(.malformedReplyFlags(request: .frontend(.getFeatures), flags: 0x1))) {
            .raw(wire(1, flags: 0x1, Bytes().u64(1 << 32)))
        }
    }

    @Test(.isolatedDescriptors) func replyWithNeedReplyFlagIsRefused() throws {
        try expectRefused(.protocolViolation(.malformedReplyFlags(request: .frontend(.getFeatures), flags: 0xD))) {
            .raw(wire(1, flags: 0xD, Bytes().u64(1 << 32)))
        }
    }

    @Test(.isolatedDescriptors) func replyWithWrongVersionIsRefused() throws {
        try expectRefused(.protocolViolation(.unsupportedVersion(flags: 0x6))) {
            .raw(wire(1, flags: 0x6, Bytes().u64(1 << 32)))
        }
    }

    @Test(.isolatedDescriptors) func replyWithShortPayloadIsRefused() throws {
        try expectRefused(.protocolViolation(.payloadSize(request: .frontend(.getFeatures), size: 4, expected: 8))) {
            .raw(wire(1, flags: 0x5, Bytes().u32(7)))
        }
    }

    @Test(.isolatedDescriptors) func oversizedReplyIsRefusedFromItsHeader() throws {
        // Only the header is sent: the size must be refused before any payload is awaited.
        try expectRefused(.protocolViolation(.payloadTooLarge(request: .frontend(.getFeatures), size: 300, limit: 8))) {
            .raw(wire(1, flags: 0x5, size: 300))
        }
    }

    @Test(.isolatedDescriptors) func replyToAnotherRequestIsRefused() throws {
        try expectRefused(.protocolViolation(.replyMismatch(expected: .frontend(.getFeatures), received: 15))) {
            .raw(wire(15, flags: 0x5, Bytes().u64(0)))
        }
    }

    @Test(.isolatedDescriptors) func replyWithUnexpectedDescriptorIsRefusedAndTheDescriptorClosed() throws {
        try expectRefused(
            .protocolViolation(.unexpectedDescriptors(request: .frontend(.getFeatures), expected: 0, received: 1))
        ) {
            // The fake closes its copy after sending; the front-end must close the one it received.
            .raw(wire(1, flags: 0x5, Bytes().u64(1 << 32)), fds: openDescriptors(1))
        }
    }

    @Test(.isolatedDescriptors) func missingReplyTimesOut() throws {
        try expectRefused(.timedOut(.getFeatures), timeout: .milliseconds(100)) { .nothing }
    }

    @Test(.isolatedDescriptors) func truncatedReplyTimesOut() throws {
        try expectRefused(.timedOut(.getFeatures), timeout: .milliseconds(100)) {
            .raw(Array(wire(1, flags: 0x5, Bytes().u64(1 << 32)).prefix(16)))
        }
    }

    @Test(.isolatedDescriptors) func hangUpIsPeerClosed() throws {
        try expectRefused(.socket(.peerClosed)) { .hangUp }
    }
}
