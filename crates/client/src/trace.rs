//! Observing the QoS 1/2 handshakes as they happen (`quartet sub --trace`).

use std::time::Duration;

use quartet_proto::{PacketType, QoS, ReasonCode};

/// Which way a packet went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Client to broker.
    Out,
    /// Broker to client.
    In,
}

/// One step of a QoS 1/2 exchange (or CONNECT/CONNACK, SUBSCRIBE/SUBACK, DISCONNECT),
/// reported when the packet is decoded (in) or handed to the socket (out).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceEvent {
    /// Time since the client was created.
    pub elapsed: Duration,
    /// Direction.
    pub direction: Direction,
    /// The packet type.
    pub packet: PacketType,
    /// Its packet id, if it has one.
    pub packet_id: Option<u16>,
    /// PUBLISH: its QoS.
    pub qos: Option<QoS>,
    /// PUBLISH: the DUP flag.
    pub dup: bool,
    /// PUBLISH: the topic (resolved from an alias where one was used).
    pub topic: Option<String>,
    /// The reason code, for packets that carry one.
    pub reason: Option<ReasonCode>,
    /// A note from the client: "journaled", "duplicate: not delivered again", ...
    pub note: Option<&'static str>,
}
