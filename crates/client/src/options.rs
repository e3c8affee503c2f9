//! What [`crate::Client::connect`] is told.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use quartet_proto::{
    ProtocolVersion, QoS, SubscriptionOptions, TopicFilter, TopicName, UserProperty, WillProperties,
};

use crate::error::ClientError;
use crate::journal::SyncMode;
use crate::trace::TraceEvent;

/// The last will: published by the broker if the connection dies without DISCONNECT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LastWill {
    /// Topic.
    pub topic: String,
    /// Payload.
    pub payload: Bytes,
    /// QoS.
    pub qos: QoS,
    /// Retain flag.
    pub retain: bool,
    /// v5 will properties (ignored for 3.1.1).
    pub properties: WillProperties,
}

/// Reconnection policy: exponential backoff with jitter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reconnect {
    /// Reconnect automatically after the connection is lost. When false, a lost connection
    /// ends the client (the incoming stream ends with the error).
    pub enabled: bool,
    /// First delay.
    pub min_delay: Duration,
    /// Largest delay; the delay doubles after each failed attempt up to this.
    pub max_delay: Duration,
}

impl Default for Reconnect {
    fn default() -> Self {
        Reconnect {
            enabled: true,
            min_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(5),
        }
    }
}

/// Called with every QoS 1/2 step of the protocol, as it happens.
pub type TraceFn = Arc<dyn Fn(&TraceEvent) + Send + Sync>;

/// Everything a connection needs.
#[derive(Clone)]
pub struct ConnectOptions {
    /// `host:port` of the broker.
    pub addr: String,
    /// Client identifier. Empty asks the broker to assign one (not allowed with a state
    /// directory, and not with a persistent 3.1.1 session).
    pub client_id: String,
    /// Protocol version: [`ProtocolVersion::V311`] or [`ProtocolVersion::V5`].
    pub version: ProtocolVersion,
    /// Clean start (v5) / clean session (3.1.1) on the first connection. Reconnects of a
    /// session that outlives its connection always resume it.
    pub clean_start: bool,
    /// v5 Session Expiry Interval in seconds (0: the session ends with the connection).
    /// For 3.1.1 a non-zero value means "clean session = false".
    pub session_expiry_secs: u32,
    /// Keep alive in seconds; a PINGREQ goes out when nothing was sent for this long, and
    /// the connection counts as dead if no PINGRESP arrives within it. 0 disables it.
    pub keep_alive_secs: u16,
    /// User name.
    pub username: Option<String>,
    /// Password.
    pub password: Option<Bytes>,
    /// Last will.
    pub will: Option<LastWill>,
    /// v5 user properties of CONNECT.
    pub user_properties: Vec<UserProperty>,
    /// QoS 1/2 messages the broker may have unacknowledged towards us (v5 Receive Maximum).
    /// In manual acknowledgement mode it bounds how many messages the application holds.
    pub receive_maximum: u16,
    /// Largest packet we accept (v5 Maximum Packet Size); `None` for MQTT's maximum.
    pub max_packet_size: Option<u32>,
    /// Topic aliases the broker may use towards us (v5 Topic Alias Maximum).
    pub topic_alias_maximum: u16,
    /// Use topic aliases towards the broker when it allows them (v5).
    pub use_topic_aliases: bool,
    /// Outgoing QoS 1/2 messages in flight at most when the broker states no Receive
    /// Maximum (3.1.1). With v5 the broker's value applies.
    pub max_inflight: u16,
    /// Messages waiting to be sent or acknowledged at most (the bounded queue that holds
    /// publishes made while disconnected). [`crate::Client::send`] waits for room;
    /// [`crate::Client::try_send`] fails with [`ClientError::QueueFull`].
    pub max_queued: usize,
    /// Time allowed for TCP connect plus CONNACK.
    pub connect_timeout: Duration,
    /// Reconnection policy.
    pub reconnect: Reconnect,
    /// Directory for durable client state (see the crate docs). `None`: state in memory.
    pub state_dir: Option<PathBuf>,
    /// When journal commits count as done.
    pub sync: SyncMode,
    /// Manual acknowledgement: each QoS 1/2 message is acknowledged to the broker only when
    /// the application calls [`crate::Delivery::ack`].
    pub manual_ack: bool,
    /// Messages buffered for the application at most before the client stops reading the
    /// socket.
    pub incoming_capacity: usize,
    /// Observer of each QoS 1/2 step (`quartet sub --trace`).
    pub trace: Option<TraceFn>,
}

impl fmt::Debug for ConnectOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectOptions")
            .field("addr", &self.addr)
            .field("client_id", &self.client_id)
            .field("version", &self.version)
            .field("clean_start", &self.clean_start)
            .field("session_expiry_secs", &self.session_expiry_secs)
            .field("keep_alive_secs", &self.keep_alive_secs)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("will", &self.will)
            .field("receive_maximum", &self.receive_maximum)
            .field("max_queued", &self.max_queued)
            .field("state_dir", &self.state_dir)
            .field("manual_ack", &self.manual_ack)
            .field("trace", &self.trace.is_some())
            .finish_non_exhaustive()
    }
}

impl ConnectOptions {
    /// Defaults: MQTT 5, clean start, session ending with the connection, keep alive 60 s,
    /// reconnect on, no state directory, automatic acknowledgement.
    pub fn new(addr: impl Into<String>, client_id: impl Into<String>) -> ConnectOptions {
        ConnectOptions {
            addr: addr.into(),
            client_id: client_id.into(),
            version: ProtocolVersion::V5,
            clean_start: true,
            session_expiry_secs: 0,
            keep_alive_secs: 60,
            username: None,
            password: None,
            will: None,
            user_properties: Vec::new(),
            receive_maximum: 64,
            max_packet_size: None,
            topic_alias_maximum: 16,
            use_topic_aliases: true,
            max_inflight: 64,
            max_queued: 10_000,
            connect_timeout: Duration::from_secs(10),
            reconnect: Reconnect::default(),
            state_dir: None,
            sync: SyncMode::Fsync,
            manual_ack: false,
            incoming_capacity: 1024,
            trace: None,
        }
    }

    /// A persistent session: no clean start, session expiry `secs` (v5) / clean session 0.
    pub fn persistent(mut self, secs: u32) -> ConnectOptions {
        self.clean_start = false;
        self.session_expiry_secs = secs;
        self
    }

    /// True when the broker keeps the session after the connection ends.
    pub(crate) fn session_persists(&self) -> bool {
        match self.version {
            ProtocolVersion::V5 => self.session_expiry_secs > 0,
            _ => !self.clean_start,
        }
    }

    pub(crate) fn check(&self) -> Result<(), ClientError> {
        if self.version == ProtocolVersion::V31 {
            return Err(ClientError::Options(
                "MQTT 3.1 is not supported by the client: use 3.1.1 or 5".into(),
            ));
        }
        if self.client_id.is_empty() && self.state_dir.is_some() {
            return Err(ClientError::Options(
                "a state directory needs a client id: the state belongs to one session".into(),
            ));
        }
        if self.client_id.is_empty() && self.version != ProtocolVersion::V5 && !self.clean_start {
            return Err(ClientError::Options(
                "MQTT 3.1.1 needs a client id for a persistent session (clean session 0)".into(),
            ));
        }
        if self.receive_maximum == 0 || self.max_inflight == 0 {
            return Err(ClientError::Options(
                "receive maximum and max in-flight must be at least 1".into(),
            ));
        }
        if self.max_queued == 0 || self.max_queued > 65_000 {
            return Err(ClientError::Options(
                "max_queued must be between 1 and 65000 (packet ids are 16 bits)".into(),
            ));
        }
        if let Some(w) = &self.will {
            topic_name(&w.topic)?;
        }
        Ok(())
    }
}

/// Parses a topic name, with the text in the error.
pub(crate) fn topic_name(s: &str) -> Result<TopicName, ClientError> {
    TopicName::new(s).map_err(|error| ClientError::Topic {
        topic: s.to_owned(),
        error,
    })
}

/// Parses a topic filter, with the text in the error.
pub(crate) fn topic_filter(s: &str) -> Result<TopicFilter, ClientError> {
    TopicFilter::new(s).map_err(|error| ClientError::Topic {
        topic: s.to_owned(),
        error,
    })
}

/// One filter of a SUBSCRIBE with its options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscription {
    /// The filter.
    pub filter: String,
    /// QoS, no local, retain as published, retain handling.
    pub options: SubscriptionOptions,
}

impl Subscription {
    /// A subscription at `qos` with default options.
    pub fn new(filter: impl Into<String>, qos: QoS) -> Subscription {
        Subscription {
            filter: filter.into(),
            options: SubscriptionOptions {
                qos,
                ..SubscriptionOptions::default()
            },
        }
    }
}
