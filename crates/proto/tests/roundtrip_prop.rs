//! Property tests of the codec, per protocol version. They state the same properties as the
//! cargo-fuzz targets in `fuzz/` (`decode_v31`, `decode_v311`, `decode_v5`, `roundtrip`), so
//! that a stable `cargo test` exercises them too:
//!
//! - `roundtrip_*`: every valid packet (v3 without properties, v5 with arbitrary properties)
//!   survives `decode(encode(p)) == p`, consuming the whole buffer, and `encoded_len` is the
//!   number of bytes written;
//! - `cross_version_*`: for every version, `encode` and `encoded_len` agree, and what encodes
//!   is a fixed point of decode-then-encode;
//! - `decode_never_panics_*`: arbitrary bytes (plain, after a valid fixed header, or a valid
//!   packet with a few bytes changed) never panic the decoder; `Ok(None)` consumes nothing,
//!   `Ok(Some)` consumes something, and every packet decoded re-encodes and decodes back equal;
//! - `split_delivery_*`: one or two valid packets delivered split at every byte boundary (and
//!   byte by byte) decode to the same packets; arbitrary bytes delivered in pieces end the same
//!   way as delivered at once.
//!
//! Case counts are kept so the whole file runs in a few seconds in a debug build.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use bytes::{Bytes, BytesMut};
use bytestring::ByteString;
use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;
use proptest::sample::{select, Index};
use proptest::strategy::Union;
use quartet_proto::*;

const V31: ProtocolVersion = ProtocolVersion::V31;
const V311: ProtocolVersion = ProtocolVersion::V311;
const V5: ProtocolVersion = ProtocolVersion::V5;

/// `cases` per property, unless `PROPTEST_CASES` asks for more (for a deeper local run).
fn config(cases: u32) -> ProptestConfig {
    let default = ProptestConfig::default();
    if std::env::var_os("PROPTEST_CASES").is_some() {
        default
    } else {
        ProptestConfig { cases, ..default }
    }
}

// ---------------------------------------------------------------------------------------------
// The checks (the same as fuzz/src/lib.rs)

/// What decoding a buffer gave: the packets, then how it stopped.
#[derive(Debug, PartialEq)]
struct Outcome {
    packets: Vec<Packet>,
    /// `None` when the rest is an incomplete packet, else the error.
    end: Option<DecodeError>,
}

/// Decodes packets until `Ok(None)` or an error, checking the framing promises and
/// round-tripping every packet.
fn decode_stream(data: &[u8], version: ProtocolVersion, limits: &Limits) -> Outcome {
    let mut buf = BytesMut::from(data);
    let mut packets = Vec::new();
    loop {
        let before = buf.clone();
        match decode(&mut buf, version, limits) {
            Ok(Some(p)) => {
                assert!(buf.len() < before.len(), "a packet from no bytes");
                roundtrip(&p, version);
                packets.push(p);
            }
            Ok(None) => {
                assert_eq!(buf, before, "Ok(None) changed the buffer");
                return Outcome { packets, end: None };
            }
            Err(e) => {
                return Outcome {
                    packets,
                    end: Some(e),
                }
            }
        }
    }
}

/// Feeds `data` in the given pieces, decoding everything available after each.
fn decode_pieces<'a>(
    pieces: impl IntoIterator<Item = &'a [u8]>,
    version: ProtocolVersion,
    limits: &Limits,
) -> Outcome {
    let mut buf = BytesMut::new();
    let mut packets = Vec::new();
    for piece in pieces {
        buf.extend_from_slice(piece);
        loop {
            let before = buf.len();
            match decode(&mut buf, version, limits) {
                Ok(Some(p)) => packets.push(p),
                Ok(None) => {
                    assert_eq!(buf.len(), before, "Ok(None) consumed bytes");
                    break;
                }
                Err(e) => {
                    return Outcome {
                        packets,
                        end: Some(e),
                    }
                }
            }
        }
    }
    Outcome { packets, end: None }
}

/// A CONNECT is encoded for the version it carries, anything else for the connection's.
fn wire_version(p: &Packet, version: ProtocolVersion) -> ProtocolVersion {
    match p {
        Packet::Connect(c) => c.protocol,
        _ => version,
    }
}

/// `p` encodes for `version`, `encoded_len` is exact, and the bytes decode back to `p`
/// with nothing left over. Returns the bytes.
fn roundtrip(p: &Packet, version: ProtocolVersion) -> Bytes {
    let mut out = BytesMut::new();
    let n = encode(p, version, &mut out).unwrap_or_else(|e| {
        panic!(
            "does not encode for {}: {e}\n{p:#?}",
            wire_version(p, version)
        )
    });
    assert_eq!(n, out.len(), "encode returned a length other than written");
    assert_eq!(encoded_len(p, version), Ok(n), "encoded_len disagrees");
    let bytes = out.clone().freeze();
    let back = decode(&mut out, version, &Limits::default());
    assert_eq!(back, Ok(Some(p.clone())), "decode(encode(p)) != p");
    assert!(out.is_empty(), "{} bytes left over", out.len());
    bytes
}

/// For every version: `encode` and `encoded_len` agree, a refused encode writes nothing, and
/// what encodes decodes to a packet that encodes to the very same bytes (v3 may map a v5
/// reason code onto a coarser one, so the packet need not be equal; the bytes are a fixed
/// point).
fn cross_version(p: &Packet) {
    for v in ProtocolVersion::ALL {
        let mut out = BytesMut::new();
        let res = encode(p, v, &mut out);
        let len = encoded_len(p, v);
        match (&res, &len) {
            (Ok(n), Ok(m)) => {
                assert_eq!(*n, out.len(), "encode for {v} returned a wrong length");
                assert_eq!(n, m, "encoded_len for {v} disagrees with encode");
            }
            (Err(a), Err(b)) => {
                assert_eq!(a, b, "encode and encoded_len fail differently for {v}");
                assert!(out.is_empty(), "a refused encode for {v} wrote bytes");
                continue;
            }
            _ => panic!("encode {res:?} and encoded_len {len:?} disagree for {v}\n{p:#?}"),
        }
        let first = out.clone().freeze();
        let q = match decode(&mut out, v, &Limits::default()) {
            Ok(Some(q)) => q,
            other => panic!("encoded for {v}, does not decode: {other:?}\n{p:#?}"),
        };
        assert!(out.is_empty(), "decoding for {v} left bytes");
        let mut again = BytesMut::new();
        encode(&q, v, &mut again).unwrap_or_else(|e| panic!("re-encode for {v}: {e}\n{q:#?}"));
        assert_eq!(first, again.freeze(), "{v}: not a fixed point\n{p:#?}");
    }
}

// ---------------------------------------------------------------------------------------------
// Strategies: building blocks

/// MQTT strings: any Unicode but U+0000, sometimes plain ASCII.
fn text() -> impl Strategy<Value = ByteString> {
    prop_oneof!["[a-z0-9]{0,6}", "[^\\x00]{0,4}", Just(String::new()),].prop_map(ByteString::from)
}

fn binary() -> impl Strategy<Value = Bytes> {
    prop_oneof![
        4 => vec(any::<u8>(), 0..24),
        1 => vec(any::<u8>(), 120..400),
    ]
    .prop_map(Bytes::from)
}

fn user_properties() -> impl Strategy<Value = Vec<UserProperty>> {
    vec((text(), text()), 0..3)
}

fn qos() -> impl Strategy<Value = QoS> {
    prop_oneof![
        Just(QoS::AtMostOnce),
        Just(QoS::AtLeastOnce),
        Just(QoS::ExactlyOnce)
    ]
}

fn pid() -> impl Strategy<Value = PacketId> {
    prop_oneof![Just(1u16), Just(u16::MAX), 1u16..=u16::MAX].prop_map(|v| PacketId::new(v).unwrap())
}

fn level() -> impl Strategy<Value = String> {
    prop_oneof!["[a-z]{0,3}", Just("$SYS".to_owned()), "[^\\x00+#/]{1,2}",]
}

fn topic_name() -> impl Strategy<Value = TopicName> {
    vec(level(), 1..4).prop_filter_map("not a topic name", |levels| {
        TopicName::new(levels.join("/")).ok()
    })
}

fn topic_filter() -> impl Strategy<Value = TopicFilter> {
    let filter_level = prop_oneof![3 => level(), 1 => Just("+".to_owned())];
    (
        option::of("[a-z]{1,3}"),
        vec(filter_level, 1..4),
        any::<bool>(),
    )
        .prop_filter_map("not a topic filter", |(share, levels, hash)| {
            let mut f = levels.join("/");
            if hash {
                f.push_str("/#");
            }
            if let Some(group) = share {
                f = format!("$share/{group}/{f}");
            }
            TopicFilter::new(f).ok()
        })
}

/// Every reason code MQTT 5 allows in packet `t`.
fn reason(t: PacketType) -> impl Strategy<Value = ReasonCode> {
    let codes: Vec<ReasonCode> = (0..=255u8)
        .filter_map(ReasonCode::from_u8)
        .filter(|r| r.allowed_in(t))
        .collect();
    select(codes)
}

fn subscription_identifier() -> impl Strategy<Value = u32> {
    prop_oneof![Just(1u32), Just(268_435_455), 1u32..=268_435_455]
}

// ---------------------------------------------------------------------------------------------
// Strategies: v5 properties

fn connect_properties() -> impl Strategy<Value = ConnectProperties> {
    (
        option::of(any::<u32>()),
        option::of(1u16..),
        option::of(1u32..),
        option::of(any::<u16>()),
        option::of(any::<bool>()),
        option::of(any::<bool>()),
        user_properties(),
        option::of(text()),
        option::of(binary()),
    )
        .prop_map(
            |(sei, rm, mps, tam, rri, rpi, user, am, ad)| ConnectProperties {
                session_expiry_interval: sei,
                receive_maximum: rm,
                maximum_packet_size: mps,
                topic_alias_maximum: tam,
                request_response_information: rri,
                request_problem_information: rpi,
                user_properties: user,
                authentication_method: am,
                authentication_data: ad,
            },
        )
}

fn will_properties() -> impl Strategy<Value = WillProperties> {
    (
        option::of(any::<u32>()),
        option::of(any::<bool>()),
        option::of(any::<u32>()),
        option::of(text()),
        option::of(topic_name()),
        option::of(binary()),
        user_properties(),
    )
        .prop_map(|(wdi, pfi, mei, ct, rt, cd, user)| WillProperties {
            will_delay_interval: wdi,
            payload_format_indicator: pfi,
            message_expiry_interval: mei,
            content_type: ct,
            response_topic: rt,
            correlation_data: cd,
            user_properties: user,
        })
}

fn connack_properties() -> impl Strategy<Value = ConnAckProperties> {
    let a = (
        option::of(any::<u32>()),
        option::of(1u16..),
        option::of(prop_oneof![Just(QoS::AtMostOnce), Just(QoS::AtLeastOnce)]),
        option::of(any::<bool>()),
        option::of(1u32..),
        option::of(text()),
        option::of(any::<u16>()),
        option::of(text()),
        user_properties(),
    );
    let b = (
        option::of(any::<bool>()),
        option::of(any::<bool>()),
        option::of(any::<bool>()),
        option::of(any::<u16>()),
        option::of(text()),
        option::of(text()),
        option::of(text()),
        option::of(binary()),
    );
    (a, b).prop_map(
        |((sei, rm, mq, ra, mps, aci, tam, rs, user), (wsa, sia, ssa, ska, ri, sr, am, ad))| {
            ConnAckProperties {
                session_expiry_interval: sei,
                receive_maximum: rm,
                maximum_qos: mq,
                retain_available: ra,
                maximum_packet_size: mps,
                assigned_client_identifier: aci,
                topic_alias_maximum: tam,
                reason_string: rs,
                user_properties: user,
                wildcard_subscription_available: wsa,
                subscription_identifiers_available: sia,
                shared_subscription_available: ssa,
                server_keep_alive: ska,
                response_information: ri,
                server_reference: sr,
                authentication_method: am,
                authentication_data: ad,
            }
        },
    )
}

fn publish_properties() -> impl Strategy<Value = PublishProperties> {
    (
        option::of(any::<bool>()),
        option::of(any::<u32>()),
        option::of(1u16..),
        option::of(topic_name()),
        option::of(binary()),
        user_properties(),
        vec(subscription_identifier(), 0..3),
        option::of(text()),
    )
        .prop_map(|(pfi, mei, ta, rt, cd, user, ids, ct)| PublishProperties {
            payload_format_indicator: pfi,
            message_expiry_interval: mei,
            topic_alias: ta,
            response_topic: rt,
            correlation_data: cd,
            user_properties: user,
            subscription_identifiers: ids,
            content_type: ct,
        })
}

fn ack_properties() -> impl Strategy<Value = AckProperties> {
    (option::of(text()), user_properties()).prop_map(|(rs, user)| AckProperties {
        reason_string: rs,
        user_properties: user,
    })
}

fn disconnect_properties() -> impl Strategy<Value = DisconnectProperties> {
    (
        option::of(any::<u32>()),
        option::of(text()),
        user_properties(),
        option::of(text()),
    )
        .prop_map(|(sei, rs, user, sr)| DisconnectProperties {
            session_expiry_interval: sei,
            reason_string: rs,
            user_properties: user,
            server_reference: sr,
        })
}

fn auth_properties() -> impl Strategy<Value = AuthProperties> {
    (
        option::of(text()),
        option::of(binary()),
        option::of(text()),
        user_properties(),
    )
        .prop_map(|(am, ad, rs, user)| AuthProperties {
            authentication_method: am,
            authentication_data: ad,
            reason_string: rs,
            user_properties: user,
        })
}

// ---------------------------------------------------------------------------------------------
// Strategies: packets

fn will(v5: bool) -> impl Strategy<Value = Will> {
    let props = if v5 {
        will_properties().boxed()
    } else {
        Just(WillProperties::default()).boxed()
    };
    (topic_name(), binary(), qos(), any::<bool>(), props).prop_map(
        |(topic, payload, qos, retain, properties)| Will {
            topic,
            payload,
            qos,
            retain,
            properties,
        },
    )
}

fn connect(version: ProtocolVersion) -> impl Strategy<Value = Packet> {
    let props = if version.is_v5() {
        connect_properties().boxed()
    } else {
        Just(ConnectProperties::default()).boxed()
    };
    (
        any::<bool>(),
        any::<u16>(),
        text(),
        option::of(will(version.is_v5())),
        option::of(text()),
        option::of(binary()),
        props,
    )
        .prop_map(
            move |(clean_start, keep_alive, id, will, username, password, properties)| {
                // 3.1/3.1.1 need a user name for a password [MQTT-3.1.2-22]; 5.0 does not.
                let password = if version.is_v5() || username.is_some() {
                    password
                } else {
                    None
                };
                Packet::Connect(Box::new(Connect {
                    protocol: version,
                    clean_start,
                    keep_alive,
                    client_id: ClientId::new(id),
                    will,
                    username,
                    password,
                    properties,
                }))
            },
        )
}

fn connack(version: ProtocolVersion) -> BoxedStrategy<Packet> {
    if version.is_v5() {
        (
            any::<bool>(),
            reason(PacketType::ConnAck),
            connack_properties(),
        )
            .prop_map(|(session_present, reason, properties)| {
                Packet::ConnAck(ConnAck {
                    session_present,
                    reason,
                    properties,
                })
            })
            .boxed()
    } else {
        let codes = select(vec![
            ReasonCode::Success,
            ReasonCode::UnsupportedProtocolVersion,
            ReasonCode::ClientIdentifierNotValid,
            ReasonCode::ServerUnavailable,
            ReasonCode::BadUserNameOrPassword,
            ReasonCode::NotAuthorized,
        ]);
        // 3.1 has no session-present flag.
        let session_present = any::<bool>().prop_map(move |b| b && version == V311);
        (session_present, codes)
            .prop_map(|(session_present, reason)| {
                Packet::ConnAck(ConnAck {
                    session_present,
                    reason,
                    properties: ConnAckProperties::default(),
                })
            })
            .boxed()
    }
}

fn publish(version: ProtocolVersion) -> impl Strategy<Value = Packet> {
    let props = if version.is_v5() {
        publish_properties().boxed()
    } else {
        Just(PublishProperties::default()).boxed()
    };
    (
        qos(),
        any::<bool>(),
        any::<bool>(),
        topic_name(),
        any::<bool>(),
        pid(),
        props,
        binary(),
    )
        .prop_map(
            |(qos, dup, retain, topic, alias_only, id, properties, payload)| {
                let at_most_once = qos == QoS::AtMostOnce;
                // With a topic alias, a v5 PUBLISH may leave the topic name empty.
                let topic = if alias_only && properties.topic_alias.is_some() {
                    TopicName::empty()
                } else {
                    topic
                };
                Packet::Publish(Publish {
                    dup: dup && !at_most_once,
                    qos,
                    retain,
                    topic,
                    packet_id: (!at_most_once).then_some(id),
                    properties,
                    payload,
                })
            },
        )
}

fn pub_ack(version: ProtocolVersion, t: PacketType) -> impl Strategy<Value = Packet> {
    let body = if version.is_v5() {
        (reason(t), ack_properties()).boxed()
    } else {
        Just((ReasonCode::Success, AckProperties::default())).boxed()
    };
    (pid(), body).prop_map(move |(packet_id, (reason, properties))| {
        let a = PubAck {
            packet_id,
            reason,
            properties,
        };
        match t {
            PacketType::PubAck => Packet::PubAck(a),
            PacketType::PubRec => Packet::PubRec(a),
            PacketType::PubRel => Packet::PubRel(a),
            _ => Packet::PubComp(a),
        }
    })
}

fn subscription_options(version: ProtocolVersion) -> BoxedStrategy<SubscriptionOptions> {
    if version.is_v5() {
        (
            qos(),
            any::<bool>(),
            any::<bool>(),
            select(vec![
                RetainHandling::SendAtSubscribe,
                RetainHandling::SendIfNew,
                RetainHandling::DoNotSend,
            ]),
        )
            .prop_map(
                |(qos, no_local, retain_as_published, retain_handling)| SubscriptionOptions {
                    qos,
                    no_local,
                    retain_as_published,
                    retain_handling,
                },
            )
            .boxed()
    } else {
        qos()
            .prop_map(|qos| SubscriptionOptions {
                qos,
                ..Default::default()
            })
            .boxed()
    }
}

fn subscribe(version: ProtocolVersion) -> impl Strategy<Value = Packet> {
    let props = if version.is_v5() {
        (option::of(subscription_identifier()), user_properties())
            .prop_map(|(id, user)| SubscribeProperties {
                subscription_identifier: id,
                user_properties: user,
            })
            .boxed()
    } else {
        Just(SubscribeProperties::default()).boxed()
    };
    let entry = (topic_filter(), subscription_options(version)).prop_map(|(f, mut o)| {
        // No Local on a shared subscription is a protocol error [MQTT-3.8.3-4].
        o.no_local &= !f.is_shared();
        (f, o)
    });
    (pid(), vec(entry, 1..4), props).prop_map(|(packet_id, filters, properties)| {
        Packet::Subscribe(Subscribe {
            packet_id,
            filters,
            properties,
        })
    })
}

fn suback(version: ProtocolVersion) -> impl Strategy<Value = Packet> {
    let body = if version.is_v5() {
        (vec(reason(PacketType::SubAck), 1..5), ack_properties()).boxed()
    } else {
        let codes = select(vec![
            ReasonCode::GRANTED_QOS0,
            ReasonCode::GrantedQoS1,
            ReasonCode::GrantedQoS2,
            ReasonCode::UnspecifiedError,
        ]);
        (vec(codes, 1..5), Just(AckProperties::default())).boxed()
    };
    (pid(), body).prop_map(|(packet_id, (reasons, properties))| {
        Packet::SubAck(SubAck {
            packet_id,
            reasons,
            properties,
        })
    })
}

fn unsubscribe(version: ProtocolVersion) -> impl Strategy<Value = Packet> {
    let props = if version.is_v5() {
        user_properties().boxed()
    } else {
        Just(Vec::new()).boxed()
    };
    (pid(), vec(topic_filter(), 1..4), props).prop_map(|(packet_id, filters, properties)| {
        Packet::Unsubscribe(Unsubscribe {
            packet_id,
            filters,
            properties,
        })
    })
}

fn unsuback(version: ProtocolVersion) -> impl Strategy<Value = Packet> {
    let body = if version.is_v5() {
        (vec(reason(PacketType::UnsubAck), 1..5), ack_properties()).boxed()
    } else {
        Just((Vec::new(), AckProperties::default())).boxed()
    };
    (pid(), body).prop_map(|(packet_id, (reasons, properties))| {
        Packet::UnsubAck(UnsubAck {
            packet_id,
            reasons,
            properties,
        })
    })
}

fn disconnect(version: ProtocolVersion) -> BoxedStrategy<Packet> {
    if version.is_v5() {
        (reason(PacketType::Disconnect), disconnect_properties())
            .prop_map(|(reason, properties)| Packet::Disconnect(Disconnect { reason, properties }))
            .boxed()
    } else {
        Just(Packet::Disconnect(Disconnect::default())).boxed()
    }
}

fn auth() -> impl Strategy<Value = Packet> {
    (reason(PacketType::Auth), auth_properties())
        .prop_map(|(reason, properties)| Packet::Auth(Auth { reason, properties }))
}

/// Any valid packet of `version`.
fn packet(version: ProtocolVersion) -> BoxedStrategy<Packet> {
    let mut arms = vec![
        connect(version).boxed(),
        connack(version),
        publish(version).boxed(),
        publish(version).boxed(),
        pub_ack(version, PacketType::PubAck).boxed(),
        pub_ack(version, PacketType::PubRec).boxed(),
        pub_ack(version, PacketType::PubRel).boxed(),
        pub_ack(version, PacketType::PubComp).boxed(),
        subscribe(version).boxed(),
        suback(version).boxed(),
        unsubscribe(version).boxed(),
        unsuback(version).boxed(),
        Just(Packet::PingReq).boxed(),
        Just(Packet::PingResp).boxed(),
        disconnect(version),
    ];
    if version.is_v5() {
        arms.push(auth().boxed());
    }
    Union::new(arms).boxed()
}

/// Arbitrary bytes after a well-formed fixed header (any type and flags, a remaining length
/// that matches the body).
fn framed(max_body: usize) -> impl Strategy<Value = Vec<u8>> {
    (any::<u8>(), vec(any::<u8>(), 0..max_body)).prop_map(|(first, body)| {
        let mut out = vec![first];
        let mut len = body.len();
        loop {
            let mut b = (len & 0x7F) as u8;
            len >>= 7;
            if len > 0 {
                b |= 0x80;
            }
            out.push(b);
            if len == 0 {
                break;
            }
        }
        out.extend(body);
        out
    })
}

/// A valid packet's bytes with a few of them replaced (small values are likelier, as flags,
/// lengths and booleans live there).
fn mutated(version: ProtocolVersion) -> impl Strategy<Value = Vec<u8>> {
    let value = prop_oneof![any::<u8>(), 0u8..4, Just(0x80u8), Just(0xFFu8)];
    (packet(version), vec((any::<Index>(), value), 1..4)).prop_map(move |(p, edits)| {
        let mut out = BytesMut::new();
        encode(&p, version, &mut out).unwrap();
        let mut out = out.to_vec();
        for (at, v) in edits {
            let i = at.index(out.len());
            out[i] = v;
        }
        out
    })
}

// ---------------------------------------------------------------------------------------------
// Properties

proptest! {
    #![proptest_config(config(512))]

    #[test]
    fn roundtrip_v31(p in packet(V31)) {
        roundtrip(&p, V31);
    }

    #[test]
    fn roundtrip_v311(p in packet(V311)) {
        roundtrip(&p, V311);
    }

    #[test]
    fn roundtrip_v5(p in packet(V5)) {
        roundtrip(&p, V5);
    }
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn cross_version_v3_packets(p in packet(V311)) {
        cross_version(&p);
    }

    #[test]
    fn cross_version_v5_packets(p in packet(V5)) {
        cross_version(&p);
    }
}

fn never_panics(data: &[u8], version: ProtocolVersion) {
    decode_stream(data, version, &Limits::default());
    // A small limit exercises PacketTooLarge at every header length.
    decode_stream(
        data,
        version,
        &Limits {
            max_packet_size: 16,
        },
    );
}

proptest! {
    #![proptest_config(config(512))]

    #[test]
    fn decode_never_panics_v31(data in vec(any::<u8>(), 0..256)) {
        never_panics(&data, V31);
    }

    #[test]
    fn decode_never_panics_v311(data in vec(any::<u8>(), 0..256)) {
        never_panics(&data, V311);
    }

    #[test]
    fn decode_never_panics_v5(data in vec(any::<u8>(), 0..256)) {
        never_panics(&data, V5);
    }

    #[test]
    fn decode_never_panics_framed_v31(data in framed(64)) {
        never_panics(&data, V31);
    }

    #[test]
    fn decode_never_panics_framed_v311(data in framed(64)) {
        never_panics(&data, V311);
    }

    #[test]
    fn decode_never_panics_framed_v5(data in framed(64)) {
        never_panics(&data, V5);
    }

    #[test]
    fn decode_never_panics_mutated_v31(data in mutated(V31)) {
        never_panics(&data, V31);
    }

    #[test]
    fn decode_never_panics_mutated_v311(data in mutated(V311)) {
        never_panics(&data, V311);
    }

    #[test]
    fn decode_never_panics_mutated_v5(data in mutated(V5)) {
        never_panics(&data, V5);
    }
}

/// One or two valid packets, split at every byte boundary and fed byte by byte, give the same
/// packets as the whole buffer.
fn split_everywhere(packets: &[Packet], version: ProtocolVersion) {
    let mut whole = BytesMut::new();
    for p in packets {
        encode(p, version, &mut whole).unwrap();
    }
    let want = Outcome {
        packets: packets.to_vec(),
        end: None,
    };
    let limits = Limits::default();
    assert_eq!(decode_stream(&whole, version, &limits), want);
    for cut in 0..=whole.len() {
        let (a, b) = whole.split_at(cut);
        assert_eq!(
            decode_pieces([a, b], version, &limits),
            want,
            "split at {cut}"
        );
    }
    assert_eq!(
        decode_pieces(whole.chunks(1), version, &limits),
        want,
        "byte by byte"
    );
}

/// Arbitrary bytes in pieces of `chunk` end as they do delivered at once.
fn same_outcome_in_pieces(data: &[u8], chunk: usize, version: ProtocolVersion, max: usize) {
    let limits = Limits {
        max_packet_size: max,
    };
    let whole = decode_stream(data, version, &limits);
    let split = decode_pieces(data.chunks(chunk.max(1)), version, &limits);
    assert_eq!(
        whole, split,
        "delivery in pieces of {chunk} changed the outcome"
    );
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn split_delivery_v31(packets in vec(packet(V31), 1..=2)) {
        split_everywhere(&packets, V31);
    }

    #[test]
    fn split_delivery_v311(packets in vec(packet(V311), 1..=2)) {
        split_everywhere(&packets, V311);
    }

    #[test]
    fn split_delivery_v5(packets in vec(packet(V5), 1..=2)) {
        split_everywhere(&packets, V5);
    }

    #[test]
    fn split_delivery_same_outcome_v5(
        data in prop_oneof![vec(any::<u8>(), 0..128), framed(64), mutated(V5)],
        chunk in 1usize..16,
        max in prop_oneof![Just(MAX_PACKET_SIZE), 2usize..64],
    ) {
        same_outcome_in_pieces(&data, chunk, V5, max);
    }

    #[test]
    fn split_delivery_same_outcome_v311(
        data in prop_oneof![vec(any::<u8>(), 0..128), framed(64), mutated(V311)],
        chunk in 1usize..16,
        max in prop_oneof![Just(MAX_PACKET_SIZE), 2usize..64],
    ) {
        same_outcome_in_pieces(&data, chunk, V311, max);
    }
}
