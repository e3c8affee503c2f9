//! Crash and restart: `Sim::crash` drops the broker and every batch not yet durable and
//! rebuilds the broker from the durable state (broker docs, calling contract step 1; the store
//! contract: the recovered state is a prefix of whole batches including every committed one).
//! What was acknowledged survives; what was lost was never acknowledged.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod harness;

use harness::*;
use quartet_proto::*;

/// Everything acknowledged survives a crash: subscriptions, retained messages, queued
/// messages, in-flight messages with their packet ids (resent with DUP=1 and the same id
/// [MQTT-4.4.0-1]), the "released" state (PUBREL resent), and the inbound QoS 2 ids, so a
/// retransmitted PUBLISH is not routed twice [MQTT-4.3.3-10] (GUIDE §3, inbound rule 4).
#[test]
fn acknowledged_state_survives_a_crash() {
    for version in [V31, V311, V5] {
        let mut sim = Sim::new();
        let s = sim.persistent(version, "sub");
        sim.sub(s, 1, "q/#", QoS::ExactlyOnce);
        let p = sim.persistent(version, "pub");
        let mut r = publish("q/retained", QoS::AtLeastOnce, 1, b"kept");
        r.retain = true;
        sim.publish_acked(p, r);
        let m_ret = sim.expect_publish(s); // in flight, never acknowledged
        sim.publish_acked(p, publish("q/a", QoS::ExactlyOnce, 2, b"released"));
        let m_rel = sim.expect_publish(s);
        sim.send(s, Packet::PubRec(PubAck::new(m_rel.packet_id.unwrap())));
        assert_eq!(sim.expect_pubrel(s).packet_id, m_rel.packet_id.unwrap());
        sim.drop_conn(s);
        sim.publish_acked(p, publish("q/b", QoS::AtLeastOnce, 3, b"queued"));
        // A QoS 2 message whose PUBREC the publisher never read: it will retransmit.
        sim.publish(p, publish("q/c", QoS::ExactlyOnce, 4, b"exactly-once"));
        assert_eq!(sim.expect_pubrec(p).packet_id, pid(4));

        sim.crash();
        assert_eq!(sim.broker.subscription_count(), 1, "{version}");
        assert_eq!(sim.broker.retained_count(), 1);
        assert_eq!(
            sim.broker.session_queue(&ClientId::new("sub")),
            Some((2, 2)),
            "queued: q/b and q/c; in flight: the retained one and the released one"
        );

        // The publisher resends what it holds unacknowledged: the QoS 2 PUBLISH (DUP).
        let (p, connack) = sim.connect(persistent(version, "pub"));
        assert_eq!(connack.session_present, version != V31);
        let mut again = publish("q/c", QoS::ExactlyOnce, 4, b"exactly-once");
        again.dup = true;
        sim.publish(p, again);
        assert_eq!(sim.expect_pubrec(p).packet_id, pid(4));
        sim.send(p, Packet::PubRel(ack(4)));
        assert_eq!(sim.expect_pubcomp(p).packet_id, pid(4));

        let (s, ack) = sim.connect(persistent(version, "sub"));
        assert_eq!(ack.session_present, version != V31);
        let got = sim.take(s);
        assert_eq!(got.len(), 4, "{version}: {got:#?}");
        let mut dup = m_ret.clone();
        dup.dup = true;
        assert_eq!(got[0], Packet::Publish(dup));
        assert_eq!(
            got[1],
            Packet::PubRel(PubAck::new(m_rel.packet_id.unwrap()))
        );
        let texts: Vec<&str> = got[2..]
            .iter()
            .map(|p| match p {
                Packet::Publish(p) => text(p),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(texts, ["queued", "exactly-once"], "routed exactly once");
        for p in &got {
            match p {
                Packet::Publish(p) => sim.ack_publish(s, p),
                Packet::PubRel(a) => sim.send(s, Packet::PubComp(a.clone())),
                _ => unreachable!(),
            }
        }
        assert_eq!(
            sim.broker.session_queue(&ClientId::new("sub")),
            Some((0, 0))
        );

        // The retained message survived too [MQTT-3.3.1-5].
        let n = sim.clean(version, "new");
        sim.sub(n, 1, "q/retained", QoS::AtLeastOnce);
        let got = sim.receive(n);
        assert!(got.retain);
        assert_eq!(text(&got), "kept");
    }
}

/// State whose batch was not durable at the crash may be lost, but then its acknowledgement
/// never left: a SUBSCRIBE without SUBACK, a PUBLISH without PUBACK, a retained message, an
/// UNSUBSCRIBE without UNSUBACK.
#[test]
fn unacknowledged_state_may_be_lost_but_was_never_acked() {
    for version in [V311, V5] {
        let mut sim = Sim::new();
        let s = sim.persistent(version, "sub");
        sim.sub(s, 1, "old/#", QoS::AtLeastOnce);
        let p = sim.persistent(version, "pub");
        sim.set_manual(true);
        sim.send(
            s,
            Packet::Subscribe(subscribe(2, &[("new/#", opts(QoS::AtLeastOnce))])),
        );
        sim.send(s, Packet::Unsubscribe(unsubscribe(3, &["old/#"])));
        let mut r = publish("old/x", QoS::AtLeastOnce, 9, b"lost");
        r.retain = true;
        sim.publish(p, r);
        sim.expect_silent(s);
        sim.expect_silent(p);
        assert!(sim.pending_persists() >= 3);
        sim.crash();
        sim.set_manual(false);
        // None of it happened.
        assert_eq!(sim.broker.retained_count(), 0);
        let (s, _) = sim.connect(persistent(version, "sub"));
        sim.expect_silent(s);
        let (p, _) = sim.connect(persistent(version, "pub"));
        sim.publish_acked(
            p,
            publish("old/y", QoS::AtLeastOnce, 1, b"still subscribed"),
        );
        assert_eq!(text(&sim.receive(s)), "still subscribed");
        sim.publish_acked(
            p,
            publish("new/y", QoS::AtLeastOnce, 2, b"never subscribed"),
        );
        sim.expect_silent(s);
    }
}

/// Group commit completes a prefix: with batches 1..3 outstanding and 1..2 made durable, a
/// crash keeps exactly the first two, and exactly their acknowledgements left.
#[test]
fn crash_keeps_exactly_the_completed_prefix() {
    let mut sim = Sim::new();
    let s = sim.persistent(V5, "sub");
    sim.sub(s, 1, "q/#", QoS::AtLeastOnce);
    sim.drop_conn(s);
    let p = sim.persistent(V5, "pub");
    sim.set_manual(true);
    for i in 1..=3u16 {
        sim.publish(p, publish("q/x", QoS::AtLeastOnce, i, &[b'0' + i as u8]));
    }
    sim.complete_first(2);
    assert_eq!(
        sim.take(p),
        vec![Packet::PubAck(ack(1)), Packet::PubAck(ack(2))]
    );
    sim.crash();
    sim.set_manual(false);
    let s = sim.persistent(V5, "sub");
    let got: Vec<String> = sim
        .take_publishes(s)
        .iter()
        .map(|p| text(p).to_owned())
        .collect();
    assert_eq!(got, ["1", "2"]);
}

/// A new message after a restart never takes a packet id still in flight from before it
/// (checked by the harness on every PUBLISH) [MQTT-2.2.1-3].
#[test]
fn packet_ids_after_restart_avoid_recovered_ones() {
    let mut sim = Sim::new();
    let s = sim.persistent(V5, "sub");
    sim.sub(s, 1, "q/#", QoS::ExactlyOnce);
    let p = sim.persistent(V5, "pub");
    for i in 1..=5u16 {
        sim.publish_acked(p, publish("q/x", QoS::ExactlyOnce, i, b"held"));
    }
    let held = sim.take_publishes(s);
    assert_eq!(held.len(), 5);
    sim.crash();
    let (s, _) = sim.connect(persistent(V5, "sub"));
    let resent = sim.take_publishes(s);
    assert_eq!(resent.len(), 5);
    for (a, b) in held.iter().zip(&resent) {
        assert!(b.dup);
        assert_eq!(a.packet_id, b.packet_id);
    }
    let (p, _) = sim.connect(persistent(V5, "pub"));
    for i in 6..=10u16 {
        sim.publish_acked(p, publish("q/x", QoS::ExactlyOnce, i, b"new"));
    }
    let new = sim.take_publishes(s);
    assert_eq!(new.len(), 5);
    for got in resent.iter().chain(&new) {
        sim.ack_publish(s, got);
    }
}

/// A session connected when the process died is disconnected at restart: its will is
/// published [MQTT-3.1.2-8] (the connection did not end with DISCONNECT) and queued for a
/// persistent subscriber.
#[test]
fn a_crash_publishes_the_wills_of_connected_clients() {
    for version in [V311, V5] {
        let mut sim = Sim::new();
        let s = sim.persistent(version, "sub");
        sim.sub(s, 1, "will/#", QoS::AtLeastOnce);
        sim.drop_conn(s);
        let mut c = persistent(version, "dies");
        c.will = Some(will("will/dies", b"gone", QoS::AtLeastOnce));
        sim.connect(c);
        sim.crash();
        let (s, _) = sim.connect(persistent(version, "sub"));
        assert_eq!(text(&sim.receive(s)), "gone");
    }
}

/// A session recovered at restart keeps its expiry: counted from the restart if it was
/// connected, and once the client reconnects and leaves again, from that disconnection
/// only [MQTT-3.1.2-23] — not from a deadline computed at the restart.
#[test]
fn recovered_session_expiry_restarts_after_reconnect() {
    let mut sim = Sim::new();
    let mut c = connect(V5, "s", false);
    c.properties.session_expiry_interval = Some(100);
    let (s, _) = sim.connect(c.clone());
    sim.sub(s, 1, "e/#", QoS::AtLeastOnce);
    sim.crash(); // at t0: the session now counts from t0
    sim.advance(50_000);
    let (s, ack) = sim.connect(c.clone());
    assert!(ack.session_present);
    sim.advance(40_000);
    sim.drop_conn(s); // at t0 + 90 s: expires at t0 + 190 s
    sim.advance(20_000); // t0 + 110 s: past the deadline computed at restart
    assert!(
        sim.broker.session_queue(&ClientId::new("s")).is_some(),
        "session ended by the expiry deadline of an earlier disconnection"
    );
    sim.advance(80_000);
    assert!(sim.broker.session_queue(&ClientId::new("s")).is_none());
}

/// Same for a delayed will recovered at restart: after a resume and a new abnormal end, the
/// will is published after the new connection's delay, not at the recovered deadline.
#[test]
fn recovered_will_timer_is_void_after_reconnect() {
    let mut sim = Sim::new();
    let w = sim.persistent(V5, "watch");
    sim.sub(w, 1, "will/#", QoS::AtLeastOnce);
    let mut c = persistent(V5, "c");
    let mut wl = will("will/c", b"bye", QoS::AtLeastOnce);
    wl.properties.will_delay_interval = Some(30);
    c.will = Some(wl);
    sim.connect(c.clone());
    sim.crash(); // will due at t0 + 30 s unless the client comes back
    let (w, _) = sim.connect(persistent(V5, "watch"));
    sim.advance(10_000);
    let (cc, ack) = sim.connect(c.clone());
    assert!(ack.session_present);
    sim.advance(10_000);
    sim.drop_conn(cc); // t0 + 20 s: the will is due at t0 + 50 s
    sim.advance(15_000); // t0 + 35 s
    sim.expect_silent(w);
    sim.advance(15_000); // t0 + 50 s
    assert_eq!(text(&sim.receive(w)), "bye");
}
