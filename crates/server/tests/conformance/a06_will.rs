//! Area 6: will messages: published on an abnormal close, on a keep-alive timeout, on a
//! protocol error, on takeover; not after a normal DISCONNECT; v5 DISCONNECT 0x04; will QoS
//! and retain; v5 Will Delay Interval, cancelled by a reconnect.

use std::time::Duration;

use crate::*;

tests! {
    abnormal_close: ALL;
    normal_disconnect_discards: ALL;
    disconnect_with_will: V5;
    will_qos_retain: ALL;
    keep_alive_timeout: ALL;
    protocol_error: ALL;
    takeover: ALL;
    will_delay: V5;
    will_delay_cancelled_by_reconnect: V5;
    takeover_within_will_delay: V5;
}

fn with_will(v: V, id: &str) -> Connect {
    Connect::new(v, id).will(Will::new("will/t", b"bye"))
}

/// The will is published when the connection closes without DISCONNECT [MQTT-3.1.2-8]
/// (3.1.1: "I/O error or network failure").
async fn abnormal_close(v: V) {
    let srv = TestServer::start().await;
    let mut o = srv.subscriber(v, "observer", "will/#", 0).await;
    let (w, _) = srv.connect(&with_will(v, "w")).await;
    drop(w);
    o.expect(&publish(v, QOS0, "will/t", None, &[], b"bye"))
        .await;
}

/// A normal DISCONNECT discards the will [MQTT-3.1.2-10] [MQTT-3.14.4-3].
async fn normal_disconnect_discards(v: V) {
    let srv = TestServer::start().await;
    let mut o = srv.subscriber(v, "observer", "will/#", 0).await;
    let (mut w, _) = srv.connect(&with_will(v, "w")).await;
    w.disconnect().await;
    let mut p = srv.client(v, "p").await;
    p.publish0("will/marker", b"m").await;
    o.expect(&publish(v, QOS0, "will/marker", None, &[], b"m"))
        .await;
}

/// 5.0 DISCONNECT with reason 0x04 (Disconnect with Will Message) publishes the will
/// (3.14.2.1, [MQTT-3.1.2-8]).
async fn disconnect_with_will(v: V) {
    let srv = TestServer::start().await;
    let mut o = srv.subscriber(v, "observer", "will/#", 0).await;
    let (mut w, _) = srv.connect(&with_will(v, "w")).await;
    w.send(&[
        0xE0, 0x01, // DISCONNECT, remaining length 1
        0x04, // disconnect with will message
    ])
    .await;
    w.expect_closed().await;
    o.expect(&publish(v, QOS0, "will/t", None, &[], b"bye"))
        .await;
}

/// Will QoS and Will Retain [MQTT-3.1.2-14] .. [MQTT-3.1.2-17] (3.1.1) / 3.1.2.6, 3.1.2.7
/// (5.0): the will goes out with its QoS (bounded by the subscription) and, when retained, is
/// stored as the retained message of its topic.
async fn will_qos_retain(v: V) {
    let srv = TestServer::start().await;
    let mut o = srv.subscriber(v, "observer", "will/#", 2).await;
    let mut will = Will::new("will/q", b"last");
    will.qos = 1;
    will.retain = true;
    let (w, _) = srv.connect(&Connect::new(v, "w").will(will)).await;
    drop(w);
    // Established subscription: RETAIN=0 on forwarding.
    o.expect(&publish(v, QOS1, "will/q", Some(1), &[], b"last"))
        .await;
    o.send(&ack(PUBACK, 1)).await;
    let mut late = srv.client(v, "late").await;
    late.send(&subscribe(v, 1, &[("will/q", 1)], &[])).await;
    late.expect(&suback(v, 1, &[1])).await;
    late.expect(&publish(v, QOS1 | RETAIN, "will/q", Some(1), &[], b"last"))
        .await;
}

/// A keep-alive timeout is a server-side close: the will is published [MQTT-3.1.2-8]
/// [MQTT-3.1.2-24] (3.1.1) / [MQTT-3.1.2-22] (5.0).
async fn keep_alive_timeout(v: V) {
    let srv = TestServer::start().await;
    let mut o = srv.subscriber(v, "observer", "will/#", 0).await;
    let (mut w, _) = srv.connect(&with_will(v, "w").keep_alive(1)).await;
    o.expect_nothing(1000).await;
    o.timeout = Duration::from_secs(2);
    o.expect(&publish(v, QOS0, "will/t", None, &[], b"bye"))
        .await;
    w.expect_disconnect(0x8D).await;
}

/// A connection closed by the server for a protocol error publishes the will (3.1.2.5,
/// 4.8 (3.1.1) / 4.13 (5.0)).
async fn protocol_error(v: V) {
    let srv = TestServer::start().await;
    let mut o = srv.subscriber(v, "observer", "will/#", 0).await;
    let (mut w, _) = srv.connect(&with_will(v, "w")).await;
    w.send(&[0x00, 0x00]).await; // reserved packet type 0
    w.expect_disconnect(0x81).await;
    o.expect(&publish(v, QOS0, "will/t", None, &[], b"bye"))
        .await;
}

/// On takeover [MQTT-3.1.4-3] the old connection is closed by the server, so its will is
/// published (will delay 0; the clean start ends the old session).
async fn takeover(v: V) {
    let srv = TestServer::start().await;
    let mut o = srv.subscriber(v, "observer", "will/#", 0).await;
    let (mut old, _) = srv.connect(&with_will(v, "w")).await;
    let mut new = srv.client(v, "w").await;
    o.expect(&publish(v, QOS0, "will/t", None, &[], b"bye"))
        .await;
    old.expect_disconnect(0x8E).await;
    new.sync().await;
}

/// 5.0 Will Delay Interval: the will waits for the delay after the close [MQTT-3.1.2-8]
/// (3.1.3.2.2).
async fn will_delay(v: V) {
    let srv = TestServer::start().await;
    let mut o = srv.subscriber(v, "observer", "will/#", 0).await;
    let mut will = Will::new("will/t", b"late");
    will.props = prop::will_delay(1);
    let connect = Connect::new(v, "w").persistent(60).will(will);
    let (w, _) = srv.connect(&connect).await;
    drop(w);
    o.expect_nothing(700).await;
    o.timeout = Duration::from_secs(2);
    o.expect(&publish(v, QOS0, "will/t", None, &[], b"late"))
        .await;
}

/// [MQTT-3.1.3-9]: a new connection of the session before the will delay has passed: the
/// will is not sent.
async fn will_delay_cancelled_by_reconnect(v: V) {
    let srv = TestServer::start().await;
    let mut o = srv.subscriber(v, "observer", "will/#", 0).await;
    let mut will = Will::new("will/t", b"never");
    will.props = prop::will_delay(1);
    let connect = Connect::new(v, "w").persistent(60).will(will);
    let (w, _) = srv.connect(&connect).await;
    drop(w);
    let mut p = srv.client(v, "p").await;
    // Whether the server has seen the close yet or this is a takeover of a half-dead
    // connection, the session is resumed before the delay and the will must not come.
    let mut again = srv.raw(v, "w again").await;
    again
        .send(&Connect::new(v, "w").persistent(60).bytes())
        .await;
    let connack_ = again.recv_connack().await;
    assert!(
        connack_.session_present,
        "{}: the session survived",
        again.name
    );
    o.expect_nothing(1500).await;
    p.publish0("will/marker", b"m").await;
    o.expect(&publish(v, QOS0, "will/marker", None, &[], b"m"))
        .await;
}

/// [MQTT-3.1.3-9] on takeover: the old connection is closed, but the session continues
/// (Clean Start 0) on a new connection within the will delay, so the will is not sent.
async fn takeover_within_will_delay(v: V) {
    let srv = TestServer::start().await;
    let mut o = srv.subscriber(v, "observer", "will/#", 0).await;
    let mut will = Will::new("will/t", b"never");
    will.props = prop::will_delay(1);
    let (mut old, _) = srv
        .connect(&Connect::new(v, "w").persistent(60).will(will))
        .await;
    let (_new, connack_) = srv.connect(&Connect::new(v, "w").persistent(60)).await;
    assert!(connack_.session_present);
    old.expect_disconnect(0x8E).await;
    o.expect_nothing(1500).await;
}
