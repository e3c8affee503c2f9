//! The durable records and the operations on them.

use bytes::Bytes;
use quartet_proto::{
    ClientId, PacketId, ProtocolVersion, PublishProperties, QoS, SubscriptionOptions, TopicFilter,
    TopicName,
};

/// Identifies a stored message; assigned by the broker, increasing, never reused.
pub type MsgId = u64;

/// Wall-clock time in milliseconds since the Unix epoch. Durable deadlines (message expiry,
/// session expiry, will delay) are absolute, so they keep counting across restarts.
pub type Millis = u64;

/// An application message as the broker keeps it: routed, queued, retained or as a will.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Topic name.
    pub topic: TopicName,
    /// Payload, shared, never copied per subscriber.
    pub payload: Bytes,
    /// QoS it was published with.
    pub qos: QoS,
    /// The RETAIN flag it was published with.
    pub retain: bool,
    /// v5 properties passed through (topic alias and subscription identifiers removed).
    pub properties: PublishProperties,
    /// When it expires (from the v5 Message Expiry Interval), if ever.
    pub expires_at: Option<Millis>,
}

/// A will message with its delay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WillRecord {
    /// The message to publish.
    pub message: Message,
    /// Will Delay Interval in seconds (v5; 0 for v3).
    pub delay_secs: u32,
}

/// A session, as much of it as fits in one record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRecord {
    /// The client identifier, the session's key.
    pub client_id: ClientId,
    /// Session Expiry Interval in seconds; `u32::MAX` never expires.
    pub expiry_interval_secs: u32,
    /// The protocol version of the last connection.
    pub protocol: ProtocolVersion,
    /// `None` while a connection is attached; the time it ended otherwise.
    pub disconnected_at: Option<Millis>,
    /// The will of the current connection, or a delayed will not yet published.
    pub will: Option<WillRecord>,
}

/// One subscription of a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriptionRecord {
    /// The filter, including any `$share/{group}/` prefix.
    pub filter: TopicFilter,
    /// Its options.
    pub options: SubscriptionOptions,
    /// v5 Subscription Identifier.
    pub identifier: Option<u32>,
}

/// Where an outbound (broker to client) QoS 1/2 message stands.
///
/// ```text
///  Queued --(packet id assigned, PUBLISH sent)--> AwaitingAck
///  AwaitingAck --PUBACK (QoS 1)--> deleted
///  AwaitingAck --PUBREC (QoS 2)--> Released (PUBREL sent; body dropped)
///  Released --PUBCOMP--> deleted
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OutboundPhase {
    /// Waiting in the queue; no packet id yet.
    Queued,
    /// PUBLISH sent (or about to be) with `packet_id`; waiting for PUBACK or PUBREC.
    AwaitingAck,
    /// PUBREC received and PUBREL sent; waiting for PUBCOMP.
    Released,
}

/// A message owed to a client, in order of `seq`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboundRecord {
    /// Position in the session's outbound order; increasing per session.
    pub seq: u64,
    /// The message body; `None` once released (only the packet id is needed then).
    pub msg: Option<MsgId>,
    /// Delivery QoS (the minimum of the publish QoS and the subscription's).
    pub qos: QoS,
    /// Assigned when the PUBLISH is first sent, kept across reconnects and restarts.
    pub packet_id: Option<PacketId>,
    /// Where the exchange stands.
    pub phase: OutboundPhase,
    /// The RETAIN flag to send.
    pub retain: bool,
    /// v5 Subscription Identifiers of the matching subscriptions.
    pub subscription_ids: Vec<u32>,
}

/// One change to the durable state. See [`crate::State::apply`] for the exact meaning.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// Create or replace a session record (its subscriptions and queues stay).
    PutSession(SessionRecord),
    /// Delete a session with all its subscriptions, inbound ids and outbound records.
    DeleteSession(ClientId),
    /// Create or replace a subscription (keyed by its filter text).
    PutSubscription {
        /// The session.
        client: ClientId,
        /// The subscription.
        sub: SubscriptionRecord,
    },
    /// Delete a subscription.
    DeleteSubscription {
        /// The session.
        client: ClientId,
        /// The filter text.
        filter: TopicFilter,
    },
    /// Record an inbound QoS 2 packet id as received (PUBREC owed or sent).
    PutInbound {
        /// The session.
        client: ClientId,
        /// The publisher's packet id.
        packet_id: PacketId,
    },
    /// Forget an inbound QoS 2 packet id (PUBREL received).
    DeleteInbound {
        /// The session.
        client: ClientId,
        /// The publisher's packet id.
        packet_id: PacketId,
    },
    /// Store a message body that outbound records will reference. A body no record
    /// references any more is dropped.
    PutMessage {
        /// Its id.
        id: MsgId,
        /// The message.
        message: Message,
    },
    /// Create or replace (by `seq`) an outbound record.
    PutOutbound {
        /// The session.
        client: ClientId,
        /// The record.
        record: OutboundRecord,
    },
    /// Delete an outbound record (PUBACK, PUBCOMP, expiry or drop).
    DeleteOutbound {
        /// The session.
        client: ClientId,
        /// The record's seq.
        seq: u64,
    },
    /// Set the retained message of a topic.
    PutRetained(Message),
    /// Clear the retained message of a topic.
    DeleteRetained(TopicName),
}

/// Ops that are made durable together, atomically.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Batch {
    /// The ops, applied in order.
    pub ops: Vec<Op>,
}

impl Batch {
    /// True when the batch holds no op.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }
}
