//! The client against a scripted fake broker: the exact packets of session resumption,
//! crash recovery and flow control.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::*;
use quartet_client::{Client, ClientError, OutgoingMessage, ProtocolVersion, QoS};
use quartet_proto::{
    ConnAck, ConnAckProperties, Packet, PacketId, PubAck, Publish, PublishProperties, ReasonCode,
    TopicName,
};

fn connack(session_present: bool, properties: ConnAckProperties) -> Packet {
    Packet::ConnAck(ConnAck {
        session_present,
        reason: ReasonCode::Success,
        properties,
    })
}

async fn handshake(raw: &mut Raw, session_present: bool, props: ConnAckProperties) -> bool {
    let Packet::Connect(c) = raw.recv().await else {
        panic!("expected CONNECT")
    };
    raw.send(connack(session_present, props)).await;
    c.clean_start
}

fn expect_publish(p: Packet) -> Publish {
    match p {
        Packet::Publish(p) => p,
        other => panic!("expected PUBLISH, got {other:?}"),
    }
}

fn ack_of(p: Packet, want: &str) -> PubAck {
    match (p, want) {
        (Packet::PubAck(a), "PUBACK")
        | (Packet::PubRec(a), "PUBREC")
        | (Packet::PubRel(a), "PUBREL")
        | (Packet::PubComp(a), "PUBCOMP") => a,
        (other, _) => panic!("expected {want}, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_publisher_resumes_with_dup_and_the_same_packet_id() {
    for v in [ProtocolVersion::V311, ProtocolVersion::V5] {
        let fake = FakeBroker::new().await;
        let dir = tempfile::tempdir().unwrap();
        let o = || {
            let mut o = opts(&fake.addr(), "sensor", v).persistent(600);
            o.state_dir = Some(dir.path().to_path_buf());
            o
        };
        // Run 1: PUBLISH leaves, then the process dies before any answer.
        let connecting = tokio::spawn(Client::connect(o()));
        let mut raw = fake.accept().await;
        assert!(!handshake(&mut raw, false, Default::default()).await);
        let (client, _inc) = connecting.await.unwrap().unwrap();
        let p = client
            .send(OutgoingMessage::new("t", "22.5", QoS::ExactlyOnce, false))
            .await
            .unwrap();
        assert_eq!(p.seq, Some(0));
        let first = expect_publish(raw.recv_no_ping().await);
        assert!(!first.dup);
        let pid = first.packet_id.unwrap();
        client.crash().await;
        assert!(raw.closed_within(WAIT).await);

        // Run 2: the same message goes out again, DUP = 1, same packet id. PUBREC comes,
        // PUBREL leaves, and the process dies again before PUBCOMP.
        let connecting = tokio::spawn(Client::connect(o()));
        let mut raw = fake.accept().await;
        assert!(
            !handshake(&mut raw, true, Default::default()).await,
            "resumes, no clean start"
        );
        let (client, _inc) = connecting.await.unwrap().unwrap();
        let again = expect_publish(raw.recv_no_ping().await);
        assert!(again.dup, "{v}: resent with DUP");
        assert_eq!(again.packet_id, Some(pid));
        assert_eq!(&again.payload[..], b"22.5");
        assert_eq!(again.topic.as_str(), "t");
        raw.send(Packet::PubRec(PubAck::new(pid))).await;
        assert_eq!(ack_of(raw.recv_no_ping().await, "PUBREL").packet_id, pid);
        tokio::time::sleep(Duration::from_millis(50)).await;
        client.crash().await;
        assert!(raw.closed_within(WAIT).await);

        // Run 3: only PUBREL is owed now, not the PUBLISH.
        let connecting = tokio::spawn(Client::connect(o()));
        let mut raw = fake.accept().await;
        handshake(&mut raw, true, Default::default()).await;
        let (client, _inc) = connecting.await.unwrap().unwrap();
        assert_eq!(ack_of(raw.recv_no_ping().await, "PUBREL").packet_id, pid);
        raw.send(Packet::PubComp(PubAck::new(pid))).await;
        // The sequence goes on; a new message is new.
        let next_msg = client
            .send(OutgoingMessage::new("t", "22.6", QoS::AtLeastOnce, false))
            .await
            .unwrap();
        assert_eq!(next_msg.seq, Some(1));
        let p2 = expect_publish(raw.recv_no_ping().await);
        assert!(!p2.dup);
        raw.send(Packet::PubAck(PubAck::new(p2.packet_id.unwrap())))
            .await;
        let ack = next_msg.acknowledged().await.unwrap();
        assert_eq!(ack.reason, ReasonCode::Success);
        client.disconnect().await.unwrap();
        assert!(matches!(raw.recv().await, Packet::Disconnect(_)));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_subscriber_never_delivers_a_released_qos2_message_twice() {
    let fake = FakeBroker::new().await;
    let dir = tempfile::tempdir().unwrap();
    let o = || {
        let mut o = opts(&fake.addr(), "dashboard", ProtocolVersion::V5).persistent(600);
        o.state_dir = Some(dir.path().to_path_buf());
        o.manual_ack = true;
        o
    };
    let pid = PacketId::new(7).unwrap();
    let publish = |dup: bool, payload: &'static str| {
        Packet::Publish(Publish {
            dup,
            qos: QoS::ExactlyOnce,
            retain: false,
            topic: TopicName::new("sensors/temperature/livingroom").unwrap(),
            packet_id: Some(pid),
            properties: PublishProperties::default(),
            payload: bytes::Bytes::from_static(payload.as_bytes()),
        })
    };
    let connecting = tokio::spawn(Client::connect(o()));
    let mut raw = fake.accept().await;
    handshake(&mut raw, false, Default::default()).await;
    let (client, mut inc) = connecting.await.unwrap().unwrap();
    raw.send(publish(false, "22.5")).await;
    let d = next(&mut inc).await;
    let id = d.id.clone().unwrap();
    // A retransmission while the application holds it: not handed over twice.
    raw.send(publish(true, "22.5")).await;
    nothing_more(&mut inc, Duration::from_millis(200)).await;
    d.ack().unwrap();
    assert_eq!(ack_of(raw.recv_no_ping().await, "PUBREC").packet_id, pid);
    // Killed before PUBREL.
    client.crash().await;
    assert!(raw.closed_within(WAIT).await);

    let connecting = tokio::spawn(Client::connect(o()));
    let mut raw = fake.accept().await;
    handshake(&mut raw, true, Default::default()).await;
    let (client, mut inc) = connecting.await.unwrap().unwrap();
    raw.send(Packet::PubRel(PubAck::new(pid))).await;
    let comp = ack_of(raw.recv_no_ping().await, "PUBCOMP");
    assert_eq!(comp.reason, ReasonCode::Success);
    nothing_more(&mut inc, Duration::from_millis(200)).await;
    // The broker may now reuse the id for a new message: it is new.
    raw.send(publish(false, "22.7")).await;
    let d = next(&mut inc).await;
    assert_eq!(&d.message.payload[..], b"22.7");
    assert!(d.id.as_ref().unwrap().seq > id.seq);
    assert!(!d.redelivered);
    // Killed after delivery, before the ack: delivered again with the same identity.
    let id2 = d.id.clone();
    client.crash().await;
    assert!(raw.closed_within(WAIT).await);
    let connecting = tokio::spawn(Client::connect(o()));
    let mut raw = fake.accept().await;
    handshake(&mut raw, true, Default::default()).await;
    let (client, mut inc) = connecting.await.unwrap().unwrap();
    raw.send(publish(true, "22.7")).await;
    let d = next(&mut inc).await;
    assert_eq!(d.id, id2);
    assert!(d.redelivered);
    d.ack().unwrap();
    assert_eq!(ack_of(raw.recv_no_ping().await, "PUBREC").packet_id, pid);
    // PUBREL for an id we do not know: PUBCOMP with 0x92.
    raw.send(Packet::PubRel(PubAck::new(PacketId::new(99).unwrap())))
        .await;
    let comp = ack_of(raw.recv_no_ping().await, "PUBCOMP");
    assert_eq!(comp.reason, ReasonCode::PacketIdentifierNotFound);
    drop(client);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn honours_receive_maximum_topic_alias_maximum_and_maximum_packet_size() {
    let fake = FakeBroker::new().await;
    let connecting = tokio::spawn(Client::connect(opts(
        &fake.addr(),
        "limits",
        ProtocolVersion::V5,
    )));
    let mut raw = fake.accept().await;
    handshake(
        &mut raw,
        false,
        ConnAckProperties {
            receive_maximum: Some(2),
            topic_alias_maximum: Some(1),
            maximum_packet_size: Some(100),
            ..Default::default()
        },
    )
    .await;
    let (client, _inc) = connecting.await.unwrap().unwrap();
    let mut pending = Vec::new();
    for (i, topic) in ["a", "a", "b", "a"].iter().enumerate() {
        pending.push(
            client
                .send(OutgoingMessage::new(
                    *topic,
                    format!("{i}"),
                    QoS::AtLeastOnce,
                    false,
                ))
                .await
                .unwrap(),
        );
    }
    let p0 = expect_publish(raw.recv_no_ping().await);
    let p1 = expect_publish(raw.recv_no_ping().await);
    assert_eq!(
        (p0.topic.as_str(), p0.properties.topic_alias),
        ("a", Some(1))
    );
    assert_eq!(
        (p1.topic.as_str(), p1.properties.topic_alias),
        ("", Some(1))
    );
    // Receive maximum 2: nothing more until an acknowledgement.
    let more = tokio::time::timeout(Duration::from_millis(200), raw.recv_no_ping()).await;
    assert!(
        more.is_err(),
        "a third PUBLISH beyond receive maximum: {more:?}"
    );
    raw.send(Packet::PubAck(PubAck::new(p0.packet_id.unwrap())))
        .await;
    let p2 = expect_publish(raw.recv_no_ping().await);
    assert_eq!((p2.topic.as_str(), p2.properties.topic_alias), ("b", None));
    raw.send(Packet::PubAck(PubAck::new(p1.packet_id.unwrap())))
        .await;
    let p3 = expect_publish(raw.recv_no_ping().await);
    assert_eq!(
        (p3.topic.as_str(), p3.properties.topic_alias),
        ("", Some(1))
    );
    for p in [&p2, &p3] {
        raw.send(Packet::PubAck(PubAck::new(p.packet_id.unwrap())))
            .await;
    }
    for p in pending {
        assert!(p.acknowledged().await.unwrap().is_success());
    }
    let e = client
        .publish("a", vec![0u8; 200], QoS::AtMostOnce, false)
        .await;
    assert!(
        matches!(e, Err(ClientError::PacketTooLarge { max: 100, .. })),
        "{e:?}"
    );
    drop(client);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_alive_pings_and_a_silent_broker_is_left() {
    let fake = FakeBroker::new().await;
    let mut o = opts(&fake.addr(), "pinger", ProtocolVersion::V311).persistent(0);
    o.keep_alive_secs = 1;
    let connecting = tokio::spawn(Client::connect(o));
    let mut raw = fake.accept().await;
    handshake(&mut raw, false, Default::default()).await;
    let (client, _inc) = connecting.await.unwrap().unwrap();
    assert!(matches!(raw.recv().await, Packet::PingReq));
    raw.send(Packet::PingResp).await;
    assert!(matches!(raw.recv().await, Packet::PingReq));
    // No answer this time: the client gives the connection up and comes back.
    assert!(raw.closed_within(Duration::from_secs(3)).await);
    let mut raw = fake.accept().await;
    let clean = handshake(&mut raw, true, Default::default()).await;
    assert!(!clean, "3.1.1 clean session 0 is kept on reconnect");
    client.wait_connected().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusal_is_one_clear_error() {
    let fake = FakeBroker::new().await;
    let connecting = tokio::spawn(Client::connect(opts(
        &fake.addr(),
        "intruder",
        ProtocolVersion::V311,
    )));
    let mut raw = fake.accept().await;
    let Packet::Connect(_) = raw.recv().await else {
        panic!()
    };
    raw.send(Packet::ConnAck(ConnAck {
        session_present: false,
        reason: ReasonCode::NotAuthorized,
        properties: Default::default(),
    }))
    .await;
    let e = connecting.await.unwrap().unwrap_err();
    assert!(e.to_string().contains("not authorized"), "{e}");
}
