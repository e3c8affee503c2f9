//! Limits and switches of the broker core. Every bound has a default; units go last in names.

/// The broker core's configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Deserialize),
    serde(default, deny_unknown_fields)
)]
pub struct Config {
    /// Largest packet accepted from a client, fixed header included (CONNACK Maximum Packet
    /// Size in v5). Larger packets get DISCONNECT 0x95 / connection closed.
    pub max_packet_size: u32,
    /// How many QoS 2 exchanges a client may have open towards the broker (CONNACK Receive
    /// Maximum). A v5 client exceeding it gets DISCONNECT 0x93.
    pub receive_maximum: u16,
    /// Upper bound on the QoS 1/2 messages in flight to one client, whatever its own Receive
    /// Maximum (3.1.1 clients have none).
    pub max_inflight_messages: u16,
    /// Topic aliases a v5 client may use towards the broker (CONNACK Topic Alias Maximum).
    pub topic_alias_maximum: u16,
    /// Largest keep alive granted, in seconds; a client asking for more (or for 0) is told
    /// this value through v5 Server Keep Alive. `None` leaves the client's choice.
    pub max_keep_alive_secs: Option<u16>,
    /// Largest session expiry interval granted, in seconds. 3.1.1 persistent sessions
    /// (clean session 0) get this value.
    pub session_expiry_max_secs: u32,
    /// Messages queued for one session (offline, or beyond the in-flight window) at most.
    /// Beyond it new messages for that session are dropped and counted.
    pub queue_max_messages: usize,
    /// Payload bytes queued for one session at most; same drop policy.
    pub queue_max_bytes: usize,
    /// Retained messages kept at most; a new retained topic beyond it is not retained
    /// (the message is still routed) and counted.
    pub retained_max_messages: usize,
    /// Subscriptions per session at most; beyond it SUBACK 0x97 (v5) / 0x80 (v3).
    pub max_subscriptions_per_client: usize,
    /// Levels in a topic name or filter at most; deeper ones are refused (0x90/0x8F).
    pub max_topic_levels: usize,
    /// Time a new connection has to send CONNECT, in milliseconds.
    pub connect_timeout_ms: u64,
    /// Interval of the `$SYS/broker/...` updates in seconds; 0 disables them.
    pub sys_interval_secs: u32,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            max_packet_size: 1024 * 1024,
            receive_maximum: 1024,
            max_inflight_messages: 1024,
            topic_alias_maximum: 64,
            max_keep_alive_secs: None,
            session_expiry_max_secs: u32::MAX,
            queue_max_messages: 100_000,
            queue_max_bytes: 256 * 1024 * 1024,
            retained_max_messages: 1_000_000,
            max_subscriptions_per_client: 10_000,
            max_topic_levels: 64,
            connect_timeout_ms: 10_000,
            sys_interval_secs: 10,
        }
    }
}
