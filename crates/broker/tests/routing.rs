//! Routing: overlapping subscriptions, No Local, shared subscriptions, subscription
//! identifiers, (un)subscribe (MQTT 5 §3.3.4, §3.8, §4.8.2).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod harness;

use std::collections::BTreeMap;

use harness::*;
use quartet_proto::*;

fn sub_with_id(
    sim: &mut Sim,
    c: quartet_broker::ConnId,
    packet_id: u16,
    f: &str,
    qos: QoS,
    id: u32,
) {
    let mut s = subscribe(packet_id, &[(f, opts(qos))]);
    s.properties.subscription_identifier = Some(id);
    sim.send(c, Packet::Subscribe(s));
    assert_eq!(sim.expect_suback(c).reasons, vec![ReasonCode::granted(qos)]);
}

/// [MQTT-3.3.4-2]: overlapping subscriptions of one client give one copy, at the highest
/// QoS of them; [MQTT-3.3.4-3]: carrying the identifiers of all of them.
#[test]
fn overlapping_subscriptions_give_one_copy() {
    for version in [V31, V311, V5] {
        let mut sim = Sim::new();
        let c = sim.persistent(version, "c");
        if version.is_v5() {
            sub_with_id(&mut sim, c, 1, "o/+", QoS::AtLeastOnce, 11);
            sub_with_id(&mut sim, c, 2, "o/#", QoS::ExactlyOnce, 22);
            sim.sub(c, 3, "o/x", QoS::AtMostOnce);
        } else {
            sim.sub(c, 1, "o/+", QoS::AtLeastOnce);
            sim.sub(c, 2, "o/#", QoS::ExactlyOnce);
            sim.sub(c, 3, "o/x", QoS::AtMostOnce);
        }
        let p = sim.clean(V5, "p");
        sim.publish_acked(p, publish("o/x", QoS::ExactlyOnce, 1, b"m"));
        let got = sim.take_publishes(c);
        assert_eq!(got.len(), 1, "{version}: {got:?}");
        assert_eq!(got[0].qos, QoS::ExactlyOnce);
        let mut ids = got[0].properties.subscription_identifiers.clone();
        ids.sort();
        let want: Vec<u32> = if version.is_v5() {
            vec![11, 22]
        } else {
            vec![]
        };
        assert_eq!(ids, want);
        sim.ack_publish(c, &got[0]);
    }
}

/// [MQTT-3.8.4-3]: a SUBSCRIBE for an existing filter replaces the subscription (new QoS,
/// still one copy).
#[test]
fn resubscribe_replaces() {
    let mut sim = Sim::new();
    let c = sim.persistent(V311, "c");
    sim.sub(c, 1, "r/#", QoS::ExactlyOnce);
    sim.sub(c, 2, "r/#", QoS::AtMostOnce);
    assert_eq!(sim.broker.subscription_count(), 1);
    let p = sim.clean(V311, "p");
    sim.publish_acked(p, publish("r/1", QoS::ExactlyOnce, 1, b"m"));
    let got = sim.take_publishes(c);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].qos, QoS::AtMostOnce);
}

/// [MQTT-3.10.4-1]: after UNSUBSCRIBE the server stops adding new messages for it; UNSUBACK
/// (v5) says whether it existed (0x11 when not).
#[test]
fn unsubscribe_stops_delivery() {
    for version in [V311, V5] {
        let mut sim = Sim::new();
        let c = sim.persistent(version, "c");
        sim.sub(c, 1, "u/#", QoS::AtLeastOnce);
        sim.send(c, Packet::Unsubscribe(unsubscribe(2, &["u/#", "never"])));
        let ack = sim.expect_unsuback(c);
        if version.is_v5() {
            assert_eq!(
                ack.reasons,
                vec![ReasonCode::Success, ReasonCode::NoSubscriptionExisted]
            );
        } else {
            assert!(ack.reasons.is_empty());
        }
        let p = sim.clean(version, "p");
        sim.publish_acked(p, publish("u/1", QoS::AtLeastOnce, 1, b"m"));
        sim.expect_silent(c);
        assert_eq!(sim.broker.subscription_count(), 0);
    }
}

/// [MQTT-3.8.3-3]: with No Local the publisher's own messages are not sent back to it; other
/// subscribers (and its subscriptions without No Local) still get them.
#[test]
fn no_local() {
    let mut sim = Sim::new();
    let me = sim.persistent(V5, "me");
    sim.subscribe(
        me,
        1,
        &[(
            "n/#",
            SubscriptionOptions {
                qos: QoS::AtLeastOnce,
                no_local: true,
                ..Default::default()
            },
        )],
    );
    let other = sim.persistent(V5, "other");
    sim.sub(other, 1, "n/#", QoS::AtLeastOnce);
    sim.publish_acked(me, publish("n/1", QoS::AtLeastOnce, 1, b"mine"));
    sim.expect_silent(me);
    assert_eq!(text(&sim.receive(other)), "mine");
    // Without No Local, a publisher receives its own message.
    sim.publish(other, publish("n/1", QoS::AtLeastOnce, 1, b"theirs"));
    let got = sim.take(other);
    assert_eq!(got.len(), 2, "{got:?}");
    assert!(got.contains(&Packet::PubAck(ack(1))));
    assert_eq!(text(&sim.receive(me)), "theirs");
    // A second, overlapping subscription without No Local brings them back.
    sim.sub(me, 2, "n/+", QoS::AtLeastOnce);
    sim.publish(me, publish("n/1", QoS::AtLeastOnce, 2, b"mine again"));
    let got = sim.take(me);
    assert_eq!(got.len(), 2, "{got:?}");
    assert!(got.contains(&Packet::PubAck(ack(2))));
    assert!(got
        .iter()
        .any(|p| matches!(p, Packet::Publish(p) if text(p) == "mine again")));
}

/// MQTT 5 §4.8.2: each message of a shared subscription goes to exactly one member of the
/// group; each group gets its own copy; non-shared subscriptions are unaffected.
#[test]
fn shared_subscriptions_deliver_each_message_to_one_member() {
    for version in [V311, V5] {
        let mut sim = Sim::new();
        let mut members = Vec::new();
        for name in ["m1", "m2", "m3"] {
            let c = sim.persistent(version, name);
            sim.sub(c, 1, "$share/g/s/#", QoS::ExactlyOnce);
            members.push(c);
        }
        let h = sim.persistent(version, "h");
        sim.sub(h, 1, "$share/h/s/+", QoS::AtLeastOnce);
        let plain = sim.persistent(version, "plain");
        sim.sub(plain, 1, "s/#", QoS::AtLeastOnce);
        let p = sim.clean(V5, "p");
        for i in 0..30u16 {
            sim.publish_acked(p, publish("s/x", QoS::ExactlyOnce, i + 1, &i.to_be_bytes()));
        }
        let mut seen: BTreeMap<Vec<u8>, usize> = BTreeMap::new();
        let mut per_member = Vec::new();
        for &m in &members {
            let got = sim.take_publishes(m);
            per_member.push(got.len());
            for g in &got {
                *seen.entry(g.payload.to_vec()).or_default() += 1;
                sim.ack_publish(m, g);
            }
        }
        assert_eq!(seen.len(), 30, "{version}: every message reached the group");
        assert!(
            seen.values().all(|&n| n == 1),
            "{version}: exactly one member each"
        );
        assert!(per_member.iter().all(|&n| n > 0), "spread: {per_member:?}");
        assert_eq!(
            sim.take_publishes(h).len(),
            30,
            "the other group gets its own copy"
        );
        assert_eq!(sim.take_publishes(plain).len(), 30);
    }
}

/// A shared subscription prefers members that are connected; with none connected the message
/// waits in one member's session, and is delivered once when it comes back.
#[test]
fn shared_subscription_prefers_online_members() {
    let mut sim = Sim::new();
    let a = sim.persistent(V5, "a");
    sim.sub(a, 1, "$share/g/t", QoS::AtLeastOnce);
    let b = sim.persistent(V5, "b");
    sim.sub(b, 1, "$share/g/t", QoS::AtLeastOnce);
    sim.drop_conn(a);
    let p = sim.clean(V5, "p");
    for i in 1..=4u16 {
        sim.publish_acked(p, publish("t", QoS::AtLeastOnce, i, &[i as u8]));
    }
    for g in sim.take_publishes(b) {
        sim.ack_publish(b, &g);
    }
    sim.drop_conn(b);
    for i in 5..=6u16 {
        sim.publish_acked(p, publish("t", QoS::AtLeastOnce, i, &[i as u8]));
    }
    let (a, _) = sim.connect(persistent(V5, "a"));
    let (b, _) = sim.connect(persistent(V5, "b"));
    let n = sim.take_publishes(a).len() + sim.take_publishes(b).len();
    assert_eq!(n, 2);
}

/// MQTT 5 §3.8.2.1.2 / [MQTT-3.3.4-3]: the Subscription Identifier of the matching
/// subscription is forwarded with the message, also on a resend after reconnect; 3.1.1
/// clients get no properties.
#[test]
fn subscription_identifier_is_forwarded() {
    let mut sim = Sim::new();
    let c = sim.persistent(V5, "c");
    sub_with_id(&mut sim, c, 1, "i/#", QoS::AtLeastOnce, 268_435_455);
    let v3 = sim.persistent(V311, "v3");
    sim.sub(v3, 1, "i/#", QoS::AtLeastOnce);
    let p = sim.clean(V5, "p");
    sim.publish_acked(p, publish("i/1", QoS::AtLeastOnce, 1, b"m"));
    let got = sim.expect_publish(c);
    assert_eq!(got.properties.subscription_identifiers, vec![268_435_455]);
    sim.drop_conn(c);
    let (c, _) = sim.connect(persistent(V5, "c"));
    let again = sim.expect_publish(c);
    assert!(again.dup);
    assert_eq!(again.properties.subscription_identifiers, vec![268_435_455]);
    let plain = sim.expect_publish(v3);
    assert!(plain.properties.is_empty());
}

/// A v5 publisher's properties reach v5 subscribers unchanged (MQTT 5 §3.3.2.3: user
/// properties, correlation data, response topic, content type, payload format).
#[test]
fn publish_properties_pass_through() {
    let mut sim = Sim::new();
    let c = sim.clean(V5, "c");
    sim.sub(c, 1, "pp", QoS::AtLeastOnce);
    let p = sim.clean(V5, "p");
    let mut m = publish("pp", QoS::AtLeastOnce, 1, b"{}");
    m.properties.payload_format_indicator = Some(true);
    m.properties.content_type = Some("application/json".into());
    m.properties.response_topic = Some(topic("reply/here"));
    m.properties.correlation_data = Some(bytes::Bytes::from_static(b"42"));
    m.properties.user_properties = vec![("a".into(), "1".into()), ("a".into(), "2".into())];
    let props = m.properties.clone();
    sim.publish_acked(p, m);
    let got = sim.receive(c);
    assert_eq!(got.properties, props);
}

/// Publishing to `$SYS` is refused (v5: PUBACK 0x87; v3: acknowledged and dropped), and
/// nothing is routed.
#[test]
fn sys_topics_are_read_only() {
    for version in [V311, V5] {
        let mut sim = Sim::new();
        let w = sim.clean(version, "w");
        sim.sub(w, 1, "$SYS/#", QoS::AtLeastOnce);
        let p = sim.clean(version, "p");
        sim.publish(p, publish("$SYS/broker/x", QoS::AtLeastOnce, 1, b"fake"));
        let ack = sim.expect_puback(p);
        let want = if version.is_v5() {
            ReasonCode::NotAuthorized
        } else {
            ReasonCode::Success
        };
        assert_eq!(ack.reason, want);
        sim.expect_silent(w);
    }
}
