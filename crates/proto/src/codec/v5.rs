//! MQTT 5.0 (level 5): properties and reason codes.
//!
//! Properties are parsed once into [`Props`], recording which identifiers were seen; each
//! packet then checks that set against the identifiers it may carry and moves the values into
//! its own typed property struct.

use bytes::Bytes;
use bytestring::ByteString;

use super::v3::{
    connect_flags, connect_flags_byte, publish_flags, put_publish_head, topic_filter, topic_name,
};
use super::{check_flags, put_binary, put_str, put_varint, required_flags, Counter, Reader, Sink};
use crate::error::{DecodeError, EncodeError};
use crate::reason::ReasonCode;
use crate::topic::TopicName;
use crate::types::*;

// Property identifiers (spec §2.2.2.2).
const PAYLOAD_FORMAT_INDICATOR: u8 = 0x01;
const MESSAGE_EXPIRY_INTERVAL: u8 = 0x02;
const CONTENT_TYPE: u8 = 0x03;
const RESPONSE_TOPIC: u8 = 0x08;
const CORRELATION_DATA: u8 = 0x09;
const SUBSCRIPTION_IDENTIFIER: u8 = 0x0B;
const SESSION_EXPIRY_INTERVAL: u8 = 0x11;
const ASSIGNED_CLIENT_IDENTIFIER: u8 = 0x12;
const SERVER_KEEP_ALIVE: u8 = 0x13;
const AUTHENTICATION_METHOD: u8 = 0x15;
const AUTHENTICATION_DATA: u8 = 0x16;
const REQUEST_PROBLEM_INFORMATION: u8 = 0x17;
const WILL_DELAY_INTERVAL: u8 = 0x18;
const REQUEST_RESPONSE_INFORMATION: u8 = 0x19;
const RESPONSE_INFORMATION: u8 = 0x1A;
const SERVER_REFERENCE: u8 = 0x1C;
const REASON_STRING: u8 = 0x1F;
const RECEIVE_MAXIMUM: u8 = 0x21;
const TOPIC_ALIAS_MAXIMUM: u8 = 0x22;
const TOPIC_ALIAS: u8 = 0x23;
const MAXIMUM_QOS: u8 = 0x24;
const RETAIN_AVAILABLE: u8 = 0x25;
const USER_PROPERTY: u8 = 0x26;
const MAXIMUM_PACKET_SIZE: u8 = 0x27;
const WILDCARD_SUBSCRIPTION_AVAILABLE: u8 = 0x28;
const SUBSCRIPTION_IDENTIFIER_AVAILABLE: u8 = 0x29;
const SHARED_SUBSCRIPTION_AVAILABLE: u8 = 0x2A;

const fn mask(ids: &[u8]) -> u64 {
    let mut m = 0u64;
    let mut i = 0;
    while i < ids.len() {
        m |= 1 << ids[i];
        i += 1;
    }
    m
}

const ALLOWED_CONNECT: u64 = mask(&[
    SESSION_EXPIRY_INTERVAL,
    AUTHENTICATION_METHOD,
    AUTHENTICATION_DATA,
    REQUEST_PROBLEM_INFORMATION,
    REQUEST_RESPONSE_INFORMATION,
    RECEIVE_MAXIMUM,
    TOPIC_ALIAS_MAXIMUM,
    USER_PROPERTY,
    MAXIMUM_PACKET_SIZE,
]);
const ALLOWED_WILL: u64 = mask(&[
    PAYLOAD_FORMAT_INDICATOR,
    MESSAGE_EXPIRY_INTERVAL,
    CONTENT_TYPE,
    RESPONSE_TOPIC,
    CORRELATION_DATA,
    WILL_DELAY_INTERVAL,
    USER_PROPERTY,
]);
const ALLOWED_CONNACK: u64 = mask(&[
    SESSION_EXPIRY_INTERVAL,
    ASSIGNED_CLIENT_IDENTIFIER,
    SERVER_KEEP_ALIVE,
    AUTHENTICATION_METHOD,
    AUTHENTICATION_DATA,
    RESPONSE_INFORMATION,
    SERVER_REFERENCE,
    REASON_STRING,
    RECEIVE_MAXIMUM,
    TOPIC_ALIAS_MAXIMUM,
    MAXIMUM_QOS,
    RETAIN_AVAILABLE,
    USER_PROPERTY,
    MAXIMUM_PACKET_SIZE,
    WILDCARD_SUBSCRIPTION_AVAILABLE,
    SUBSCRIPTION_IDENTIFIER_AVAILABLE,
    SHARED_SUBSCRIPTION_AVAILABLE,
]);
const ALLOWED_PUBLISH: u64 = mask(&[
    PAYLOAD_FORMAT_INDICATOR,
    MESSAGE_EXPIRY_INTERVAL,
    CONTENT_TYPE,
    RESPONSE_TOPIC,
    CORRELATION_DATA,
    SUBSCRIPTION_IDENTIFIER,
    TOPIC_ALIAS,
    USER_PROPERTY,
]);
const ALLOWED_ACK: u64 = mask(&[REASON_STRING, USER_PROPERTY]);
const ALLOWED_SUBSCRIBE: u64 = mask(&[SUBSCRIPTION_IDENTIFIER, USER_PROPERTY]);
const ALLOWED_UNSUBSCRIBE: u64 = mask(&[USER_PROPERTY]);
const ALLOWED_DISCONNECT: u64 = mask(&[
    SESSION_EXPIRY_INTERVAL,
    SERVER_REFERENCE,
    REASON_STRING,
    USER_PROPERTY,
]);
const ALLOWED_AUTH: u64 = mask(&[
    AUTHENTICATION_METHOD,
    AUTHENTICATION_DATA,
    REASON_STRING,
    USER_PROPERTY,
]);

/// Every property, as parsed, before it is sorted into a packet's own struct.
#[derive(Default)]
struct Props {
    seen: u64,
    payload_format_indicator: Option<bool>,
    message_expiry_interval: Option<u32>,
    content_type: Option<ByteString>,
    response_topic: Option<TopicName>,
    correlation_data: Option<Bytes>,
    subscription_identifiers: Vec<u32>,
    session_expiry_interval: Option<u32>,
    assigned_client_identifier: Option<ByteString>,
    server_keep_alive: Option<u16>,
    authentication_method: Option<ByteString>,
    authentication_data: Option<Bytes>,
    request_problem_information: Option<bool>,
    will_delay_interval: Option<u32>,
    request_response_information: Option<bool>,
    response_information: Option<ByteString>,
    server_reference: Option<ByteString>,
    reason_string: Option<ByteString>,
    receive_maximum: Option<u16>,
    topic_alias_maximum: Option<u16>,
    topic_alias: Option<u16>,
    maximum_qos: Option<QoS>,
    retain_available: Option<bool>,
    user_properties: Vec<UserProperty>,
    maximum_packet_size: Option<u32>,
    wildcard_subscription_available: Option<bool>,
    subscription_identifiers_available: Option<bool>,
    shared_subscription_available: Option<bool>,
}

fn bool_prop(r: &mut Reader, id: u8) -> Result<bool, DecodeError> {
    match r.u8("property value")? {
        0 => Ok(false),
        1 => Ok(true),
        _ => Err(DecodeError::InvalidPropertyValue {
            id,
            why: "a byte property must be 0 or 1",
        }),
    }
}

/// Reads a property block (length prefix included) and checks it against `allowed`.
fn read_props(r: &mut Reader, allowed: u64) -> Result<Props, DecodeError> {
    let len = r.varint("property length")? as usize;
    let mut r = r.sub(len)?;
    let packet = r.packet;
    let mut p = Props::default();
    while r.remaining() > 0 {
        let id32 = r.varint("property identifier")?;
        let id = u8::try_from(id32).map_err(|_| DecodeError::UnknownProperty(0xFF))?;
        if id >= 64 {
            return Err(DecodeError::UnknownProperty(id));
        }
        let bit = 1u64 << id;
        let repeatable =
            id == USER_PROPERTY || (id == SUBSCRIPTION_IDENTIFIER && packet == PacketType::Publish);
        if p.seen & bit != 0 && !repeatable {
            return Err(DecodeError::DuplicateProperty { packet, id });
        }
        p.seen |= bit;
        match id {
            PAYLOAD_FORMAT_INDICATOR => p.payload_format_indicator = Some(bool_prop(&mut r, id)?),
            MESSAGE_EXPIRY_INTERVAL => p.message_expiry_interval = Some(r.u32("property value")?),
            CONTENT_TYPE => p.content_type = Some(r.string("content type")?),
            RESPONSE_TOPIC => {
                let t = r.string("response topic")?;
                // [MQTT-3.3.2-14]: the Response Topic is a topic name, no wildcards.
                p.response_topic = Some(TopicName::new(t).map_err(DecodeError::InvalidTopicName)?);
            }
            CORRELATION_DATA => p.correlation_data = Some(r.binary("correlation data")?),
            SUBSCRIPTION_IDENTIFIER => {
                let v = r.varint("subscription identifier")?;
                if v == 0 {
                    return Err(DecodeError::InvalidPropertyValue {
                        id,
                        why: "subscription identifier 0 (v5 §3.8.2.1.2): must be 1 to 268,435,455",
                    });
                }
                p.subscription_identifiers.push(v);
            }
            SESSION_EXPIRY_INTERVAL => p.session_expiry_interval = Some(r.u32("property value")?),
            ASSIGNED_CLIENT_IDENTIFIER => {
                p.assigned_client_identifier = Some(r.string("assigned client identifier")?)
            }
            SERVER_KEEP_ALIVE => p.server_keep_alive = Some(r.u16("property value")?),
            AUTHENTICATION_METHOD => {
                p.authentication_method = Some(r.string("authentication method")?)
            }
            AUTHENTICATION_DATA => p.authentication_data = Some(r.binary("authentication data")?),
            REQUEST_PROBLEM_INFORMATION => {
                p.request_problem_information = Some(bool_prop(&mut r, id)?)
            }
            WILL_DELAY_INTERVAL => p.will_delay_interval = Some(r.u32("property value")?),
            REQUEST_RESPONSE_INFORMATION => {
                p.request_response_information = Some(bool_prop(&mut r, id)?)
            }
            RESPONSE_INFORMATION => {
                p.response_information = Some(r.string("response information")?)
            }
            SERVER_REFERENCE => p.server_reference = Some(r.string("server reference")?),
            REASON_STRING => p.reason_string = Some(r.string("reason string")?),
            RECEIVE_MAXIMUM => {
                let v = r.u16("property value")?;
                if v == 0 {
                    return Err(DecodeError::InvalidPropertyValue {
                        id,
                        why: "receive maximum 0 (v5 §3.1.2.11.3, §3.2.2.3.3)",
                    });
                }
                p.receive_maximum = Some(v);
            }
            TOPIC_ALIAS_MAXIMUM => p.topic_alias_maximum = Some(r.u16("property value")?),
            TOPIC_ALIAS => {
                let v = r.u16("property value")?;
                if v == 0 {
                    return Err(DecodeError::TopicAliasZero);
                }
                p.topic_alias = Some(v);
            }
            MAXIMUM_QOS => {
                p.maximum_qos = Some(match r.u8("property value")? {
                    0 => QoS::AtMostOnce,
                    1 => QoS::AtLeastOnce,
                    _ => {
                        return Err(DecodeError::InvalidPropertyValue {
                            id,
                            why: "maximum QoS must be 0 or 1",
                        })
                    }
                })
            }
            RETAIN_AVAILABLE => p.retain_available = Some(bool_prop(&mut r, id)?),
            USER_PROPERTY => {
                let k = r.string("user property name")?;
                let v = r.string("user property value")?;
                p.user_properties.push((k, v));
            }
            MAXIMUM_PACKET_SIZE => {
                let v = r.u32("property value")?;
                if v == 0 {
                    return Err(DecodeError::InvalidPropertyValue {
                        id,
                        why: "maximum packet size 0",
                    });
                }
                p.maximum_packet_size = Some(v);
            }
            WILDCARD_SUBSCRIPTION_AVAILABLE => {
                p.wildcard_subscription_available = Some(bool_prop(&mut r, id)?)
            }
            SUBSCRIPTION_IDENTIFIER_AVAILABLE => {
                p.subscription_identifiers_available = Some(bool_prop(&mut r, id)?)
            }
            SHARED_SUBSCRIPTION_AVAILABLE => {
                p.shared_subscription_available = Some(bool_prop(&mut r, id)?)
            }
            _ => return Err(DecodeError::UnknownProperty(id)),
        }
        if bit & allowed == 0 {
            return Err(DecodeError::PropertyNotAllowed { packet, id });
        }
    }
    Ok(p)
}

/// The property block of a PUBLISH. Most PUBLISH packets carry none (a single 0x00 length
/// byte); that case skips building and moving the large [`Props`].
fn publish_props_decode(r: &mut Reader) -> Result<PublishProperties, DecodeError> {
    if r.peek_u8() == Some(0) {
        r.u8("property length")?;
        return Ok(PublishProperties::default());
    }
    let p = read_props(r, ALLOWED_PUBLISH)?;
    Ok(PublishProperties {
        payload_format_indicator: p.payload_format_indicator,
        message_expiry_interval: p.message_expiry_interval,
        topic_alias: p.topic_alias,
        response_topic: p.response_topic,
        correlation_data: p.correlation_data,
        user_properties: p.user_properties,
        subscription_identifiers: p.subscription_identifiers,
        content_type: p.content_type,
    })
}

impl Props {
    fn ack(self) -> AckProperties {
        AckProperties {
            reason_string: self.reason_string,
            user_properties: self.user_properties,
        }
    }
}

fn reason(r: &mut Reader, t: PacketType) -> Result<ReasonCode, DecodeError> {
    let code = r.u8("reason code")?;
    match ReasonCode::from_u8(code) {
        Some(rc) if rc.allowed_in(t) => Ok(rc),
        _ => Err(DecodeError::InvalidReasonCode { packet: t, code }),
    }
}

pub(crate) fn decode(t: PacketType, flags: u8, mut r: Reader) -> Result<Packet, DecodeError> {
    if t != PacketType::Publish {
        check_flags(t, flags, required_flags(t))?;
    }
    let packet = match t {
        PacketType::Connect => return Err(DecodeError::ReservedPacketType),
        PacketType::ConnAck => {
            let ack_flags = r.u8("acknowledge flags")?;
            if ack_flags & 0xFE != 0 {
                return Err(DecodeError::ConnAckReservedFlags(ack_flags));
            }
            let reason = reason(&mut r, t)?;
            let p = read_props(&mut r, ALLOWED_CONNACK)?;
            Packet::ConnAck(ConnAck {
                session_present: ack_flags & 1 == 1,
                reason,
                properties: ConnAckProperties {
                    session_expiry_interval: p.session_expiry_interval,
                    receive_maximum: p.receive_maximum,
                    maximum_qos: p.maximum_qos,
                    retain_available: p.retain_available,
                    maximum_packet_size: p.maximum_packet_size,
                    assigned_client_identifier: p.assigned_client_identifier,
                    topic_alias_maximum: p.topic_alias_maximum,
                    reason_string: p.reason_string,
                    user_properties: p.user_properties,
                    wildcard_subscription_available: p.wildcard_subscription_available,
                    subscription_identifiers_available: p.subscription_identifiers_available,
                    shared_subscription_available: p.shared_subscription_available,
                    server_keep_alive: p.server_keep_alive,
                    response_information: p.response_information,
                    server_reference: p.server_reference,
                    authentication_method: p.authentication_method,
                    authentication_data: p.authentication_data,
                },
            })
        }
        PacketType::Publish => {
            let (dup, qos, retain) = publish_flags(flags)?;
            let raw_topic = topic_name(&mut r)?;
            let packet_id = if qos == QoS::AtMostOnce {
                None
            } else {
                Some(r.packet_id()?)
            };
            let properties = publish_props_decode(&mut r)?;
            let topic = if raw_topic.is_empty() {
                if properties.topic_alias.is_none() {
                    return Err(DecodeError::EmptyTopicWithoutAlias);
                }
                TopicName::empty()
            } else {
                TopicName::new(raw_topic).map_err(DecodeError::InvalidTopicName)?
            };
            Packet::Publish(Publish {
                dup,
                qos,
                retain,
                topic,
                packet_id,
                properties,
                payload: r.rest(),
            })
        }
        PacketType::PubAck | PacketType::PubRec | PacketType::PubRel | PacketType::PubComp => {
            let packet_id = r.packet_id()?;
            let (reason, properties) = if r.remaining() == 0 {
                // [MQTT-3.4.2-1]: no reason code means 0x00 Success.
                (ReasonCode::Success, AckProperties::default())
            } else {
                let rc = reason(&mut r, t)?;
                let props = if r.remaining() == 0 {
                    AckProperties::default()
                } else {
                    read_props(&mut r, ALLOWED_ACK)?.ack()
                };
                (rc, props)
            };
            let ack = PubAck {
                packet_id,
                reason,
                properties,
            };
            match t {
                PacketType::PubAck => Packet::PubAck(ack),
                PacketType::PubRec => Packet::PubRec(ack),
                PacketType::PubRel => Packet::PubRel(ack),
                _ => Packet::PubComp(ack),
            }
        }
        PacketType::Subscribe => {
            let packet_id = r.packet_id()?;
            let p = read_props(&mut r, ALLOWED_SUBSCRIBE)?;
            let mut filters = Vec::new();
            while r.remaining() > 0 {
                let f = topic_filter(&mut r)?;
                let o = r.u8("subscription options")?;
                if o & 0xC0 != 0 {
                    return Err(DecodeError::ReservedSubscriptionOptions(o));
                }
                let retain_handling = match (o >> 4) & 3 {
                    0 => RetainHandling::SendAtSubscribe,
                    1 => RetainHandling::SendIfNew,
                    2 => RetainHandling::DoNotSend,
                    _ => return Err(DecodeError::InvalidRetainHandling),
                };
                let opts = SubscriptionOptions {
                    qos: QoS::from_u8(o & 3).ok_or(DecodeError::InvalidSubscriptionQoS)?,
                    no_local: o & 0b100 != 0,
                    retain_as_published: o & 0b1000 != 0,
                    retain_handling,
                };
                if opts.no_local && f.is_shared() {
                    return Err(DecodeError::NoLocalOnShared);
                }
                filters.push((f, opts));
            }
            if filters.is_empty() {
                return Err(DecodeError::EmptySubscribe);
            }
            Packet::Subscribe(Subscribe {
                packet_id,
                filters,
                properties: SubscribeProperties {
                    subscription_identifier: p.subscription_identifiers.first().copied(),
                    user_properties: p.user_properties,
                },
            })
        }
        PacketType::SubAck | PacketType::UnsubAck => {
            let packet_id = r.packet_id()?;
            let properties = read_props(&mut r, ALLOWED_ACK)?.ack();
            let mut reasons = Vec::with_capacity(r.remaining());
            while r.remaining() > 0 {
                reasons.push(reason(&mut r, t)?);
            }
            if reasons.is_empty() {
                return Err(DecodeError::EmptyAckPayload { packet: t });
            }
            if t == PacketType::SubAck {
                Packet::SubAck(SubAck {
                    packet_id,
                    reasons,
                    properties,
                })
            } else {
                Packet::UnsubAck(UnsubAck {
                    packet_id,
                    reasons,
                    properties,
                })
            }
        }
        PacketType::Unsubscribe => {
            let packet_id = r.packet_id()?;
            let p = read_props(&mut r, ALLOWED_UNSUBSCRIBE)?;
            let mut filters = Vec::new();
            while r.remaining() > 0 {
                filters.push(topic_filter(&mut r)?);
            }
            if filters.is_empty() {
                return Err(DecodeError::EmptyUnsubscribe);
            }
            Packet::Unsubscribe(Unsubscribe {
                packet_id,
                filters,
                properties: p.user_properties,
            })
        }
        PacketType::PingReq => Packet::PingReq,
        PacketType::PingResp => Packet::PingResp,
        PacketType::Disconnect => {
            let mut d = Disconnect::default();
            if r.remaining() > 0 {
                d.reason = reason(&mut r, t)?;
                if r.remaining() > 0 {
                    let p = read_props(&mut r, ALLOWED_DISCONNECT)?;
                    d.properties = DisconnectProperties {
                        session_expiry_interval: p.session_expiry_interval,
                        reason_string: p.reason_string,
                        user_properties: p.user_properties,
                        server_reference: p.server_reference,
                    };
                }
            }
            Packet::Disconnect(d)
        }
        PacketType::Auth => {
            let mut a = Auth::default();
            if r.remaining() > 0 {
                a.reason = reason(&mut r, t)?;
                if r.remaining() > 0 {
                    let p = read_props(&mut r, ALLOWED_AUTH)?;
                    a.properties = AuthProperties {
                        authentication_method: p.authentication_method,
                        authentication_data: p.authentication_data,
                        reason_string: p.reason_string,
                        user_properties: p.user_properties,
                    };
                }
            }
            Packet::Auth(a)
        }
    };
    r.finish()?;
    Ok(packet)
}

pub(crate) fn decode_connect_rest(mut r: Reader) -> Result<Connect, DecodeError> {
    let f = connect_flags(r.u8("connect flags")?)?;
    let keep_alive = r.u16("keep alive")?;
    let p = read_props(&mut r, ALLOWED_CONNECT)?;
    let properties = ConnectProperties {
        session_expiry_interval: p.session_expiry_interval,
        receive_maximum: p.receive_maximum,
        maximum_packet_size: p.maximum_packet_size,
        topic_alias_maximum: p.topic_alias_maximum,
        request_response_information: p.request_response_information,
        request_problem_information: p.request_problem_information,
        user_properties: p.user_properties,
        authentication_method: p.authentication_method,
        authentication_data: p.authentication_data,
    };
    let client_id = ClientId::new(r.string("client identifier")?);
    let will = match f.will {
        Some((qos, retain)) => {
            let wp = read_props(&mut r, ALLOWED_WILL)?;
            let topic = topic_name(&mut r)?;
            let topic = TopicName::new(topic).map_err(DecodeError::InvalidTopicName)?;
            let payload = r.binary("will payload")?;
            Some(Will {
                topic,
                payload,
                qos,
                retain,
                properties: WillProperties {
                    will_delay_interval: wp.will_delay_interval,
                    payload_format_indicator: wp.payload_format_indicator,
                    message_expiry_interval: wp.message_expiry_interval,
                    content_type: wp.content_type,
                    response_topic: wp.response_topic,
                    correlation_data: wp.correlation_data,
                    user_properties: wp.user_properties,
                },
            })
        }
        None => None,
    };
    let username = if f.username {
        Some(r.string("user name")?)
    } else {
        None
    };
    let password = if f.password {
        Some(r.binary("password")?)
    } else {
        None
    };
    r.finish()?;
    Ok(Connect {
        protocol: ProtocolVersion::V5,
        clean_start: f.clean_start,
        keep_alive,
        client_id,
        will,
        username,
        password,
        properties,
    })
}

// ---------------------------------------------------------------------------------------------
// Encoding

/// Writes properties into any sink; used twice, for the length and for the bytes.
struct PropWriter<'a, S: Sink>(&'a mut S);

impl<S: Sink> PropWriter<'_, S> {
    fn u8(&mut self, id: u8, v: Option<u8>) {
        if let Some(v) = v {
            self.0.put_u8(id);
            self.0.put_u8(v);
        }
    }
    fn bool(&mut self, id: u8, v: Option<bool>) {
        self.u8(id, v.map(u8::from));
    }
    fn u16(&mut self, id: u8, v: Option<u16>) {
        if let Some(v) = v {
            self.0.put_u8(id);
            self.0.put_u16(v);
        }
    }
    fn u32(&mut self, id: u8, v: Option<u32>) {
        if let Some(v) = v {
            self.0.put_u8(id);
            self.0.put_u32(v);
        }
    }
    fn str(&mut self, id: u8, v: Option<&str>, what: &'static str) -> Result<(), EncodeError> {
        if let Some(v) = v {
            self.0.put_u8(id);
            put_str(self.0, v, what)?;
        }
        Ok(())
    }
    fn bin(&mut self, id: u8, v: Option<&[u8]>, what: &'static str) -> Result<(), EncodeError> {
        if let Some(v) = v {
            self.0.put_u8(id);
            put_binary(self.0, v, what)?;
        }
        Ok(())
    }
    fn varint(&mut self, id: u8, v: u32) -> Result<(), EncodeError> {
        if v == 0 || v > 268_435_455 {
            return Err(EncodeError::InvalidValue(
                "subscription identifier must be 1..=268435455",
            ));
        }
        self.0.put_u8(id);
        put_varint(self.0, v);
        Ok(())
    }
    fn user(&mut self, v: &[UserProperty]) -> Result<(), EncodeError> {
        for (k, val) in v {
            self.0.put_u8(USER_PROPERTY);
            put_str(self.0, k, "user property name")?;
            put_str(self.0, val, "user property value")?;
        }
        Ok(())
    }
}

fn ack_props<S: Sink>(w: &mut PropWriter<'_, S>, p: &AckProperties) -> Result<(), EncodeError> {
    w.str(REASON_STRING, p.reason_string.as_deref(), "reason string")?;
    w.user(&p.user_properties)
}

/// Writes a property block whose content is produced by `write`, generic over the sink type.
fn block<S: Sink, T: ?Sized>(
    s: &mut S,
    value: &T,
    write_c: fn(&mut PropWriter<'_, Counter>, &T) -> Result<(), EncodeError>,
    write_s: fn(&mut PropWriter<'_, S>, &T) -> Result<(), EncodeError>,
) -> Result<(), EncodeError> {
    let mut c = Counter(0);
    write_c(&mut PropWriter(&mut c), value)?;
    let len = u32::try_from(c.0).map_err(|_| EncodeError::InvalidValue("properties too long"))?;
    put_varint(s, len);
    write_s(&mut PropWriter(s), value)
}

macro_rules! write_block {
    ($s:expr, $value:expr, $f:ident) => {
        block($s, $value, $f::<Counter>, $f::<S>)
    };
}

fn connect_props<S: Sink>(
    w: &mut PropWriter<'_, S>,
    p: &ConnectProperties,
) -> Result<(), EncodeError> {
    w.u32(SESSION_EXPIRY_INTERVAL, p.session_expiry_interval);
    w.u16(RECEIVE_MAXIMUM, p.receive_maximum);
    w.u32(MAXIMUM_PACKET_SIZE, p.maximum_packet_size);
    w.u16(TOPIC_ALIAS_MAXIMUM, p.topic_alias_maximum);
    w.bool(REQUEST_RESPONSE_INFORMATION, p.request_response_information);
    w.bool(REQUEST_PROBLEM_INFORMATION, p.request_problem_information);
    w.user(&p.user_properties)?;
    w.str(
        AUTHENTICATION_METHOD,
        p.authentication_method.as_deref(),
        "authentication method",
    )?;
    w.bin(
        AUTHENTICATION_DATA,
        p.authentication_data.as_deref(),
        "authentication data",
    )
}

fn will_props<S: Sink>(w: &mut PropWriter<'_, S>, p: &WillProperties) -> Result<(), EncodeError> {
    w.u32(WILL_DELAY_INTERVAL, p.will_delay_interval);
    w.bool(PAYLOAD_FORMAT_INDICATOR, p.payload_format_indicator);
    w.u32(MESSAGE_EXPIRY_INTERVAL, p.message_expiry_interval);
    w.str(CONTENT_TYPE, p.content_type.as_deref(), "content type")?;
    w.str(
        RESPONSE_TOPIC,
        p.response_topic.as_ref().map(TopicName::as_str),
        "response topic",
    )?;
    w.bin(
        CORRELATION_DATA,
        p.correlation_data.as_deref(),
        "correlation data",
    )?;
    w.user(&p.user_properties)
}

fn connack_props<S: Sink>(
    w: &mut PropWriter<'_, S>,
    p: &ConnAckProperties,
) -> Result<(), EncodeError> {
    w.u32(SESSION_EXPIRY_INTERVAL, p.session_expiry_interval);
    w.u16(RECEIVE_MAXIMUM, p.receive_maximum);
    w.u8(MAXIMUM_QOS, p.maximum_qos.map(|q| q as u8));
    w.bool(RETAIN_AVAILABLE, p.retain_available);
    w.u32(MAXIMUM_PACKET_SIZE, p.maximum_packet_size);
    w.str(
        ASSIGNED_CLIENT_IDENTIFIER,
        p.assigned_client_identifier.as_deref(),
        "assigned client identifier",
    )?;
    w.u16(TOPIC_ALIAS_MAXIMUM, p.topic_alias_maximum);
    w.str(REASON_STRING, p.reason_string.as_deref(), "reason string")?;
    w.user(&p.user_properties)?;
    w.bool(
        WILDCARD_SUBSCRIPTION_AVAILABLE,
        p.wildcard_subscription_available,
    );
    w.bool(
        SUBSCRIPTION_IDENTIFIER_AVAILABLE,
        p.subscription_identifiers_available,
    );
    w.bool(
        SHARED_SUBSCRIPTION_AVAILABLE,
        p.shared_subscription_available,
    );
    w.u16(SERVER_KEEP_ALIVE, p.server_keep_alive);
    w.str(
        RESPONSE_INFORMATION,
        p.response_information.as_deref(),
        "response information",
    )?;
    w.str(
        SERVER_REFERENCE,
        p.server_reference.as_deref(),
        "server reference",
    )?;
    w.str(
        AUTHENTICATION_METHOD,
        p.authentication_method.as_deref(),
        "authentication method",
    )?;
    w.bin(
        AUTHENTICATION_DATA,
        p.authentication_data.as_deref(),
        "authentication data",
    )
}

fn publish_props<S: Sink>(
    w: &mut PropWriter<'_, S>,
    p: &PublishProperties,
) -> Result<(), EncodeError> {
    w.bool(PAYLOAD_FORMAT_INDICATOR, p.payload_format_indicator);
    w.u32(MESSAGE_EXPIRY_INTERVAL, p.message_expiry_interval);
    if p.topic_alias == Some(0) {
        return Err(EncodeError::InvalidValue("topic alias 0 [MQTT-3.3.2-8]"));
    }
    w.u16(TOPIC_ALIAS, p.topic_alias);
    w.str(
        RESPONSE_TOPIC,
        p.response_topic.as_ref().map(TopicName::as_str),
        "response topic",
    )?;
    w.bin(
        CORRELATION_DATA,
        p.correlation_data.as_deref(),
        "correlation data",
    )?;
    w.user(&p.user_properties)?;
    for id in &p.subscription_identifiers {
        w.varint(SUBSCRIPTION_IDENTIFIER, *id)?;
    }
    w.str(CONTENT_TYPE, p.content_type.as_deref(), "content type")
}

/// The length of a PUBLISH property block without its length prefix.
pub(crate) fn publish_props_len(p: &PublishProperties) -> Result<usize, EncodeError> {
    if p.is_empty() {
        return Ok(0);
    }
    let mut c = Counter(0);
    publish_props(&mut PropWriter(&mut c), p)?;
    Ok(c.0)
}

fn subscribe_props<S: Sink>(
    w: &mut PropWriter<'_, S>,
    p: &SubscribeProperties,
) -> Result<(), EncodeError> {
    if let Some(id) = p.subscription_identifier {
        w.varint(SUBSCRIPTION_IDENTIFIER, id)?;
    }
    w.user(&p.user_properties)
}

fn user_only<S: Sink>(w: &mut PropWriter<'_, S>, p: &[UserProperty]) -> Result<(), EncodeError> {
    w.user(p)
}

fn disconnect_props<S: Sink>(
    w: &mut PropWriter<'_, S>,
    p: &DisconnectProperties,
) -> Result<(), EncodeError> {
    w.u32(SESSION_EXPIRY_INTERVAL, p.session_expiry_interval);
    w.str(REASON_STRING, p.reason_string.as_deref(), "reason string")?;
    w.user(&p.user_properties)?;
    w.str(
        SERVER_REFERENCE,
        p.server_reference.as_deref(),
        "server reference",
    )
}

fn auth_props<S: Sink>(w: &mut PropWriter<'_, S>, p: &AuthProperties) -> Result<(), EncodeError> {
    w.str(
        AUTHENTICATION_METHOD,
        p.authentication_method.as_deref(),
        "authentication method",
    )?;
    w.bin(
        AUTHENTICATION_DATA,
        p.authentication_data.as_deref(),
        "authentication data",
    )?;
    w.str(REASON_STRING, p.reason_string.as_deref(), "reason string")?;
    w.user(&p.user_properties)
}

fn check_reason(rc: ReasonCode, t: PacketType) -> Result<(), EncodeError> {
    if rc.allowed_in(t) {
        Ok(())
    } else {
        Err(EncodeError::InvalidValue(
            "reason code not allowed in this packet",
        ))
    }
}

pub(crate) fn encode_connect<S: Sink>(c: &Connect, s: &mut S) -> Result<(), EncodeError> {
    put_str(s, "MQTT", "protocol name")?;
    s.put_u8(5);
    s.put_u8(connect_flags_byte(c));
    s.put_u16(c.keep_alive);
    write_block!(s, &c.properties, connect_props)?;
    put_str(s, c.client_id.as_str(), "client identifier")?;
    if let Some(w) = &c.will {
        write_block!(s, &w.properties, will_props)?;
        put_str(s, w.topic.as_str(), "will topic")?;
        put_binary(s, &w.payload, "will payload")?;
    }
    if let Some(u) = &c.username {
        put_str(s, u, "user name")?;
    }
    if let Some(p) = &c.password {
        put_binary(s, p, "password")?;
    }
    Ok(())
}

/// The body of a PUBLISH (also called directly by the one-pass PUBLISH encoder).
pub(crate) fn encode_publish<S: Sink>(p: &Publish, s: &mut S) -> Result<(), EncodeError> {
    if p.topic.is_empty() && p.properties.topic_alias.is_none() {
        return Err(EncodeError::InvalidValue(
            "an empty topic name needs a topic alias",
        ));
    }
    put_publish_head(p, s)?;
    if p.properties.is_empty() {
        // The common case: an empty block is its zero length, no counting pass.
        s.put_u8(0);
    } else {
        write_block!(s, &p.properties, publish_props)?;
    }
    s.put_slice(&p.payload);
    Ok(())
}

pub(crate) fn encode<S: Sink>(p: &Packet, s: &mut S) -> Result<(), EncodeError> {
    let t = p.packet_type();
    match p {
        Packet::Connect(c) => encode_connect(c, s)?,
        Packet::ConnAck(c) => {
            check_reason(c.reason, t)?;
            s.put_u8(u8::from(c.session_present));
            s.put_u8(c.reason.as_u8());
            write_block!(s, &c.properties, connack_props)?;
        }
        Packet::Publish(p) => encode_publish(p, s)?,
        Packet::PubAck(a) | Packet::PubRec(a) | Packet::PubRel(a) | Packet::PubComp(a) => {
            check_reason(a.reason, t)?;
            s.put_u16(a.packet_id.get());
            // The shortest form that carries the information [MQTT-3.4.2-1].
            if !a.properties.is_empty() {
                s.put_u8(a.reason.as_u8());
                write_block!(s, &a.properties, ack_props)?;
            } else if a.reason != ReasonCode::Success {
                s.put_u8(a.reason.as_u8());
            }
        }
        Packet::Subscribe(sub) => {
            if sub.filters.is_empty() {
                return Err(EncodeError::InvalidValue(
                    "SUBSCRIBE needs at least one filter",
                ));
            }
            s.put_u16(sub.packet_id.get());
            write_block!(s, &sub.properties, subscribe_props)?;
            for (f, o) in &sub.filters {
                put_str(s, f.as_str(), "topic filter")?;
                s.put_u8(
                    (o.qos as u8)
                        | (u8::from(o.no_local) << 2)
                        | (u8::from(o.retain_as_published) << 3)
                        | ((o.retain_handling as u8) << 4),
                );
            }
        }
        Packet::SubAck(a) => {
            // One reason code per filter of the SUBSCRIBE, which has at least one
            // [MQTT-3.9.3-1]; the decoder rejects an empty list, so never send one.
            if a.reasons.is_empty() {
                return Err(EncodeError::InvalidValue(
                    "SUBACK needs at least one reason code",
                ));
            }
            s.put_u16(a.packet_id.get());
            write_block!(s, &a.properties, ack_props)?;
            for r in &a.reasons {
                check_reason(*r, t)?;
                s.put_u8(r.as_u8());
            }
        }
        Packet::Unsubscribe(u) => {
            if u.filters.is_empty() {
                return Err(EncodeError::InvalidValue(
                    "UNSUBSCRIBE needs at least one filter",
                ));
            }
            s.put_u16(u.packet_id.get());
            write_block!(s, u.properties.as_slice(), user_only)?;
            for f in &u.filters {
                put_str(s, f.as_str(), "topic filter")?;
            }
        }
        Packet::UnsubAck(a) => {
            // A v5 UNSUBACK has one reason code per filter [MQTT-3.11.3-1]; a v3-built one has
            // none and must get them before it goes to a v5 peer.
            if a.reasons.is_empty() {
                return Err(EncodeError::InvalidValue(
                    "an MQTT 5 UNSUBACK needs at least one reason code",
                ));
            }
            s.put_u16(a.packet_id.get());
            write_block!(s, &a.properties, ack_props)?;
            for r in &a.reasons {
                check_reason(*r, t)?;
                s.put_u8(r.as_u8());
            }
        }
        Packet::PingReq | Packet::PingResp => {}
        Packet::Disconnect(d) => {
            check_reason(d.reason, t)?;
            if d.properties != DisconnectProperties::default() {
                s.put_u8(d.reason.as_u8());
                write_block!(s, &d.properties, disconnect_props)?;
            } else if d.reason != ReasonCode::Success {
                s.put_u8(d.reason.as_u8());
            }
        }
        Packet::Auth(a) => {
            check_reason(a.reason, t)?;
            if a.properties != AuthProperties::default() {
                s.put_u8(a.reason.as_u8());
                write_block!(s, &a.properties, auth_props)?;
            } else if a.reason != ReasonCode::Success {
                s.put_u8(a.reason.as_u8());
            }
        }
    }
    Ok(())
}
