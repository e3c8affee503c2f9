//! Errors: what the peer sent wrong ([`DecodeError`]), what cannot be encoded
//! ([`EncodeError`]) and which topics are invalid ([`TopicError`]).
//!
//! Each decode error names the normative statement it breaks and the MQTT 5 reason code a
//! server answers it with (in CONNACK or DISCONNECT).

use thiserror::Error;

use crate::reason::ReasonCode;
use crate::types::{PacketType, ProtocolVersion};

/// Why a topic name or filter is not valid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum TopicError {
    /// Topic names and filters are at least one character long [MQTT-4.7.3-1].
    #[error("empty topic [MQTT-4.7.3-1]")]
    Empty,
    /// Longer than 65,535 bytes of UTF-8 [MQTT-4.7.3-3].
    #[error("topic longer than 65535 bytes [MQTT-4.7.3-3]")]
    TooLong,
    /// U+0000 in a topic [MQTT-4.7.3-2].
    #[error("topic contains U+0000 [MQTT-4.7.3-2]")]
    NullCharacter,
    /// `+` or `#` in a topic name [MQTT-3.3.2-2].
    #[error("wildcard in a topic name [MQTT-3.3.2-2]")]
    WildcardInName,
    /// `#` not alone as the last level [MQTT-4.7.1-2].
    #[error("'#' must be the last level, alone [MQTT-4.7.1-2]")]
    MultiLevelWildcardPosition,
    /// `+` not alone in its level [MQTT-4.7.1-3].
    #[error("'+' must occupy a whole level [MQTT-4.7.1-3]")]
    SingleLevelWildcardPosition,
    /// `$share/` without a valid share name or filter [MQTT-4.8.2-1], [MQTT-4.8.2-2].
    #[error("invalid shared subscription: needs $share/{{ShareName}}/{{filter}} with a non-empty share name free of '/', '+' and '#' [MQTT-4.8.2-1] [MQTT-4.8.2-2]")]
    InvalidShare,
}

/// Why bytes received from a peer are not a valid packet.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The packet is larger than the receiver's maximum packet size.
    #[error("packet of {size} bytes exceeds the maximum packet size {max} [MQTT-3.2.2-15]")]
    PacketTooLarge {
        /// Total size: fixed header plus remaining length.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// A variable byte integer longer than four bytes [MQTT-1.5.5-1].
    #[error("variable byte integer longer than 4 bytes [MQTT-1.5.5-1]")]
    MalformedVarInt,
    /// Packet type 0 is reserved [MQTT-2.1.2].
    #[error("reserved packet type 0 [MQTT-2.1.2]")]
    ReservedPacketType,
    /// AUTH sent on a 3.1/3.1.1 connection, where type 15 is reserved.
    #[error("packet type 15 (AUTH) does not exist in MQTT {0} [MQTT-2.1.2]")]
    PacketTypeNotInVersion(ProtocolVersion),
    /// Flags of the fixed header that must have fixed values [MQTT-2.1.3-1].
    #[error("{packet} has reserved fixed-header flags 0x{flags:X} [MQTT-2.1.3-1]")]
    ReservedFlags {
        /// The packet type.
        packet: PacketType,
        /// The flags nibble received.
        flags: u8,
    },
    /// The packet ended before a field it announced [MQTT-1.5.4 / MQTT-2.1.4].
    #[error("{packet} truncated: {what} runs past the end of the packet")]
    Truncated {
        /// The packet type.
        packet: PacketType,
        /// What was being read.
        what: &'static str,
    },
    /// Bytes left over after the last field of the packet.
    #[error("{packet} has {extra} trailing bytes after its last field")]
    TrailingBytes {
        /// The packet type.
        packet: PacketType,
        /// How many bytes were left over.
        extra: usize,
    },
    /// A string that is not well-formed UTF-8 (including encoded surrogates) [MQTT-1.5.4-1].
    #[error("{what} is not valid UTF-8 [MQTT-1.5.4-1]")]
    InvalidUtf8 {
        /// Which field.
        what: &'static str,
    },
    /// A string containing U+0000 [MQTT-1.5.4-2].
    #[error("{what} contains U+0000 [MQTT-1.5.4-2]")]
    NullCharacter {
        /// Which field.
        what: &'static str,
    },
    /// QoS 3 in PUBLISH or in a will or subscription [MQTT-3.3.1-4].
    #[error("QoS 3 is not a valid QoS [MQTT-3.3.1-4]")]
    InvalidQoS,
    /// A QoS 0 PUBLISH with DUP set [MQTT-3.3.1-2].
    #[error("DUP set on a QoS 0 PUBLISH [MQTT-3.3.1-2]")]
    DupWithQoS0,
    /// Packet identifier 0 where one is required [MQTT-2.2.1-3].
    #[error("packet identifier 0 in {packet} [MQTT-2.2.1-3]")]
    ZeroPacketId {
        /// The packet type.
        packet: PacketType,
    },
    /// A topic name that is not valid.
    #[error("invalid topic name: {0}")]
    InvalidTopicName(TopicError),
    /// A topic filter that is not valid.
    #[error("invalid topic filter: {0}")]
    InvalidTopicFilter(TopicError),
    /// An empty topic name without a topic alias [MQTT-3.3.2-1].
    #[error("empty topic name without a topic alias [MQTT-3.3.2-1] [MQTT-4.7.3-1]")]
    EmptyTopicWithoutAlias,
    /// Topic Alias 0 [MQTT-3.3.2-8].
    #[error("topic alias 0 [MQTT-3.3.2-8]")]
    TopicAliasZero,
    /// SUBSCRIBE with no filter [MQTT-3.8.3-3].
    #[error("SUBSCRIBE with no topic filter [MQTT-3.8.3-3]")]
    EmptySubscribe,
    /// UNSUBSCRIBE with no filter [MQTT-3.10.3-2].
    #[error("UNSUBSCRIBE with no topic filter [MQTT-3.10.3-2]")]
    EmptyUnsubscribe,
    /// SUBACK/UNSUBACK with no reason code.
    #[error("{packet} with no reason code [MQTT-3.9.3-1]")]
    EmptyAckPayload {
        /// The packet type.
        packet: PacketType,
    },
    /// Reserved bits of the subscription options set [MQTT-3.8.3-5].
    #[error("reserved subscription option bits set: 0x{0:02X} [MQTT-3.8.3-5]")]
    ReservedSubscriptionOptions(u8),
    /// QoS 3 as the Maximum QoS of a subscription [MQTT-3.8.3-4 (3.1.1)]; a Protocol Error in
    /// v5 (§3.8.3.1).
    #[error("subscription QoS 3 is not valid")]
    InvalidSubscriptionQoS,
    /// Retain Handling 3 [MQTT-3.8.3-5].
    #[error("retain handling 3 is not valid [MQTT-3.8.3-5]")]
    InvalidRetainHandling,
    /// No Local on a shared subscription [MQTT-3.8.3-4].
    #[error("no-local set on a shared subscription [MQTT-3.8.3-4]")]
    NoLocalOnShared,
    /// The protocol name is neither "MQTT" nor "MQIsdp" [MQTT-3.1.2-1].
    #[error("unknown protocol name {0:?} [MQTT-3.1.2-1]")]
    InvalidProtocolName(String),
    /// A protocol level this codec does not support [MQTT-3.1.2-2].
    #[error("unsupported protocol level {0} [MQTT-3.1.2-2]")]
    UnsupportedProtocolLevel(u8),
    /// The reserved CONNECT flag is set [MQTT-3.1.2-3].
    #[error("reserved CONNECT flag set [MQTT-3.1.2-3]")]
    ConnectReservedFlag,
    /// Will QoS or Will Retain set without the Will Flag, or Will QoS 3 [MQTT-3.1.2-11]
    /// [MQTT-3.1.2-13] [MQTT-3.1.2-15].
    #[error(
        "will QoS/retain set without the will flag [MQTT-3.1.2-11] [MQTT-3.1.2-13] [MQTT-3.1.2-15]"
    )]
    WillFlagsWithoutWill,
    /// Password flag without user name flag in 3.1/3.1.1 [MQTT-3.1.2-22].
    #[error("password without user name [MQTT-3.1.2-22]")]
    PasswordWithoutUsername,
    /// A CONNACK acknowledge-flags byte with reserved bits set [MQTT-3.2.2-1].
    #[error("reserved CONNACK flag bits set: 0x{0:02X} [MQTT-3.2.2-1]")]
    ConnAckReservedFlags(u8),
    /// A reason code (or v3 return code) the packet may not carry.
    #[error("reason code 0x{code:02X} is not valid in {packet}")]
    InvalidReasonCode {
        /// The packet type.
        packet: PacketType,
        /// The byte received.
        code: u8,
    },
    /// A property identifier that does not exist.
    #[error("unknown property identifier 0x{0:02X} [MQTT-2.2.2]")]
    UnknownProperty(u8),
    /// A property that the packet may not carry.
    #[error("property 0x{id:02X} is not allowed in {packet} [MQTT-2.2.2]")]
    PropertyNotAllowed {
        /// The packet type ("will" properties count as CONNECT).
        packet: PacketType,
        /// The property identifier.
        id: u8,
    },
    /// A property that may appear once appeared twice.
    #[error("property 0x{id:02X} appears more than once in {packet} [MQTT-2.2.2-2]")]
    DuplicateProperty {
        /// The packet type.
        packet: PacketType,
        /// The property identifier.
        id: u8,
    },
    /// A property value outside its range (a boolean not 0/1, Receive Maximum 0, ...).
    #[error("property 0x{id:02X} has an invalid value: {why}")]
    InvalidPropertyValue {
        /// The property identifier.
        id: u8,
        /// What is wrong, with the statement it breaks.
        why: &'static str,
    },
    /// The property length exceeds what remains of the packet.
    #[error("{packet} property length runs past the end of the packet")]
    PropertyLengthOverflow {
        /// The packet type.
        packet: PacketType,
    },
}

impl DecodeError {
    /// The MQTT 5 reason code a server (or client) answers this error with.
    pub fn reason_code(&self) -> ReasonCode {
        use DecodeError::*;
        match self {
            PacketTooLarge { .. } => ReasonCode::PacketTooLarge,
            UnsupportedProtocolLevel(_) | InvalidProtocolName(_) => {
                ReasonCode::UnsupportedProtocolVersion
            }
            InvalidTopicName(_) | EmptyTopicWithoutAlias => ReasonCode::TopicNameInvalid,
            InvalidTopicFilter(_) => ReasonCode::TopicFilterInvalid,
            TopicAliasZero => ReasonCode::TopicAliasInvalid,
            // v5 §3.8.3, §3.8.3.1 and §3.10.3 call these Protocol Errors, not malformed.
            EmptySubscribe | EmptyUnsubscribe | InvalidRetainHandling | InvalidSubscriptionQoS => {
                ReasonCode::ProtocolError
            }
            DuplicateProperty { .. }
            | NoLocalOnShared
            | PacketTypeNotInVersion(_)
            | InvalidPropertyValue { .. } => ReasonCode::ProtocolError,
            _ => ReasonCode::MalformedPacket,
        }
    }
}

/// Why a packet cannot be encoded.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum EncodeError {
    /// The packet carries something this protocol version cannot express.
    #[error("{what} cannot be expressed in MQTT {version}; strip it first (Packet::strip_v5)")]
    NotInVersion {
        /// What cannot be encoded.
        what: &'static str,
        /// The target version.
        version: ProtocolVersion,
    },
    /// The encoded packet would exceed 268,435,455 bytes of remaining length or the caller's
    /// maximum.
    #[error("packet of {size} bytes exceeds the maximum packet size {max}")]
    PacketTooLarge {
        /// Total encoded size.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// A string, binary field or list longer than its length prefix allows.
    #[error("{what} is {len} bytes, more than its 2-byte length prefix allows (65535)")]
    FieldTooLong {
        /// Which field.
        what: &'static str,
        /// Its length.
        len: usize,
    },
    /// A value the specification does not allow (e.g. a subscription identifier of 0).
    #[error("invalid value: {0}")]
    InvalidValue(&'static str),
}
