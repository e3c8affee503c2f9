//! Limits and flow control: queue bounds, message expiry, topic aliases, receive maximum,
//! maximum packet size (MQTT 5 §3.1.2.11, §3.3.2.3, §4.9; GUIDE §4).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod harness;

use harness::*;
use quartet_broker::Config;
use quartet_proto::*;

/// GUIDE §4: a full session queue drops the newest message for that session and counts it;
/// nothing queued or in flight is touched, and other sessions are not affected.
#[test]
fn queue_limit_drops_are_counted() {
    for by_bytes in [false, true] {
        let config = if by_bytes {
            Config {
                queue_max_bytes: 30,
                ..quiet_config()
            }
        } else {
            Config {
                queue_max_messages: 3,
                ..quiet_config()
            }
        };
        let mut sim = Sim::with_config(config);
        let s = sim.persistent(V311, "small");
        sim.sub(s, 1, "q/#", QoS::AtLeastOnce);
        sim.drop_conn(s);
        let other = sim.persistent(V5, "other");
        sim.sub(other, 1, "q/#", QoS::AtLeastOnce);
        let p = sim.persistent(V5, "pub");
        for i in 1..=5u16 {
            sim.publish_acked(
                p,
                publish(
                    "q/x",
                    QoS::AtLeastOnce,
                    i,
                    format!("message-{i}").as_bytes(),
                ),
            );
        }
        assert_eq!(
            sim.broker.metrics().dropped_queue_full,
            2,
            "by bytes: {by_bytes}"
        );
        assert_eq!(sim.take_publishes(other).len(), 5);
        let s = sim.persistent(V311, "small");
        let got: Vec<String> = sim
            .take_publishes(s)
            .iter()
            .map(|p| text(p).to_owned())
            .collect();
        assert_eq!(got, ["message-1", "message-2", "message-3"]);
    }
}

/// [MQTT-3.3.2-5]: a message whose expiry passed before onward delivery started is not sent
/// (and counted); [MQTT-3.3.2-6]: the one that is sent carries the remaining interval.
#[test]
fn message_expiry() {
    for sv in [V311, V5] {
        let mut sim = Sim::new();
        let s = sim.persistent(sv, "s");
        sim.sub(s, 1, "e/#", QoS::ExactlyOnce);
        sim.drop_conn(s);
        let p = sim.persistent(V5, "p");
        let mut short = publish("e/short", QoS::AtLeastOnce, 1, b"short");
        short.properties.message_expiry_interval = Some(2);
        sim.publish_acked(p, short);
        let mut long = publish("e/long", QoS::ExactlyOnce, 2, b"long");
        long.properties.message_expiry_interval = Some(10);
        sim.publish_acked(p, long);
        sim.publish_acked(p, publish("e/none", QoS::AtLeastOnce, 3, b"forever"));
        sim.advance(3_500);
        let s = sim.persistent(sv, "s");
        let got = sim.take_publishes(s);
        let texts: Vec<&str> = got.iter().map(text).collect();
        assert_eq!(texts, ["long", "forever"], "{sv}");
        let want = if sv.is_v5() { Some(7) } else { None };
        assert_eq!(got[0].properties.message_expiry_interval, want);
        assert_eq!(got[1].properties.message_expiry_interval, None);
        assert_eq!(sim.broker.metrics().dropped_expired, 1);
        // Once sent it is in flight: it is resent even after its expiry ([MQTT-4.3.3-7]).
        sim.drop_conn(s);
        sim.advance(20_000);
        let s = sim.persistent(sv, "s");
        let again = sim.take_publishes(s);
        assert_eq!(again.len(), 2);
        assert!(again.iter().all(|p| p.dup));
        for p in &again {
            sim.ack_publish(s, p);
        }
        // The expired message's body is gone from the store.
        assert!(sim.durable().messages.is_empty());
    }
}

/// Topic aliases from the client: an alias establishes a mapping, an empty topic uses it
/// ([MQTT-3.3.2-12]); an alias above the server's maximum is DISCONNECT 0x94 (MQTT 5
/// §3.3.2.3.4); an empty topic with an unknown alias is a protocol error, 0x82.
#[test]
fn inbound_topic_aliases() {
    let mut sim = Sim::new();
    let s = sim.clean(V5, "s");
    sim.sub(s, 1, "al/#", QoS::AtLeastOnce);
    let p = sim.clean(V5, "p");
    let mut m = publish("al/one", QoS::AtLeastOnce, 1, b"1");
    m.properties.topic_alias = Some(3);
    sim.publish_acked(p, m);
    let mut m = publish("al/one", QoS::AtLeastOnce, 2, b"2");
    m.topic = TopicName::empty();
    m.properties.topic_alias = Some(3);
    sim.publish_acked(p, m);
    let got = sim.take_publishes(s);
    assert_eq!(got.len(), 2);
    assert!(got.iter().all(|g| g.topic == topic("al/one")));
    assert!(got.iter().all(|g| g.properties.topic_alias.is_none()));

    let max = sim.config.topic_alias_maximum;
    let mut m = publish("al/two", QoS::AtMostOnce, 0, b"x");
    m.properties.topic_alias = Some(max + 1);
    sim.publish(p, m);
    assert_eq!(
        sim.expect_disconnect(p).reason,
        ReasonCode::TopicAliasInvalid
    );
    assert!(sim.is_closed(p));

    let p = sim.clean(V5, "p2");
    let mut m = publish("al/x", QoS::AtMostOnce, 0, b"x");
    m.topic = TopicName::empty();
    m.properties.topic_alias = Some(1);
    sim.publish(p, m);
    assert_eq!(sim.expect_disconnect(p).reason, ReasonCode::ProtocolError);
    assert!(sim.is_closed(p));
    sim.expect_silent(s);
}

/// Topic aliases towards the client: only up to the client's Topic Alias Maximum
/// [MQTT-3.3.2-11] (checked by the harness on every PUBLISH), reused for the same topic with
/// an empty topic name; none for a client that allows none.
#[test]
fn outbound_topic_aliases() {
    let mut sim = Sim::new();
    let mut c = connect(V5, "s", true);
    c.properties.topic_alias_maximum = Some(2);
    let (s, _) = sim.connect(c);
    sim.sub(s, 1, "o/#", QoS::AtMostOnce);
    let none = sim.clean(V5, "none");
    sim.sub(none, 1, "o/#", QoS::AtMostOnce);
    let p = sim.clean(V5, "p");
    for t in ["o/a", "o/b", "o/c", "o/a", "o/b", "o/c"] {
        sim.publish(p, publish(t, QoS::AtMostOnce, 0, t.as_bytes()));
    }
    let got = sim.take_publishes(s);
    let seen: Vec<(&str, Option<u16>)> = got
        .iter()
        .map(|g| (g.topic.as_str(), g.properties.topic_alias))
        .collect();
    assert_eq!(
        seen,
        [
            ("o/a", Some(1)),
            ("o/b", Some(2)),
            ("o/c", None),
            ("", Some(1)),
            ("", Some(2)),
            ("o/c", None),
        ]
    );
    assert!(sim
        .take_publishes(none)
        .iter()
        .all(|g| g.properties.topic_alias.is_none() && !g.topic.is_empty()));
}

/// A PUBLISH dropped for the client's Maximum Packet Size must not leave behind a topic alias
/// the client never learned: the next message on that topic has to be understandable
/// [MQTT-3.3.2-11], [MQTT-3.1.2-25].
#[test]
fn outbound_alias_is_not_consumed_by_a_dropped_message() {
    let mut sim = Sim::new();
    let mut c = connect(V5, "s", true);
    c.properties.topic_alias_maximum = Some(4);
    c.properties.maximum_packet_size = Some(64);
    let (s, _) = sim.connect(c);
    sim.sub(s, 1, "big/#", QoS::AtLeastOnce);
    let p = sim.clean(V5, "p");
    sim.publish_acked(p, publish("big/t", QoS::AtLeastOnce, 1, &[b'x'; 200]));
    sim.publish_acked(p, publish("big/t", QoS::AtLeastOnce, 2, b"small"));
    let got = sim.receive(s); // the harness resolves aliases and panics on unknown ones
    assert_eq!(text(&got), "small");
    assert_eq!(sim.broker.metrics().dropped_too_large, 1);
}

/// [MQTT-3.3.4-9]: never more QoS 1/2 messages in flight to a client than its Receive
/// Maximum (v5) or the broker's cap (`max_inflight_messages`, any version); QoS 2 counts
/// until PUBCOMP. The harness checks the count on every PUBLISH.
#[test]
fn receive_maximum_towards_the_client() {
    for (version, rm, cap) in [(V5, 2u16, 100u16), (V311, u16::MAX, 3), (V5, 10, 3)] {
        let mut sim = Sim::with_config(Config {
            max_inflight_messages: cap,
            ..quiet_config()
        });
        let mut c = persistent(version, "s");
        if version.is_v5() {
            c.properties.receive_maximum = Some(rm);
        }
        let (s, _) = sim.connect(c);
        sim.sub(s, 1, "rm/#", QoS::ExactlyOnce);
        let p = sim.persistent(V5, "p");
        for i in 1..=8u16 {
            let qos = if i % 2 == 0 {
                QoS::ExactlyOnce
            } else {
                QoS::AtLeastOnce
            };
            sim.publish_acked(p, publish("rm/x", qos, i, &[i as u8]));
        }
        let window = usize::from(rm.min(cap));
        let first = sim.take_publishes(s);
        assert_eq!(first.len(), window, "{version} rm {rm} cap {cap}");
        // A PUBREC does not open the window (QoS 2 counts until PUBCOMP)...
        let mut delivered = first.len();
        let mut open = first;
        let q2 = open.iter().position(|m| m.qos == QoS::ExactlyOnce).unwrap();
        let m = open.remove(q2);
        sim.send(s, Packet::PubRec(PubAck::new(m.packet_id.unwrap())));
        sim.expect_pubrel(s);
        sim.expect_silent(s);
        // ... PUBCOMP does.
        sim.send(s, Packet::PubComp(PubAck::new(m.packet_id.unwrap())));
        let next = sim.take_publishes(s);
        assert_eq!(next.len(), 1);
        delivered += 1;
        open.extend(next);
        while let Some(m) = open.pop() {
            sim.ack_publish(s, &m);
            let more = sim.take_publishes(s);
            delivered += more.len();
            open.extend(more);
        }
        assert_eq!(delivered, 8);
    }
}

/// MQTT 5 §3.3.4: a client that sends more QoS 2 PUBLISH packets than the server's Receive
/// Maximum without completing them gets DISCONNECT 0x93.
#[test]
fn client_exceeding_server_receive_maximum() {
    let mut sim = Sim::with_config(Config {
        receive_maximum: 2,
        ..quiet_config()
    });
    let (p, ack) = sim.connect(persistent(V5, "p"));
    assert_eq!(ack.properties.receive_maximum, Some(2));
    sim.publish(p, publish("x", QoS::ExactlyOnce, 1, b"1"));
    sim.publish(p, publish("x", QoS::ExactlyOnce, 2, b"2"));
    assert_eq!(sim.take(p).len(), 2);
    // A retransmission of an open one is not a new exchange.
    sim.publish(p, publish("x", QoS::ExactlyOnce, 2, b"2"));
    assert_eq!(sim.expect_pubrec(p).packet_id, pid(2));
    sim.publish(p, publish("x", QoS::ExactlyOnce, 3, b"3"));
    assert_eq!(
        sim.expect_disconnect(p).reason,
        ReasonCode::ReceiveMaximumExceeded
    );
    assert!(sim.is_closed(p));
}

/// [MQTT-3.1.2-24]: nothing larger than the client's Maximum Packet Size is sent;
/// [MQTT-3.1.2-25]: such a message is discarded for that client as if delivered, counted,
/// while other subscribers get it, and smaller messages keep flowing.
#[test]
fn client_maximum_packet_size() {
    for persistent_sessions in [false, true] {
        let mut sim = Sim::new();
        let mut c = if persistent_sessions {
            persistent(V5, "a-small")
        } else {
            connect(V5, "a-small", true)
        };
        c.properties.maximum_packet_size = Some(64);
        c.properties.receive_maximum = Some(1);
        let (small, _) = sim.connect(c);
        sim.sub(small, 1, "m/#", QoS::AtLeastOnce);
        let big_ok = if persistent_sessions {
            sim.persistent(V5, "b-big")
        } else {
            sim.clean(V5, "b-big")
        };
        sim.sub(big_ok, 1, "m/#", QoS::AtLeastOnce);
        let p = sim.clean(V5, "p");
        for (i, qos) in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce]
            .into_iter()
            .enumerate()
        {
            let id = if qos == QoS::AtMostOnce {
                0
            } else {
                10 + i as u16
            };
            sim.publish_acked(p, publish("m/big", qos, id, &[b'x'; 500]));
        }
        sim.publish_acked(p, publish("m/small", QoS::AtLeastOnce, 20, b"fits"));
        assert_eq!(sim.broker.metrics().dropped_too_large, 3);
        assert_eq!(text(&sim.receive(small)), "fits");
        sim.expect_silent(small);
        assert_eq!(sim.take_publishes(big_ok).len(), 4);
        assert_eq!(
            sim.broker.session_queue(&ClientId::new("a-small")),
            Some((0, 0))
        );
    }
}

/// [MQTT-3.1.2-25] on resume: a message in flight that no longer fits the Maximum Packet
/// Size of the new connection is discarded as if delivered, so it does not hold a slot of the
/// receive window forever.
#[test]
fn in_flight_message_too_large_after_reconnect_is_discarded() {
    let mut sim = Sim::new();
    let mut c = persistent(V5, "s");
    c.properties.receive_maximum = Some(1);
    let (s, _) = sim.connect(c.clone());
    sim.sub(s, 1, "m/#", QoS::AtLeastOnce);
    let p = sim.clean(V5, "p");
    sim.publish_acked(p, publish("m/a", QoS::AtLeastOnce, 1, &[b'x'; 500]));
    sim.publish_acked(p, publish("m/b", QoS::AtLeastOnce, 2, b"next"));
    assert_eq!(sim.take_publishes(s).len(), 1, "window of one");
    sim.drop_conn(s);
    c.properties.maximum_packet_size = Some(64);
    let (s, _) = sim.connect(c);
    let got = sim.receive(s);
    assert_eq!(text(&got), "next");
    assert_eq!(sim.broker.metrics().dropped_too_large, 1);
    assert_eq!(sim.broker.session_queue(&ClientId::new("s")), Some((0, 0)));
}

/// The same for QoS 2: the broker cannot resend the PUBLISH, so it goes on with PUBREL (as
/// if the PUBLISH had been delivered [MQTT-3.1.2-25]); the client answers PUBCOMP (it knows
/// the id, or not: MQTT 5 §4.3.3), which frees the slot. Nothing is silently left open in
/// the middle of a QoS 2 exchange (GUIDE §3, outbound rule 5).
#[test]
fn in_flight_qos2_too_large_after_reconnect_is_released() {
    let mut sim = Sim::new();
    let mut c = persistent(V5, "s");
    c.properties.receive_maximum = Some(1);
    let (s, _) = sim.connect(c.clone());
    sim.sub(s, 1, "m/#", QoS::ExactlyOnce);
    let p = sim.clean(V5, "p");
    sim.publish_acked(p, publish("m/a", QoS::ExactlyOnce, 1, &[b'x'; 500]));
    sim.publish_acked(p, publish("m/b", QoS::ExactlyOnce, 2, b"next"));
    let big = sim.expect_publish(s);
    sim.expect_silent(s);
    sim.drop_conn(s);
    c.properties.maximum_packet_size = Some(64);
    let (s, _) = sim.connect(c);
    let rel = sim.expect_pubrel(s);
    assert_eq!(rel.packet_id, big.packet_id.unwrap());
    sim.expect_silent(s);
    sim.send(s, Packet::PubComp(rel));
    assert_eq!(text(&sim.receive(s)), "next");
    assert_eq!(sim.broker.metrics().dropped_too_large, 1);
    assert_eq!(sim.broker.session_queue(&ClientId::new("s")), Some((0, 0)));
}

/// 3.1.1 persistent sessions (clean session 0) get `session_expiry_max_secs` (GUIDE §4: a
/// bound on everything), and expire after it.
#[test]
fn v3_persistent_sessions_are_bounded_by_the_expiry_maximum() {
    let mut sim = Sim::with_config(Config {
        session_expiry_max_secs: 60,
        ..quiet_config()
    });
    let s = sim.persistent(V311, "s");
    sim.sub(s, 1, "x", QoS::AtLeastOnce);
    sim.drop_conn(s);
    sim.advance(59_999);
    let (s, ack) = sim.connect(persistent(V311, "s"));
    assert!(ack.session_present);
    sim.drop_conn(s);
    sim.advance(60_000);
    let (_, ack) = sim.connect(persistent(V311, "s"));
    assert!(!ack.session_present);
}
