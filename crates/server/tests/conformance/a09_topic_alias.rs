//! Area 9: 5.0 topic aliases in both directions: the server resolves and remaps the
//! client's aliases, refuses bad ones, and uses its own only within the client's Topic Alias
//! Maximum.

use crate::*;

tests! {
    client_to_server: V5;
    client_alias_errors: V5;
    server_to_client: V5;
}

/// [MQTT-3.3.2-12]: the server accepts aliases 1..=its Topic Alias Maximum (64 by default,
/// announced in CONNACK); a PUBLISH with a topic and an alias sets the mapping, an empty
/// topic with the alias uses it, a new topic remaps it (3.3.2.3.4). Subscribers without a
/// Topic Alias Maximum get the full topic and no alias [MQTT-3.1.2-27].
async fn client_to_server(v: V) {
    let srv = TestServer::start().await;
    let mut s = srv.client(v, "s").await;
    s.send(&subscribe(v, 1, &[("a/b", 0), ("c/d", 0)], &[]))
        .await;
    s.expect(&suback(v, 1, &[0, 0])).await;
    let mut p = srv.client(v, "p").await;
    let alias1 = prop::topic_alias(1);
    assert_eq!(alias1, [0x23, 0x00, 0x01]); // topic alias 1
    p.send(&publish(v, QOS0, "a/b", None, &alias1, b"1")).await;
    p.send(&publish(v, QOS0, "", None, &alias1, b"2")).await;
    p.send(&publish(v, QOS0, "c/d", None, &alias1, b"3")).await;
    p.send(&publish(v, QOS1, "", Some(9), &alias1, b"4")).await;
    p.expect(&ack(PUBACK, 9)).await;
    let alias64 = prop::topic_alias(64);
    p.send(&publish(v, QOS0, "a/b", None, &alias64, b"5")).await;
    p.send(&publish(v, QOS0, "", None, &alias64, b"6")).await;
    p.sync().await;
    for (topic, payload) in [("a/b", b"1"), ("a/b", b"2"), ("c/d", b"3"), ("c/d", b"4")] {
        s.expect(&publish(v, QOS0, topic, None, &[], payload)).await;
    }
    s.expect(&publish(v, QOS0, "a/b", None, &[], b"5")).await;
    s.expect(&publish(v, QOS0, "a/b", None, &[], b"6")).await;
}

/// Bad aliases from the client: 0 [MQTT-3.3.2-8] and above the server's maximum
/// [MQTT-3.3.2-9] get DISCONNECT 0x94 Topic Alias invalid; an empty topic with an alias
/// never set is a protocol error, 0x82 (3.3.2.3.4); an empty topic without an alias, 0x90
/// Topic Name invalid (3.3.2.1).
async fn client_alias_errors(v: V) {
    let srv = TestServer::start().await;
    for (topic, properties, reason) in [
        ("a/b", prop::topic_alias(0), 0x94),
        ("a/b", prop::topic_alias(65), 0x94),
        ("", prop::topic_alias(5), 0x82),
        ("", Vec::new(), 0x90),
    ] {
        let mut p = srv.client(v, "p").await;
        p.send(&publish(v, QOS0, topic, None, &properties, b"x"))
            .await;
        p.expect_disconnect(reason).await;
    }
    let srv = TestServer::start_with(|c| c.limits.topic_alias_maximum = 0).await;
    let mut p = srv.client(v, "p").await;
    p.send(&publish(v, QOS0, "a/b", None, &prop::topic_alias(1), b"x"))
        .await;
    p.expect_disconnect(0x94).await;
}

/// The server's aliases stay within the client's Topic Alias Maximum [MQTT-3.1.2-26]
/// [MQTT-3.3.2-11]: with a maximum of 2, the first two topics get aliases 1 and 2 (topic and
/// alias the first time, then an empty topic and the alias), a third topic goes out in full.
async fn server_to_client(v: V) {
    let srv = TestServer::start().await;
    let connect = Connect::new(v, "s").prop(prop::topic_alias_maximum(2));
    let (mut s, _) = srv.connect(&connect).await;
    s.subscribe(1, "a/#", 0).await;
    let mut p = srv.client(v, "p").await;
    for (topic, payload) in [
        ("a/1", "1"),
        ("a/1", "2"),
        ("a/2", "3"),
        ("a/3", "4"),
        ("a/3", "5"),
        ("a/2", "6"),
    ] {
        p.publish0(topic, payload.as_bytes()).await;
    }
    let a1 = prop::topic_alias(1);
    let a2 = prop::topic_alias(2);
    s.expect(&publish(v, QOS0, "a/1", None, &a1, b"1")).await;
    s.expect(&publish(v, QOS0, "", None, &a1, b"2")).await;
    s.expect(&publish(v, QOS0, "a/2", None, &a2, b"3")).await;
    s.expect(&publish(v, QOS0, "a/3", None, &[], b"4")).await;
    s.expect(&publish(v, QOS0, "a/3", None, &[], b"5")).await;
    s.expect(&publish(v, QOS0, "", None, &a2, b"6")).await;
}
