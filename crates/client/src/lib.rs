//! An async MQTT 3.1.1 / 5.0 client whose QoS 1/2 state can live on disk.
//!
//! ```no_run
//! # async fn demo() -> Result<(), quartet_client::ClientError> {
//! use quartet_client::{Client, ConnectOptions, QoS, Subscription};
//!
//! let mut opts = ConnectOptions::new("127.0.0.1:1883", "dashboard").persistent(3600);
//! opts.state_dir = Some("dashboard-state".into());
//! opts.manual_ack = true;
//! let (client, mut incoming) = Client::connect(opts).await?;
//! client.subscribe(&[Subscription::new("sensors/#", QoS::ExactlyOnce)]).await?;
//! while let Some(d) = incoming.recv().await {
//!     // Make the side effect idempotent with d.id, then acknowledge.
//!     println!("{:?} {}", d.id, String::from_utf8_lossy(&d.message.payload));
//!     d.ack()?;
//! }
//! # Ok(()) }
//! ```
//!
//! # Layout
//! - `client`: [`Client`] (the handle), [`Incoming`] and [`Delivery`] (messages to the
//!   application), [`Publishing`] and [`PublishAck`] (the broker's answer).
//! - `event_loop`: the background task: connection, reconnect with backoff and jitter, the
//!   session state (outgoing and incoming exchanges), flow control; the QoS 1/2 flow diagram
//!   is at its top.
//! - `journal`: the durable state in a state directory (why the client has its own small
//!   format rather than `quartet-store` is explained there).
//! - [`options`]: [`ConnectOptions`] and its parts.
//! - [`trace`]: [`TraceEvent`], the observer of each protocol step.
//! - [`error`][]: [`ClientError`].
//!
//! # The connection
//! [`Client::connect`] makes the first connection (and fails if it fails); a background
//! task then owns it. When the connection is lost it reconnects after a delay that doubles
//! from [`Reconnect::min_delay`] to [`Reconnect::max_delay`], each drawn at random between
//! half and all of it. A session that outlives its connection (v5 Session Expiry > 0, or
//! 3.1.1 clean session 0) is resumed: unacknowledged PUBLISH packets are resent with DUP = 1
//! and the same packet ids, PUBREL for messages already released, in their original order
//! ([MQTT-4.4.0-1]). Publishes made while disconnected wait in the outgoing queue, bounded by
//! [`ConnectOptions::max_queued`]. The broker's Receive Maximum bounds the QoS 1/2 messages in
//! flight, its Maximum Packet Size is checked before a message is accepted, its Topic Alias
//! Maximum bounds the aliases the client assigns, Maximum QoS and Retain Available are
//! respected. Keep alive sends PINGREQ and drops a connection whose PINGRESP does not come.
//!
//! # Durable state
//! With [`ConnectOptions::state_dir`] the client journals (fsync by default):
//! - each outgoing QoS 1/2 message with its packet id and publish sequence number, before
//!   the PUBLISH is written to the socket and before [`Client::send`] returns;
//! - PUBREC received (the message is released), before PUBREL is sent;
//! - each received QoS 1/2 packet id with the receive sequence number of the message, before
//!   the message is handed to the application (and so before PUBACK/PUBREC);
//! - the end of an inbound exchange, before PUBACK (QoS 1) or PUBCOMP (QoS 2) is sent.
//!
//! A process killed at any point and restarted with the same client id and directory,
//! against a broker that kept the session, carries on: outgoing messages are resent with
//! their packet ids (the broker discards what it already has, [MQTT-4.3.3]), so none is lost
//! or duplicated; an incoming QoS 2 message whose PUBREC went out is never handed over again.
//! A directory is used by one client at a time (an OS lock).
//!
//! # Manual acknowledgement: what is and is not guaranteed
//! With [`ConnectOptions::manual_ack`], each QoS 1/2 [`Delivery`] is acknowledged to the
//! broker only when the application calls [`Delivery::ack`]. Every QoS 1/2 delivery carries
//! a [`MessageId`] (client id and receive sequence number), journaled before the message is
//! handed over.
//!
//! - **Guaranteed:** a message is acknowledged to the broker only after `ack()`. If the
//!   application (or the process) dies before `ack()`, the message is not lost: the broker
//!   sends it again when the session is resumed, and the client hands it over again with
//!   the **same** [`MessageId`] and `redelivered = true`.
//! - **Guaranteed (QoS 2):** once the application has called `ack()` and PUBREC has gone out,
//!   the message is never handed over again, whatever crashes follow.
//! - **Not guaranteed:** that a message is handed over only once. If the application dies
//!   *after* its side effect and *before* `ack()` (or before PUBREC left the process), the
//!   message comes again. The library cannot know the side effect happened; the application
//!   must make it idempotent with the [`MessageId`]: record the id atomically with the side
//!   effect (same database transaction, same file write) and skip a message whose id it has
//!   recorded. That gives exactly-once effects end to end.
//! - **Not guaranteed:** identity across a lost session. If the broker forgot the session
//!   (Session Present = 0: clean start, expiry, a broker without durable state), the broker
//!   will not resend anything and the client clears its inbound set; messages the application
//!   had not acknowledged are gone with the broker's session, and their acks are ignored.
//! - QoS 1 stays at-least-once: a PUBACK lost with its connection makes the broker resend
//!   the message after the reconnect; it then arrives as a new message with a new identity.
//!   Use QoS 2 where duplicates matter.
//! - Without a state directory the same holds within one process only.
//!
//! In automatic mode ([`Incoming::recv`] acknowledges as it returns a message), a message
//! is acknowledged when the application receives it, before it processes it: a crash in
//! between loses it for the application (at most once for the processing).
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod client;
pub mod error;
mod event_loop;
mod journal;
pub mod options;
pub mod trace;

pub use client::{
    Client, Delivery, Incoming, Message, MessageId, OutgoingMessage, PublishAck, Publishing, Status,
};
pub use error::ClientError;
pub use journal::SyncMode;
pub use options::{ConnectOptions, LastWill, Reconnect, Subscription, TraceFn};
pub use quartet_proto::{
    PacketId, ProtocolVersion, PublishProperties, QoS, ReasonCode, RetainHandling,
    SubscriptionOptions, UserProperty, WillProperties,
};
pub use trace::{Direction, TraceEvent};
