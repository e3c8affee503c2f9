//! Area 11: maximum packet size in both directions: the server's limit (announced in 5.0
//! CONNACK) closes a connection that exceeds it, 5.0 with DISCONNECT 0x95, as soon as the
//! fixed header gives the size away; the client's 5.0 limit makes the server drop, for that
//! client only, what would not fit.

use crate::*;

tests! {
    server_limit: ALL;
    server_limit_header_only: ALL;
    oversized_connect: ANY;
    client_limit: V5;
}

const LIMIT: u32 = 256;

/// A QoS 0 PUBLISH on topic "p" whose whole packet is `total` bytes (two-byte remaining
/// length, so `total` is 131 or more).
fn publish_of_size(v: V, total: usize) -> Vec<u8> {
    let overhead = 1 + 2 + 2 + 1 + usize::from(v == V::V5); // header, length, topic, v5 props
    let p = publish(v, QOS0, "p", None, &[], &vec![b'x'; total - overhead]);
    assert_eq!(p.len(), total);
    p
}

/// The server's Maximum Packet Size (5.0: CONNACK 0x27, 3.2.2.3.6): a packet of
/// exactly that size is accepted; one byte more and the connection is closed, 5.0 with
/// DISCONNECT 0x95 Packet too large (the client must not send it [MQTT-3.2.2-15]).
async fn server_limit(v: V) {
    let srv = TestServer::start_with(|c| c.limits.max_packet_size = LIMIT).await;
    let mut s = srv.subscriber(v, "s", "p", 0).await;
    let (mut p, connack_) = srv.connect(&Connect::new(v, "p")).await;
    if v == V::V5 {
        assert_eq!(connack_.properties.maximum_packet_size, Some(LIMIT));
    }
    let fits = publish_of_size(v, LIMIT as usize);
    p.send(&fits).await;
    p.sync().await;
    s.expect(&fits).await;
    p.send(&publish_of_size(v, LIMIT as usize + 1)).await;
    p.expect_disconnect(0x95).await;
    s.sync().await;
}

/// The size is known from the fixed header: a remaining length beyond the limit closes the
/// connection without waiting for the body.
async fn server_limit_header_only(v: V) {
    let srv = TestServer::start_with(|c| c.limits.max_packet_size = LIMIT).await;
    let mut p = srv.client(v, "p").await;
    p.send(&[
        0x30, // PUBLISH QoS 0
        0xFF, 0xFF, 0xFF, 0x7F, // remaining length 268,435,455
    ])
    .await;
    p.expect_disconnect(0x95).await;
}

/// A CONNECT beyond the limit: the connection is closed without CONNACK.
async fn oversized_connect(v: V) {
    let srv = TestServer::start_with(|c| c.limits.max_packet_size = LIMIT).await;
    let mut c = srv.raw(v, "c").await;
    c.send(&Connect::new(v, &"x".repeat(300)).bytes()).await;
    c.expect_closed().await;
}

/// The client's Maximum Packet Size: the server does not send it larger packets
/// [MQTT-3.1.2-24]; it drops them for that client as if sent [MQTT-3.1.2-25] (QoS 1
/// included, so nothing is owed afterwards); other subscribers get them.
async fn client_limit(v: V) {
    let srv = TestServer::start().await;
    let connect = Connect::new(v, "small").prop(prop::maximum_packet_size(64));
    let (mut small, _) = srv.connect(&connect).await;
    small.subscribe(1, "big/#", 1).await;
    let mut all = srv.subscriber(v, "all", "big/#", 1).await;
    let mut p = srv.client(v, "p").await;
    let big = vec![b'B'; 100];
    p.publish0("big/1", &big).await;
    p.publish1("big/2", 1, &big).await;
    p.publish0("big/3", b"small").await;
    p.publish1("big/4", 2, b"small").await;

    small
        .expect(&publish(v, QOS0, "big/3", None, &[], b"small"))
        .await;
    let m = small.recv_publish().await;
    assert_eq!((m.topic.as_str(), &m.payload[..]), ("big/4", &b"small"[..]));
    small.send(&ack(PUBACK, m.packet_id.unwrap().get())).await;
    small.sync().await;

    all.expect(&publish(v, QOS0, "big/1", None, &[], &big))
        .await;
    all.expect(&publish(v, QOS1, "big/2", Some(1), &[], &big))
        .await;
    all.expect(&publish(v, QOS0, "big/3", None, &[], b"small"))
        .await;
    all.expect(&publish(v, QOS1, "big/4", Some(2), &[], b"small"))
        .await;
}
