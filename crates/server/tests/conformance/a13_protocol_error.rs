//! Area 13: protocol errors: well-formed packets that must not be sent, or not then. The
//! connection ends; 5.0 gets DISCONNECT 0x82 Protocol Error first (4.13.2). (The second
//! CONNECT is in area 1, DISCONNECT's session expiry in area 7, topic aliases in area 9,
//! No Local on shared subscriptions in area 8.)

use crate::*;

tests! {
    server_only_packets: ALL;
    auth_without_method: V5;
    connect_with_auth_method: V5;
    subscription_identifier_from_client: V5;
    duplicate_property: V5;
    subscription_option_values: V5;
    connect_receive_maximum_zero: V5;
}

/// Packets only a server sends (CONNACK, SUBACK, UNSUBACK, PINGRESP) coming from a client.
async fn server_only_packets(v: V) {
    let srv = TestServer::start().await;
    let cases: [(&str, Vec<u8>); 4] = if v == V::V5 {
        [
            ("CONNACK", vec![0x20, 0x03, 0x00, 0x00, 0x00]),
            ("SUBACK", vec![0x90, 0x04, 0x00, 0x01, 0x00, 0x00]),
            ("UNSUBACK", vec![0xB0, 0x04, 0x00, 0x01, 0x00, 0x00]),
            ("PINGRESP", vec![0xD0, 0x00]),
        ]
    } else {
        [
            ("CONNACK", vec![0x20, 0x02, 0x00, 0x00]),
            ("SUBACK", vec![0x90, 0x03, 0x00, 0x01, 0x00]),
            ("UNSUBACK", vec![0xB0, 0x02, 0x00, 0x01]),
            ("PINGRESP", vec![0xD0, 0x00]),
        ]
    };
    for (what, bytes) in cases {
        let mut c = srv.client(v, what).await;
        c.send(&bytes).await;
        c.expect_disconnect(0x82).await;
    }
}

/// AUTH when CONNECT had no Authentication Method is a protocol error
/// (4.12: "If the Client does not include an Authentication Method in the CONNECT, the
/// Client MUST NOT send an AUTH packet").
async fn auth_without_method(v: V) {
    let srv = TestServer::start().await;
    let mut c = srv.client(v, "c").await;
    c.send(&[0xF0, 0x00]).await; // AUTH, reason 0x00
    c.expect_disconnect(0x82).await;
}

/// CONNECT with an Authentication Method the server does not support: CONNACK 0x8C Bad
/// authentication method, then close (4.12).
async fn connect_with_auth_method(v: V) {
    let srv = TestServer::start().await;
    let mut c = srv.raw(v, "c").await;
    let mut method = vec![0x15]; // authentication method
    method.extend(utf8("SCRAM-SHA-1"));
    c.send(&Connect::new(v, "c").prop(method).bytes()).await;
    c.expect(&[
        0x20, 0x03, // CONNACK, remaining length 3
        0x00, // session present 0
        0x8C, // bad authentication method
        0x00, // property length 0
    ])
    .await;
    c.expect_closed().await;
}

/// [MQTT-3.3.4-6]: a PUBLISH from a client must not carry a Subscription Identifier.
async fn subscription_identifier_from_client(v: V) {
    let srv = TestServer::start().await;
    let mut c = srv.client(v, "c").await;
    c.send(&publish(
        v,
        QOS0,
        "t",
        None,
        &prop::subscription_id(1),
        b"x",
    ))
    .await;
    c.expect_disconnect(0x82).await;
}

/// A property that may appear once, twice (2.2.2.2: "It is a Protocol Error to include the
/// Payload Format Indicator more than once").
async fn duplicate_property(v: V) {
    let srv = TestServer::start().await;
    let mut c = srv.client(v, "c").await;
    c.send(&publish(
        v,
        QOS0,
        "t",
        None,
        &[0x01, 0x00, 0x01, 0x00],
        b"x",
    ))
    .await;
    c.expect_disconnect(0x82).await;
}

/// 3.8.3.1: "It is a Protocol Error if the Maximum QoS field has the value 3", "It is a
/// Protocol Error to send a Retain Handling value of 3".
async fn subscription_option_values(v: V) {
    let srv = TestServer::start().await;
    for options in [0x03, 0x30] {
        let mut c = srv.client(v, "c").await;
        c.send(&subscribe(v, 1, &[("t", options)], &[])).await;
        c.expect_disconnect(0x82).await;
    }
}

/// 3.1.2.11.3: "It is a Protocol Error to include the Receive Maximum value of zero": the
/// CONNECT is refused (closed; a CONNACK code would be optional).
async fn connect_receive_maximum_zero(v: V) {
    let srv = TestServer::start().await;
    let mut c = srv.raw(v, "c").await;
    c.send(&Connect::new(v, "c").prop(prop::receive_maximum(0)).bytes())
        .await;
    c.expect_closed().await;
}
