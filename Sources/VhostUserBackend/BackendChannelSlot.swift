import VMMSysUtil

/// Where a device keeps the current back-end channel: set from
/// `VhostUserDevice.backendChannelChanged(_:)` on the control thread, used from any thread (a
/// signal thread, an I/O thread).
///
/// Thread-safety: every member is safe from any thread (one internal lock; a request in progress
/// holds the channel's own lock, not this one).
public final class BackendChannelSlot: @unchecked Sendable {
    private let lock = ConditionLock()
    // Guarded by `lock`.
    private var channel: BackendChannel?

    public init() {}

    /// The channel now (nil: the front-end opened none, or the session ended).
    public var current: BackendChannel? { lock.withLock { channel } }

    /// Replaces the channel (call from `backendChannelChanged`).
    public func set(_ channel: BackendChannel?) {
        lock.withLock { self.channel = channel }
    }

    /// Sends `BACKEND_CONFIG_CHANGE_MSG` on the current channel.
    ///
    /// - Returns: false when there is no channel (nothing sent).
    /// - Throws: what `BackendChannel.sendConfigChange()` throws.
    @discardableResult
    public func sendConfigChange() throws(VhostUserError) -> Bool {
        guard let channel = current else { return false }
        try channel.sendConfigChange()
        return true
    }
}
