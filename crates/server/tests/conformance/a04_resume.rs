//! Area 4: session resume. A persistent subscriber goes away with messages unacknowledged
//! and PUBRELs owed; on reconnect the server resends them in their original order, PUBLISH
//! with DUP=1 and the same packet id, before anything new; the inbound QoS 2 state survives
//! too; a clean start forgets it all.

use crate::*;

tests! {
    resume_outbound: ALL;
    resume_after_takeover: ALL;
    resume_inbound_qos2: ALL;
    clean_start_discards: ALL;
    resume_after_restart: ALL;
}

/// Sets up a persistent subscriber on `r/#` (QoS 2) with, in flight: m1 (QoS 1, id 1,
/// unacknowledged), m2 (QoS 2, id 2, PUBREC sent, PUBREL received, PUBCOMP not sent), m3
/// (QoS 1, id 3, unacknowledged). Returns the subscriber and the publisher.
async fn in_flight(srv: &TestServer, v: V, connect: &Connect) -> (Peer, Peer) {
    let (mut s, connack_) = srv.connect(connect).await;
    assert!(!connack_.session_present);
    s.subscribe(1, "r/#", 2).await;
    let mut p = srv.client(v, "p").await;
    p.publish1("r/1", 11, b"m1").await;
    p.send(&publish(v, QOS2, "r/2", Some(12), &[], b"m2")).await;
    p.expect(&ack(PUBREC, 12)).await;
    p.send(&ack(PUBREL, 12)).await;
    p.expect(&ack(PUBCOMP, 12)).await;
    p.publish1("r/3", 13, b"m3").await;
    s.expect(&publish(v, QOS1, "r/1", Some(1), &[], b"m1"))
        .await;
    s.expect(&publish(v, QOS2, "r/2", Some(2), &[], b"m2"))
        .await;
    s.expect(&publish(v, QOS1, "r/3", Some(3), &[], b"m3"))
        .await;
    s.send(&ack(PUBREC, 2)).await;
    s.expect(&ack(PUBREL, 2)).await;
    (s, p)
}

/// What a resumed session must send first: the unacknowledged PUBLISHes with DUP=1 and their
/// original packet ids, and the owed PUBREL, in the original order [MQTT-4.4.0-1]
/// [MQTT-3.3.1-1] [MQTT-4.6.0-1] .. [MQTT-4.6.0-3] (3.1.1) / [MQTT-4.6.0-1] .. (5.0).
async fn expect_resent(s: &mut Peer) {
    let v = s.v;
    s.expect(&publish(v, QOS1 | DUP, "r/1", Some(1), &[], b"m1"))
        .await;
    s.expect(&[
        0x62, 0x02, // PUBREL, remaining length 2
        0x00, 0x02, // packet id 2
    ])
    .await;
    s.expect(&publish(v, QOS1 | DUP, "r/3", Some(3), &[], b"m3"))
        .await;
}

/// The subscriber disconnects; a message published meanwhile is queued; on reconnect: session
/// present [MQTT-3.2.2-2] (3.1.1) / [MQTT-3.2.2-3] (5.0) (3.1: no flag), the resends, then
/// the queued message as new (DUP=0, next id). Once acknowledged, nothing is resent again.
async fn resume_outbound(v: V) {
    let srv = TestServer::start().await;
    let connect = Connect::new(v, "s").persistent(300);
    let (mut s, mut p) = in_flight(&srv, v, &connect).await;
    s.disconnect().await;
    p.publish1("r/4", 14, b"m4").await;
    // QoS 0 is not queued for an offline session (optional in the spec; this server's policy).
    p.publish0("r/5", b"m5").await;

    let mut s = srv.raw(v, "s again").await;
    s.send(&connect.bytes()).await;
    s.expect(&connack(v, v != V::V31)).await;
    expect_resent(&mut s).await;
    s.expect(&publish(v, QOS1, "r/4", Some(4), &[], b"m4"))
        .await;
    s.send(&ack(PUBACK, 1)).await;
    s.send(&ack(PUBCOMP, 2)).await;
    s.send(&ack(PUBACK, 3)).await;
    s.send(&ack(PUBACK, 4)).await;
    s.disconnect().await;

    let mut s = srv.raw(v, "s third").await;
    s.send(&connect.bytes()).await;
    s.expect(&connack(v, v != V::V31)).await;
    s.sync().await; // nothing owed any more
}

/// The same through a takeover [MQTT-3.1.4-3]: the new connection of the client id resumes
/// the session and gets the resends.
async fn resume_after_takeover(v: V) {
    let srv = TestServer::start().await;
    let connect = Connect::new(v, "s").persistent(300);
    let (mut old, _p) = in_flight(&srv, v, &connect).await;
    let mut s = srv.raw(v, "s new").await;
    s.send(&connect.bytes()).await;
    s.expect(&connack(v, v != V::V31)).await;
    expect_resent(&mut s).await;
    old.expect_disconnect(0x8E).await;
}

/// Inbound QoS 2 state is part of the session [MQTT-4.1.0-1]: a publisher that reconnects
/// and retransmits an unreleased QoS 2 PUBLISH (DUP=1, same id) gets PUBREC and the message
/// is not delivered again [MQTT-4.3.3-2] (3.1.1) / [MQTT-4.3.3-10] (5.0).
async fn resume_inbound_qos2(v: V) {
    let srv = TestServer::start().await;
    let mut s = srv.subscriber(v, "s", "in/t", 0).await;
    let connect = Connect::new(v, "p").persistent(300);
    let (mut p, _) = srv.connect(&connect).await;
    p.send(&publish(v, QOS2, "in/t", Some(7), &[], b"once"))
        .await;
    p.expect(&ack(PUBREC, 7)).await;
    s.expect(&publish(v, QOS0, "in/t", None, &[], b"once"))
        .await;
    p.disconnect().await;

    let mut p = srv.raw(v, "p again").await;
    p.send(&connect.bytes()).await;
    p.expect(&connack(v, v != V::V31)).await;
    p.send(&publish(v, QOS2 | DUP, "in/t", Some(7), &[], b"once"))
        .await;
    p.expect(&ack(PUBREC, 7)).await;
    p.send(&ack(PUBREL, 7)).await;
    p.expect(&ack(PUBCOMP, 7)).await;
    p.publish0("in/t", b"marker").await;
    s.expect(&publish(v, QOS0, "in/t", None, &[], b"marker"))
        .await;
}

/// A clean session/start discards the stored session [MQTT-3.1.2-6] (3.1.1) /
/// [MQTT-3.1.2-4] (5.0): session present 0 and nothing resent.
async fn clean_start_discards(v: V) {
    let srv = TestServer::start().await;
    let connect = Connect::new(v, "s").persistent(300);
    let (mut s, _p) = in_flight(&srv, v, &connect).await;
    s.disconnect().await;
    let mut s = srv.raw(v, "s clean").await;
    s.send(&Connect::new(v, "s").bytes()).await;
    s.expect(&connack(v, false)).await;
    s.sync().await;
}

/// The same with a durable server (`os` durability: every acknowledgement waits for the
/// store writer) that is restarted while the subscriber is away: the session, its in-flight
/// records with their packet ids, its queue, and a publisher's unreleased inbound QoS 2 id
/// all survive [MQTT-4.4.0-1] [MQTT-4.3.3-10] (5.0).
async fn resume_after_restart(v: V) {
    let dir = DataDir::new(&format!("restart-{v}"));
    let srv = TestServer::start_durable(&dir).await;
    let connect = Connect::new(v, "s").persistent(300);
    let (mut s, mut p) = in_flight(&srv, v, &connect).await;
    s.disconnect().await;
    p.publish1("r/4", 14, b"m4").await;
    let pub_connect = Connect::new(v, "q").persistent(300);
    let (mut q, _) = srv.connect(&pub_connect).await;
    q.send(&publish(v, QOS2, "r/5", Some(7), &[], b"m5")).await;
    q.expect(&ack(PUBREC, 7)).await;
    srv.shutdown().await;
    p.expect_disconnect(0x8B).await;
    q.expect_disconnect(0x8B).await;

    let srv = TestServer::start_durable(&dir).await;
    let mut s = srv.raw(v, "s after restart").await;
    s.send(&connect.bytes()).await;
    s.expect(&connack(v, v != V::V31)).await;
    expect_resent(&mut s).await;
    s.expect(&publish(v, QOS1, "r/4", Some(4), &[], b"m4"))
        .await;
    s.expect(&publish(v, QOS2, "r/5", Some(5), &[], b"m5"))
        .await;
    for pid in [1, 3, 4] {
        s.send(&ack(PUBACK, pid)).await;
    }
    s.send(&ack(PUBCOMP, 2)).await;
    s.send(&ack(PUBREC, 5)).await;
    s.expect(&ack(PUBREL, 5)).await;
    s.send(&ack(PUBCOMP, 5)).await;

    let mut q = srv.raw(v, "q after restart").await;
    q.send(&pub_connect.bytes()).await;
    q.expect(&connack(v, v != V::V31)).await;
    q.send(&publish(v, QOS2 | DUP, "r/5", Some(7), &[], b"m5"))
        .await;
    q.expect(&ack(PUBREC, 7)).await;
    q.send(&ack(PUBREL, 7)).await;
    q.expect(&ack(PUBCOMP, 7)).await;
    q.publish0("r/6", b"marker").await;
    s.expect(&publish(v, QOS0, "r/6", None, &[], b"marker"))
        .await;
}
