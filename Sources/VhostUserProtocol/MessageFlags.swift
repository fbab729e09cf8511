/// The `flags` word of a vhost-user header.
///
/// Bits 0-1 hold the protocol version (always 1), bit 2 marks a reply, bit 3 asks for a REPLY_ACK
/// acknowledgement. No other bit is defined; a header with any other bit set is refused.
/// Thread-safety: a value type; freely shareable.
public struct MessageFlags: OptionSet, Hashable, Sendable {
    public let rawValue: UInt32

    public init(rawValue: UInt32) {
        self.rawValue = rawValue
    }

    /// Version 1 in the two version bits; set on every message.
    public static let version1 = MessageFlags(rawValue: 0x1)
    /// Set on every reply (`REPLY_MASK`).
    public static let reply = MessageFlags(rawValue: 0x4)
    /// The sender wants an acknowledgement (`NEED_REPLY_MASK`, needs PF_REPLY_ACK).
    public static let needReply = MessageFlags(rawValue: 0x8)

    /// The two version bits (`VERSION_MASK`).
    public static let versionMask: UInt32 = 0x3
    /// Every defined bit: version, REPLY, NEED_REPLY.
    public static let knownMask: UInt32 = 0xF

    /// The flags every reply carries, exactly: `REPLY | version 1` (0x5). QEMU refuses anything else.
    public static let replyFlags: MessageFlags = [.version1, .reply]
}
