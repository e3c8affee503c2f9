//! The packet model: one set of types for MQTT 3.1, 3.1.1 and 5.0.
//!
//! Fields that only MQTT 5 can carry (properties, most reason codes) are present for every
//! version; encoding for 3.1/3.1.1 refuses a packet that carries something v3 cannot express
//! (see [`crate::EncodeError::NotInVersion`]) unless the caller first strips it with
//! [`Packet::strip_v5`].

use std::fmt;
use std::num::NonZeroU16;

use bytes::Bytes;
use bytestring::ByteString;

use crate::reason::ReasonCode;
use crate::topic::{TopicFilter, TopicName};

/// The protocol level carried in CONNECT.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ProtocolVersion {
    /// MQTT 3.1, protocol name "MQIsdp", level 3.
    V31,
    /// MQTT 3.1.1, protocol name "MQTT", level 4.
    V311,
    /// MQTT 5.0, protocol name "MQTT", level 5.
    V5,
}

impl ProtocolVersion {
    /// The protocol level byte of CONNECT.
    pub const fn level(self) -> u8 {
        match self {
            Self::V31 => 3,
            Self::V311 => 4,
            Self::V5 => 5,
        }
    }

    /// The protocol name of CONNECT.
    pub const fn protocol_name(self) -> &'static str {
        match self {
            Self::V31 => "MQIsdp",
            Self::V311 | Self::V5 => "MQTT",
        }
    }

    /// All versions, oldest first; handy for tests that run per version.
    pub const ALL: [ProtocolVersion; 3] = [Self::V31, Self::V311, Self::V5];

    /// True for 5.0.
    pub const fn is_v5(self) -> bool {
        matches!(self, Self::V5)
    }
}

impl fmt::Display for ProtocolVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::V31 => "3.1",
            Self::V311 => "3.1.1",
            Self::V5 => "5.0",
        })
    }
}

/// Quality of service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub enum QoS {
    /// At most once.
    #[default]
    AtMostOnce = 0,
    /// At least once.
    AtLeastOnce = 1,
    /// Exactly once.
    ExactlyOnce = 2,
}

impl QoS {
    /// Parses 0, 1 or 2; `None` for anything else (QoS 3 is malformed).
    pub const fn from_u8(v: u8) -> Option<QoS> {
        match v {
            0 => Some(QoS::AtMostOnce),
            1 => Some(QoS::AtLeastOnce),
            2 => Some(QoS::ExactlyOnce),
            _ => None,
        }
    }
}

/// A packet identifier: never zero [MQTT-2.2.1-3].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PacketId(NonZeroU16);

impl PacketId {
    /// `None` for zero.
    pub const fn new(v: u16) -> Option<PacketId> {
        match NonZeroU16::new(v) {
            Some(n) => Some(PacketId(n)),
            None => None,
        }
    }

    /// The numeric value.
    pub const fn get(self) -> u16 {
        self.0.get()
    }

    /// The id after this one, wrapping from 65535 to 1.
    pub const fn next(self) -> PacketId {
        match NonZeroU16::new(self.0.get().wrapping_add(1)) {
            Some(n) => PacketId(n),
            None => PacketId(NonZeroU16::MIN),
        }
    }

    /// The smallest id, 1.
    pub const MIN: PacketId = PacketId(NonZeroU16::MIN);
}

impl fmt::Display for PacketId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A client identifier as it appears in CONNECT: UTF-8, may be empty (the server then assigns one
/// or refuses, depending on the version and clean-start flag).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct ClientId(ByteString);

impl ClientId {
    /// Wraps an already valid MQTT UTF-8 string.
    pub fn new(s: impl Into<ByteString>) -> ClientId {
        ClientId(s.into())
    }
    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
    /// The shared string.
    pub fn as_bytestring(&self) -> &ByteString {
        &self.0
    }
    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Display for ClientId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One user property (v5): name and value, order preserved.
pub type UserProperty = (ByteString, ByteString);

/// A control packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Packet {
    /// CONNECT, client to server.
    Connect(Box<Connect>),
    /// CONNACK, server to client.
    ConnAck(ConnAck),
    /// PUBLISH, both directions.
    Publish(Publish),
    /// PUBACK (QoS 1 acknowledgement).
    PubAck(PubAck),
    /// PUBREC (QoS 2, step 2).
    PubRec(PubAck),
    /// PUBREL (QoS 2, step 3).
    PubRel(PubAck),
    /// PUBCOMP (QoS 2, step 4).
    PubComp(PubAck),
    /// SUBSCRIBE.
    Subscribe(Subscribe),
    /// SUBACK.
    SubAck(SubAck),
    /// UNSUBSCRIBE.
    Unsubscribe(Unsubscribe),
    /// UNSUBACK.
    UnsubAck(UnsubAck),
    /// PINGREQ.
    PingReq,
    /// PINGRESP.
    PingResp,
    /// DISCONNECT (in v5 both directions).
    Disconnect(Disconnect),
    /// AUTH (v5 only).
    Auth(Auth),
}

/// The 4-bit control packet type of the fixed header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[allow(missing_docs)]
pub enum PacketType {
    Connect = 1,
    ConnAck = 2,
    Publish = 3,
    PubAck = 4,
    PubRec = 5,
    PubRel = 6,
    PubComp = 7,
    Subscribe = 8,
    SubAck = 9,
    Unsubscribe = 10,
    UnsubAck = 11,
    PingReq = 12,
    PingResp = 13,
    Disconnect = 14,
    Auth = 15,
}

impl PacketType {
    /// From the high nibble of the first byte; `None` for 0 (reserved).
    pub const fn from_u8(v: u8) -> Option<PacketType> {
        Some(match v {
            1 => Self::Connect,
            2 => Self::ConnAck,
            3 => Self::Publish,
            4 => Self::PubAck,
            5 => Self::PubRec,
            6 => Self::PubRel,
            7 => Self::PubComp,
            8 => Self::Subscribe,
            9 => Self::SubAck,
            10 => Self::Unsubscribe,
            11 => Self::UnsubAck,
            12 => Self::PingReq,
            13 => Self::PingResp,
            14 => Self::Disconnect,
            15 => Self::Auth,
            _ => return None,
        })
    }

    /// The packet's name as the specification writes it.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Connect => "CONNECT",
            Self::ConnAck => "CONNACK",
            Self::Publish => "PUBLISH",
            Self::PubAck => "PUBACK",
            Self::PubRec => "PUBREC",
            Self::PubRel => "PUBREL",
            Self::PubComp => "PUBCOMP",
            Self::Subscribe => "SUBSCRIBE",
            Self::SubAck => "SUBACK",
            Self::Unsubscribe => "UNSUBSCRIBE",
            Self::UnsubAck => "UNSUBACK",
            Self::PingReq => "PINGREQ",
            Self::PingResp => "PINGRESP",
            Self::Disconnect => "DISCONNECT",
            Self::Auth => "AUTH",
        }
    }
}

impl fmt::Display for PacketType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl Packet {
    /// The packet's type.
    pub fn packet_type(&self) -> PacketType {
        match self {
            Packet::Connect(_) => PacketType::Connect,
            Packet::ConnAck(_) => PacketType::ConnAck,
            Packet::Publish(_) => PacketType::Publish,
            Packet::PubAck(_) => PacketType::PubAck,
            Packet::PubRec(_) => PacketType::PubRec,
            Packet::PubRel(_) => PacketType::PubRel,
            Packet::PubComp(_) => PacketType::PubComp,
            Packet::Subscribe(_) => PacketType::Subscribe,
            Packet::SubAck(_) => PacketType::SubAck,
            Packet::Unsubscribe(_) => PacketType::Unsubscribe,
            Packet::UnsubAck(_) => PacketType::UnsubAck,
            Packet::PingReq => PacketType::PingReq,
            Packet::PingResp => PacketType::PingResp,
            Packet::Disconnect(_) => PacketType::Disconnect,
            Packet::Auth(_) => PacketType::Auth,
        }
    }

    /// Removes everything that MQTT 3.1/3.1.1 cannot carry (properties, reason strings) and
    /// maps reason codes to their v3 equivalents where one exists, so the packet encodes for v3.
    /// A caller uses this when it knowingly sends a v5-built packet to a v3 peer.
    pub fn strip_v5(&mut self) {
        match self {
            Packet::Connect(c) => {
                c.properties = ConnectProperties::default();
                if let Some(w) = &mut c.will {
                    w.properties = WillProperties::default();
                }
            }
            Packet::ConnAck(c) => c.properties = ConnAckProperties::default(),
            Packet::Publish(p) => p.properties = PublishProperties::default(),
            Packet::PubAck(a) | Packet::PubRec(a) | Packet::PubRel(a) | Packet::PubComp(a) => {
                a.properties = AckProperties::default();
                a.reason = ReasonCode::Success;
            }
            Packet::Subscribe(s) => {
                s.properties = SubscribeProperties::default();
                // v3 subscription options are the QoS alone; no-local, retain-as-published and
                // retain handling would otherwise make the v3 encoder refuse the packet.
                for (_, o) in &mut s.filters {
                    *o = SubscriptionOptions {
                        qos: o.qos,
                        ..SubscriptionOptions::default()
                    };
                }
            }
            Packet::SubAck(s) => s.properties = AckProperties::default(),
            Packet::Unsubscribe(u) => u.properties = Vec::new(),
            Packet::UnsubAck(u) => {
                u.properties = AckProperties::default();
                u.reasons.clear();
            }
            Packet::Disconnect(d) => {
                d.properties = DisconnectProperties::default();
                d.reason = ReasonCode::Success;
            }
            Packet::PingReq | Packet::PingResp | Packet::Auth(_) => {}
        }
    }
}

/// CONNECT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connect {
    /// Protocol level, from the variable header.
    pub protocol: ProtocolVersion,
    /// Clean Session (v3) / Clean Start (v5).
    pub clean_start: bool,
    /// Keep alive in seconds; 0 disables it.
    pub keep_alive: u16,
    /// Client identifier; may be empty.
    pub client_id: ClientId,
    /// The will message, if the Will Flag is set.
    pub will: Option<Will>,
    /// User Name.
    pub username: Option<ByteString>,
    /// Password (binary data).
    pub password: Option<Bytes>,
    /// v5 CONNECT properties.
    pub properties: ConnectProperties,
}

/// v5 CONNECT properties.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ConnectProperties {
    /// Session Expiry Interval (0x11), seconds; absent means 0.
    pub session_expiry_interval: Option<u32>,
    /// Receive Maximum (0x21); non-zero.
    pub receive_maximum: Option<u16>,
    /// Maximum Packet Size (0x27); non-zero.
    pub maximum_packet_size: Option<u32>,
    /// Topic Alias Maximum (0x22).
    pub topic_alias_maximum: Option<u16>,
    /// Request Response Information (0x19): 0 or 1.
    pub request_response_information: Option<bool>,
    /// Request Problem Information (0x17): 0 or 1.
    pub request_problem_information: Option<bool>,
    /// User Property (0x26), in order.
    pub user_properties: Vec<UserProperty>,
    /// Authentication Method (0x15).
    pub authentication_method: Option<ByteString>,
    /// Authentication Data (0x16).
    pub authentication_data: Option<Bytes>,
}

impl ConnectProperties {
    /// True when no property is set.
    pub fn is_empty(&self) -> bool {
        // Field by field rather than against a fresh `default()` (see
        // [`PublishProperties::is_empty`]).
        let ConnectProperties {
            session_expiry_interval,
            receive_maximum,
            maximum_packet_size,
            topic_alias_maximum,
            request_response_information,
            request_problem_information,
            user_properties,
            authentication_method,
            authentication_data,
        } = self;
        session_expiry_interval.is_none()
            && receive_maximum.is_none()
            && maximum_packet_size.is_none()
            && topic_alias_maximum.is_none()
            && request_response_information.is_none()
            && request_problem_information.is_none()
            && user_properties.is_empty()
            && authentication_method.is_none()
            && authentication_data.is_none()
    }
}

/// The will message of CONNECT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Will {
    /// Will Topic.
    pub topic: TopicName,
    /// Will Payload.
    pub payload: Bytes,
    /// Will QoS.
    pub qos: QoS,
    /// Will Retain.
    pub retain: bool,
    /// v5 will properties.
    pub properties: WillProperties,
}

/// v5 will properties.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct WillProperties {
    /// Will Delay Interval (0x18), seconds.
    pub will_delay_interval: Option<u32>,
    /// Payload Format Indicator (0x01): true means UTF-8.
    pub payload_format_indicator: Option<bool>,
    /// Message Expiry Interval (0x02), seconds.
    pub message_expiry_interval: Option<u32>,
    /// Content Type (0x03).
    pub content_type: Option<ByteString>,
    /// Response Topic (0x08).
    pub response_topic: Option<TopicName>,
    /// Correlation Data (0x09).
    pub correlation_data: Option<Bytes>,
    /// User Property (0x26), in order.
    pub user_properties: Vec<UserProperty>,
}

impl WillProperties {
    /// True when no property is set.
    pub fn is_empty(&self) -> bool {
        let WillProperties {
            will_delay_interval,
            payload_format_indicator,
            message_expiry_interval,
            content_type,
            response_topic,
            correlation_data,
            user_properties,
        } = self;
        will_delay_interval.is_none()
            && payload_format_indicator.is_none()
            && message_expiry_interval.is_none()
            && content_type.is_none()
            && response_topic.is_none()
            && correlation_data.is_none()
            && user_properties.is_empty()
    }
}

/// CONNACK.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnAck {
    /// Session Present.
    pub session_present: bool,
    /// v5 reason code; for v3 it maps to the CONNACK return code (see the codec).
    pub reason: ReasonCode,
    /// v5 CONNACK properties.
    pub properties: ConnAckProperties,
}

/// v5 CONNACK properties.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[allow(missing_docs)]
pub struct ConnAckProperties {
    /// 0x11
    pub session_expiry_interval: Option<u32>,
    /// 0x21
    pub receive_maximum: Option<u16>,
    /// 0x24: 0 or 1.
    pub maximum_qos: Option<QoS>,
    /// 0x25
    pub retain_available: Option<bool>,
    /// 0x27
    pub maximum_packet_size: Option<u32>,
    /// 0x12
    pub assigned_client_identifier: Option<ByteString>,
    /// 0x22
    pub topic_alias_maximum: Option<u16>,
    /// 0x1F
    pub reason_string: Option<ByteString>,
    /// 0x26
    pub user_properties: Vec<UserProperty>,
    /// 0x28
    pub wildcard_subscription_available: Option<bool>,
    /// 0x29
    pub subscription_identifiers_available: Option<bool>,
    /// 0x2A
    pub shared_subscription_available: Option<bool>,
    /// 0x13
    pub server_keep_alive: Option<u16>,
    /// 0x1A
    pub response_information: Option<ByteString>,
    /// 0x1C
    pub server_reference: Option<ByteString>,
    /// 0x15
    pub authentication_method: Option<ByteString>,
    /// 0x16
    pub authentication_data: Option<Bytes>,
}

/// PUBLISH.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Publish {
    /// DUP flag: this may be a redelivery.
    pub dup: bool,
    /// QoS level.
    pub qos: QoS,
    /// RETAIN flag.
    pub retain: bool,
    /// Topic name. In v5 it may be empty when a Topic Alias property stands for it; the
    /// receiver resolves the alias, the codec only checks the rules.
    pub topic: TopicName,
    /// Packet identifier; present exactly when QoS > 0.
    pub packet_id: Option<PacketId>,
    /// v5 PUBLISH properties.
    pub properties: PublishProperties,
    /// Application message, a slice of the receive buffer.
    pub payload: Bytes,
}

/// v5 PUBLISH properties.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PublishProperties {
    /// Payload Format Indicator (0x01): true means UTF-8.
    pub payload_format_indicator: Option<bool>,
    /// Message Expiry Interval (0x02), seconds.
    pub message_expiry_interval: Option<u32>,
    /// Topic Alias (0x23), non-zero.
    pub topic_alias: Option<u16>,
    /// Response Topic (0x08).
    pub response_topic: Option<TopicName>,
    /// Correlation Data (0x09).
    pub correlation_data: Option<Bytes>,
    /// User Property (0x26), in order.
    pub user_properties: Vec<UserProperty>,
    /// Subscription Identifier (0x0B); server to client only, may repeat.
    pub subscription_identifiers: Vec<u32>,
    /// Content Type (0x03).
    pub content_type: Option<ByteString>,
}

impl PublishProperties {
    /// True when no property is set.
    pub fn is_empty(&self) -> bool {
        // Field by field: comparing with a fresh `default()` would build and drop one for
        // every PUBLISH encoded.
        let PublishProperties {
            payload_format_indicator,
            message_expiry_interval,
            topic_alias,
            response_topic,
            correlation_data,
            user_properties,
            subscription_identifiers,
            content_type,
        } = self;
        payload_format_indicator.is_none()
            && message_expiry_interval.is_none()
            && topic_alias.is_none()
            && response_topic.is_none()
            && correlation_data.is_none()
            && user_properties.is_empty()
            && subscription_identifiers.is_empty()
            && content_type.is_none()
    }
}

/// PUBACK, PUBREC, PUBREL and PUBCOMP share this shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PubAck {
    /// Packet identifier of the exchange.
    pub packet_id: PacketId,
    /// v5 reason code (Success for v3).
    pub reason: ReasonCode,
    /// v5 properties.
    pub properties: AckProperties,
}

impl PubAck {
    /// A successful acknowledgement with no properties.
    pub fn new(packet_id: PacketId) -> PubAck {
        PubAck {
            packet_id,
            reason: ReasonCode::Success,
            properties: AckProperties::default(),
        }
    }
}

/// The properties of PUBACK/PUBREC/PUBREL/PUBCOMP/SUBACK/UNSUBACK: a reason string and user
/// properties.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AckProperties {
    /// Reason String (0x1F).
    pub reason_string: Option<ByteString>,
    /// User Property (0x26), in order.
    pub user_properties: Vec<UserProperty>,
}

impl AckProperties {
    /// True when no property is set.
    pub fn is_empty(&self) -> bool {
        self.reason_string.is_none() && self.user_properties.is_empty()
    }
}

/// Retain Handling option of a subscription (v5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum RetainHandling {
    /// 0: send retained messages at subscribe time.
    #[default]
    SendAtSubscribe = 0,
    /// 1: send them only if the subscription did not exist.
    SendIfNew = 1,
    /// 2: do not send them.
    DoNotSend = 2,
}

/// Subscription options of one SUBSCRIBE entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct SubscriptionOptions {
    /// Maximum QoS.
    pub qos: QoS,
    /// No Local (v5).
    pub no_local: bool,
    /// Retain As Published (v5).
    pub retain_as_published: bool,
    /// Retain Handling (v5).
    pub retain_handling: RetainHandling,
}

/// SUBSCRIBE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscribe {
    /// Packet identifier.
    pub packet_id: PacketId,
    /// The filters with their options; never empty [MQTT-3.8.3-3].
    pub filters: Vec<(TopicFilter, SubscriptionOptions)>,
    /// v5 properties.
    pub properties: SubscribeProperties,
}

/// v5 SUBSCRIBE properties.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SubscribeProperties {
    /// Subscription Identifier (0x0B), 1..=268,435,455.
    pub subscription_identifier: Option<u32>,
    /// User Property (0x26), in order.
    pub user_properties: Vec<UserProperty>,
}

/// SUBACK.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubAck {
    /// Packet identifier of the SUBSCRIBE.
    pub packet_id: PacketId,
    /// One reason code per filter, in order: GrantedQoS0/1/2 or a failure code. In v3 every
    /// failure is sent as 0x80.
    pub reasons: Vec<ReasonCode>,
    /// v5 properties.
    pub properties: AckProperties,
}

/// UNSUBSCRIBE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsubscribe {
    /// Packet identifier.
    pub packet_id: PacketId,
    /// The filters; never empty [MQTT-3.10.3-2].
    pub filters: Vec<TopicFilter>,
    /// v5 User Property (0x26), in order (the only UNSUBSCRIBE property).
    pub properties: Vec<UserProperty>,
}

/// UNSUBACK.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnsubAck {
    /// Packet identifier of the UNSUBSCRIBE.
    pub packet_id: PacketId,
    /// v5: one reason code per filter. Empty for v3 (which has no payload).
    pub reasons: Vec<ReasonCode>,
    /// v5 properties.
    pub properties: AckProperties,
}

/// DISCONNECT.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Disconnect {
    /// v5 reason code; Success (0x00, Normal disconnection) for v3.
    pub reason: ReasonCode,
    /// v5 properties.
    pub properties: DisconnectProperties,
}

/// v5 DISCONNECT properties.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DisconnectProperties {
    /// Session Expiry Interval (0x11), client to server only.
    pub session_expiry_interval: Option<u32>,
    /// Reason String (0x1F).
    pub reason_string: Option<ByteString>,
    /// User Property (0x26).
    pub user_properties: Vec<UserProperty>,
    /// Server Reference (0x1C).
    pub server_reference: Option<ByteString>,
}

/// AUTH (v5 only).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Auth {
    /// Success, ContinueAuthentication or ReAuthenticate.
    pub reason: ReasonCode,
    /// Properties.
    pub properties: AuthProperties,
}

/// v5 AUTH properties.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AuthProperties {
    /// Authentication Method (0x15).
    pub authentication_method: Option<ByteString>,
    /// Authentication Data (0x16).
    pub authentication_data: Option<Bytes>,
    /// Reason String (0x1F).
    pub reason_string: Option<ByteString>,
    /// User Property (0x26).
    pub user_properties: Vec<UserProperty>,
}
