//! Area 5: retained messages: set, replace, delete; RETAIN on delivery; QoS of retained
//! deliveries; v5 Retain Handling 0/1/2 and Retain As Published; none for shared
//! subscriptions.

use crate::*;

tests! {
    set_replace_delete: ALL;
    retained_qos: ALL;
    retain_handling: V5;
    retain_as_published: V5;
}

/// A retained message is stored and sent to new subscriptions with RETAIN=1 [MQTT-3.3.1-5]
/// [MQTT-3.3.1-6] [MQTT-3.3.1-8] (3.1.1) / [MQTT-3.3.1-5] [MQTT-3.3.1-9] (5.0); a new one
/// replaces it; established subscriptions get RETAIN=0 [MQTT-3.3.1-9] (3.1.1) /
/// [MQTT-3.3.1-12] (5.0); a non-retained PUBLISH leaves it alone [MQTT-3.3.1-12] (3.1.1) /
/// [MQTT-3.3.1-8] (5.0); an empty retained PUBLISH deletes it and is itself forwarded, not
/// stored [MQTT-3.3.1-10] [MQTT-3.3.1-11] (3.1.1) / [MQTT-3.3.1-6] [MQTT-3.3.1-7] (5.0).
async fn set_replace_delete(v: V) {
    let srv = TestServer::start().await;
    let mut p = srv.client(v, "p").await;
    p.send(&publish(v, QOS0 | RETAIN, "r/1", None, &[], b"a"))
        .await;
    p.sync().await;

    let mut s1 = srv.client(v, "s1").await;
    s1.send(&subscribe(v, 1, &[("r/#", 0)], &[])).await;
    s1.expect(&suback(v, 1, &[0])).await;
    s1.expect(&publish(v, QOS0 | RETAIN, "r/1", None, &[], b"a"))
        .await;
    s1.sync().await;

    // Replace: the established subscription gets RETAIN=0.
    p.send(&publish(v, QOS0 | RETAIN, "r/1", None, &[], b"b"))
        .await;
    p.sync().await;
    s1.expect(&publish(v, QOS0, "r/1", None, &[], b"b")).await;
    let mut s2 = srv.client(v, "s2").await;
    s2.send(&subscribe(v, 1, &[("r/#", 0)], &[])).await;
    s2.expect(&suback(v, 1, &[0])).await;
    s2.expect(&publish(v, QOS0 | RETAIN, "r/1", None, &[], b"b"))
        .await;
    s2.sync().await; // only the latest one

    // A non-retained PUBLISH does not touch the retained message.
    p.publish0("r/1", b"transient").await;
    s1.expect(&publish(v, QOS0, "r/1", None, &[], b"transient"))
        .await;
    let mut s3 = srv.client(v, "s3").await;
    s3.send(&subscribe(v, 1, &[("r/1", 0)], &[])).await;
    s3.expect(&suback(v, 1, &[0])).await;
    s3.expect(&publish(v, QOS0 | RETAIN, "r/1", None, &[], b"b"))
        .await;

    // Delete: an empty retained PUBLISH is forwarded (RETAIN=0) and clears the topic.
    p.send(&publish(v, QOS0 | RETAIN, "r/1", None, &[], b""))
        .await;
    p.sync().await;
    s1.expect(&publish(v, QOS0, "r/1", None, &[], b"")).await;
    let mut s4 = srv.client(v, "s4").await;
    s4.send(&subscribe(v, 1, &[("r/#", 0)], &[])).await;
    s4.expect(&suback(v, 1, &[0])).await;
    s4.sync().await; // nothing retained any more
}

/// A retained message is delivered at the lower of its QoS and the subscription's
/// [MQTT-3.8.4-6] (3.1.1) / [MQTT-3.8.4-8] (5.0), with RETAIN=1 and, for QoS > 0, a packet id.
async fn retained_qos(v: V) {
    let srv = TestServer::start().await;
    let mut p = srv.client(v, "p").await;
    p.send(&publish(v, QOS1 | RETAIN, "rq/1", Some(3), &[], b"q1"))
        .await;
    p.expect(&ack(PUBACK, 3)).await;

    let mut s = srv.client(v, "s2").await;
    s.send(&subscribe(v, 1, &[("rq/1", 2)], &[])).await;
    s.expect(&suback(v, 1, &[2])).await;
    s.expect(&publish(v, QOS1 | RETAIN, "rq/1", Some(1), &[], b"q1"))
        .await;
    s.send(&ack(PUBACK, 1)).await;

    let mut s0 = srv.client(v, "s0").await;
    s0.send(&subscribe(v, 1, &[("rq/+", 0)], &[])).await;
    s0.expect(&suback(v, 1, &[0])).await;
    s0.expect(&publish(v, QOS0 | RETAIN, "rq/1", None, &[], b"q1"))
        .await;
}

/// Retain Handling: 0 sends the retained messages at every subscribe [MQTT-3.3.1-9]; 1 only
/// when the subscription is new [MQTT-3.3.1-10]; 2 never [MQTT-3.3.1-11]. Shared
/// subscriptions never get retained messages at subscribe time (4.8.2).
async fn retain_handling(v: V) {
    let srv = TestServer::start().await;
    let mut p = srv.client(v, "p").await;
    p.send(&publish(v, QOS0 | RETAIN, "rh/t", None, &[], b"kept"))
        .await;
    p.sync().await;
    let retained = publish(v, QOS0 | RETAIN, "rh/t", None, &[], b"kept");

    let mut s = srv.client(v, "s").await;
    for (pid, options, sent) in [
        (1, 0x00, true),  // retain handling 0: sent
        (2, 0x00, true),  // retain handling 0 again: sent again
        (3, 0x10, false), // retain handling 1, existing subscription: not sent
        (4, 0x20, false), // retain handling 2: not sent
    ] {
        s.send(&subscribe(v, pid, &[("rh/t", options)], &[])).await;
        s.expect(&suback(v, pid, &[0])).await;
        if sent {
            s.expect(&retained).await;
        }
        s.sync().await;
    }
    let mut n = srv.client(v, "n").await;
    n.send(&subscribe(v, 1, &[("rh/+", 0x10)], &[])).await; // retain handling 1, new
    n.expect(&suback(v, 1, &[0])).await;
    n.expect(&retained).await;
    n.sync().await;
    n.send(&subscribe(v, 2, &[("$share/g/rh/t", 0x00)], &[]))
        .await;
    n.expect(&suback(v, 2, &[0])).await;
    n.sync().await;
}

/// Retain As Published: 1 keeps RETAIN on forwarded messages [MQTT-3.3.1-13]; 0 clears it
/// [MQTT-3.3.1-12].
async fn retain_as_published(v: V) {
    let srv = TestServer::start().await;
    let mut keep = srv.client(v, "keep").await;
    keep.send(&subscribe(v, 1, &[("rap/t", 0x08)], &[])).await; // retain as published
    keep.expect(&suback(v, 1, &[0])).await;
    let mut clear = srv.subscriber(v, "clear", "rap/t", 0).await;
    let mut p = srv.client(v, "p").await;
    p.send(&publish(v, QOS0 | RETAIN, "rap/t", None, &[], b"r"))
        .await;
    p.sync().await;
    keep.expect(&publish(v, QOS0 | RETAIN, "rap/t", None, &[], b"r"))
        .await;
    clear
        .expect(&publish(v, QOS0, "rap/t", None, &[], b"r"))
        .await;
}
