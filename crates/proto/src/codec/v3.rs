//! MQTT 3.1 (level 3, "MQIsdp") and 3.1.1 (level 4): the packets without properties.
//!
//! Reason codes of the shared model map to v3 return codes: CONNACK 0..=5, SUBACK 0, 1, 2 and
//! 0x80 (every v5 failure code is sent as 0x80). Anything else v3 cannot express is an
//! [`EncodeError::NotInVersion`].

use super::{check_flags, put_binary, put_str, qos_from_bits, required_flags, Reader, Sink};
use crate::error::{DecodeError, EncodeError};
use crate::reason::ReasonCode;
use crate::topic::{TopicFilter, TopicName};
use crate::types::*;

pub(crate) fn decode(
    t: PacketType,
    flags: u8,
    mut r: Reader,
    version: ProtocolVersion,
) -> Result<Packet, DecodeError> {
    if t != PacketType::Publish {
        check_flags(t, flags, required_flags(t))?;
    }
    let packet = match t {
        PacketType::Connect => unreachable_connect()?,
        PacketType::ConnAck => {
            let ack_flags = r.u8("acknowledge flags")?;
            // MQTT 3.1 has no Session Present: its whole first byte is reserved, and a
            // session-present CONNACK could not be encoded for 3.1 either.
            let reserved = if version == ProtocolVersion::V31 {
                0xFF
            } else {
                0xFE
            };
            if ack_flags & reserved != 0 {
                return Err(DecodeError::ConnAckReservedFlags(ack_flags));
            }
            let code = r.u8("return code")?;
            let reason =
                connack_from_v3(code).ok_or(DecodeError::InvalidReasonCode { packet: t, code })?;
            Packet::ConnAck(ConnAck {
                session_present: ack_flags & 1 == 1,
                reason,
                properties: ConnAckProperties::default(),
            })
        }
        PacketType::Publish => {
            let (dup, qos, retain) = publish_flags(flags)?;
            let topic = topic_name(&mut r)?;
            let topic = TopicName::new(topic).map_err(DecodeError::InvalidTopicName)?;
            let packet_id = if qos == QoS::AtMostOnce {
                None
            } else {
                Some(r.packet_id()?)
            };
            Packet::Publish(Publish {
                dup,
                qos,
                retain,
                topic,
                packet_id,
                properties: PublishProperties::default(),
                payload: r.rest(),
            })
        }
        PacketType::PubAck | PacketType::PubRec | PacketType::PubRel | PacketType::PubComp => {
            let ack = PubAck::new(r.packet_id()?);
            match t {
                PacketType::PubAck => Packet::PubAck(ack),
                PacketType::PubRec => Packet::PubRec(ack),
                PacketType::PubRel => Packet::PubRel(ack),
                _ => Packet::PubComp(ack),
            }
        }
        PacketType::Subscribe => {
            let packet_id = r.packet_id()?;
            let mut filters = Vec::new();
            while r.remaining() > 0 {
                let f = topic_filter(&mut r)?;
                let o = r.u8("subscription options")?;
                if o & 0xFC != 0 {
                    return Err(DecodeError::ReservedSubscriptionOptions(o));
                }
                let qos = QoS::from_u8(o & 3).ok_or(DecodeError::InvalidSubscriptionQoS)?;
                filters.push((
                    f,
                    SubscriptionOptions {
                        qos,
                        ..Default::default()
                    },
                ));
            }
            if filters.is_empty() {
                return Err(DecodeError::EmptySubscribe);
            }
            Packet::Subscribe(Subscribe {
                packet_id,
                filters,
                properties: Default::default(),
            })
        }
        PacketType::SubAck => {
            let packet_id = r.packet_id()?;
            let mut reasons = Vec::with_capacity(r.remaining());
            while r.remaining() > 0 {
                let code = r.u8("return code")?;
                reasons.push(match code {
                    0 => ReasonCode::GRANTED_QOS0,
                    1 => ReasonCode::GrantedQoS1,
                    2 => ReasonCode::GrantedQoS2,
                    0x80 => ReasonCode::UnspecifiedError,
                    _ => return Err(DecodeError::InvalidReasonCode { packet: t, code }),
                });
            }
            if reasons.is_empty() {
                return Err(DecodeError::EmptyAckPayload { packet: t });
            }
            Packet::SubAck(SubAck {
                packet_id,
                reasons,
                properties: Default::default(),
            })
        }
        PacketType::Unsubscribe => {
            let packet_id = r.packet_id()?;
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
                properties: Vec::new(),
            })
        }
        PacketType::UnsubAck => Packet::UnsubAck(UnsubAck {
            packet_id: r.packet_id()?,
            reasons: Vec::new(),
            properties: Default::default(),
        }),
        PacketType::PingReq => Packet::PingReq,
        PacketType::PingResp => Packet::PingResp,
        PacketType::Disconnect => Packet::Disconnect(Disconnect::default()),
        PacketType::Auth => return Err(DecodeError::PacketTypeNotInVersion(version)),
    };
    r.finish()?;
    Ok(packet)
}

fn unreachable_connect() -> Result<Packet, DecodeError> {
    // CONNECT is decoded before dispatching on the version.
    Err(DecodeError::ReservedPacketType)
}

pub(crate) fn publish_flags(flags: u8) -> Result<(bool, QoS, bool), DecodeError> {
    let qos = qos_from_bits((flags >> 1) & 3)?;
    let dup = flags & 0b1000 != 0;
    if dup && qos == QoS::AtMostOnce {
        return Err(DecodeError::DupWithQoS0);
    }
    Ok((dup, qos, flags & 1 == 1))
}

/// The raw topic string of a PUBLISH (validated by the caller, as v5 allows it empty).
pub(crate) fn topic_name(r: &mut Reader) -> Result<bytestring::ByteString, DecodeError> {
    r.string("topic name").map_err(|e| match e {
        DecodeError::NullCharacter { .. } => {
            DecodeError::InvalidTopicName(crate::error::TopicError::NullCharacter)
        }
        e => e,
    })
}

pub(crate) fn topic_filter(r: &mut Reader) -> Result<TopicFilter, DecodeError> {
    let s = r.string("topic filter").map_err(|e| match e {
        DecodeError::NullCharacter { .. } => {
            DecodeError::InvalidTopicFilter(crate::error::TopicError::NullCharacter)
        }
        e => e,
    })?;
    TopicFilter::new(s).map_err(DecodeError::InvalidTopicFilter)
}

/// Connect flags, shared with v5: (clean_start, will flag/qos/retain, password, username).
pub(crate) struct ConnectFlags {
    pub clean_start: bool,
    pub will: Option<(QoS, bool)>,
    pub password: bool,
    pub username: bool,
}

pub(crate) fn connect_flags(b: u8) -> Result<ConnectFlags, DecodeError> {
    if b & 1 != 0 {
        return Err(DecodeError::ConnectReservedFlag);
    }
    let will_flag = b & 0b100 != 0;
    let will_qos_bits = (b >> 3) & 3;
    let will_retain = b & 0b10_0000 != 0;
    let will = if will_flag {
        Some((qos_from_bits(will_qos_bits)?, will_retain))
    } else {
        if will_qos_bits != 0 || will_retain {
            return Err(DecodeError::WillFlagsWithoutWill);
        }
        None
    };
    Ok(ConnectFlags {
        clean_start: b & 0b10 != 0,
        will,
        password: b & 0b0100_0000 != 0,
        username: b & 0b1000_0000 != 0,
    })
}

pub(crate) fn connect_flags_byte(c: &Connect) -> u8 {
    let mut b = 0u8;
    if c.clean_start {
        b |= 0b10;
    }
    if let Some(w) = &c.will {
        b |= 0b100 | ((w.qos as u8) << 3);
        if w.retain {
            b |= 0b10_0000;
        }
    }
    if c.password.is_some() {
        b |= 0b0100_0000;
    }
    if c.username.is_some() {
        b |= 0b1000_0000;
    }
    b
}

pub(crate) fn decode_connect_rest(
    mut r: Reader,
    version: ProtocolVersion,
) -> Result<Connect, DecodeError> {
    let f = connect_flags(r.u8("connect flags")?)?;
    if f.password && !f.username {
        return Err(DecodeError::PasswordWithoutUsername);
    }
    let keep_alive = r.u16("keep alive")?;
    let client_id = ClientId::new(r.string("client identifier")?);
    let will = match f.will {
        Some((qos, retain)) => {
            let topic = topic_name(&mut r)?;
            let topic = TopicName::new(topic).map_err(DecodeError::InvalidTopicName)?;
            let payload = r.binary("will payload")?;
            Some(Will {
                topic,
                payload,
                qos,
                retain,
                properties: Default::default(),
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
        protocol: version,
        clean_start: f.clean_start,
        keep_alive,
        client_id,
        will,
        username,
        password,
        properties: Default::default(),
    })
}

fn connack_from_v3(code: u8) -> Option<ReasonCode> {
    Some(match code {
        0 => ReasonCode::Success,
        1 => ReasonCode::UnsupportedProtocolVersion,
        2 => ReasonCode::ClientIdentifierNotValid,
        3 => ReasonCode::ServerUnavailable,
        4 => ReasonCode::BadUserNameOrPassword,
        5 => ReasonCode::NotAuthorized,
        _ => return None,
    })
}

/// The v3 CONNACK return code for a reason code, where one fits.
pub(crate) fn connack_to_v3(reason: ReasonCode) -> Option<u8> {
    Some(match reason {
        ReasonCode::Success => 0,
        ReasonCode::UnsupportedProtocolVersion => 1,
        ReasonCode::ClientIdentifierNotValid => 2,
        ReasonCode::ServerUnavailable | ReasonCode::ServerBusy => 3,
        ReasonCode::BadUserNameOrPassword => 4,
        ReasonCode::NotAuthorized | ReasonCode::Banned => 5,
        _ => return None,
    })
}

fn not_in(what: &'static str, version: ProtocolVersion) -> EncodeError {
    EncodeError::NotInVersion { what, version }
}

pub(crate) fn encode_connect<S: Sink>(
    c: &Connect,
    v: ProtocolVersion,
    s: &mut S,
) -> Result<(), EncodeError> {
    if !c.properties.is_empty() {
        return Err(not_in("CONNECT properties", v));
    }
    if let Some(w) = &c.will {
        if !w.properties.is_empty() {
            return Err(not_in("will properties", v));
        }
    }
    if c.password.is_some() && c.username.is_none() {
        return Err(not_in("a password without a user name", v));
    }
    put_str(s, v.protocol_name(), "protocol name")?;
    s.put_u8(v.level());
    s.put_u8(connect_flags_byte(c));
    s.put_u16(c.keep_alive);
    put_str(s, c.client_id.as_str(), "client identifier")?;
    if let Some(w) = &c.will {
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

pub(crate) fn encode<S: Sink>(
    p: &Packet,
    v: ProtocolVersion,
    s: &mut S,
) -> Result<(), EncodeError> {
    match p {
        Packet::Connect(c) => encode_connect(c, v, s)?,
        Packet::ConnAck(c) => {
            if c.properties != ConnAckProperties::default() {
                return Err(not_in("CONNACK properties", v));
            }
            if v == ProtocolVersion::V31 && c.session_present {
                return Err(not_in("session present", v));
            }
            let code = connack_to_v3(c.reason).ok_or(not_in("this CONNACK reason code", v))?;
            s.put_u8(u8::from(c.session_present));
            s.put_u8(code);
        }
        Packet::Publish(p) => encode_publish(p, v, s)?,
        Packet::PubAck(a) | Packet::PubRec(a) | Packet::PubRel(a) | Packet::PubComp(a) => {
            if a.reason != ReasonCode::Success {
                return Err(not_in("a non-success acknowledgement reason code", v));
            }
            if !a.properties.is_empty() {
                return Err(not_in("acknowledgement properties", v));
            }
            s.put_u16(a.packet_id.get());
        }
        Packet::Subscribe(sub) => {
            if sub.properties != SubscribeProperties::default() {
                return Err(not_in("SUBSCRIBE properties", v));
            }
            if sub.filters.is_empty() {
                return Err(EncodeError::InvalidValue(
                    "SUBSCRIBE needs at least one filter",
                ));
            }
            s.put_u16(sub.packet_id.get());
            for (f, o) in &sub.filters {
                if o.no_local
                    || o.retain_as_published
                    || o.retain_handling != RetainHandling::SendAtSubscribe
                {
                    return Err(not_in("v5 subscription options", v));
                }
                put_str(s, f.as_str(), "topic filter")?;
                s.put_u8(o.qos as u8);
            }
        }
        Packet::SubAck(a) => {
            if !a.properties.is_empty() {
                return Err(not_in("SUBACK properties", v));
            }
            // One return code per filter of the SUBSCRIBE, which has at least one.
            if a.reasons.is_empty() {
                return Err(EncodeError::InvalidValue(
                    "SUBACK needs at least one return code",
                ));
            }
            s.put_u16(a.packet_id.get());
            for r in &a.reasons {
                s.put_u8(match r {
                    ReasonCode::Success => 0,
                    ReasonCode::GrantedQoS1 => 1,
                    ReasonCode::GrantedQoS2 => 2,
                    r if r.is_error() => 0x80,
                    _ => return Err(not_in("this SUBACK reason code", v)),
                });
            }
        }
        Packet::Unsubscribe(u) => {
            if !u.properties.is_empty() {
                return Err(not_in("UNSUBSCRIBE properties", v));
            }
            if u.filters.is_empty() {
                return Err(EncodeError::InvalidValue(
                    "UNSUBSCRIBE needs at least one filter",
                ));
            }
            s.put_u16(u.packet_id.get());
            for f in &u.filters {
                put_str(s, f.as_str(), "topic filter")?;
            }
        }
        Packet::UnsubAck(a) => {
            if !a.reasons.is_empty() || !a.properties.is_empty() {
                return Err(not_in("UNSUBACK reason codes and properties", v));
            }
            s.put_u16(a.packet_id.get());
        }
        Packet::PingReq | Packet::PingResp => {}
        Packet::Disconnect(d) => {
            if d.reason != ReasonCode::Success || d.properties != DisconnectProperties::default() {
                return Err(not_in("DISCONNECT reason codes and properties", v));
            }
        }
        Packet::Auth(_) => return Err(not_in("AUTH", v)),
    }
    Ok(())
}

/// The body of a PUBLISH (also called directly by the one-pass PUBLISH encoder).
pub(crate) fn encode_publish<S: Sink>(
    p: &Publish,
    v: ProtocolVersion,
    s: &mut S,
) -> Result<(), EncodeError> {
    if !p.properties.is_empty() {
        return Err(not_in("PUBLISH properties", v));
    }
    if p.topic.is_empty() {
        return Err(not_in("an empty topic name (topic alias)", v));
    }
    put_publish_head(p, s)?;
    s.put_slice(&p.payload);
    Ok(())
}

/// Topic name and packet identifier of a PUBLISH (identical in v3 and v5).
pub(crate) fn put_publish_head<S: Sink>(p: &Publish, s: &mut S) -> Result<(), EncodeError> {
    put_str(s, p.topic.as_str(), "topic name")?;
    match (p.qos, p.packet_id) {
        (QoS::AtMostOnce, None) => {}
        (QoS::AtMostOnce, Some(_)) => {
            return Err(EncodeError::InvalidValue(
                "a QoS 0 PUBLISH has no packet identifier",
            ))
        }
        (_, Some(id)) => s.put_u16(id.get()),
        (_, None) => {
            return Err(EncodeError::InvalidValue(
                "a QoS 1/2 PUBLISH needs a packet identifier",
            ))
        }
    }
    if p.dup && p.qos == QoS::AtMostOnce {
        return Err(EncodeError::InvalidValue(
            "DUP must be 0 on a QoS 0 PUBLISH [MQTT-3.3.1-2]",
        ));
    }
    Ok(())
}
