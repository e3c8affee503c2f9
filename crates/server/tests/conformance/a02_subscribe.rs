//! Area 2: SUBSCRIBE/SUBACK and UNSUBSCRIBE/UNSUBACK: the acknowledgements byte by byte,
//! per-filter reason codes, replacement, overlap, invalid and empty filter lists, limits,
//! subscription identifiers, No Local, `$` topics.

use crate::*;

tests! {
    suback_per_filter: ALL;
    resubscribe_replaces: ALL;
    overlapping_one_copy: ALL;
    unsubscribe_flow: ALL;
    invalid_filter: ALL;
    empty_subscribe_v3: V3;
    empty_subscribe_v5: V5;
    subscription_quota: ALL;
    subscription_identifier: V5;
    no_local: V5;
    dollar_topics: ALL;
    topic_levels_limit: ALL;
}

/// [MQTT-3.8.4-1] SUBACK with the same packet id [MQTT-3.8.4-2]; several filters in one
/// SUBSCRIBE get one SUBACK with one code per filter, in order [MQTT-3.8.4-5]
/// [MQTT-3.9.3-1]; the granted QoS is the requested one here.
async fn suback_per_filter(v: V) {
    let srv = TestServer::start().await;
    let mut c = srv.client(v, "s").await;
    c.send(&subscribe(
        v,
        0x0102,
        &[("a/0", 0), ("a/1", 1), ("a/2", 2)],
        &[],
    ))
    .await;
    match v {
        V::V5 => {
            c.expect(&[
                0x90, 0x06, // SUBACK, remaining length 6
                0x01, 0x02, // packet id
                0x00, // property length 0
                0x00, 0x01, 0x02, // granted QoS 0, 1, 2
            ])
            .await
        }
        _ => {
            c.expect(&[
                0x90, 0x05, // SUBACK, remaining length 5
                0x01, 0x02, // packet id
                0x00, 0x01, 0x02, // granted QoS 0, 1, 2
            ])
            .await
        }
    }
}

/// [MQTT-3.8.4-3]: a SUBSCRIBE for an existing filter replaces that subscription: the new
/// (lower) QoS applies and there is still one copy.
async fn resubscribe_replaces(v: V) {
    let srv = TestServer::start().await;
    let mut s = srv.subscriber(v, "s", "r/x", 2).await;
    s.subscribe(2, "r/x", 0).await;
    let mut p = srv.client(v, "p").await;
    p.publish1("r/x", 7, b"m").await;
    // Delivered at the new maximum, QoS 0, once.
    s.expect(&publish(v, QOS0, "r/x", None, &[], b"m")).await;
    // Marker: a second copy (from a second subscription) would come first.
    p.publish0("r/x", b"marker").await;
    s.expect(&publish(v, QOS0, "r/x", None, &[], b"marker"))
        .await;
}

/// Overlapping subscriptions of one client: one copy at the highest granted QoS
/// [MQTT-3.3.5-1] (3.1.1) / [MQTT-3.3.4-2] (5.0).
async fn overlapping_one_copy(v: V) {
    let srv = TestServer::start().await;
    let mut s = srv.client(v, "s").await;
    s.send(&subscribe(v, 1, &[("o/+", 0), ("o/#", 1)], &[]))
        .await;
    s.expect(&suback(v, 1, &[0, 1])).await;
    let mut p = srv.client(v, "p").await;
    p.publish1("o/a", 9, b"one").await;
    s.expect(&publish(v, QOS1, "o/a", Some(1), &[], b"one"))
        .await;
    s.send(&ack(PUBACK, 1)).await;
    // Marker: had a second copy been sent, it would come first.
    p.publish0("o/b", b"marker").await;
    s.expect(&publish(v, QOS0, "o/b", None, &[], b"marker"))
        .await;
}

/// UNSUBACK with the same packet id [MQTT-3.10.4-4], also when nothing matched
/// [MQTT-3.10.4-5]; 5.0 has one reason code per filter [MQTT-3.11.3-1]: 0x00, or 0x11 No
/// subscription existed. The subscription is gone: nothing more is delivered for it
/// [MQTT-3.10.4-1] [MQTT-3.10.4-2].
async fn unsubscribe_flow(v: V) {
    let srv = TestServer::start().await;
    let mut s = srv.client(v, "s").await;
    s.send(&subscribe(v, 1, &[("u/1", 0), ("u/2", 0)], &[]))
        .await;
    s.expect(&suback(v, 1, &[0, 0])).await;
    s.send(&unsubscribe(v, 0x0A0B, &["u/1", "u/none"])).await;
    match v {
        V::V5 => {
            s.expect(&[
                0xB0, 0x05, // UNSUBACK, remaining length 5
                0x0A, 0x0B, // packet id
                0x00, // property length 0
                0x00, // u/1: success
                0x11, // u/none: no subscription existed
            ])
            .await
        }
        _ => {
            s.expect(&[
                0xB0, 0x02, // UNSUBACK, remaining length 2
                0x0A, 0x0B, // packet id
            ])
            .await
        }
    }
    let mut p = srv.client(v, "p").await;
    p.publish0("u/1", b"gone").await;
    p.publish0("u/2", b"kept").await;
    s.expect(&publish(v, QOS0, "u/2", None, &[], b"kept")).await;
}

/// Invalid topic filters ('#' not last [MQTT-4.7.1-2], '+' not alone [MQTT-4.7.1-3], empty
/// [MQTT-4.7.3-1]) make SUBSCRIBE malformed: the connection is closed; 5.0 gets DISCONNECT
/// 0x8F Topic Filter invalid first (the more specific code, 4.13.1).
async fn invalid_filter(v: V) {
    let srv = TestServer::start().await;
    for filter in ["a/#/b", "a+", "#a", ""] {
        let mut c = srv.client(v, "s").await;
        c.send(&subscribe(v, 1, &[(filter, 0)], &[])).await;
        c.expect_disconnect(0x8F).await;
    }
    for filter in ["a/#/b", "a+/b"] {
        let mut c = srv.client(v, "s").await;
        c.send(&unsubscribe(v, 1, &[filter])).await;
        c.expect_disconnect(0x8F).await;
    }
}

fn empty_lists(v: V) -> [Vec<u8>; 2] {
    let mut body = vec![0x00, 0x01]; // packet id 1
    body.extend(props(v, &[])); // v5 property length 0
    [frame(0x82, &body), frame(0xA2, &body)]
}

/// [MQTT-3.8.3-3] / [MQTT-3.10.3-2] (3.1.1): SUBSCRIBE and UNSUBSCRIBE carry at least one
/// filter; without, the server closes the connection.
async fn empty_subscribe_v3(v: V) {
    let srv = TestServer::start().await;
    for bytes in empty_lists(v) {
        let mut c = srv.client(v, "s").await;
        c.send(&bytes).await;
        c.expect_closed().await;
    }
}

/// [MQTT-3.8.3-2] / [MQTT-3.10.3-2] (5.0): "A SUBSCRIBE packet with no Payload is a Protocol
/// Error" (likewise UNSUBSCRIBE): DISCONNECT 0x82, then close.
async fn empty_subscribe_v5(v: V) {
    let srv = TestServer::start().await;
    for bytes in empty_lists(v) {
        let mut c = srv.client(v, "s").await;
        c.send(&bytes).await;
        c.expect_disconnect(0x82).await;
    }
}

/// A subscription beyond `max_subscriptions_per_client` is refused in its SUBACK slot: 0x80
/// (3.1.1 failure) / 0x97 Quota exceeded (5.0); the others are granted [MQTT-3.8.4-5]
/// (3.1.1: the server may grant or refuse each filter).
async fn subscription_quota(v: V) {
    let srv = TestServer::start_with(|c| c.limits.max_subscriptions_per_client = 1).await;
    let mut c = srv.client(v, "s").await;
    c.send(&subscribe(v, 5, &[("q/1", 1), ("q/2", 1)], &[]))
        .await;
    let refused = if v == V::V5 { 0x97 } else { 0x80 };
    c.expect(&suback(v, 5, &[0x01, refused])).await;
    // Replacing the existing one is not a new subscription.
    c.subscribe(6, "q/1", 0).await;
}

/// 5.0 Subscription Identifier (3.8.2.1.2): a PUBLISH matching the subscription carries its
/// identifier [MQTT-3.3.4-3]; overlapping subscriptions give one copy
/// carrying every identifier [MQTT-3.3.4-4].
async fn subscription_identifier(v: V) {
    let srv = TestServer::start().await;
    let mut s = srv.client(v, "s").await;
    s.send(&subscribe(v, 1, &[("id/+", 0)], &prop::subscription_id(7)))
        .await;
    s.expect(&suback(v, 1, &[0])).await;
    let mut p = srv.client(v, "p").await;
    p.publish0("id/a", b"x").await;
    s.expect(&publish(v, QOS0, "id/a", None, &[0x0B, 0x07], b"x"))
        .await;

    s.send(&subscribe(
        v,
        2,
        &[("id/#", 0)],
        &prop::subscription_id(300),
    ))
    .await;
    s.expect(&suback(v, 2, &[0])).await;
    p.publish0("id/b", b"y").await;
    let m = s.recv_publish().await;
    assert_eq!(m.topic.as_str(), "id/b");
    let mut ids = m.properties.subscription_identifiers.clone();
    ids.sort_unstable();
    assert_eq!(ids, [7, 300], "{}: one copy with both identifiers", s.name);
}

/// [MQTT-3.8.3-3] 5.0 No Local: messages are not forwarded to the connection that published
/// them on such a subscription; other publishers' messages are.
async fn no_local(v: V) {
    let srv = TestServer::start().await;
    let mut s = srv.client(v, "s").await;
    s.send(&subscribe(v, 1, &[("nl/t", 0x04 | 1)], &[])).await; // No Local, QoS 1
    s.expect(&suback(v, 1, &[1])).await;
    s.publish1("nl/t", 3, b"own").await;
    let mut p = srv.client(v, "p").await;
    p.publish0("nl/t", b"other").await;
    s.expect(&publish(v, QOS0, "nl/t", None, &[], b"other"))
        .await;
}

/// [MQTT-4.7.2-1]: filters starting with a wildcard do not match topic names starting with
/// '$'; a filter naming the '$' level does.
async fn dollar_topics(v: V) {
    let srv = TestServer::start().await;
    let mut s = srv.client(v, "s").await;
    s.send(&subscribe(v, 1, &[("#", 0), ("+/x", 0)], &[])).await;
    s.expect(&suback(v, 1, &[0, 0])).await;
    let mut d = srv.subscriber(v, "d", "$foo/#", 0).await;
    let mut p = srv.client(v, "p").await;
    p.publish0("$foo/x", b"dollar").await;
    d.expect(&publish(v, QOS0, "$foo/x", None, &[], b"dollar"))
        .await;
    p.publish0("m/x", b"marker").await;
    s.expect(&publish(v, QOS0, "m/x", None, &[], b"marker"))
        .await;
}

/// Server limit `max_topic_levels` (3 here): a deeper filter is refused in its SUBACK slot
/// (0x80 / 5.0 0x8F Topic Filter invalid); a PUBLISH to a deeper topic closes the
/// connection (5.0: DISCONNECT 0x90 Topic Name invalid).
async fn topic_levels_limit(v: V) {
    let srv = TestServer::start_with(|c| c.limits.max_topic_levels = 3).await;
    let mut c = srv.client(v, "c").await;
    c.send(&subscribe(v, 1, &[("a/b/c", 1), ("a/b/c/d", 1)], &[]))
        .await;
    let refused = if v == V::V5 { 0x8F } else { 0x80 };
    c.expect(&suback(v, 1, &[1, refused])).await;
    c.send(&publish(v, QOS0, "a/b/c/d", None, &[], b"x")).await;
    c.expect_disconnect(0x90).await;
}
