//! Area 10: flow control. The server respects the client's 5.0 Receive Maximum for QoS 1 and
//! QoS 2 (QoS 0 is not held back); it enforces its own Receive Maximum on inbound QoS 2; and
//! its `max_inflight_messages` bounds what is in flight to any client, 3.1.1 included.

use crate::*;

tests! {
    receive_maximum_qos1: V5;
    receive_maximum_qos2: V5;
    server_receive_maximum: V5;
    max_inflight_messages: ALL;
    negative_acks_free_quota: V5;
}

/// [MQTT-3.3.4-9]: with Receive Maximum 2, the third QoS 1 PUBLISH waits for a PUBACK; QoS 0
/// is not counted and still flows (4.9: flow control covers QoS 1 and 2).
async fn receive_maximum_qos1(v: V) {
    let srv = TestServer::start().await;
    let connect = Connect::new(v, "s").prop(prop::receive_maximum(2));
    let (mut s, _) = srv.connect(&connect).await;
    s.subscribe(1, "f/t", 1).await;
    let mut p = srv.client(v, "p").await;
    for pid in 1..=3 {
        p.publish1("f/t", pid, format!("m{pid}").as_bytes()).await;
    }
    s.expect(&publish(v, QOS1, "f/t", Some(1), &[], b"m1"))
        .await;
    s.expect(&publish(v, QOS1, "f/t", Some(2), &[], b"m2"))
        .await;
    p.publish0("f/t", b"qos0").await;
    s.expect(&publish(v, QOS0, "f/t", None, &[], b"qos0")).await;
    s.send(&ack(PUBACK, 1)).await;
    s.expect(&publish(v, QOS1, "f/t", Some(3), &[], b"m3"))
        .await;
    s.send(&ack(PUBACK, 2)).await;
    s.send(&ack(PUBACK, 3)).await;
    s.sync().await;
}

/// [MQTT-3.3.4-9]: a QoS 2 message counts against Receive Maximum until its PUBCOMP, not
/// its PUBREC (4.9).
async fn receive_maximum_qos2(v: V) {
    let srv = TestServer::start().await;
    let connect = Connect::new(v, "s").prop(prop::receive_maximum(1));
    let (mut s, _) = srv.connect(&connect).await;
    s.subscribe(1, "f/t", 2).await;
    let mut p = srv.client(v, "p").await;
    for pid in 1..=2u16 {
        p.send(&publish(
            v,
            QOS2,
            "f/t",
            Some(pid),
            &[],
            format!("m{pid}").as_bytes(),
        ))
        .await;
        p.expect(&ack(PUBREC, pid)).await;
        p.send(&ack(PUBREL, pid)).await;
        p.expect(&ack(PUBCOMP, pid)).await;
    }
    s.expect(&publish(v, QOS2, "f/t", Some(1), &[], b"m1"))
        .await;
    s.send(&ack(PUBREC, 1)).await;
    s.expect(&ack(PUBREL, 1)).await;
    p.publish0("f/t", b"qos0").await;
    s.expect(&publish(v, QOS0, "f/t", None, &[], b"qos0")).await;
    s.send(&ack(PUBCOMP, 1)).await;
    s.expect(&publish(v, QOS2, "f/t", Some(2), &[], b"m2"))
        .await;
}

/// The server's own Receive Maximum (CONNACK 0x21): a client with that many QoS 2 exchanges
/// open that sends one more gets DISCONNECT 0x93 Receive Maximum exceeded (3.2.2.3.3).
async fn server_receive_maximum(v: V) {
    let srv = TestServer::start_with(|c| c.limits.receive_maximum = 2).await;
    let (mut p, ack_) = srv.connect(&Connect::new(v, "p")).await;
    assert_eq!(ack_.properties.receive_maximum, Some(2));
    // A completed exchange does not count.
    p.send(&publish(v, QOS2, "t", Some(1), &[], b"")).await;
    p.expect(&ack(PUBREC, 1)).await;
    p.send(&ack(PUBREL, 1)).await;
    p.expect(&ack(PUBCOMP, 1)).await;
    for pid in 2..=3 {
        p.send(&publish(v, QOS2, "t", Some(pid), &[], b"")).await;
        p.expect(&ack(PUBREC, pid)).await;
    }
    p.send(&publish(v, QOS2, "t", Some(4), &[], b"")).await;
    p.expect_disconnect(0x93).await;
}

/// Server policy, every version: at most `max_inflight_messages` QoS 1/2 messages are in
/// flight to one client; the rest wait in the session, in order.
async fn max_inflight_messages(v: V) {
    let srv = TestServer::start_with(|c| c.limits.max_inflight_messages = 2).await;
    let mut s = srv.subscriber(v, "s", "f/t", 1).await;
    let mut p = srv.client(v, "p").await;
    for pid in 1..=4 {
        p.publish1("f/t", pid, format!("m{pid}").as_bytes()).await;
    }
    s.expect(&publish(v, QOS1, "f/t", Some(1), &[], b"m1"))
        .await;
    s.expect(&publish(v, QOS1, "f/t", Some(2), &[], b"m2"))
        .await;
    p.publish0("f/t", b"qos0").await;
    s.expect(&publish(v, QOS0, "f/t", None, &[], b"qos0")).await;
    s.send(&ack(PUBACK, 2)).await;
    s.expect(&publish(v, QOS1, "f/t", Some(3), &[], b"m3"))
        .await;
    s.send(&ack(PUBACK, 1)).await;
    s.expect(&publish(v, QOS1, "f/t", Some(4), &[], b"m4"))
        .await;
}

/// A PUBREC or PUBACK with a reason code of 0x80 or more ends the exchange: no PUBREL
/// follows (4.3.3), and the message no longer counts against Receive Maximum
/// [MQTT-3.3.4-9].
async fn negative_acks_free_quota(v: V) {
    let srv = TestServer::start().await;
    let connect = Connect::new(v, "s").prop(prop::receive_maximum(1));
    let (mut s, _) = srv.connect(&connect).await;
    s.subscribe(1, "f/t", 2).await;
    let mut p = srv.client(v, "p").await;
    p.publish1("f/t", 1, b"m1").await;
    p.publish1("f/t", 2, b"m2").await;
    p.send(&publish(v, QOS2, "f/t", Some(3), &[], b"m3")).await;
    p.expect(&ack(PUBREC, 3)).await;
    s.expect(&publish(v, QOS1, "f/t", Some(1), &[], b"m1"))
        .await;
    s.send(&ack_rc(PUBACK, 1, 0x80)).await; // unspecified error
    s.expect(&publish(v, QOS1, "f/t", Some(2), &[], b"m2"))
        .await;
    s.send(&ack(PUBACK, 2)).await;
    let m = s.recv_publish().await;
    assert_eq!((m.qos as u8, &m.payload[..]), (2, &b"m3"[..]));
    let pid = m.packet_id.unwrap().get();
    s.send(&ack_rc(PUBREC, pid, 0x87)).await; // not authorized
    p.publish1("f/t", 4, b"m4").await;
    let m = s.recv_publish().await; // not a PUBREL
    assert_eq!((m.qos as u8, &m.payload[..]), (1, &b"m4"[..]));
}
