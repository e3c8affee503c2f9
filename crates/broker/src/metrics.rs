//! Counters of the broker core.

/// What the broker has done, for metrics, logs and `$SYS`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Metrics {
    /// Connections with a session attached now.
    pub clients_connected: u64,
    /// Sessions (connected or not) now.
    pub sessions: u64,
    /// CONNECTs accepted since start.
    pub connects_total: u64,
    /// PUBLISH packets received from clients.
    pub messages_received: u64,
    /// PUBLISH packets sent to clients (first sends and resends).
    pub messages_sent: u64,
    /// QoS 1/2 messages not queued because a session's queue was full.
    pub dropped_queue_full: u64,
    /// Messages not sent because they exceed the client's Maximum Packet Size.
    pub dropped_too_large: u64,
    /// Messages dropped because their Message Expiry Interval passed before delivery.
    pub dropped_expired: u64,
    /// Retained messages not kept because `retained_max_messages` was reached.
    pub dropped_retained_full: u64,
    /// QoS 0 messages dropped for a slow connection (counted by the driver).
    pub dropped_slow_qos0: u64,
    /// Sessions ended by their expiry interval.
    pub sessions_expired: u64,
    /// Connections closed for a protocol violation or malformed packet.
    pub protocol_errors: u64,
    /// Bytes received (counted by the driver).
    pub bytes_received: u64,
    /// Bytes sent (counted by the driver).
    pub bytes_sent: u64,
    /// Batches handed to the store.
    pub persist_batches: u64,
}
