/// What is about to happen to a ring whose device gets `VhostUserDevice.queueChanging(_:to:)`.
///
/// Thread-safety: a value type.
public enum QueueChange: Hashable, Sendable {
    /// The ring stops: `GET_VRING_BASE`, `RESET_DEVICE` or the end of the session. It may start
    /// again later (`queueStarted(_:)` is called then).
    case stopping
    /// The ring goes on from the same position over a new memory table (`SET_MEM_TABLE`,
    /// `ADD_MEM_REG`, `REM_MEM_REG`) or at new addresses (`SET_VRING_ADDR`); `queueStarted(_:)`
    /// is not called again, and the device's event sources stay registered.
    case rebuilding
}
