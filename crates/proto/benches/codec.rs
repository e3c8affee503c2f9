//! Codec throughput: quartet-proto next to the `mqttbytes` crate on the same packets.
//!
//! Cases: PUBLISH (QoS 1, topic `sensors/temperature/livingroom`) with 64 B and 1 KiB payloads
//! for 3.1.1 and 5.0, and a 3.1.1 CONNECT with client id, user name, password and will. Each is
//! decoded and encoded by both implementations; the setup asserts that both encoders write the
//! very same bytes and that both decoders accept them, so the two sides do identical work.
//!
//! Two groups measure the same thing in two units: `packets` (Throughput::Elements, packets/s)
//! and `bytes` (Throughput::Bytes, wire bytes/s).
//!
//! Decoding consumes its input, so every decode iteration gets a fresh `BytesMut` copy of the
//! packet, made by `iter_batched_ref` outside the timed section, the same way for both sides;
//! the timed section decodes and drops the packet, and the input buffer is freed untimed.
//! Encoding writes into one reused, cleared buffer, again the same for both.
//!
//! Run: `cargo bench -p quartet-proto --bench codec -- --warm-up-time 1 --measurement-time 3`
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;

use bytes::{Bytes, BytesMut};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use mqttbytes::{v4, v5};
use quartet_proto::{
    decode, encode, ClientId, Connect, ConnectProperties, Limits, Packet, PacketId,
    ProtocolVersion, Publish, PublishProperties, QoS, TopicName, Will, WillProperties,
};

const TOPIC: &str = "sensors/temperature/livingroom";
/// mqttbytes' bound on the remaining length; as generous as quartet's default limit.
const MAX_SIZE: usize = quartet_proto::MAX_PACKET_SIZE;

/// One benchmark case: a packet for each implementation and the bytes both encode it to.
struct Case {
    name: &'static str,
    version: ProtocolVersion,
    quartet: Packet,
    theirs: Theirs,
    wire: Bytes,
}

enum Theirs {
    V4Publish(v4::Publish),
    V4Connect(v4::Connect),
    V5Publish(v5::Publish),
}

impl Theirs {
    fn write(&self, buf: &mut BytesMut) -> usize {
        match self {
            Theirs::V4Publish(p) => p.write(buf).unwrap(),
            Theirs::V4Connect(c) => c.write(buf).unwrap(),
            Theirs::V5Publish(p) => p.write(buf).unwrap(),
        }
    }

    /// Decodes one packet with the matching mqttbytes module.
    fn read(&self, buf: &mut BytesMut) -> Result<TheirPacket, mqttbytes::Error> {
        match self {
            Theirs::V4Publish(_) | Theirs::V4Connect(_) => {
                v4::read(buf, MAX_SIZE).map(TheirPacket::V4)
            }
            Theirs::V5Publish(_) => v5::read(buf, MAX_SIZE).map(TheirPacket::V5),
        }
    }
}

/// What mqttbytes decodes to, per module. Not boxed: a box would add an allocation to the
/// timed section that mqttbytes itself does not make.
#[allow(dead_code, clippy::large_enum_variant)]
enum TheirPacket {
    V4(v4::Packet),
    V5(v5::Packet),
}

fn payload(len: usize) -> Bytes {
    (0..len)
        .map(|i| (i % 251) as u8)
        .collect::<Vec<u8>>()
        .into()
}

fn publish_case(name: &'static str, version: ProtocolVersion, len: usize) -> Case {
    let payload = payload(len);
    let quartet = Packet::Publish(Publish {
        dup: false,
        qos: QoS::AtLeastOnce,
        retain: false,
        topic: TopicName::new(TOPIC).unwrap(),
        packet_id: PacketId::new(4242),
        properties: PublishProperties::default(),
        payload: payload.clone(),
    });
    let theirs = if version.is_v5() {
        let mut p = v5::Publish::from_bytes(TOPIC, mqttbytes::QoS::AtLeastOnce, payload);
        p.pkid = 4242;
        Theirs::V5Publish(p)
    } else {
        let mut p = v4::Publish::from_bytes(TOPIC, mqttbytes::QoS::AtLeastOnce, payload);
        p.pkid = 4242;
        Theirs::V4Publish(p)
    };
    finish(name, version, quartet, theirs)
}

fn connect_case() -> Case {
    let quartet = Packet::Connect(Box::new(Connect {
        protocol: ProtocolVersion::V311,
        clean_start: true,
        keep_alive: 30,
        client_id: ClientId::new("quartet-bench-client-0001"),
        will: Some(Will {
            topic: TopicName::new("clients/quartet-bench-client-0001/status").unwrap(),
            payload: Bytes::from_static(b"offline"),
            qos: QoS::AtLeastOnce,
            retain: true,
            properties: WillProperties::default(),
        }),
        username: Some("sensor-gateway".into()),
        password: Some(Bytes::from_static(b"correct horse battery staple")),
        properties: ConnectProperties::default(),
    }));
    let mut c = v4::Connect::new("quartet-bench-client-0001");
    c.keep_alive = 30;
    c.clean_session = true;
    c.last_will = Some(v4::LastWill::new(
        "clients/quartet-bench-client-0001/status",
        b"offline".to_vec(),
        mqttbytes::QoS::AtLeastOnce,
        true,
    ));
    c.set_login("sensor-gateway", "correct horse battery staple");
    finish(
        "connect_v311",
        ProtocolVersion::V311,
        quartet,
        Theirs::V4Connect(c),
    )
}

/// Checks that both sides encode to the same bytes and decode them, so they do equal work.
fn finish(name: &'static str, version: ProtocolVersion, quartet: Packet, theirs: Theirs) -> Case {
    let mut ours = BytesMut::new();
    let n = encode(&quartet, version, &mut ours).unwrap();
    assert_eq!(n, ours.len());
    let mut other = BytesMut::new();
    theirs.write(&mut other);
    assert_eq!(ours, other, "{name}: the two encoders disagree");
    let wire = ours.freeze();
    let back = decode(&mut BytesMut::from(&wire[..]), version, &Limits::default())
        .unwrap()
        .unwrap();
    assert_eq!(back, quartet, "{name}: quartet round trip");
    theirs.read(&mut BytesMut::from(&wire[..])).unwrap();
    Case {
        name,
        version,
        quartet,
        theirs,
        wire,
    }
}

fn cases() -> Vec<Case> {
    vec![
        publish_case("publish_v311_64B", ProtocolVersion::V311, 64),
        publish_case("publish_v311_1KiB", ProtocolVersion::V311, 1024),
        publish_case("publish_v5_64B", ProtocolVersion::V5, 64),
        publish_case("publish_v5_1KiB", ProtocolVersion::V5, 1024),
        connect_case(),
    ]
}

fn run_group(c: &mut Criterion, group_name: &str, throughput: fn(&Case) -> Throughput) {
    let limits = Limits::default();
    let mut group = c.benchmark_group(group_name);
    for case in cases() {
        group.throughput(throughput(&case));
        let fresh = || BytesMut::from(&case.wire[..]);

        // The decoded packet is dropped inside the timed section (its drop is part of the
        // cost of what a decoder allocates); the input buffer is freed outside it.
        group.bench_function(format!("decode/{}/quartet", case.name), |b| {
            b.iter_batched_ref(
                fresh,
                |buf| drop(black_box(decode(buf, case.version, &limits).unwrap())),
                BatchSize::SmallInput,
            )
        });
        group.bench_function(format!("decode/{}/mqttbytes", case.name), |b| {
            b.iter_batched_ref(
                fresh,
                |buf| drop(black_box(case.theirs.read(buf).unwrap())),
                BatchSize::SmallInput,
            )
        });

        let mut out = BytesMut::with_capacity(case.wire.len() * 2);
        group.bench_function(format!("encode/{}/quartet", case.name), |b| {
            b.iter(|| {
                out.clear();
                encode(black_box(&case.quartet), case.version, &mut out).unwrap()
            })
        });
        group.bench_function(format!("encode/{}/mqttbytes", case.name), |b| {
            b.iter(|| {
                out.clear();
                black_box(&case.theirs).write(&mut out)
            })
        });
    }
    group.finish();
}

fn packets(c: &mut Criterion) {
    run_group(c, "packets", |_| Throughput::Elements(1));
}

fn bytes(c: &mut Criterion) {
    run_group(c, "bytes", |case| Throughput::Bytes(case.wire.len() as u64));
}

criterion_group!(benches, packets, bytes);
criterion_main!(benches);
