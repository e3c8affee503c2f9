//! Writes a small seed corpus of valid packets for the fuzz targets:
//! `cargo run --example gen_corpus` (from `fuzz/`) fills `corpus/<target>/`.
//!
//! Each seed is one packet, or a short stream of packets as a connection would see them.

use std::fs;
use std::path::Path;

use bytes::{Bytes, BytesMut};
use quartet_proto::*;

fn topic(s: &str) -> TopicName {
    TopicName::new(s).unwrap()
}

fn filter(s: &str) -> TopicFilter {
    TopicFilter::new(s).unwrap()
}

fn pid(v: u16) -> PacketId {
    PacketId::new(v).unwrap()
}

fn connect(protocol: ProtocolVersion, full: bool) -> Packet {
    let mut c = Connect {
        protocol,
        clean_start: true,
        keep_alive: 60,
        client_id: ClientId::new("fuzz-client"),
        will: None,
        username: None,
        password: None,
        properties: ConnectProperties::default(),
    };
    if full {
        c.will = Some(Will {
            topic: topic("clients/fuzz/status"),
            payload: Bytes::from_static(b"offline"),
            qos: QoS::AtLeastOnce,
            retain: true,
            properties: WillProperties::default(),
        });
        c.username = Some("user".into());
        c.password = Some(Bytes::from_static(b"secret"));
        if protocol.is_v5() {
            c.properties.session_expiry_interval = Some(3600);
            c.properties.receive_maximum = Some(20);
            c.properties.topic_alias_maximum = Some(10);
            c.properties.user_properties.push(("k".into(), "v".into()));
            if let Some(w) = &mut c.will {
                w.properties.will_delay_interval = Some(5);
                w.properties.content_type = Some("text/plain".into());
            }
        }
    }
    Packet::Connect(Box::new(c))
}

fn packets(v: ProtocolVersion) -> Vec<Packet> {
    let mut out = vec![
        connect(v, false),
        connect(v, true),
        Packet::ConnAck(ConnAck {
            session_present: false,
            reason: ReasonCode::Success,
            properties: ConnAckProperties::default(),
        }),
        Packet::Publish(Publish {
            dup: false,
            qos: QoS::AtMostOnce,
            retain: false,
            topic: topic("a/b"),
            packet_id: None,
            properties: PublishProperties::default(),
            payload: Bytes::from_static(b"hello"),
        }),
        Packet::Publish(Publish {
            dup: true,
            qos: QoS::ExactlyOnce,
            retain: true,
            topic: topic("sensors/temperature/livingroom"),
            packet_id: Some(pid(7)),
            properties: PublishProperties::default(),
            payload: Bytes::from_static(b"22.5"),
        }),
        Packet::PubAck(PubAck::new(pid(1))),
        Packet::PubRec(PubAck::new(pid(2))),
        Packet::PubRel(PubAck::new(pid(2))),
        Packet::PubComp(PubAck::new(pid(2))),
        Packet::Subscribe(Subscribe {
            packet_id: pid(3),
            filters: vec![
                (filter("a/+/c"), SubscriptionOptions::default()),
                (
                    filter("$share/g/x/#"),
                    SubscriptionOptions {
                        qos: QoS::ExactlyOnce,
                        ..Default::default()
                    },
                ),
            ],
            properties: SubscribeProperties::default(),
        }),
        Packet::SubAck(SubAck {
            packet_id: pid(3),
            reasons: vec![ReasonCode::GrantedQoS1, ReasonCode::UnspecifiedError],
            properties: AckProperties::default(),
        }),
        Packet::Unsubscribe(Unsubscribe {
            packet_id: pid(4),
            filters: vec![filter("a/+/c")],
            properties: Vec::new(),
        }),
        Packet::UnsubAck(UnsubAck {
            packet_id: pid(4),
            reasons: if v.is_v5() {
                vec![ReasonCode::Success]
            } else {
                Vec::new()
            },
            properties: AckProperties::default(),
        }),
        Packet::PingReq,
        Packet::PingResp,
        Packet::Disconnect(Disconnect::default()),
    ];
    if v.is_v5() {
        out.push(Packet::Publish(Publish {
            dup: false,
            qos: QoS::AtLeastOnce,
            retain: false,
            topic: TopicName::empty(),
            packet_id: Some(pid(9)),
            properties: PublishProperties {
                payload_format_indicator: Some(true),
                message_expiry_interval: Some(30),
                topic_alias: Some(3),
                response_topic: Some(topic("reply/here")),
                correlation_data: Some(Bytes::from_static(b"\x01\x02")),
                user_properties: vec![("a".into(), "b".into())],
                subscription_identifiers: vec![1, 300],
                content_type: Some("application/json".into()),
            },
            payload: Bytes::from_static(b"{}"),
        }));
        out.push(Packet::PubAck(PubAck {
            packet_id: pid(5),
            reason: ReasonCode::NoMatchingSubscribers,
            properties: AckProperties {
                reason_string: Some("nobody".into()),
                user_properties: vec![],
            },
        }));
        out.push(Packet::ConnAck(ConnAck {
            session_present: true,
            reason: ReasonCode::Success,
            properties: ConnAckProperties {
                receive_maximum: Some(100),
                maximum_qos: Some(QoS::AtLeastOnce),
                assigned_client_identifier: Some("auto-1".into()),
                topic_alias_maximum: Some(16),
                ..Default::default()
            },
        }));
        out.push(Packet::Subscribe(Subscribe {
            packet_id: pid(6),
            filters: vec![(
                filter("x/#"),
                SubscriptionOptions {
                    qos: QoS::AtLeastOnce,
                    no_local: true,
                    retain_as_published: true,
                    retain_handling: RetainHandling::DoNotSend,
                },
            )],
            properties: SubscribeProperties {
                subscription_identifier: Some(42),
                user_properties: vec![],
            },
        }));
        out.push(Packet::Disconnect(Disconnect {
            reason: ReasonCode::SessionTakenOver,
            properties: DisconnectProperties {
                reason_string: Some("bye".into()),
                ..Default::default()
            },
        }));
        out.push(Packet::Auth(Auth {
            reason: ReasonCode::ContinueAuthentication,
            properties: AuthProperties {
                authentication_method: Some("SCRAM-SHA-1".into()),
                authentication_data: Some(Bytes::from_static(b"abc")),
                ..Default::default()
            },
        }));
    }
    out
}

fn bytes_of(ps: &[Packet], v: ProtocolVersion) -> Vec<u8> {
    let mut b = BytesMut::new();
    for p in ps {
        encode(p, v, &mut b).unwrap();
    }
    b.to_vec()
}

fn write(dir: &Path, name: &str, data: &[u8]) {
    fs::create_dir_all(dir).unwrap();
    fs::write(dir.join(name), data).unwrap();
}

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
    let mut n = 0;
    for (target, v) in [
        ("decode_v31", ProtocolVersion::V31),
        ("decode_v311", ProtocolVersion::V311),
        ("decode_v5", ProtocolVersion::V5),
        ("roundtrip", ProtocolVersion::V5),
    ] {
        let dir = root.join(target);
        let ps = packets(v);
        // roundtrip reads two control bytes first: split in 3-byte pieces, no size limit.
        let prefix: &[u8] = if target == "roundtrip" { &[3, 0] } else { &[] };
        for (i, p) in ps.iter().enumerate() {
            let mut data = prefix.to_vec();
            data.extend(bytes_of(std::slice::from_ref(p), v));
            write(&dir, &format!("seed-{i:02}"), &data);
            n += 1;
        }
        let mut all = prefix.to_vec();
        all.extend(bytes_of(&ps[1..], v));
        write(&dir, "seed-stream", &all);
        n += 1;
    }
    println!("wrote {n} seeds under {}", root.display());
}
