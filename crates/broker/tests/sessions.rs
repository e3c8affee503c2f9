//! Sessions: resume with redelivery, clean start, expiry, takeover.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod harness;

use harness::*;
use quartet_proto::*;

/// A persistent subscriber with unfinished exchanges of every kind, disconnected, with new
/// messages queued meanwhile. On resume: session present ([MQTT-3.2.2-3] v5 / [MQTT-3.2.2-2]
/// 3.1.1); every unacknowledged PUBLISH again with DUP=1 [MQTT-3.3.1-1] and the SAME packet
/// id, the owed PUBREL, in the original order [MQTT-4.4.0-1] [MQTT-4.6.0-1], all before the
/// new messages.
#[test]
fn resume_resends_in_order_with_same_ids_before_new_messages() {
    for sv in [V31, V311, V5] {
        for drop_by_disconnect in [false, true] {
            let mut sim = Sim::new();
            let s = sim.persistent(sv, "sub");
            sim.sub(s, 1, "r/#", QoS::ExactlyOnce);
            let p = sim.persistent(V5, "pub");
            sim.publish_acked(p, publish("r/1", QoS::AtLeastOnce, 1, b"m1"));
            sim.publish_acked(p, publish("r/2", QoS::ExactlyOnce, 2, b"m2"));
            sim.publish_acked(p, publish("r/3", QoS::ExactlyOnce, 3, b"m3"));
            sim.publish_acked(p, publish("r/4", QoS::AtLeastOnce, 4, b"m4"));
            let m1 = sim.expect_publish(s);
            let m2 = sim.expect_publish(s);
            let m3 = sim.expect_publish(s);
            let m4 = sim.expect_publish(s);
            // m2: PUBREC sent, PUBREL received, PUBCOMP not sent. m4 is acknowledged.
            sim.send(s, Packet::PubRec(PubAck::new(m2.packet_id.unwrap())));
            assert_eq!(sim.expect_pubrel(s).packet_id, m2.packet_id.unwrap());
            sim.send(s, Packet::PubAck(PubAck::new(m4.packet_id.unwrap())));
            if drop_by_disconnect {
                sim.send(s, disconnect(ReasonCode::Success));
            } else {
                sim.drop_conn(s);
            }
            // Offline: new messages are queued for the session.
            sim.publish_acked(p, publish("r/5", QoS::AtLeastOnce, 5, b"m5"));
            sim.publish_acked(p, publish("r/6", QoS::ExactlyOnce, 6, b"m6"));
            assert_eq!(
                sim.broker.session_queue(&ClientId::new("sub")),
                Some((2, 3))
            );

            let (s, ack) = sim.connect(persistent(sv, "sub"));
            // 3.1 has no Session Present flag; the session resumes all the same.
            assert_eq!(ack.session_present, sv != V31, "{sv}");
            let got = sim.take(s);
            let dup = |m: &Publish| {
                let mut d = m.clone();
                d.dup = true;
                Packet::Publish(d)
            };
            assert_eq!(got.len(), 5, "{sv}: {got:#?}");
            assert_eq!(got[0], dup(&m1));
            assert_eq!(got[1], Packet::PubRel(PubAck::new(m2.packet_id.unwrap())));
            assert_eq!(got[2], dup(&m3));
            let (Packet::Publish(m5), Packet::Publish(m6)) = (&got[3], &got[4]) else {
                panic!("{got:?}");
            };
            assert_eq!((text(m5), m5.dup), ("m5", false));
            assert_eq!((text(m6), m6.dup), ("m6", false));
            let in_flight = [m1.packet_id, m2.packet_id, m3.packet_id];
            assert!(!in_flight.contains(&m5.packet_id) && !in_flight.contains(&m6.packet_id));
            // The exchanges finish normally.
            sim.ack_publish(s, &m1);
            sim.send(s, Packet::PubComp(PubAck::new(m2.packet_id.unwrap())));
            sim.ack_publish(s, &m3);
            sim.ack_publish(s, m5);
            sim.ack_publish(s, m6);
            assert_eq!(
                sim.broker.session_queue(&ClientId::new("sub")),
                Some((0, 0))
            );
            sim.expect_silent(s);
        }
    }
}

/// Nothing is resent at any other time than reconnection [MQTT-4.4.0-1]: an unanswered
/// PUBLISH stays unanswered while the connection lives, whatever the time.
#[test]
fn no_resend_without_reconnect() {
    let mut sim = Sim::new();
    let s = sim.persistent(V5, "sub");
    sim.sub(s, 1, "r/#", QoS::AtLeastOnce);
    let p = sim.persistent(V5, "pub");
    sim.publish_acked(p, publish("r/1", QoS::AtLeastOnce, 1, b"m1"));
    sim.expect_publish(s);
    sim.advance(3_600_000);
    sim.send(s, Packet::PingReq);
    assert_eq!(sim.take(s), vec![Packet::PingResp]);
}

/// [MQTT-3.1.2-4] (v5) / [MQTT-3.1.2-6] (3.1.1): clean start discards the session: session
/// present 0 [MQTT-3.2.2-2], nothing resent, subscriptions gone.
#[test]
fn clean_start_discards_the_session() {
    for version in [V31, V311, V5] {
        let mut sim = Sim::new();
        let s = sim.persistent(version, "sub");
        sim.sub(s, 1, "r/#", QoS::ExactlyOnce);
        let p = sim.persistent(V5, "pub");
        sim.publish_acked(p, publish("r/1", QoS::ExactlyOnce, 1, b"unacked"));
        sim.expect_publish(s);
        sim.drop_conn(s);
        sim.publish_acked(p, publish("r/1", QoS::AtLeastOnce, 2, b"queued"));

        let mut c = persistent(version, "sub");
        c.clean_start = true;
        let (s, ack) = sim.connect(c);
        assert!(!ack.session_present);
        sim.expect_silent(s);
        sim.publish_acked(p, publish("r/1", QoS::AtLeastOnce, 3, b"after"));
        sim.expect_silent(s);
        assert_eq!(sim.broker.subscription_count(), 0);
        assert!(sim.durable().messages.is_empty());
        // v3 clean session 1 stores nothing; v5 clean start 1 with an expiry stores a new,
        // empty session.
        if let Some(durable) = sim.durable().sessions.get(&ClientId::new("sub")) {
            assert!(version.is_v5());
            assert!(durable.subscriptions.is_empty() && durable.outbound.is_empty());
        }
    }
}

/// [MQTT-3.2.2-3] (3.1.1): clean session 0 without a stored session gives session present 0;
/// 3.1.1 clean session 1 ends the session with the connection, so a later resume finds none.
#[test]
fn v3_clean_session_ends_with_the_connection() {
    for version in [V311, V31] {
        let mut sim = Sim::new();
        let (c, ack) = sim.connect(persistent(version, "c"));
        assert!(!ack.session_present);
        sim.send(c, disconnect(ReasonCode::Success));
        let c = sim.clean(version, "c");
        sim.sub(c, 1, "x", QoS::AtLeastOnce);
        sim.send(c, disconnect(ReasonCode::Success));
        assert_eq!(sim.broker.session_queue(&ClientId::new("c")), None);
        assert!(sim.durable().sessions.is_empty());
        let (_, ack) = sim.connect(persistent(version, "c"));
        assert!(!ack.session_present);
        assert_eq!(sim.broker.subscription_count(), 0);
    }
}

/// [MQTT-3.1.2-23]: the session is kept for the Session Expiry Interval after the
/// connection closes, and no longer: then it is gone, messages and subscriptions with it.
#[test]
fn v5_session_expires_after_its_interval() {
    for graceful in [true, false] {
        let mut sim = Sim::new();
        let mut c = connect(V5, "s", false);
        c.properties.session_expiry_interval = Some(10);
        let (s, _) = sim.connect(c.clone());
        sim.sub(s, 1, "e/#", QoS::AtLeastOnce);
        if graceful {
            sim.send(s, disconnect(ReasonCode::Success));
        } else {
            sim.drop_conn(s);
        }
        let p = sim.clean(V5, "p");
        sim.publish_acked(p, publish("e/1", QoS::AtLeastOnce, 1, b"queued"));
        assert_eq!(sim.broker.session_queue(&ClientId::new("s")), Some((1, 0)));
        sim.advance(9_999);
        assert!(sim.broker.session_queue(&ClientId::new("s")).is_some());
        sim.advance(1);
        assert_eq!(sim.broker.session_queue(&ClientId::new("s")), None);
        assert_eq!(sim.broker.metrics().sessions_expired, 1);
        assert!(!sim.durable().sessions.contains_key(&ClientId::new("s")));
        assert!(sim.durable().messages.is_empty());
        let (s, ack) = sim.connect(c);
        assert!(!ack.session_present);
        sim.expect_silent(s);
        assert_eq!(sim.broker.subscription_count(), 0);
    }
}

/// A reconnection before the interval ends keeps the session, and the old expiry deadline
/// no longer applies after the next disconnection.
#[test]
fn reconnect_before_expiry_keeps_the_session() {
    let mut sim = Sim::new();
    let mut c = connect(V5, "s", false);
    c.properties.session_expiry_interval = Some(10);
    let (s, _) = sim.connect(c.clone());
    sim.sub(s, 1, "e/#", QoS::AtLeastOnce);
    sim.drop_conn(s);
    sim.advance(8_000);
    let (s, ack) = sim.connect(c.clone());
    assert!(ack.session_present);
    sim.advance(5_000);
    sim.drop_conn(s);
    sim.advance(9_000); // 22 s after the first disconnect, 9 s after the second
    assert!(sim.broker.session_queue(&ClientId::new("s")).is_some());
    sim.advance(1_000);
    assert!(sim.broker.session_queue(&ClientId::new("s")).is_none());
}

/// MQTT 5 §3.14.2.2.2: DISCONNECT may shorten the session expiry (to 0: the session ends
/// now), but may not set one when CONNECT had 0 [MQTT-3.14.2-2]: protocol error.
#[test]
fn disconnect_changes_session_expiry() {
    let mut sim = Sim::new();
    let s = sim.persistent(V5, "s");
    sim.sub(s, 1, "e/#", QoS::AtLeastOnce);
    sim.send(
        s,
        Packet::Disconnect(Disconnect {
            reason: ReasonCode::Success,
            properties: DisconnectProperties {
                session_expiry_interval: Some(0),
                ..Default::default()
            },
        }),
    );
    assert!(sim.is_closed(s));
    assert_eq!(sim.broker.session_queue(&ClientId::new("s")), None);
    assert!(sim.durable().sessions.is_empty());

    let c = sim.clean(V5, "c");
    sim.send(
        c,
        Packet::Disconnect(Disconnect {
            reason: ReasonCode::Success,
            properties: DisconnectProperties {
                session_expiry_interval: Some(60),
                ..Default::default()
            },
        }),
    );
    assert_eq!(sim.expect_disconnect(c).reason, ReasonCode::ProtocolError);
    assert!(sim.is_closed(c));
}

/// [MQTT-3.1.4-3]: a CONNECT with the client id of a connected client takes the session
/// over: the old connection gets DISCONNECT 0x8E (v5) and is closed; the new one resumes
/// (session present with clean start 0) and gets the unacknowledged messages.
#[test]
fn takeover_closes_the_old_connection_and_resumes() {
    for old_v in [V311, V5] {
        for new_v in [V311, V5] {
            let mut sim = Sim::new();
            let old = sim.persistent(old_v, "c");
            sim.sub(old, 1, "t/#", QoS::AtLeastOnce);
            let p = sim.persistent(V5, "p");
            sim.publish_acked(p, publish("t/1", QoS::AtLeastOnce, 1, b"m"));
            let m = sim.expect_publish(old);
            let (new, ack) = sim.connect(persistent(new_v, "c"));
            assert!(ack.session_present);
            if old_v.is_v5() {
                assert_eq!(
                    sim.expect_disconnect(old).reason,
                    ReasonCode::SessionTakenOver
                );
            }
            sim.expect_silent(old);
            assert!(sim.is_closed(old));
            let again = sim.expect_publish(new);
            assert!(again.dup);
            assert_eq!(again.packet_id, m.packet_id);
            // The driver reports the old transport's end later: no effect on the session.
            sim.drop_conn(old);
            sim.ack_publish(new, &again);
            sim.publish_acked(p, publish("t/1", QoS::AtLeastOnce, 2, b"n"));
            assert_eq!(text(&sim.receive(new)), "n");
        }
    }
}
