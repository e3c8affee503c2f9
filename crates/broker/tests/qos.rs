//! QoS 1 and QoS 2 flows, inbound (client to broker) and outbound (broker to client), for
//! every protocol version (MQTT 5 §4.3, MQTT 3.1.1 §4.3; GUIDE §3).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod harness;

use harness::*;
use quartet_broker::ConnId;
use quartet_proto::*;

fn pair(sim: &mut Sim, pv: ProtocolVersion, sv: ProtocolVersion, qos: QoS) -> (ConnId, ConnId) {
    let s = sim.persistent(sv, "sub");
    sim.sub(s, 1, "q/#", qos);
    let p = sim.persistent(pv, "pub");
    (p, s)
}

/// [MQTT-4.3.2-1] a new packet id and DUP 0 for a new message; [MQTT-4.3.2-2] the receiver
/// answers PUBACK with the same id; after PUBACK the record is gone.
#[test]
fn qos1_inbound_and_outbound() {
    for pv in [V31, V311, V5] {
        for sv in [V31, V311, V5] {
            let mut sim = Sim::new();
            let (p, s) = pair(&mut sim, pv, sv, QoS::AtLeastOnce);
            sim.publish(p, publish("q/1", QoS::AtLeastOnce, 300, b"hello"));
            assert_eq!(sim.expect_puback(p), ack(300));
            let got = sim.expect_publish(s);
            assert_eq!(got.qos, QoS::AtLeastOnce);
            assert!(!got.dup && !got.retain);
            assert_eq!(got.topic, topic("q/1"));
            assert_eq!(text(&got), "hello");
            assert_eq!(
                sim.broker.session_queue(&ClientId::new("sub")),
                Some((0, 1))
            );
            sim.send(s, Packet::PubAck(PubAck::new(got.packet_id.unwrap())));
            assert_eq!(
                sim.broker.session_queue(&ClientId::new("sub")),
                Some((0, 0))
            );
            assert!(sim.durable().sessions[&ClientId::new("sub")]
                .outbound
                .is_empty());
            sim.expect_silent(s);
            sim.expect_silent(p);
        }
    }
}

/// [MQTT-4.3.3-1]..[MQTT-4.3.3-5] (sender) and [MQTT-4.3.3-8], [MQTT-4.3.3-11] (receiver):
/// PUBLISH, PUBREC, PUBREL, PUBCOMP with one packet id, in both directions.
#[test]
fn qos2_inbound_and_outbound() {
    for pv in [V31, V311, V5] {
        for sv in [V31, V311, V5] {
            let mut sim = Sim::new();
            let (p, s) = pair(&mut sim, pv, sv, QoS::ExactlyOnce);
            sim.publish(p, publish("q/2", QoS::ExactlyOnce, 9, b"once"));
            assert_eq!(sim.expect_pubrec(p), ack(9));
            assert!(sim.durable().sessions[&ClientId::new("pub")]
                .inbound
                .contains(&pid(9)));
            let got = sim.expect_publish(s);
            assert_eq!(
                (got.qos, got.dup, text(&got)),
                (QoS::ExactlyOnce, false, "once")
            );
            let id = got.packet_id.unwrap();

            sim.send(p, Packet::PubRel(ack(9)));
            assert_eq!(sim.expect_pubcomp(p), ack(9));
            assert!(sim.durable().sessions[&ClientId::new("pub")]
                .inbound
                .is_empty());

            sim.send(s, Packet::PubRec(PubAck::new(id)));
            assert_eq!(sim.expect_pubrel(s), PubAck::new(id));
            // Released: the body is gone from the store, only the id is owed a PUBREL.
            let rec = &sim.durable().sessions[&ClientId::new("sub")].outbound;
            assert_eq!(rec.len(), 1);
            let rec = rec.values().next().unwrap();
            assert_eq!(rec.phase, quartet_store::OutboundPhase::Released);
            assert_eq!(rec.msg, None);
            assert!(sim.durable().messages.is_empty());
            sim.send(s, Packet::PubComp(PubAck::new(id)));
            assert_eq!(
                sim.broker.session_queue(&ClientId::new("sub")),
                Some((0, 0))
            );
            assert!(sim.durable().sessions[&ClientId::new("sub")]
                .outbound
                .is_empty());
            sim.expect_silent(s);
            sim.expect_silent(p);
        }
    }
}

/// [MQTT-4.3.3-10]: until PUBREL, a PUBLISH with the same packet id (DUP or not) gets PUBREC
/// again and causes no duplicate onward delivery; [MQTT-4.3.3-12]: after PUBCOMP the same id
/// is a new message.
#[test]
fn qos2_retransmission_routes_nothing_twice() {
    for version in [V31, V311, V5] {
        let mut sim = Sim::new();
        let (p, s) = pair(&mut sim, version, V5, QoS::ExactlyOnce);
        let first = publish("q/x", QoS::ExactlyOnce, 42, b"first");
        sim.publish(p, first.clone());
        assert_eq!(sim.expect_pubrec(p), ack(42));
        let mut dup = first.clone();
        dup.dup = true;
        sim.publish(p, dup);
        assert_eq!(sim.expect_pubrec(p), ack(42));
        // Not even a retransmission without DUP, nor one with another payload, is routed.
        sim.publish(p, publish("q/x", QoS::ExactlyOnce, 42, b"other"));
        assert_eq!(sim.expect_pubrec(p), ack(42));
        let got = sim.take_publishes(s);
        assert_eq!(got.len(), 1, "{version}: routed more than once: {got:?}");
        assert_eq!(text(&got[0]), "first");
        sim.ack_publish(s, &got[0]);
        assert_eq!(sim.broker.metrics().messages_received, 3);

        sim.send(p, Packet::PubRel(ack(42)));
        assert_eq!(sim.expect_pubcomp(p), ack(42));
        // After PUBCOMP, packet id 42 starts a new message.
        sim.publish(p, publish("q/x", QoS::ExactlyOnce, 42, b"second"));
        assert_eq!(sim.expect_pubrec(p), ack(42));
        assert_eq!(text(&sim.receive(s)), "second");
    }
}

/// [MQTT-4.3.2-4]: after PUBACK a QoS 1 PUBLISH with the same packet id is a new message (so
/// a QoS 1 retransmission is routed again: at least once).
#[test]
fn qos1_retransmission_is_a_new_message() {
    for version in [V31, V311, V5] {
        let mut sim = Sim::new();
        let (p, s) = pair(&mut sim, version, version, QoS::AtLeastOnce);
        let m = publish("q/1", QoS::AtLeastOnce, 5, b"m");
        sim.publish(p, m.clone());
        assert_eq!(sim.expect_puback(p), ack(5));
        let mut dup = m;
        dup.dup = true;
        sim.publish(p, dup);
        assert_eq!(sim.expect_puback(p), ack(5));
        let got = sim.take_publishes(s);
        assert_eq!(got.len(), 2);
        assert_ne!(got[0].packet_id, got[1].packet_id, "two messages in flight");
    }
}

/// MQTT 5 §3.7.2.1: PUBREL for an unknown packet id gets PUBCOMP with 0x92 (Packet Identifier
/// not found); 3.1/3.1.1 have no reason code, PUBCOMP all the same so the client can finish.
#[test]
fn pubrel_for_unknown_id_gets_pubcomp() {
    for version in [V31, V311, V5] {
        let mut sim = Sim::new();
        let c = sim.persistent(version, "c");
        sim.send(c, Packet::PubRel(ack(77)));
        let comp = sim.expect_pubcomp(c);
        assert_eq!(comp.packet_id, pid(77));
        let want = if version.is_v5() {
            ReasonCode::PacketIdentifierNotFound
        } else {
            ReasonCode::Success
        };
        assert_eq!(comp.reason, want, "{version}");
        assert!(!sim.is_closed(c));
    }
}

/// MQTT 5 §3.6.2.1: PUBREC for an id the broker has no exchange for gets PUBREL 0x92, so the
/// client's state machine can end.
#[test]
fn pubrec_for_unknown_id_gets_pubrel() {
    for version in [V311, V5] {
        let mut sim = Sim::new();
        let c = sim.persistent(version, "c");
        sim.send(c, Packet::PubRec(ack(3)));
        let rel = sim.expect_pubrel(c);
        assert_eq!(rel.packet_id, pid(3));
        let want = if version.is_v5() {
            ReasonCode::PacketIdentifierNotFound
        } else {
            ReasonCode::Success
        };
        assert_eq!(rel.reason, want);
    }
}

/// [MQTT-3.8.4-8] (v5) / [MQTT-3.8.4-6] (3.1.1): the delivery QoS is the minimum of the
/// published QoS and the granted QoS.
#[test]
fn delivery_qos_is_the_minimum() {
    for version in [V31, V311, V5] {
        for sub_qos in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce] {
            for pub_qos in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce] {
                let mut sim = Sim::new();
                let (p, s) = pair(&mut sim, version, version, sub_qos);
                let id = if pub_qos == QoS::AtMostOnce { 0 } else { 1 };
                sim.publish_acked(p, publish("q/m", pub_qos, id, b"x"));
                let got = sim.expect_publish(s);
                assert_eq!(
                    got.qos,
                    pub_qos.min(sub_qos),
                    "{version} {pub_qos:?} {sub_qos:?}"
                );
                assert_eq!(got.packet_id.is_some(), got.qos != QoS::AtMostOnce);
            }
        }
    }
}

/// MQTT 5 §4.3.3 / [MQTT-4.4.0-2]: a PUBREC with a reason code of 0x80 or more ends the
/// exchange; the message is not retransmitted and the window moves on.
#[test]
fn pubrec_error_ends_the_exchange() {
    let mut sim = Sim::new();
    let (p, s) = pair(&mut sim, V5, V5, QoS::ExactlyOnce);
    sim.publish_acked(p, publish("q/1", QoS::ExactlyOnce, 1, b"refused"));
    let got = sim.expect_publish(s);
    sim.send(
        s,
        Packet::PubRec(PubAck {
            packet_id: got.packet_id.unwrap(),
            reason: ReasonCode::UnspecifiedError,
            properties: AckProperties::default(),
        }),
    );
    sim.expect_silent(s);
    assert_eq!(
        sim.broker.session_queue(&ClientId::new("sub")),
        Some((0, 0))
    );
    // Reconnecting resends nothing.
    sim.send(s, disconnect(ReasonCode::Success));
    let (s, ack) = sim.connect(persistent(V5, "sub"));
    assert!(ack.session_present);
    sim.expect_silent(s);
}

/// Packet ids of outbound messages are unique among those in flight [MQTT-2.2.1-3], and a
/// freed id may be used again. Checked by the harness on every PUBLISH; here with many
/// messages and out-of-order acknowledgements.
#[test]
fn outbound_packet_ids_stay_unique_while_in_flight() {
    let mut sim = Sim::new();
    let (p, s) = pair(&mut sim, V5, V311, QoS::ExactlyOnce);
    let mut held = Vec::new();
    for i in 0..200u16 {
        let qos = if i % 2 == 0 {
            QoS::AtLeastOnce
        } else {
            QoS::ExactlyOnce
        };
        sim.publish_acked(p, publish("q/u", qos, i + 1, &i.to_be_bytes()));
        let got = sim.expect_publish(s);
        if i % 3 == 0 {
            held.push(got);
        } else {
            sim.ack_publish(s, &got);
        }
    }
    for got in held.iter().rev() {
        sim.ack_publish(s, got);
    }
    assert_eq!(
        sim.broker.session_queue(&ClientId::new("sub")),
        Some((0, 0))
    );
}
