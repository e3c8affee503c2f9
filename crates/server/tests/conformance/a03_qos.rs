//! Area 3: QoS 0, 1 and 2 in both directions, byte by byte; QoS downgrade; packet
//! identifiers; no retransmission while connected; inbound QoS 2 duplicates (DUP) are
//! acknowledged again and not delivered twice; acknowledgements of unknown ids.

use crate::*;

tests! {
    qos0_flow: ALL;
    qos1_flow: ALL;
    qos2_flow: ALL;
    qos_downgrade: ALL;
    inbound_qos2_duplicate: ALL;
    unknown_acks: ALL;
    publish_to_sys_refused: ALL;
}

/// QoS 0 [MQTT-4.3.1-1]: delivered with QoS 0, no acknowledgement either way, no packet
/// identifier [MQTT-2.2.1-2] (5.0) / 2.3.1 (3.1.1).
async fn qos0_flow(v: V) {
    let srv = TestServer::start().await;
    let mut s = srv.subscriber(v, "s", "q/0", 2).await;
    let mut p = srv.client(v, "p").await;
    let m = publish(v, QOS0, "q/0", None, &[], b"zero");
    if v == V::V5 {
        assert_eq!(
            m,
            [
                0x30, 0x0A, // PUBLISH QoS 0, remaining length 10
                0x00, 0x03, b'q', b'/', b'0', // topic
                0x00, // property length 0
                b'z', b'e', b'r', b'o', // payload
            ]
        );
    }
    p.send(&m).await;
    p.sync().await; // no PUBACK comes before the PINGRESP
    s.expect(&m).await; // the same bytes, QoS 0
    s.sync().await;
}

/// QoS 1 [MQTT-4.3.2-1] [MQTT-4.3.2-2]: the server answers PUBACK with the publisher's packet
/// id (5.0 short form: no reason code for success [MQTT-3.4.2-1]); it sends the message with
/// its own unused packet ids [MQTT-2.2.1-4] (5.0) / 2.3.1 (3.1.1), in order (4.6), and
/// does not resend it on the same connection [MQTT-4.4.0-1] (5.0).
async fn qos1_flow(v: V) {
    let srv = TestServer::start().await;
    let mut s = srv.subscriber(v, "s", "q/1", 1).await;
    let mut p = srv.client(v, "p").await;
    p.send(&publish(v, QOS1, "q/1", Some(0x1234), &[], b"m1"))
        .await;
    p.expect(&[
        0x40, 0x02, // PUBACK, remaining length 2
        0x12, 0x34, // the publisher's packet id
    ])
    .await;
    s.expect(&publish(v, QOS1, "q/1", Some(1), &[], b"m1"))
        .await;
    // Unacknowledged, three more: new ids, in order.
    for (i, payload) in [b"m2", b"m3", b"m4"].iter().enumerate() {
        let pid = 0x1235 + i as u16;
        p.publish1("q/1", pid, *payload).await;
    }
    for (i, payload) in [b"m2", b"m3", b"m4"].iter().enumerate() {
        s.expect(&publish(v, QOS1, "q/1", Some(2 + i as u16), &[], *payload))
            .await;
    }
    // No retransmission while connected: a QoS 0 marker is the next packet.
    p.publish0("q/1", b"marker").await;
    s.expect(&publish(v, QOS0, "q/1", None, &[], b"marker"))
        .await;
    for pid in 1..=4 {
        s.send(&ack(PUBACK, pid)).await;
    }
    s.sync().await;
    // After the acknowledgements a new message arrives once, not as a duplicate (its packet
    // id is the server's choice).
    p.publish1("q/1", 0x2000, b"m5").await;
    let m = s.recv_publish().await;
    assert_eq!((m.qos as u8, &m.payload[..], m.dup), (1, &b"m5"[..], false));
    s.send(&ack(PUBACK, m.packet_id.unwrap().get())).await;
    s.sync().await;
}

/// QoS 2 [MQTT-4.3.3-1] .. [MQTT-4.3.3-3] (5.0 numbering differs; 4.3.3): PUBLISH ->
/// PUBREC -> PUBREL -> PUBCOMP in both directions, each with the exchange's packet id; the
/// server routes on PUBLISH (method B) and sends PUBREL only after PUBREC.
async fn qos2_flow(v: V) {
    let srv = TestServer::start().await;
    let mut s = srv.subscriber(v, "s", "q/2", 2).await;
    let mut p = srv.client(v, "p").await;
    p.send(&publish(v, QOS2, "q/2", Some(0x20), &[], b"two"))
        .await;
    p.expect(&[
        0x50, 0x02, // PUBREC, remaining length 2
        0x00, 0x20, // packet id
    ])
    .await;
    s.expect(&publish(v, QOS2, "q/2", Some(1), &[], b"two"))
        .await;
    p.send(&[
        0x62, 0x02, // PUBREL (flags 0010), remaining length 2
        0x00, 0x20, // packet id
    ])
    .await;
    p.expect(&[
        0x70, 0x02, // PUBCOMP, remaining length 2
        0x00, 0x20, // packet id
    ])
    .await;
    // The server owes nothing until the subscriber's PUBREC.
    s.sync().await;
    s.send(&ack(PUBREC, 1)).await;
    s.expect(&ack(PUBREL, 1)).await;
    s.send(&ack(PUBCOMP, 1)).await;
    // Exactly once: the marker is next.
    p.publish0("q/2", b"marker").await;
    s.expect(&publish(v, QOS0, "q/2", None, &[], b"marker"))
        .await;
}

/// The QoS of a delivered message is the lower of the published QoS and the subscription's
/// [MQTT-3.8.4-6] (3.1.1) / [MQTT-3.8.4-8] (5.0).
async fn qos_downgrade(v: V) {
    let srv = TestServer::start().await;
    let mut s = srv.client(v, "s").await;
    s.send(&subscribe(v, 1, &[("d/0", 0), ("d/1", 1), ("d/2", 2)], &[]))
        .await;
    s.expect(&suback(v, 1, &[0, 1, 2])).await;
    let mut p = srv.client(v, "p").await;
    p.send(&publish(v, QOS2, "d/1", Some(1), &[], b"2->1"))
        .await;
    p.expect(&ack(PUBREC, 1)).await;
    s.expect(&publish(v, QOS1, "d/1", Some(1), &[], b"2->1"))
        .await;
    p.publish1("d/0", 2, b"1->0").await;
    s.expect(&publish(v, QOS0, "d/0", None, &[], b"1->0")).await;
    p.publish0("d/2", b"0->0").await;
    s.expect(&publish(v, QOS0, "d/2", None, &[], b"0->0")).await;
}

/// Inbound QoS 2 retransmission: until PUBREL, a PUBLISH with the same packet id (DUP=1 or
/// not) gets PUBREC again and is not delivered again [MQTT-4.3.3-2] (3.1.1) /
/// [MQTT-4.3.3-10] (5.0); after PUBCOMP the id starts a new message [MQTT-4.3.3-11] (5.0).
async fn inbound_qos2_duplicate(v: V) {
    let srv = TestServer::start().await;
    let mut s = srv.subscriber(v, "s", "dup/t", 0).await;
    let mut p = srv.client(v, "p").await;
    p.send(&publish(v, QOS2, "dup/t", Some(5), &[], b"once"))
        .await;
    p.expect(&ack(PUBREC, 5)).await;
    s.expect(&publish(v, QOS0, "dup/t", None, &[], b"once"))
        .await;
    // The retransmission, DUP=1: PUBREC again.
    p.send(&publish(v, QOS2 | DUP, "dup/t", Some(5), &[], b"once"))
        .await;
    p.expect(&ack(PUBREC, 5)).await;
    // And once more without DUP.
    p.send(&publish(v, QOS2, "dup/t", Some(5), &[], b"once"))
        .await;
    p.expect(&ack(PUBREC, 5)).await;
    p.send(&ack(PUBREL, 5)).await;
    p.expect(&ack(PUBCOMP, 5)).await;
    // Not delivered twice: the marker is next.
    p.publish0("dup/t", b"marker").await;
    s.expect(&publish(v, QOS0, "dup/t", None, &[], b"marker"))
        .await;
    // The id is free again: a new message.
    p.send(&publish(v, QOS2, "dup/t", Some(5), &[], b"again"))
        .await;
    p.expect(&ack(PUBREC, 5)).await;
    s.expect(&publish(v, QOS0, "dup/t", None, &[], b"again"))
        .await;
    p.send(&ack(PUBREL, 5)).await;
    p.expect(&ack(PUBCOMP, 5)).await;
}

/// Acknowledgements for packet ids the server does not know: PUBREL gets PUBCOMP (5.0:
/// reason 0x92 Packet Identifier not found), PUBREC gets PUBREL (likewise), PUBACK and
/// PUBCOMP are ignored; the connection stays up (4.3.3, 3.7.2.1).
async fn unknown_acks(v: V) {
    let srv = TestServer::start().await;
    let mut c = srv.client(v, "c").await;
    c.send(&ack(PUBREL, 0x63)).await;
    if v == V::V5 {
        c.expect(&ack_rc(PUBCOMP, 0x63, 0x92)).await;
    } else {
        c.expect(&ack(PUBCOMP, 0x63)).await;
    }
    c.send(&ack(PUBREC, 0x64)).await;
    if v == V::V5 {
        c.expect(&ack_rc(PUBREL, 0x64, 0x92)).await;
    } else {
        c.expect(&ack(PUBREL, 0x64)).await;
    }
    c.send(&ack(PUBACK, 0x65)).await;
    c.send(&ack(PUBCOMP, 0x66)).await;
    c.sync().await;
}

/// Clients may not publish into `$SYS`: 5.0 PUBACK 0x87 Not authorized; 3.1.1 has no
/// negative acknowledgement, so PUBACK and drop [MQTT-3.3.5-2]; nothing is delivered.
async fn publish_to_sys_refused(v: V) {
    let srv = TestServer::start().await;
    let mut s = srv.subscriber(v, "s", "$SYS/#", 1).await;
    let mut p = srv.client(v, "p").await;
    p.send(&publish(v, QOS1, "$SYS/fake", Some(1), &[], b"x"))
        .await;
    if v == V::V5 {
        p.expect(&ack_rc(PUBACK, 1, 0x87)).await;
    } else {
        p.expect(&ack(PUBACK, 1)).await;
    }
    s.sync().await;
    s.expect_nothing(100).await;
}
