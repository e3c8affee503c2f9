//! A table of malformed packets: each one names the exact [`DecodeError`] (with its fields)
//! and the MQTT 5 reason code a receiver answers it with (0x81 Malformed Packet, 0x82 Protocol
//! Error, 0x84 Unsupported Protocol Version, 0x8F Topic Filter invalid, 0x90 Topic Name
//! invalid, 0x94 Topic Alias invalid, 0x95 Packet too large).
//!
//! The inputs are built from small helpers (`pkt` computes the remaining length, `s` writes a
//! length-prefixed string) so that each case differs from a valid packet in exactly the field
//! it is about. The second half checks framing: every strict prefix of a valid packet is
//! `Ok(None)` and consumes nothing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashSet;

use bytes::{Bytes, BytesMut};
use bytestring::ByteString;
use quartet_proto::*;

use DecodeError as E;
use PacketType as T;

const V31: ProtocolVersion = ProtocolVersion::V31;
const V311: ProtocolVersion = ProtocolVersion::V311;
const V5: ProtocolVersion = ProtocolVersion::V5;

const MALFORMED: u8 = 0x81;
const PROTOCOL: u8 = 0x82;
const UNSUPPORTED: u8 = 0x84;
const FILTER_INVALID: u8 = 0x8F;
const NAME_INVALID: u8 = 0x90;
const ALIAS_INVALID: u8 = 0x94;
const TOO_LARGE: u8 = 0x95;

const BOOL_WHY: &str = "a byte property must be 0 or 1";

// ---------------------------------------------------------------------------------------------
// Byte builders

fn hex(b: &[u8]) -> String {
    b.iter()
        .map(|x| format!("{x:02X}"))
        .collect::<Vec<_>>()
        .join(" ")
}

fn varint(mut v: usize) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let mut b = (v & 0x7F) as u8;
        v >>= 7;
        if v > 0 {
            b |= 0x80;
        }
        out.push(b);
        if v == 0 {
            return out;
        }
    }
}

/// A packet: first byte, remaining length (computed), body.
fn pkt(first: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![first];
    out.extend(varint(body.len()));
    out.extend_from_slice(body);
    out
}

fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

/// Length-prefixed raw bytes (for strings that are not valid UTF-8).
fn raw(b: &[u8]) -> Vec<u8> {
    let mut out = (b.len() as u16).to_be_bytes().to_vec();
    out.extend_from_slice(b);
    out
}

/// A length-prefixed UTF-8 string.
fn s(x: &str) -> Vec<u8> {
    raw(x.as_bytes())
}

/// A v5 property block: its length, then the properties.
fn props(p: &[u8]) -> Vec<u8> {
    cat(&[&varint(p.len()), p])
}

/// CONNECT of 3.1 ("MQIsdp", level 3), keep alive 60, then `rest` (the payload).
fn connect31(flags: u8, rest: &[u8]) -> Vec<u8> {
    pkt(0x10, &cat(&[&s("MQIsdp"), &[3, flags, 0, 60], rest]))
}

/// CONNECT of 3.1.1 ("MQTT", level 4), keep alive 60, then `rest`.
fn connect311(flags: u8, rest: &[u8]) -> Vec<u8> {
    pkt(0x10, &cat(&[&s("MQTT"), &[4, flags, 0, 60], rest]))
}

/// CONNECT of 5.0, keep alive 60, the given CONNECT properties, then `rest`.
fn connect5(flags: u8, p: &[u8], rest: &[u8]) -> Vec<u8> {
    pkt(
        0x10,
        &cat(&[&s("MQTT"), &[5, flags, 0, 60], &props(p), rest]),
    )
}

/// A v5 QoS 0 PUBLISH to "t" with the given properties and payload "x".
fn publish5(p: &[u8]) -> Vec<u8> {
    pkt(0x30, &cat(&[&s("t"), &props(p), b"x"]))
}

/// A v5 SUBSCRIBE (packet id 1) with the given properties and one entry.
fn subscribe5(p: &[u8], filter: &str, options: u8) -> Vec<u8> {
    pkt(0x82, &cat(&[&[0, 1], &props(p), &s(filter), &[options]]))
}

/// A v5 PUBACK (packet id 1) with a reason code and properties.
fn puback5(reason: u8, p: &[u8]) -> Vec<u8> {
    pkt(0x40, &cat(&[&[0, 1, reason], &props(p)]))
}

// ---------------------------------------------------------------------------------------------
// The table

struct Case {
    name: &'static str,
    version: ProtocolVersion,
    bytes: Vec<u8>,
    max_packet_size: usize,
    err: DecodeError,
    rc: u8,
}

fn c(
    name: &'static str,
    version: ProtocolVersion,
    bytes: Vec<u8>,
    err: DecodeError,
    rc: u8,
) -> Case {
    Case {
        name,
        version,
        bytes,
        max_packet_size: MAX_PACKET_SIZE,
        err,
        rc,
    }
}

fn limited(mut case: Case, max: usize) -> Case {
    case.max_packet_size = max;
    case
}

fn trunc(packet: PacketType, what: &'static str) -> DecodeError {
    E::Truncated { packet, what }
}

fn trailing(packet: PacketType, extra: usize) -> DecodeError {
    E::TrailingBytes { packet, extra }
}

fn flags(packet: PacketType, flags: u8) -> DecodeError {
    E::ReservedFlags { packet, flags }
}

fn bad_reason(packet: PacketType, code: u8) -> DecodeError {
    E::InvalidReasonCode { packet, code }
}

fn bad_value(id: u8, why: &'static str) -> DecodeError {
    E::InvalidPropertyValue { id, why }
}

fn cases() -> Vec<Case> {
    vec![
        // ---- framing -------------------------------------------------------------------------
        c(
            "remaining length: variable byte integer of 5 bytes",
            V311,
            vec![0x30, 0x80, 0x80, 0x80, 0x80, 0x01],
            E::MalformedVarInt,
            MALFORMED,
        ),
        c(
            "remaining length: 5 bytes, all continuation set but the last",
            V5,
            vec![0xC0, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F],
            E::MalformedVarInt,
            MALFORMED,
        ),
        c(
            "reserved packet type 0",
            V311,
            vec![0x00, 0x00],
            E::ReservedPacketType,
            MALFORMED,
        ),
        c(
            "reserved packet type 0 with flags and a body",
            V5,
            vec![0x0F, 0x01, 0x00],
            E::ReservedPacketType,
            MALFORMED,
        ),
        c(
            "AUTH (type 15) on a 3.1.1 connection",
            V311,
            vec![0xF0, 0x00],
            E::PacketTypeNotInVersion(V311),
            PROTOCOL,
        ),
        c(
            "AUTH (type 15) on a 3.1 connection",
            V31,
            vec![0xF0, 0x00],
            E::PacketTypeNotInVersion(V31),
            PROTOCOL,
        ),
        limited(
            c(
                "too large, known from the fixed header alone",
                V311,
                vec![0x30, 0x14],
                E::PacketTooLarge { size: 22, max: 10 },
                TOO_LARGE,
            ),
            10,
        ),
        limited(
            c(
                "too large by one byte",
                V5,
                pkt(0x30, &cat(&[&s("a/b"), &[0], b"h"])),
                E::PacketTooLarge { size: 9, max: 8 },
                TOO_LARGE,
            ),
            8,
        ),
        limited(
            c(
                "too large with a two-byte remaining length",
                V5,
                vec![0x10, 0x80, 0x08],
                E::PacketTooLarge {
                    size: 1027,
                    max: 1000,
                },
                TOO_LARGE,
            ),
            1000,
        ),
        // ---- reserved fixed-header flags [MQTT-2.1.3-1] -------------------------------------
        c(
            "CONNECT flags 0001",
            V311,
            pkt(0x11, &cat(&[&s("MQTT"), &[4, 2, 0, 60], &s("c")])),
            flags(T::Connect, 1),
            MALFORMED,
        ),
        c(
            "CONNACK flags 0001",
            V311,
            vec![0x21, 0x02, 0x00, 0x00],
            flags(T::ConnAck, 1),
            MALFORMED,
        ),
        c(
            "PUBACK flags 0010",
            V5,
            vec![0x42, 0x02, 0x00, 0x01],
            flags(T::PubAck, 2),
            MALFORMED,
        ),
        c(
            "PUBREC flags 0001",
            V311,
            vec![0x51, 0x02, 0x00, 0x01],
            flags(T::PubRec, 1),
            MALFORMED,
        ),
        c(
            "PUBREL flags 0000 (must be 0010)",
            V311,
            vec![0x60, 0x02, 0x00, 0x01],
            flags(T::PubRel, 0),
            MALFORMED,
        ),
        c(
            "PUBREL flags 0011",
            V31,
            vec![0x63, 0x02, 0x00, 0x01],
            flags(T::PubRel, 3),
            MALFORMED,
        ),
        c(
            "PUBCOMP flags 1000",
            V5,
            vec![0x78, 0x02, 0x00, 0x01],
            flags(T::PubComp, 8),
            MALFORMED,
        ),
        c(
            "SUBSCRIBE flags 0000 (must be 0010)",
            V311,
            pkt(0x80, &cat(&[&[0, 1], &s("a"), &[0]])),
            flags(T::Subscribe, 0),
            MALFORMED,
        ),
        c(
            "SUBACK flags 0010",
            V5,
            vec![0x92, 0x04, 0x00, 0x01, 0x00, 0x00],
            flags(T::SubAck, 2),
            MALFORMED,
        ),
        c(
            "UNSUBSCRIBE flags 0000 (must be 0010)",
            V5,
            pkt(0xA0, &cat(&[&[0, 1, 0], &s("a")])),
            flags(T::Unsubscribe, 0),
            MALFORMED,
        ),
        c(
            "UNSUBACK flags 0001",
            V311,
            vec![0xB1, 0x02, 0x00, 0x01],
            flags(T::UnsubAck, 1),
            MALFORMED,
        ),
        c(
            "PINGREQ flags 0001",
            V311,
            vec![0xC1, 0x00],
            flags(T::PingReq, 1),
            MALFORMED,
        ),
        c(
            "PINGRESP flags 0100",
            V5,
            vec![0xD4, 0x00],
            flags(T::PingResp, 4),
            MALFORMED,
        ),
        c(
            "DISCONNECT flags 0010",
            V311,
            vec![0xE2, 0x00],
            flags(T::Disconnect, 2),
            MALFORMED,
        ),
        c(
            "AUTH flags 0001",
            V5,
            vec![0xF1, 0x00],
            flags(T::Auth, 1),
            MALFORMED,
        ),
        // ---- truncated fields ----------------------------------------------------------------
        c(
            "PUBACK with one byte of packet id",
            V311,
            vec![0x40, 0x01, 0x00],
            trunc(T::PubAck, "packet identifier"),
            MALFORMED,
        ),
        c(
            "CONNECT protocol name longer than the packet",
            V311,
            vec![0x10, 0x03, 0x00, 0x04, 0x4D],
            trunc(T::Connect, "protocol name"),
            MALFORMED,
        ),
        c(
            "CONNECT without protocol level",
            V5,
            pkt(0x10, &s("MQTT")),
            trunc(T::Connect, "protocol level"),
            MALFORMED,
        ),
        c(
            "CONNECT without keep alive",
            V311,
            pkt(0x10, &cat(&[&s("MQTT"), &[4, 2]])),
            trunc(T::Connect, "keep alive"),
            MALFORMED,
        ),
        c(
            "PUBLISH topic length past the end",
            V311,
            vec![0x30, 0x03, 0x00, 0x05, 0x61],
            trunc(T::Publish, "topic name"),
            MALFORMED,
        ),
        c(
            "QoS 1 PUBLISH without packet id",
            V311,
            pkt(0x32, &s("a/b")),
            trunc(T::Publish, "packet identifier"),
            MALFORMED,
        ),
        c(
            "SUBSCRIBE filter without its options byte",
            V311,
            pkt(0x82, &cat(&[&[0, 1], &s("a")])),
            trunc(T::Subscribe, "subscription options"),
            MALFORMED,
        ),
        c(
            "v5 CONNACK without reason code",
            V5,
            vec![0x20, 0x01, 0x00],
            trunc(T::ConnAck, "reason code"),
            MALFORMED,
        ),
        c(
            "v5 CONNACK without property length",
            V5,
            vec![0x20, 0x02, 0x00, 0x00],
            trunc(T::ConnAck, "property length"),
            MALFORMED,
        ),
        c(
            "v5 SUBSCRIBE without property length",
            V5,
            vec![0x82, 0x02, 0x00, 0x01],
            trunc(T::Subscribe, "property length"),
            MALFORMED,
        ),
        c(
            "property value cut by the end of the property block",
            V5,
            pkt(0x30, &cat(&[&s("t"), &[0x02, 0x02, 0x00]])),
            trunc(T::Publish, "property value"),
            MALFORMED,
        ),
        c(
            "user property without its value",
            V5,
            puback5(0x00, &cat(&[&[0x26], &s("k")])),
            trunc(T::PubAck, "user property value"),
            MALFORMED,
        ),
        c(
            "3.1 CONNECT with will flag and no will topic",
            V31,
            connect31(0x06, &s("c1")),
            trunc(T::Connect, "topic name"),
            MALFORMED,
        ),
        c(
            "CONNECT with user name flag and no user name",
            V311,
            connect311(0x82, &s("c1")),
            trunc(T::Connect, "user name"),
            MALFORMED,
        ),
        c(
            "v5 CONNECT without will payload",
            V5,
            connect5(0x06, &[], &cat(&[&s("c1"), &[0], &s("w")])),
            trunc(T::Connect, "will payload"),
            MALFORMED,
        ),
        // ---- trailing bytes ------------------------------------------------------------------
        c(
            "3.1.1 PUBACK with a reason code byte",
            V311,
            vec![0x40, 0x03, 0x00, 0x01, 0x00],
            trailing(T::PubAck, 1),
            MALFORMED,
        ),
        c(
            "PINGREQ with a body",
            V311,
            vec![0xC0, 0x01, 0x00],
            trailing(T::PingReq, 1),
            MALFORMED,
        ),
        c(
            "3.1.1 DISCONNECT with a body",
            V311,
            vec![0xE0, 0x02, 0x00, 0x00],
            trailing(T::Disconnect, 2),
            MALFORMED,
        ),
        c(
            "CONNECT with a byte after the last field",
            V311,
            connect311(0x02, &cat(&[&s("c1"), &[0xFF]])),
            trailing(T::Connect, 1),
            MALFORMED,
        ),
        c(
            "v5 PUBACK with a byte after the properties",
            V5,
            vec![0x40, 0x05, 0x00, 0x01, 0x00, 0x00, 0xFF],
            trailing(T::PubAck, 1),
            MALFORMED,
        ),
        c(
            "v5 CONNACK with a byte after the properties",
            V5,
            vec![0x20, 0x04, 0x00, 0x00, 0x00, 0xFF],
            trailing(T::ConnAck, 1),
            MALFORMED,
        ),
        c(
            "PINGRESP with a body",
            V5,
            vec![0xD0, 0x01, 0x00],
            trailing(T::PingResp, 1),
            MALFORMED,
        ),
        c(
            "3.1 UNSUBACK with a payload",
            V31,
            vec![0xB0, 0x03, 0x00, 0x01, 0x00],
            trailing(T::UnsubAck, 1),
            MALFORMED,
        ),
        c(
            "3.1 CONNACK of three bytes",
            V31,
            vec![0x20, 0x03, 0x00, 0x00, 0x00],
            trailing(T::ConnAck, 1),
            MALFORMED,
        ),
        // ---- ill-formed UTF-8 [MQTT-1.5.4-1] -------------------------------------------------
        c(
            "topic with an encoded surrogate U+D800 (ED A0 80)",
            V311,
            pkt(0x30, &cat(&[&raw(&[0xED, 0xA0, 0x80]), b"x"])),
            E::InvalidUtf8 { what: "topic name" },
            MALFORMED,
        ),
        c(
            "topic with an overlong '/' (C0 AF)",
            V311,
            pkt(0x30, &raw(&[0x61, 0xC0, 0xAF])),
            E::InvalidUtf8 { what: "topic name" },
            MALFORMED,
        ),
        c(
            "topic with an overlong three-byte '/' (E0 80 AF)",
            V5,
            pkt(0x30, &cat(&[&raw(&[0xE0, 0x80, 0xAF]), &[0]])),
            E::InvalidUtf8 { what: "topic name" },
            MALFORMED,
        ),
        c(
            "client id with an overlong U+0000 (C0 80)",
            V5,
            connect5(0x02, &[], &raw(&[0xC0, 0x80])),
            E::InvalidUtf8 {
                what: "client identifier",
            },
            MALFORMED,
        ),
        c(
            "topic filter with byte FF",
            V311,
            pkt(0x82, &cat(&[&[0, 1], &raw(&[0xFF]), &[0]])),
            E::InvalidUtf8 {
                what: "topic filter",
            },
            MALFORMED,
        ),
        c(
            "user property name that is a lone continuation byte",
            V5,
            publish5(&cat(&[&[0x26], &raw(&[0x80]), &s("v")])),
            E::InvalidUtf8 {
                what: "user property name",
            },
            MALFORMED,
        ),
        c(
            "user name with an encoded surrogate U+DFFF (ED BF BF)",
            V311,
            connect311(0x82, &cat(&[&s("c1"), &raw(&[0xED, 0xBF, 0xBF])])),
            E::InvalidUtf8 { what: "user name" },
            MALFORMED,
        ),
        c(
            "reason string with a cut sequence (E2 82)",
            V5,
            puback5(0x80, &cat(&[&[0x1F], &raw(&[0xE2, 0x82])])),
            E::InvalidUtf8 {
                what: "reason string",
            },
            MALFORMED,
        ),
        c(
            "content type above U+10FFFF (F4 90 80 80)",
            V5,
            publish5(&cat(&[&[0x03], &raw(&[0xF4, 0x90, 0x80, 0x80])])),
            E::InvalidUtf8 {
                what: "content type",
            },
            MALFORMED,
        ),
        c(
            "protocol name that is not UTF-8",
            V311,
            pkt(0x10, &cat(&[&raw(&[0x4D, 0xFF]), &[4, 2, 0, 0], &s("")])),
            E::InvalidUtf8 {
                what: "protocol name",
            },
            MALFORMED,
        ),
        // ---- U+0000 [MQTT-1.5.4-2] -----------------------------------------------------------
        c(
            "topic name with U+0000",
            V311,
            pkt(0x30, &raw(b"a\0")),
            E::InvalidTopicName(TopicError::NullCharacter),
            NAME_INVALID,
        ),
        c(
            "will topic with U+0000",
            V31,
            connect31(0x06, &cat(&[&s("c1"), &raw(b"w\0"), &s("x")])),
            E::InvalidTopicName(TopicError::NullCharacter),
            NAME_INVALID,
        ),
        c(
            "client id with U+0000",
            V5,
            connect5(0x02, &[], &raw(b"c\0")),
            E::NullCharacter {
                what: "client identifier",
            },
            MALFORMED,
        ),
        c(
            "topic filter with U+0000",
            V311,
            pkt(0x82, &cat(&[&[0, 1], &raw(b"a\0"), &[1]])),
            E::InvalidTopicFilter(TopicError::NullCharacter),
            FILTER_INVALID,
        ),
        c(
            "user property value with U+0000",
            V5,
            publish5(&cat(&[&[0x26], &s("k"), &raw(b"\0")])),
            E::NullCharacter {
                what: "user property value",
            },
            MALFORMED,
        ),
        // ---- QoS 3 [MQTT-3.3.1-4] ------------------------------------------------------------
        c(
            "PUBLISH QoS 3",
            V311,
            pkt(0x36, &cat(&[&s("t"), &[0, 1]])),
            E::InvalidQoS,
            MALFORMED,
        ),
        c(
            "PUBLISH QoS 3 with DUP",
            V5,
            pkt(0x3E, &cat(&[&s("t"), &[0, 1, 0]])),
            E::InvalidQoS,
            MALFORMED,
        ),
        c(
            "will QoS 3",
            V311,
            connect311(0x1E, &cat(&[&s("c1"), &s("w"), &s("x")])),
            E::InvalidQoS,
            MALFORMED,
        ),
        c(
            "subscription QoS 3 (3.1.1)",
            V311,
            pkt(0x82, &cat(&[&[0, 1], &s("a"), &[3]])),
            E::InvalidSubscriptionQoS,
            PROTOCOL,
        ),
        c(
            "subscription QoS 3 (5.0)",
            V5,
            subscribe5(&[], "a", 0x03),
            E::InvalidSubscriptionQoS,
            PROTOCOL,
        ),
        // ---- DUP on QoS 0 [MQTT-3.3.1-2] -----------------------------------------------------
        c(
            "DUP on a QoS 0 PUBLISH",
            V311,
            pkt(0x38, &s("t")),
            E::DupWithQoS0,
            MALFORMED,
        ),
        c(
            "DUP and RETAIN on a QoS 0 PUBLISH",
            V5,
            pkt(0x39, &cat(&[&s("t"), &[0]])),
            E::DupWithQoS0,
            MALFORMED,
        ),
        // ---- packet identifier 0 [MQTT-2.2.1-3] ----------------------------------------------
        c(
            "QoS 1 PUBLISH with packet id 0",
            V311,
            pkt(0x32, &cat(&[&s("t"), &[0, 0]])),
            E::ZeroPacketId { packet: T::Publish },
            MALFORMED,
        ),
        c(
            "QoS 2 PUBLISH with packet id 0",
            V5,
            pkt(0x34, &cat(&[&s("t"), &[0, 0, 0]])),
            E::ZeroPacketId { packet: T::Publish },
            MALFORMED,
        ),
        c(
            "PUBACK with packet id 0",
            V5,
            vec![0x40, 0x02, 0x00, 0x00],
            E::ZeroPacketId { packet: T::PubAck },
            MALFORMED,
        ),
        c(
            "PUBREL with packet id 0",
            V31,
            vec![0x62, 0x02, 0x00, 0x00],
            E::ZeroPacketId { packet: T::PubRel },
            MALFORMED,
        ),
        c(
            "SUBSCRIBE with packet id 0",
            V311,
            pkt(0x82, &cat(&[&[0, 0], &s("a"), &[0]])),
            E::ZeroPacketId {
                packet: T::Subscribe,
            },
            MALFORMED,
        ),
        c(
            "SUBACK with packet id 0",
            V5,
            vec![0x90, 0x04, 0x00, 0x00, 0x00, 0x00],
            E::ZeroPacketId { packet: T::SubAck },
            MALFORMED,
        ),
        c(
            "UNSUBSCRIBE with packet id 0",
            V5,
            pkt(0xA2, &cat(&[&[0, 0, 0], &s("a")])),
            E::ZeroPacketId {
                packet: T::Unsubscribe,
            },
            MALFORMED,
        ),
        // ---- topic names ---------------------------------------------------------------------
        c(
            "PUBLISH to a topic with '+'",
            V311,
            pkt(0x30, &s("a/+")),
            E::InvalidTopicName(TopicError::WildcardInName),
            NAME_INVALID,
        ),
        c(
            "PUBLISH to '#'",
            V5,
            pkt(0x30, &cat(&[&s("#"), &[0]])),
            E::InvalidTopicName(TopicError::WildcardInName),
            NAME_INVALID,
        ),
        c(
            "will topic with '#'",
            V311,
            connect311(0x06, &cat(&[&s("c1"), &s("a/#"), &s("")])),
            E::InvalidTopicName(TopicError::WildcardInName),
            NAME_INVALID,
        ),
        c(
            "response topic with '+' [MQTT-3.3.2-14]",
            V5,
            publish5(&cat(&[&[0x08], &s("r/+")])),
            E::InvalidTopicName(TopicError::WildcardInName),
            NAME_INVALID,
        ),
        c(
            "empty topic name in 3.1.1",
            V311,
            pkt(0x30, &cat(&[&s(""), b"x"])),
            E::InvalidTopicName(TopicError::Empty),
            NAME_INVALID,
        ),
        c(
            "empty will topic in 5.0",
            V5,
            connect5(0x06, &[], &cat(&[&s("c"), &[0], &s(""), &s("")])),
            E::InvalidTopicName(TopicError::Empty),
            NAME_INVALID,
        ),
        c(
            "empty topic name without topic alias (5.0)",
            V5,
            pkt(0x30, &cat(&[&s(""), &[0]])),
            E::EmptyTopicWithoutAlias,
            NAME_INVALID,
        ),
        c(
            "topic alias 0 [MQTT-3.3.2-8]",
            V5,
            publish5(&[0x23, 0x00, 0x00]),
            E::TopicAliasZero,
            ALIAS_INVALID,
        ),
        // ---- topic filters -------------------------------------------------------------------
        c(
            "filter with '#' not last",
            V311,
            pkt(0x82, &cat(&[&[0, 1], &s("a/#/b"), &[0]])),
            E::InvalidTopicFilter(TopicError::MultiLevelWildcardPosition),
            FILTER_INVALID,
        ),
        c(
            "filter with '+' inside a level",
            V5,
            subscribe5(&[], "a+", 0),
            E::InvalidTopicFilter(TopicError::SingleLevelWildcardPosition),
            FILTER_INVALID,
        ),
        c(
            "UNSUBSCRIBE of an empty filter",
            V5,
            pkt(0xA2, &cat(&[&[0, 1, 0], &s("")])),
            E::InvalidTopicFilter(TopicError::Empty),
            FILTER_INVALID,
        ),
        c(
            "shared subscription without a filter",
            V5,
            subscribe5(&[], "$share/g", 0),
            E::InvalidTopicFilter(TopicError::InvalidShare),
            FILTER_INVALID,
        ),
        // ---- empty lists ---------------------------------------------------------------------
        c(
            "SUBSCRIBE with no filter (3.1.1)",
            V311,
            vec![0x82, 0x02, 0x00, 0x01],
            E::EmptySubscribe,
            PROTOCOL,
        ),
        c(
            "SUBSCRIBE with no filter (5.0)",
            V5,
            vec![0x82, 0x03, 0x00, 0x01, 0x00],
            E::EmptySubscribe,
            PROTOCOL,
        ),
        c(
            "UNSUBSCRIBE with no filter (3.1.1)",
            V311,
            vec![0xA2, 0x02, 0x00, 0x01],
            E::EmptyUnsubscribe,
            PROTOCOL,
        ),
        c(
            "UNSUBSCRIBE with no filter (5.0)",
            V5,
            vec![0xA2, 0x03, 0x00, 0x01, 0x00],
            E::EmptyUnsubscribe,
            PROTOCOL,
        ),
        c(
            "SUBACK with no return code",
            V311,
            vec![0x90, 0x02, 0x00, 0x01],
            E::EmptyAckPayload { packet: T::SubAck },
            MALFORMED,
        ),
        c(
            "UNSUBACK with no reason code (5.0)",
            V5,
            vec![0xB0, 0x03, 0x00, 0x01, 0x00],
            E::EmptyAckPayload {
                packet: T::UnsubAck,
            },
            MALFORMED,
        ),
        // ---- subscription options ------------------------------------------------------------
        c(
            "3.1.1 subscription option bit 2 (reserved before 5.0)",
            V311,
            pkt(0x82, &cat(&[&[0, 1], &s("a"), &[0x04]])),
            E::ReservedSubscriptionOptions(0x04),
            MALFORMED,
        ),
        c(
            "3.1 subscription option bit 4",
            V31,
            pkt(0x82, &cat(&[&[0, 1], &s("a"), &[0x10]])),
            E::ReservedSubscriptionOptions(0x10),
            MALFORMED,
        ),
        c(
            "5.0 subscription option bit 6",
            V5,
            subscribe5(&[], "a", 0x40),
            E::ReservedSubscriptionOptions(0x40),
            MALFORMED,
        ),
        c(
            "5.0 subscription option bit 7",
            V5,
            subscribe5(&[], "a", 0x81),
            E::ReservedSubscriptionOptions(0x81),
            MALFORMED,
        ),
        c(
            "retain handling 3",
            V5,
            subscribe5(&[], "a", 0x30),
            E::InvalidRetainHandling,
            PROTOCOL,
        ),
        c(
            "no local on a shared subscription [MQTT-3.8.3-4]",
            V5,
            subscribe5(&[], "$share/g/a", 0x04),
            E::NoLocalOnShared,
            PROTOCOL,
        ),
        // ---- CONNECT -------------------------------------------------------------------------
        c(
            "protocol name MQTX",
            V311,
            pkt(0x10, &cat(&[&s("MQTX"), &[4, 2, 0, 60], &s("c")])),
            E::InvalidProtocolName("MQTX".to_owned()),
            UNSUPPORTED,
        ),
        c(
            "protocol name in lower case",
            V5,
            pkt(0x10, &cat(&[&s("mqtt"), &[5, 2, 0, 60, 0], &s("c")])),
            E::InvalidProtocolName("mqtt".to_owned()),
            UNSUPPORTED,
        ),
        c(
            "MQIsdp with level 4",
            V31,
            pkt(0x10, &cat(&[&s("MQIsdp"), &[4, 2, 0, 60], &s("c")])),
            E::UnsupportedProtocolLevel(4),
            UNSUPPORTED,
        ),
        c(
            "MQTT with level 3",
            V311,
            pkt(0x10, &cat(&[&s("MQTT"), &[3, 2, 0, 60], &s("c")])),
            E::UnsupportedProtocolLevel(3),
            UNSUPPORTED,
        ),
        c(
            "MQTT with level 6",
            V5,
            pkt(0x10, &cat(&[&s("MQTT"), &[6, 2, 0, 60, 0], &s("c")])),
            E::UnsupportedProtocolLevel(6),
            UNSUPPORTED,
        ),
        c(
            "reserved CONNECT flag (3.1.1)",
            V311,
            connect311(0x03, &s("c")),
            E::ConnectReservedFlag,
            MALFORMED,
        ),
        c(
            "reserved CONNECT flag (5.0)",
            V5,
            connect5(0x01, &[], &s("c")),
            E::ConnectReservedFlag,
            MALFORMED,
        ),
        c(
            "will retain without will flag",
            V311,
            connect311(0x22, &s("c")),
            E::WillFlagsWithoutWill,
            MALFORMED,
        ),
        c(
            "will QoS 1 without will flag",
            V5,
            connect5(0x0A, &[], &s("c")),
            E::WillFlagsWithoutWill,
            MALFORMED,
        ),
        c(
            "password without user name (3.1.1) [MQTT-3.1.2-22]",
            V311,
            connect311(0x42, &cat(&[&s("c1"), &s("pw")])),
            E::PasswordWithoutUsername,
            MALFORMED,
        ),
        c(
            "password without user name (3.1)",
            V31,
            connect31(0x40, &cat(&[&s("c1"), &s("pw")])),
            E::PasswordWithoutUsername,
            MALFORMED,
        ),
        // ---- CONNACK -------------------------------------------------------------------------
        c(
            "CONNACK acknowledge flag bit 1",
            V311,
            vec![0x20, 0x02, 0x02, 0x00],
            E::ConnAckReservedFlags(0x02),
            MALFORMED,
        ),
        c(
            "CONNACK acknowledge flag bit 7 (5.0)",
            V5,
            vec![0x20, 0x03, 0x80, 0x00, 0x00],
            E::ConnAckReservedFlags(0x80),
            MALFORMED,
        ),
        c(
            "3.1.1 CONNACK return code 6",
            V311,
            vec![0x20, 0x02, 0x00, 0x06],
            bad_reason(T::ConnAck, 6),
            MALFORMED,
        ),
        c(
            "3.1 CONNACK return code 0x80",
            V31,
            vec![0x20, 0x02, 0x00, 0x80],
            bad_reason(T::ConnAck, 0x80),
            MALFORMED,
        ),
        c(
            "5.0 CONNACK reason 0x04",
            V5,
            vec![0x20, 0x03, 0x00, 0x04, 0x00],
            bad_reason(T::ConnAck, 0x04),
            MALFORMED,
        ),
        // ---- reason codes not allowed in the packet (§2.4) -----------------------------------
        c(
            "PUBACK reason 0x92",
            V5,
            vec![0x40, 0x03, 0x00, 0x01, 0x92],
            bad_reason(T::PubAck, 0x92),
            MALFORMED,
        ),
        c(
            "PUBREC reason 0x03 (undefined)",
            V5,
            vec![0x50, 0x03, 0x00, 0x01, 0x03],
            bad_reason(T::PubRec, 0x03),
            MALFORMED,
        ),
        c(
            "PUBREL reason 0x10",
            V5,
            vec![0x62, 0x03, 0x00, 0x01, 0x10],
            bad_reason(T::PubRel, 0x10),
            MALFORMED,
        ),
        c(
            "PUBCOMP reason 0x80",
            V5,
            vec![0x70, 0x03, 0x00, 0x01, 0x80],
            bad_reason(T::PubComp, 0x80),
            MALFORMED,
        ),
        c(
            "SUBACK reason 0x11",
            V5,
            vec![0x90, 0x04, 0x00, 0x01, 0x00, 0x11],
            bad_reason(T::SubAck, 0x11),
            MALFORMED,
        ),
        c(
            "3.1.1 SUBACK return code 3",
            V311,
            vec![0x90, 0x03, 0x00, 0x01, 0x03],
            bad_reason(T::SubAck, 0x03),
            MALFORMED,
        ),
        c(
            "UNSUBACK reason 0x02",
            V5,
            vec![0xB0, 0x04, 0x00, 0x01, 0x00, 0x02],
            bad_reason(T::UnsubAck, 0x02),
            MALFORMED,
        ),
        c(
            "DISCONNECT reason 0x84",
            V5,
            vec![0xE0, 0x01, 0x84],
            bad_reason(T::Disconnect, 0x84),
            MALFORMED,
        ),
        c(
            "AUTH reason 0x01",
            V5,
            vec![0xF0, 0x01, 0x01],
            bad_reason(T::Auth, 0x01),
            MALFORMED,
        ),
        // ---- properties: duplicates [MQTT-2.2.2-2] -------------------------------------------
        c(
            "message expiry twice",
            V5,
            publish5(&[0x02, 0, 0, 0, 1, 0x02, 0, 0, 0, 2]),
            E::DuplicateProperty {
                packet: T::Publish,
                id: 0x02,
            },
            PROTOCOL,
        ),
        c(
            "subscription identifier twice in SUBSCRIBE",
            V5,
            subscribe5(&[0x0B, 0x01, 0x0B, 0x02], "a", 0),
            E::DuplicateProperty {
                packet: T::Subscribe,
                id: 0x0B,
            },
            PROTOCOL,
        ),
        c(
            "receive maximum twice",
            V5,
            connect5(0x02, &[0x21, 0, 1, 0x21, 0, 2], &s("c")),
            E::DuplicateProperty {
                packet: T::Connect,
                id: 0x21,
            },
            PROTOCOL,
        ),
        c(
            "reason string twice",
            V5,
            puback5(0x00, &cat(&[&[0x1F], &s("a"), &[0x1F], &s("b")])),
            E::DuplicateProperty {
                packet: T::PubAck,
                id: 0x1F,
            },
            PROTOCOL,
        ),
        c(
            "will delay interval twice",
            V5,
            connect5(
                0x06,
                &[],
                &cat(&[
                    &s("c"),
                    &props(&[0x18, 0, 0, 0, 1, 0x18, 0, 0, 0, 2]),
                    &s("w"),
                    &s(""),
                ]),
            ),
            E::DuplicateProperty {
                packet: T::Connect,
                id: 0x18,
            },
            PROTOCOL,
        ),
        // ---- properties: unknown and not allowed ---------------------------------------------
        c(
            "unknown property 0x05",
            V5,
            publish5(&[0x05, 0x00]),
            E::UnknownProperty(0x05),
            MALFORMED,
        ),
        c(
            "unknown property 0x00",
            V5,
            pkt(0x20, &cat(&[&[0, 0], &props(&[0x00, 0x00])])),
            E::UnknownProperty(0x00),
            MALFORMED,
        ),
        c(
            "unknown property 0x7F",
            V5,
            puback5(0x00, &[0x7F]),
            E::UnknownProperty(0x7F),
            MALFORMED,
        ),
        c(
            "two-byte property identifier 128",
            V5,
            publish5(&[0x80, 0x01, 0x00]),
            E::UnknownProperty(0x80),
            MALFORMED,
        ),
        c(
            "topic alias in CONNECT",
            V5,
            connect5(0x02, &[0x23, 0x00, 0x01], &s("c")),
            E::PropertyNotAllowed {
                packet: T::Connect,
                id: 0x23,
            },
            MALFORMED,
        ),
        c(
            "will delay interval among CONNECT properties",
            V5,
            connect5(0x02, &[0x18, 0, 0, 0, 1], &s("c")),
            E::PropertyNotAllowed {
                packet: T::Connect,
                id: 0x18,
            },
            MALFORMED,
        ),
        c(
            "session expiry among will properties",
            V5,
            connect5(
                0x06,
                &[],
                &cat(&[&s("c"), &props(&[0x11, 0, 0, 0, 1]), &s("w"), &s("")]),
            ),
            E::PropertyNotAllowed {
                packet: T::Connect,
                id: 0x11,
            },
            MALFORMED,
        ),
        c(
            "session expiry in PUBLISH",
            V5,
            publish5(&[0x11, 0, 0, 0, 1]),
            E::PropertyNotAllowed {
                packet: T::Publish,
                id: 0x11,
            },
            MALFORMED,
        ),
        c(
            "maximum QoS in PUBACK",
            V5,
            puback5(0x00, &[0x24, 0x01]),
            E::PropertyNotAllowed {
                packet: T::PubAck,
                id: 0x24,
            },
            MALFORMED,
        ),
        c(
            "reason string in SUBSCRIBE",
            V5,
            subscribe5(&cat(&[&[0x1F], &s("r")]), "a", 0),
            E::PropertyNotAllowed {
                packet: T::Subscribe,
                id: 0x1F,
            },
            MALFORMED,
        ),
        c(
            "subscription identifier in UNSUBSCRIBE",
            V5,
            pkt(0xA2, &cat(&[&[0, 1], &props(&[0x0B, 0x01]), &s("a")])),
            E::PropertyNotAllowed {
                packet: T::Unsubscribe,
                id: 0x0B,
            },
            MALFORMED,
        ),
        c(
            "server reference in AUTH",
            V5,
            pkt(0xF0, &cat(&[&[0x18], &props(&cat(&[&[0x1C], &s("s")]))])),
            E::PropertyNotAllowed {
                packet: T::Auth,
                id: 0x1C,
            },
            MALFORMED,
        ),
        // ---- properties: values out of range -------------------------------------------------
        c(
            "payload format indicator 2",
            V5,
            publish5(&[0x01, 0x02]),
            bad_value(0x01, BOOL_WHY),
            PROTOCOL,
        ),
        c(
            "request problem information 2",
            V5,
            connect5(0x02, &[0x17, 0x02], &s("c")),
            bad_value(0x17, BOOL_WHY),
            PROTOCOL,
        ),
        c(
            "retain available 2",
            V5,
            pkt(0x20, &cat(&[&[0, 0], &props(&[0x25, 0x02])])),
            bad_value(0x25, BOOL_WHY),
            PROTOCOL,
        ),
        c(
            "maximum QoS 2",
            V5,
            pkt(0x20, &cat(&[&[0, 0], &props(&[0x24, 0x02])])),
            bad_value(0x24, "maximum QoS must be 0 or 1"),
            PROTOCOL,
        ),
        c(
            "receive maximum 0 in CONNECT",
            V5,
            connect5(0x02, &[0x21, 0x00, 0x00], &s("c")),
            bad_value(0x21, "receive maximum 0 (v5 §3.1.2.11.3, §3.2.2.3.3)"),
            PROTOCOL,
        ),
        c(
            "receive maximum 0 in CONNACK",
            V5,
            pkt(0x20, &cat(&[&[0, 0], &props(&[0x21, 0x00, 0x00])])),
            bad_value(0x21, "receive maximum 0 (v5 §3.1.2.11.3, §3.2.2.3.3)"),
            PROTOCOL,
        ),
        c(
            "maximum packet size 0",
            V5,
            connect5(0x02, &[0x27, 0, 0, 0, 0], &s("c")),
            bad_value(0x27, "maximum packet size 0"),
            PROTOCOL,
        ),
        c(
            "subscription identifier 0 in SUBSCRIBE",
            V5,
            subscribe5(&[0x0B, 0x00], "a", 0),
            bad_value(
                0x0B,
                "subscription identifier 0 (v5 §3.8.2.1.2): must be 1 to 268,435,455",
            ),
            PROTOCOL,
        ),
        c(
            "subscription identifier 0 in PUBLISH",
            V5,
            publish5(&[0x0B, 0x01, 0x0B, 0x00]),
            bad_value(
                0x0B,
                "subscription identifier 0 (v5 §3.8.2.1.2): must be 1 to 268,435,455",
            ),
            PROTOCOL,
        ),
        // ---- property lengths ----------------------------------------------------------------
        c(
            "subscription identifier of 5 bytes",
            V5,
            publish5(&[0x0B, 0x80, 0x80, 0x80, 0x80, 0x01]),
            E::MalformedVarInt,
            MALFORMED,
        ),
        c(
            "property length of 5 bytes",
            V5,
            pkt(0x90, &[0x00, 0x01, 0x80, 0x80, 0x80, 0x80, 0x01]),
            E::MalformedVarInt,
            MALFORMED,
        ),
        c(
            "PUBACK property length past the end",
            V5,
            vec![0x40, 0x04, 0x00, 0x01, 0x00, 0x05],
            E::PropertyLengthOverflow { packet: T::PubAck },
            MALFORMED,
        ),
        c(
            "CONNECT property length past the end",
            V5,
            pkt(0x10, &cat(&[&s("MQTT"), &[5, 2, 0, 60, 0x10], &s("c")])),
            E::PropertyLengthOverflow { packet: T::Connect },
            MALFORMED,
        ),
        c(
            "DISCONNECT property length past the end",
            V5,
            vec![0xE0, 0x02, 0x00, 0x01],
            E::PropertyLengthOverflow {
                packet: T::Disconnect,
            },
            MALFORMED,
        ),
    ]
}

#[test]
fn every_malformed_case_fails_as_specified() {
    let mut failures = Vec::new();
    for case in cases() {
        let limits = Limits {
            max_packet_size: case.max_packet_size,
        };
        let mut buf = BytesMut::from(&case.bytes[..]);
        let got = decode(&mut buf, case.version, &limits);
        let ok = match &got {
            Err(e) => *e == case.err && e.reason_code().as_u8() == case.rc,
            Ok(_) => false,
        };
        if !ok {
            failures.push(format!(
                "{} ({}): {}\n    want Err({:?}) with reason 0x{:02X}\n    got  {:?}{}",
                case.name,
                case.version,
                hex(&case.bytes),
                case.err,
                case.rc,
                got,
                match &got {
                    Err(e) => format!(" with reason 0x{:02X}", e.reason_code().as_u8()),
                    Ok(_) => String::new(),
                }
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} case(s) failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn the_table_has_at_least_60_distinct_cases() {
    let all = cases();
    assert!(all.len() >= 60, "only {} cases", all.len());
    let mut names = HashSet::new();
    let mut inputs = HashSet::new();
    for case in &all {
        assert!(
            names.insert(case.name),
            "duplicate case name {:?}",
            case.name
        );
        assert!(
            inputs.insert((case.version, case.bytes.clone(), case.max_packet_size)),
            "duplicate input in {:?}",
            case.name
        );
    }
    // Every reason code the decoder can answer with appears at least once.
    let codes: HashSet<u8> = all.iter().map(|c| c.rc).collect();
    for rc in [
        MALFORMED,
        PROTOCOL,
        UNSUPPORTED,
        FILTER_INVALID,
        NAME_INVALID,
        ALIAS_INVALID,
        TOO_LARGE,
    ] {
        assert!(codes.contains(&rc), "no case for reason 0x{rc:02X}");
    }
    // And every version is covered.
    for v in ProtocolVersion::ALL {
        assert!(all.iter().any(|c| c.version == v), "no case for {v}");
    }
}

// ---------------------------------------------------------------------------------------------
// Framing: incomplete input

fn pid(v: u16) -> PacketId {
    PacketId::new(v).unwrap()
}

fn bs(s: &'static str) -> ByteString {
    ByteString::from_static(s)
}

/// A few valid packets per version, including multi-byte remaining lengths and properties.
fn valid_packets(v: ProtocolVersion) -> Vec<Packet> {
    let mut connect = Connect {
        protocol: v,
        clean_start: true,
        keep_alive: 30,
        client_id: ClientId::new("client"),
        will: Some(Will {
            topic: TopicName::new("will/topic").unwrap(),
            payload: Bytes::from_static(b"gone"),
            qos: QoS::AtLeastOnce,
            retain: false,
            properties: WillProperties::default(),
        }),
        username: Some(bs("user")),
        password: Some(Bytes::from_static(b"secret")),
        properties: ConnectProperties::default(),
    };
    let mut publish = Publish {
        dup: false,
        qos: QoS::ExactlyOnce,
        retain: true,
        topic: TopicName::new("a/b/c").unwrap(),
        packet_id: Some(pid(513)),
        properties: PublishProperties::default(),
        payload: Bytes::from(vec![0x5A; 300]),
    };
    let mut suback = SubAck {
        packet_id: pid(2),
        reasons: vec![ReasonCode::GrantedQoS1, ReasonCode::UnspecifiedError],
        properties: AckProperties::default(),
    };
    if v.is_v5() {
        connect.properties.session_expiry_interval = Some(60);
        connect.properties.user_properties = vec![(bs("k"), bs("v"))];
        if let Some(w) = &mut connect.will {
            w.properties.message_expiry_interval = Some(9);
        }
        publish.properties.subscription_identifiers = vec![7, 70_000];
        publish.properties.user_properties = vec![(bs("a"), bs("b"))];
        suback.properties.reason_string = Some(bs("why"));
    }
    let mut out = vec![
        Packet::Connect(Box::new(connect)),
        Packet::ConnAck(ConnAck {
            session_present: false,
            reason: ReasonCode::Success,
            properties: ConnAckProperties::default(),
        }),
        Packet::Publish(publish),
        Packet::PubRel(PubAck::new(pid(513))),
        Packet::Subscribe(Subscribe {
            packet_id: pid(2),
            filters: vec![(
                TopicFilter::new("x/+/#").unwrap(),
                SubscriptionOptions::default(),
            )],
            properties: SubscribeProperties::default(),
        }),
        Packet::SubAck(suback),
        Packet::Unsubscribe(Unsubscribe {
            packet_id: pid(3),
            filters: vec![TopicFilter::new("x/+/#").unwrap()],
            properties: Vec::new(),
        }),
        Packet::PingReq,
        Packet::Disconnect(Disconnect::default()),
    ];
    if v.is_v5() {
        out.push(Packet::Auth(Auth {
            reason: ReasonCode::ContinueAuthentication,
            properties: AuthProperties {
                authentication_method: Some(bs("m")),
                ..Default::default()
            },
        }));
        out.push(Packet::PubAck(PubAck {
            packet_id: pid(9),
            reason: ReasonCode::NoMatchingSubscribers,
            properties: AckProperties::default(),
        }));
    }
    out
}

#[test]
fn every_strict_prefix_is_incomplete_and_consumes_nothing() {
    for v in ProtocolVersion::ALL {
        for p in valid_packets(v) {
            let mut whole = BytesMut::new();
            encode(&p, v, &mut whole).unwrap();
            for cut in 0..whole.len() {
                let prefix = &whole[..cut];
                let mut buf = BytesMut::from(prefix);
                let got = decode(&mut buf, v, &Limits::default());
                assert_eq!(got, Ok(None), "{v}: prefix of {cut} bytes of {p:?}");
                assert_eq!(&buf[..], prefix, "{v}: Ok(None) changed the buffer");
            }
            let mut buf = whole.clone();
            assert_eq!(decode(&mut buf, v, &Limits::default()), Ok(Some(p.clone())));
            assert!(buf.is_empty());
        }
    }
}

/// The limit counts the whole packet, fixed header included: exactly at the limit is fine,
/// one byte over is PacketTooLarge, and the error comes as soon as the header is known.
#[test]
fn packet_size_limit_is_inclusive_and_early() {
    for v in ProtocolVersion::ALL {
        for p in valid_packets(v) {
            let mut whole = BytesMut::new();
            let n = encode(&p, v, &mut whole).unwrap();
            let exact = Limits { max_packet_size: n };
            let mut buf = whole.clone();
            assert_eq!(decode(&mut buf, v, &exact), Ok(Some(p.clone())));
            let under = Limits {
                max_packet_size: n - 1,
            };
            let mut buf = BytesMut::from(&whole[..]);
            let err = decode(&mut buf, v, &under).unwrap_err();
            assert_eq!(
                err,
                E::PacketTooLarge {
                    size: n,
                    max: n - 1
                }
            );
            assert_eq!(err.reason_code(), ReasonCode::PacketTooLarge);
            // The fixed header alone is enough to know.
            let header_len = 2 + whole[1..].iter().take_while(|b| *b & 0x80 != 0).count();
            let mut head = BytesMut::from(&whole[..header_len]);
            assert_eq!(decode(&mut head, v, &under), Err(err));
        }
    }
}

/// A stream of two packets decodes one at a time, leaving the second intact.
#[test]
fn decode_takes_exactly_one_packet() {
    for v in ProtocolVersion::ALL {
        let packets = valid_packets(v);
        let mut buf = BytesMut::new();
        for p in &packets {
            encode(p, v, &mut buf).unwrap();
        }
        for p in &packets {
            assert_eq!(decode(&mut buf, v, &Limits::default()), Ok(Some(p.clone())));
        }
        assert!(buf.is_empty());
        assert_eq!(decode(&mut buf, v, &Limits::default()), Ok(None));
    }
}
