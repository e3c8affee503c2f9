//! Will messages (MQTT 5 §3.1.2.5, §3.1.3.2; MQTT 3.1.1 §3.1.2.5).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod harness;

use harness::*;
use quartet_broker::ConnId;
use quartet_proto::*;

/// A persistent watcher on `will/#` (QoS 1) and a client `c` with a will on `will/c`.
fn setup(sim: &mut Sim, version: ProtocolVersion, delay: Option<u32>) -> (ConnId, ConnId) {
    let w = sim.persistent(V5, "watch");
    sim.sub(w, 1, "will/#", QoS::AtLeastOnce);
    let mut c = persistent(version, "c");
    let mut wl = will("will/c", b"bye", QoS::AtLeastOnce);
    wl.properties.will_delay_interval = delay;
    c.will = Some(wl);
    let (c, _) = sim.connect(c);
    (w, c)
}

/// [MQTT-3.1.2-8]: a connection that ends without DISCONNECT publishes the will.
#[test]
fn abnormal_close_publishes_the_will() {
    for version in [V31, V311, V5] {
        let mut sim = Sim::new();
        let (w, c) = setup(&mut sim, version, None);
        sim.drop_conn(c);
        let got = sim.receive(w);
        assert_eq!((got.topic.as_str(), text(&got)), ("will/c", "bye"));
        assert_eq!(got.qos, QoS::AtLeastOnce);
        // Published once: it is removed from the session [MQTT-3.1.2-10].
        let (c, _) = sim.connect(persistent(version, "c"));
        sim.drop_conn(c);
        sim.expect_silent(w);
    }
}

/// [MQTT-3.14.4-3]: DISCONNECT (v5: reason 0x00) discards the will.
#[test]
fn disconnect_discards_the_will() {
    for version in [V31, V311, V5] {
        let mut sim = Sim::new();
        let (w, c) = setup(&mut sim, version, None);
        sim.send(c, disconnect(ReasonCode::Success));
        assert!(sim.is_closed(c));
        sim.advance(3_600_000);
        sim.expect_silent(w);
    }
}

/// MQTT 5 §3.14.2.1: DISCONNECT with 0x04 (Disconnect with Will Message) publishes it.
#[test]
fn disconnect_with_will_message_publishes_it() {
    let mut sim = Sim::new();
    let (w, c) = setup(&mut sim, V5, None);
    sim.send(c, disconnect(ReasonCode::DisconnectWithWillMessage));
    assert_eq!(text(&sim.receive(w)), "bye");
}

/// [MQTT-3.1.3-9] and MQTT 5 §3.1.3.2.2: the will waits for the Will Delay Interval...
#[test]
fn will_delay_is_honoured() {
    let mut sim = Sim::new();
    let (w, c) = setup(&mut sim, V5, Some(30));
    sim.drop_conn(c);
    sim.advance(29_999);
    sim.expect_silent(w);
    sim.advance(1);
    assert_eq!(text(&sim.receive(w)), "bye");
}

/// ... unless the session resumes first: then it is not sent [MQTT-3.1.3-9]...
#[test]
fn resume_within_the_delay_cancels_the_will() {
    let mut sim = Sim::new();
    let (w, c) = setup(&mut sim, V5, Some(30));
    sim.drop_conn(c);
    sim.advance(10_000);
    let (c, ack) = sim.connect(persistent(V5, "c"));
    assert!(ack.session_present);
    sim.advance(60_000);
    sim.expect_silent(w);
    // The new connection had no will: closing it publishes nothing.
    sim.drop_conn(c);
    sim.advance(60_000);
    sim.expect_silent(w);
}

/// ... or the session ends first: then it is sent when the session ends (MQTT 5 §3.1.3.2.2).
#[test]
fn session_end_before_the_delay_publishes_the_will() {
    let mut sim = Sim::new();
    let w = sim.persistent(V5, "watch");
    sim.sub(w, 1, "will/#", QoS::AtLeastOnce);
    let mut c = connect(V5, "c", false);
    c.properties.session_expiry_interval = Some(5);
    let mut wl = will("will/c", b"bye", QoS::AtLeastOnce);
    wl.properties.will_delay_interval = Some(30);
    c.will = Some(wl);
    let (c, _) = sim.connect(c);
    sim.drop_conn(c);
    sim.advance(4_999);
    sim.expect_silent(w);
    sim.advance(1);
    assert_eq!(text(&sim.receive(w)), "bye");
    assert_eq!(sim.broker.session_queue(&ClientId::new("c")), None);
}

/// [MQTT-3.1.4-3]: a takeover closes the old connection without DISCONNECT from the client,
/// so its will (no delay) is published.
#[test]
fn takeover_publishes_the_will() {
    for version in [V311, V5] {
        let mut sim = Sim::new();
        let (w, _old) = setup(&mut sim, version, None);
        let (_new, ack) = sim.connect(persistent(version, "c"));
        assert!(ack.session_present);
        assert_eq!(text(&sim.receive(w)), "bye");
    }
}

/// A takeover within the will delay resumes the session: the old will is not sent.
#[test]
fn takeover_within_the_delay_does_not_publish() {
    let mut sim = Sim::new();
    let (w, _old) = setup(&mut sim, V5, Some(10));
    sim.connect(persistent(V5, "c"));
    sim.advance(60_000);
    sim.expect_silent(w);
}

/// Server-side ends are abnormal too: a protocol error publishes the will [MQTT-3.1.2-8].
#[test]
fn protocol_error_publishes_the_will() {
    for version in [V311, V5] {
        let mut sim = Sim::new();
        let (w, c) = setup(&mut sim, version, None);
        sim.send(c, Packet::Connect(Box::new(connect(version, "c", false))));
        assert!(sim.is_closed(c));
        assert_eq!(text(&sim.receive(w)), "bye");
    }
}

/// A will with Will Retain 1 is published as a retained message [MQTT-3.1.2-17].
#[test]
fn retained_will() {
    let mut sim = Sim::new();
    let mut c = clean(V311, "c");
    let mut wl = will("will/c", b"offline", QoS::AtLeastOnce);
    wl.retain = true;
    c.will = Some(wl);
    let (c, _) = sim.connect(c);
    sim.drop_conn(c);
    assert_eq!(sim.broker.retained_count(), 1);
    let v = sim.clean(V311, "v");
    sim.sub(v, 1, "will/#", QoS::AtLeastOnce);
    let got = sim.receive(v);
    assert!(got.retain);
    assert_eq!(text(&got), "offline");
}

/// The will's Message Expiry Interval counts from its publication (MQTT 5 §3.1.3.2.4).
#[test]
fn will_message_expiry_counts_from_publication() {
    let mut sim = Sim::new();
    let w = sim.persistent(V5, "watch");
    sim.sub(w, 1, "will/#", QoS::AtLeastOnce);
    sim.drop_conn(w);
    let mut c = persistent(V5, "c");
    let mut wl = will("will/c", b"bye", QoS::AtLeastOnce);
    wl.properties.will_delay_interval = Some(10);
    wl.properties.message_expiry_interval = Some(20);
    c.will = Some(wl);
    let (c, _) = sim.connect(c);
    sim.drop_conn(c);
    sim.advance(25_000); // published at 10 s, expires at 30 s
    let (w, _) = sim.connect(persistent(V5, "watch"));
    let got = sim.receive(w);
    assert_eq!(got.properties.message_expiry_interval, Some(5));
}

/// A keep-alive timeout is an abnormal end: the will is published [MQTT-3.1.2-8].
#[test]
fn keep_alive_timeout_publishes_the_will() {
    for version in [V311, V5] {
        let mut sim = Sim::new();
        let w = sim.persistent(V5, "watch");
        sim.sub(w, 1, "will/#", QoS::AtLeastOnce);
        let mut c = persistent(version, "c");
        c.keep_alive = 2;
        c.will = Some(will("will/c", b"timeout", QoS::AtLeastOnce));
        let (c, _) = sim.connect(c);
        sim.advance(3_000);
        assert!(sim.is_closed(c));
        assert_eq!(text(&sim.receive(w)), "timeout");
    }
}
