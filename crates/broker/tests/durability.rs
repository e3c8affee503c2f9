//! Durability gating: an acknowledgement that promises durable state leaves only after
//! `handle_persisted` of the batch holding that state (GUIDE §2; broker docs, "Durability";
//! the store contract in `quartet_store`). Every test runs with persists that complete late
//! (`Sim::manual`). The harness additionally checks, for every packet of every test, that no
//! such packet leaves in the step that produced it while a batch is outstanding.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod harness;

use harness::*;
use quartet_proto::*;

/// A persistent subscriber `sub` on `a/#` at QoS 2 and a persistent publisher `pub`, set up
/// with everything durable, then switched to late persists.
fn setup(version: ProtocolVersion) -> (Sim, quartet_broker::ConnId, quartet_broker::ConnId) {
    let mut sim = Sim::new();
    let s = sim.persistent(version, "sub");
    sim.sub(s, 1, "a/#", QoS::ExactlyOnce);
    let p = sim.persistent(version, "pub");
    sim.set_manual(true);
    (sim, s, p)
}

/// [MQTT-3.2.2-3] session present promises a stored session; GUIDE §2: CONNACK waits for the
/// session record to be durable.
#[test]
fn connack_of_a_persistent_session_waits_for_its_batch() {
    for version in [V31, V311, V5] {
        let mut sim = Sim::new().manual();
        let c = sim.open_connect(persistent(version, "c"));
        sim.expect_silent(c);
        assert!(
            sim.pending_persists() > 0,
            "{version}: the session must be persisted"
        );
        sim.complete_persists();
        let ack = sim.expect_connack(c);
        assert_eq!(ack.reason, ReasonCode::Success);
        assert!(sim.durable().sessions.contains_key(&ClientId::new("c")));
    }
}

/// [MQTT-3.8.4-1] SUBACK; GUIDE §2: it waits for the subscription to be durable. Same for
/// UNSUBACK.
#[test]
fn suback_and_unsuback_wait_for_their_batch() {
    for version in [V31, V311, V5] {
        let mut sim = Sim::new();
        let c = sim.persistent(version, "c");
        sim.set_manual(true);
        sim.send(
            c,
            Packet::Subscribe(subscribe(3, &[("x/+", opts(QoS::AtLeastOnce))])),
        );
        sim.expect_silent(c);
        assert_eq!(sim.pending_persists(), 1);
        sim.complete_persists();
        assert_eq!(sim.expect_suback(c).packet_id, pid(3));
        let durable = &sim.durable().sessions[&ClientId::new("c")];
        assert!(durable.subscriptions.contains_key("x/+"));

        sim.send(c, Packet::Unsubscribe(unsubscribe(4, &["x/+"])));
        sim.expect_silent(c);
        sim.complete_persists();
        assert_eq!(sim.expect_unsuback(c).packet_id, pid(4));
        let durable = &sim.durable().sessions[&ClientId::new("c")];
        assert!(durable.subscriptions.is_empty());
    }
}

/// [MQTT-4.3.2-2] PUBACK means the receiver accepted ownership; GUIDE §2: only once the
/// routed copies are durable. The outbound QoS 1 PUBLISH waits for its packet id to be
/// durable (GUIDE §3, outbound rule 1).
#[test]
fn qos1_puback_and_forwarded_publish_wait_for_the_batch() {
    for version in [V31, V311, V5] {
        let (mut sim, s, p) = setup(version);
        sim.publish(p, publish("a/1", QoS::AtLeastOnce, 10, b"m1"));
        sim.expect_silent(p);
        sim.expect_silent(s);
        assert_eq!(sim.pending_persists(), 1);
        sim.complete_persists();
        assert_eq!(sim.expect_puback(p).packet_id, pid(10));
        let got = sim.expect_publish(s);
        assert_eq!((got.qos, text(&got)), (QoS::AtLeastOnce, "m1"));
        // The subscriber's PUBACK deletes the record: no answer is owed, but the deletion is a
        // batch of its own.
        sim.send(s, Packet::PubAck(PubAck::new(got.packet_id.unwrap())));
        assert_eq!(sim.pending_persists(), 1);
        sim.complete_persists();
        assert_eq!(
            sim.broker.session_queue(&ClientId::new("sub")),
            Some((0, 0))
        );
    }
}

/// QoS 2 both ways: PUBREC waits for the route + received id [MQTT-4.3.3-8], PUBCOMP for
/// the id's removal [MQTT-4.3.3-11], PUBREL to the subscriber for the "released" record
/// [MQTT-4.3.3-4].
#[test]
fn qos2_acks_wait_for_their_batches() {
    for version in [V31, V311, V5] {
        let (mut sim, s, p) = setup(version);
        sim.publish(p, publish("a/2", QoS::ExactlyOnce, 20, b"m2"));
        sim.expect_silent(p);
        sim.expect_silent(s);
        sim.complete_persists();
        assert_eq!(sim.expect_pubrec(p).packet_id, pid(20));
        let got = sim.expect_publish(s);
        assert_eq!(got.qos, QoS::ExactlyOnce);
        let id = got.packet_id.unwrap();

        sim.send(p, Packet::PubRel(ack(20)));
        sim.expect_silent(p);
        sim.complete_persists();
        assert_eq!(sim.expect_pubcomp(p).packet_id, pid(20));

        sim.send(s, Packet::PubRec(PubAck::new(id)));
        sim.expect_silent(s);
        sim.complete_persists();
        assert_eq!(sim.expect_pubrel(s).packet_id, id);
        sim.send(s, Packet::PubComp(PubAck::new(id)));
        sim.complete_persists();
        assert_eq!(
            sim.broker.session_queue(&ClientId::new("sub")),
            Some((0, 0))
        );
        assert!(sim.durable().sessions[&ClientId::new("pub")]
            .inbound
            .is_empty());
    }
}

/// Tokens complete in order and each releases exactly its own acknowledgements, in the order
/// the packets arrived [MQTT-4.6.0-2] [MQTT-4.6.0-3].
#[test]
fn acks_leave_per_token_and_in_order() {
    for version in [V311, V5] {
        let (mut sim, _s, p) = setup(version);
        sim.publish(p, publish("a/1", QoS::AtLeastOnce, 1, b"1"));
        sim.publish(p, publish("a/2", QoS::ExactlyOnce, 2, b"2"));
        sim.publish(p, publish("a/3", QoS::AtLeastOnce, 3, b"3"));
        assert_eq!(sim.pending_persists(), 3);
        sim.expect_silent(p);
        sim.complete_first(1);
        assert_eq!(sim.expect_puback(p).packet_id, pid(1));
        sim.expect_silent(p);
        sim.complete_first(1);
        assert_eq!(sim.expect_pubrec(p).packet_id, pid(2));
        sim.expect_silent(p);
        sim.complete_first(1);
        assert_eq!(sim.expect_puback(p).packet_id, pid(3));
        sim.expect_silent(p);
    }
}

/// A step without ops that must be ordered behind an earlier one (a QoS 1 PUBLISH nobody
/// subscribes to) still waits: the connection's packets leave in order (broker docs).
#[test]
fn an_ack_without_ops_still_waits_behind_earlier_ones() {
    let (mut sim, _s, p) = setup(V5);
    sim.publish(p, publish("a/1", QoS::AtLeastOnce, 1, b"1"));
    sim.publish(p, publish("nobody/listens", QoS::AtLeastOnce, 2, b"2"));
    sim.send(p, Packet::PingReq);
    sim.expect_silent(p);
    sim.complete_persists();
    let got = sim.take(p);
    assert_eq!(
        got,
        vec![
            Packet::PubAck(ack(1)),
            Packet::PubAck(ack(2)),
            Packet::PingResp
        ]
    );
}

/// QoS 0 traffic to other connections is not held back by someone else's batch (GUIDE §2:
/// a connection never waits for another's fsync unless it must).
#[test]
fn qos0_to_other_connections_is_not_held_back() {
    for version in [V31, V311, V5] {
        let (mut sim, _s, p) = setup(version);
        sim.set_manual(false);
        let watcher = sim.clean(version, "watcher");
        sim.sub(watcher, 1, "a/#", QoS::AtMostOnce);
        let other = sim.clean(version, "other");
        sim.set_manual(true);
        sim.publish(p, publish("a/1", QoS::AtLeastOnce, 5, b"durable"));
        assert_eq!(sim.pending_persists(), 1);
        // The watcher sees the message at once; the publisher's PUBACK waits.
        let got = sim.expect_publish(watcher);
        assert_eq!((got.qos, text(&got)), (QoS::AtMostOnce, "durable"));
        sim.expect_silent(p);
        // So does QoS 0 published while the batch is still outstanding, and PINGRESP.
        sim.publish(other, publish("a/2", QoS::AtMostOnce, 0, b"fast"));
        assert_eq!(text(&sim.expect_publish(watcher)), "fast");
        sim.send(watcher, Packet::PingReq);
        assert_eq!(sim.expect(watcher), Packet::PingResp);
        sim.expect_silent(p);
        sim.complete_persists();
        assert_eq!(sim.expect_puback(p).packet_id, pid(5));
    }
}

/// What a crash takes away was never acknowledged: with the batch lost, neither the PUBACK nor
/// the forwarded PUBLISH ever left, and the retransmission after restart is routed once.
#[test]
fn a_lost_batch_was_never_acknowledged() {
    for version in [V311, V5] {
        let (mut sim, s, p) = setup(version);
        sim.publish(p, publish("a/1", QoS::AtLeastOnce, 7, b"m"));
        sim.publish(p, publish("a/1", QoS::ExactlyOnce, 8, b"n"));
        sim.expect_silent(p);
        sim.expect_silent(s);
        sim.crash();
        sim.set_manual(false);
        // The publisher resends both (it never got an acknowledgement) [MQTT-4.4.0-1].
        let (p, ack) = sim.connect(persistent(version, "pub"));
        assert!(ack.session_present);
        let mut m = publish("a/1", QoS::AtLeastOnce, 7, b"m");
        m.dup = true;
        sim.publish_acked(p, m);
        let mut n = publish("a/1", QoS::ExactlyOnce, 8, b"n");
        n.dup = true;
        sim.publish_acked(p, n);
        let (s, _) = sim.connect(persistent(version, "sub"));
        let got: Vec<String> = sim
            .take_publishes(s)
            .iter()
            .map(|p| text(p).to_owned())
            .collect();
        assert_eq!(got, ["m", "n"]);
    }
}
