//! Sans-IO MQTT for Quartet: one packet model for MQTT 3.1, 3.1.1 and 5.0, a streaming
//! decoder and an encoder, topic names and filters with matching, reason codes, and errors
//! named after the normative statements they enforce.
//!
//! # Layout
//! - [`types`]: the packet model ([`Packet`] and one struct per packet), [`QoS`], [`PacketId`],
//!   [`ClientId`], [`ProtocolVersion`].
//! - [`reason`]: [`ReasonCode`], and which packet may carry which code.
//! - [`topic`]: [`TopicName`], [`TopicFilter`] (with `$share/{group}/{filter}`) and
//!   [`topic::matches`].
//! - [`codec`]: framing ([`decode`], [`encode`], [`encoded_len`], [`Limits`]) and the
//!   version-specific modules (`v3` for 3.1 and 3.1.1, `v5` for 5.0).
//! - [`error`]: [`DecodeError`] (what a peer sent wrong, with its reason code),
//!   [`EncodeError`], [`TopicError`].
//!
//! # Example
//! ```
//! use bytes::BytesMut;
//! use quartet_proto::*;
//!
//! let publish = Packet::Publish(Publish {
//!     dup: false,
//!     qos: QoS::ExactlyOnce,
//!     retain: false,
//!     topic: TopicName::new("sensors/temperature/livingroom").unwrap(),
//!     packet_id: PacketId::new(7),
//!     properties: PublishProperties::default(),
//!     payload: bytes::Bytes::from_static(b"22.5"),
//! });
//! let mut buf = BytesMut::new();
//! let n = encode(&publish, ProtocolVersion::V5, &mut buf).unwrap();
//! assert_eq!(n, encoded_len(&publish, ProtocolVersion::V5).unwrap());
//! let back = decode(&mut buf, ProtocolVersion::V5, &Limits::default()).unwrap();
//! assert_eq!(back, Some(publish));
//! assert!(buf.is_empty());
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod codec;
pub mod error;
pub mod reason;
pub mod topic;
pub mod types;

pub use codec::{decode, encode, encoded_len, Limits, MAX_PACKET_SIZE};
pub use error::{DecodeError, EncodeError, TopicError};
pub use reason::ReasonCode;
pub use topic::{TopicFilter, TopicName};
pub use types::*;

pub use bytes;
pub use bytestring;
