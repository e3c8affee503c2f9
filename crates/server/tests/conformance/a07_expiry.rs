//! Area 7: 5.0 session expiry: a short expiry ends the session (observed through a will
//! whose delay outlasts the session); expiry 0 or absent ends it at the close; DISCONNECT
//! may change it, but not from 0; the server's maximum is announced in CONNACK.

use std::time::Duration;

use crate::*;

tests! {
    session_expires: V5;
    absent_expiry_ends_at_close: V5;
    disconnect_sets_expiry_zero: V5;
    disconnect_expiry_after_zero: V5;
    server_caps_expiry: V5;
    message_expiry: V5;
}

/// Session expiry 1 s: the session ends 1 s after the close. Its will (delay 60 s) is
/// published when the session ends, whichever comes first [MQTT-3.1.2-8] (3.1.3.2.2), which
/// tells the test the moment. A reconnect with Clean Start 0 then finds no session: session
/// present 0 [MQTT-3.2.2-3] and no subscription.
async fn session_expires(v: V) {
    let srv = TestServer::start().await;
    let mut o = srv.subscriber(v, "observer", "gone/#", 0).await;
    let mut will = Will::new("gone/s", b"expired");
    will.props = prop::will_delay(60);
    let (mut s, _) = srv
        .connect(&Connect::new(v, "s").persistent(1).will(will))
        .await;
    s.subscribe(1, "x/t", 1).await;
    drop(s);
    o.expect_nothing(600).await;
    o.timeout = Duration::from_secs(3);
    o.expect(&publish(v, QOS0, "gone/s", None, &[], b"expired"))
        .await;

    let mut s = srv.raw(v, "s again").await;
    s.send(&Connect::new(v, "s").persistent(60).bytes()).await;
    s.expect(&connack(v, false)).await;
    s.subscribe(1, "y/t", 0).await;
    let mut p = srv.client(v, "p").await;
    p.publish0("x/t", b"lost").await;
    p.publish0("y/t", b"marker").await;
    s.expect(&publish(v, QOS0, "y/t", None, &[], b"marker"))
        .await;
}

/// Session Expiry Interval absent means 0: the session ends when the connection closes, even
/// with Clean Start 0 (3.1.2.11.2).
async fn absent_expiry_ends_at_close(v: V) {
    let srv = TestServer::start().await;
    let connect = Connect::new(v, "s").clean(false);
    let (mut s, connack_) = srv.connect(&connect).await;
    assert!(!connack_.session_present);
    s.subscribe(1, "x/t", 1).await;
    s.disconnect().await;
    let mut s = srv.raw(v, "s again").await;
    s.send(&connect.bytes()).await;
    s.expect(&connack(v, false)).await;
}

/// DISCONNECT may set the Session Expiry Interval (3.14.2.2.2): 0 ends the session now.
async fn disconnect_sets_expiry_zero(v: V) {
    let srv = TestServer::start().await;
    let connect = Connect::new(v, "s").persistent(60);
    let (mut s, _) = srv.connect(&connect).await;
    s.subscribe(1, "x/t", 1).await;
    s.send(&[
        0xE0, 0x07, // DISCONNECT, remaining length 7
        0x00, // normal disconnection
        0x05, // property length 5
        0x11, 0x00, 0x00, 0x00, 0x00, // session expiry interval 0
    ])
    .await;
    s.expect_closed().await;
    let mut s = srv.raw(v, "s again").await;
    s.send(&connect.bytes()).await;
    s.expect(&connack(v, false)).await;
}

/// [MQTT-3.14.2-2]: a non-zero Session Expiry Interval in DISCONNECT after a CONNECT with
/// expiry 0 is a protocol error: DISCONNECT 0x82.
async fn disconnect_expiry_after_zero(v: V) {
    let srv = TestServer::start().await;
    let mut s = srv.client(v, "s").await;
    s.send(&[
        0xE0, 0x07, // DISCONNECT, remaining length 7
        0x00, // normal disconnection
        0x05, // property length 5
        0x11, 0x00, 0x00, 0x00, 0x0A, // session expiry interval 10
    ])
    .await;
    s.expect_disconnect(0x82).await;
}

/// A server whose maximum session expiry is lower than asked tells the client in CONNACK
/// (3.2.2.3.2) and applies it.
async fn server_caps_expiry(v: V) {
    let srv = TestServer::start_with(|c| c.limits.session_expiry_max_secs = 10).await;
    let (_, connack_) = srv.connect(&Connect::new(v, "s").persistent(100)).await;
    assert_eq!(connack_.properties.session_expiry_interval, Some(10));
    let (_, connack_) = srv.connect(&Connect::new(v, "t").persistent(5)).await;
    assert_eq!(
        connack_.properties.session_expiry_interval, None,
        "not lowered, not sent"
    );
}

/// Message Expiry Interval: a queued message whose interval passes before delivery is not
/// sent [MQTT-3.3.2-5]; one that is sent carries the interval minus the time it waited
/// [MQTT-3.3.2-6].
async fn message_expiry(v: V) {
    let srv = TestServer::start().await;
    let connect = Connect::new(v, "s").persistent(60);
    let (mut s, _) = srv.connect(&connect).await;
    s.subscribe(1, "e/#", 1).await;
    s.disconnect().await;
    let mut p = srv.client(v, "p").await;
    let expiry = |secs: u32| {
        let mut e = vec![0x02]; // message expiry interval
        e.extend(secs.to_be_bytes());
        e
    };
    p.send(&publish(v, QOS1, "e/short", Some(1), &expiry(1), b"gone"))
        .await;
    p.expect(&ack(PUBACK, 1)).await;
    p.send(&publish(v, QOS1, "e/long", Some(2), &expiry(60), b"kept"))
        .await;
    p.expect(&ack(PUBACK, 2)).await;
    p.expect_nothing(1300).await; // the short one expires while queued
    let mut s = srv.raw(v, "s again").await;
    s.send(&connect.bytes()).await;
    s.expect(&connack(v, true)).await;
    let m = s.recv_publish().await;
    assert_eq!((m.topic.as_str(), &m.payload[..]), ("e/long", &b"kept"[..]));
    let left = m
        .properties
        .message_expiry_interval
        .expect("remaining expiry");
    assert!(
        (58..=59).contains(&left),
        "{}: 60 s minus the ~1.3 s it waited: {left}",
        s.name
    );
}
