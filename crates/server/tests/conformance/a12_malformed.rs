//! Area 12: malformed packets. After CONNECT, each one ends the connection; 5.0 gets
//! DISCONNECT 0x81 Malformed Packet first ([MQTT-4.13.1-1] (5.0) / [MQTT-4.8.0-1] (3.1.1)).
//! Before CONNECT, the connection is closed without a word.

use crate::*;

tests! {
    malformed_after_connect: ALL;
    malformed_v5_properties: V5;
    malformed_before_connect: ALL;
    null_character_in_topic: ALL;
}

/// The cases for one version: what it is, the bytes, the statement.
fn cases(v: V) -> Vec<(&'static str, Vec<u8>)> {
    let mut pid0 = publish(v, QOS1, "t", Some(1), &[], b"x");
    pid0[5] = 0x00; // packet id 1 -> 0
    pid0[6] = 0x00;
    let mut sub_flags0 = subscribe(v, 1, &[("t", 0)], &[]);
    sub_flags0[0] = 0x80; // SUBSCRIBE with flags 0000
    let mut unsub_flags0 = unsubscribe(v, 1, &["t"]);
    unsub_flags0[0] = 0xA0; // UNSUBSCRIBE with flags 0000
    let reserved_option = if v == V::V5 { 0xC0 } else { 0x04 };
    vec![
        // 2.1.2: packet type 0 is reserved.
        ("reserved packet type 0", vec![0x00, 0x00]),
        // [MQTT-2.1.3-1] fixed-header flags that must be 0010 / 0000.
        ("PUBREL flags 0000", vec![0x60, 0x02, 0x00, 0x01]),
        ("PUBACK flags 0001", vec![0x41, 0x02, 0x00, 0x01]),
        ("SUBSCRIBE flags 0000", sub_flags0),
        ("UNSUBSCRIBE flags 0000", unsub_flags0),
        ("PINGREQ flags 0001", vec![0xC1, 0x00]),
        ("DISCONNECT flags 0001", vec![0xE1, 0x00]),
        // [MQTT-3.3.1-4] QoS 3.
        ("PUBLISH QoS 3", publish(v, 0x06, "t", Some(1), &[], b"x")),
        // [MQTT-3.3.1-2] DUP on QoS 0.
        (
            "PUBLISH DUP with QoS 0",
            publish(v, DUP, "t", None, &[], b"x"),
        ),
        // [MQTT-1.5.4-1] ill-formed UTF-8, encoded surrogates, overlong forms.
        ("topic not UTF-8", publish_raw_topic(v, &[0xC3, 0x28])),
        (
            "topic with a surrogate",
            publish_raw_topic(v, &[0xED, 0xA0, 0x80]),
        ),
        (
            "topic with an overlong form",
            publish_raw_topic(v, &[0xC0, 0xAF]),
        ),
        ("filter not UTF-8", subscribe_raw_filter(v, &[b'a', 0xFF])),
        // [MQTT-2.2.1-3] packet identifier 0.
        ("PUBLISH QoS 1 with packet id 0", pid0),
        ("PUBACK packet id 0", vec![0x40, 0x02, 0x00, 0x00]),
        // Bytes after the last field.
        ("PINGREQ with a body", vec![0xC0, 0x01, 0x00]),
        // A field running past the end of the packet.
        (
            "topic longer than the packet",
            vec![0x30, 0x05, 0x00, 0x0A, b'a', b'b', b'c'],
        ),
        // [MQTT-1.5.5-1] a variable byte integer of more than four bytes.
        (
            "remaining length of 5 bytes",
            vec![0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x01],
        ),
        // [MQTT-3.8.3-4] (3.1.1) / [MQTT-3.8.3-5] (5.0) reserved subscription option bits.
        (
            "reserved subscription option bits",
            subscribe(v, 1, &[("t", reserved_option)], &[]),
        ),
        // [MQTT-3.3.2-2] wildcards in a topic name (5.0: 0x90 is the specific code, below).
    ]
}

fn publish_raw_topic(v: V, topic: &[u8]) -> Vec<u8> {
    let mut body = bin(topic);
    body.extend(props(v, &[]));
    body.push(b'x');
    frame(0x30, &body)
}

fn subscribe_raw_filter(v: V, filter: &[u8]) -> Vec<u8> {
    let mut body = vec![0x00, 0x01];
    body.extend(props(v, &[]));
    body.extend(bin(filter));
    body.push(0x00);
    frame(0x82, &body)
}

/// Every case: 5.0 DISCONNECT 0x81 then close; 3.x close. QoS 3 in subscription options is
/// malformed in 3.1.1 ([MQTT-3.8.3-4]) (5.0 calls it a protocol error: see area 13).
async fn malformed_after_connect(v: V) {
    let srv = TestServer::start().await;
    let mut all = cases(v);
    if v != V::V5 {
        all.push(("subscription QoS 3", subscribe(v, 1, &[("t", 0x03)], &[])));
        // No AUTH before 5.0: type 15 is reserved.
        all.push(("AUTH in 3.x", vec![0xF0, 0x00]));
    }
    for (what, bytes) in all {
        let mut c = srv.client(v, what).await;
        c.send(&bytes).await;
        c.expect_disconnect(0x81).await;
    }
    // Wildcards in a topic name [MQTT-3.3.2-2]: 5.0 answers with 0x90 Topic Name invalid.
    for topic in ["a/+", "a/#"] {
        let mut c = srv.client(v, topic).await;
        c.send(&publish(v, QOS0, topic, None, &[], b"x")).await;
        c.expect_disconnect(0x90).await;
    }
}

/// 5.0 properties (2.2.2): an unknown identifier, one the packet may not carry, a length
/// running past the packet: Malformed Packet.
async fn malformed_v5_properties(v: V) {
    let srv = TestServer::start().await;
    for (what, properties) in [
        ("unknown property 0x7F", vec![0x7F, 0x00]),
        (
            "Session Expiry Interval in PUBLISH",
            prop::session_expiry(1),
        ),
    ] {
        let mut c = srv.client(v, what).await;
        c.send(&publish(v, QOS0, "t", None, &properties, b"x"))
            .await;
        c.expect_disconnect(0x81).await;
    }
    let mut c = srv.client(v, "property length overflow").await;
    c.send(&[
        0x30, 0x06, // PUBLISH QoS 0, remaining length 6
        0x00, 0x01, b't', // topic
        0x0A, // property length 10, but only 2 bytes follow
        0x01, 0x00, // payload format indicator 0
    ])
    .await;
    c.expect_disconnect(0x81).await;
}

/// Before CONNECT: garbage, a malformed CONNECT (bad UTF-8 client id, will flags without a
/// will [MQTT-3.1.2-11] [MQTT-3.1.2-13] [MQTT-3.1.2-15], 3.x password without user name
/// [MQTT-3.1.2-22]): the connection is closed, nothing is sent (3.1.4: the server may
/// answer a malformed CONNECT with a CONNACK code; it does not have to).
async fn malformed_before_connect(v: V) {
    let srv = TestServer::start().await;
    let mut bad_id = Connect::new(v, "ab").bytes();
    let n = bad_id.len();
    bad_id[n - 1] = 0xFF; // client id "a\xFF"
    let mut will_qos_no_will = Connect::new(v, "c").bytes();
    let flags_at = 2 + 2 + v.protocol_name().len() + 1;
    will_qos_no_will[flags_at] |= 0x08; // will QoS 1, will flag 0
    let mut will_retain_no_will = Connect::new(v, "c").bytes();
    will_retain_no_will[flags_at] |= 0x20; // will retain, will flag 0
    let mut cases = vec![
        vec![0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF],
        vec![0x00, 0x00],
        bad_id,
        will_qos_no_will,
        will_retain_no_will,
    ];
    if v != V::V5 {
        let mut password_only = Connect::new(v, "c").bytes();
        password_only[flags_at] |= 0x40; // password flag without user name flag
        password_only[1] += 2;
        password_only.extend([0x00, 0x00]); // empty password
        cases.push(password_only);
    }
    for bytes in cases {
        let mut c = srv.raw(v, "c").await;
        c.send(&bytes).await;
        c.expect_closed().await;
    }
}

/// [MQTT-1.5.4-2] U+0000 in a string makes the packet malformed; in a topic name 5.0
/// answers with the more specific 0x90 Topic Name invalid (4.13.1).
async fn null_character_in_topic(v: V) {
    let srv = TestServer::start().await;
    let mut c = srv.client(v, "c").await;
    c.send(&publish_raw_topic(v, &[b'a', 0x00, b'b'])).await;
    c.expect_disconnect(0x90).await;
    let mut c = srv.client(v, "c").await;
    c.send(&subscribe_raw_filter(v, &[b'a', 0x00])).await;
    c.expect_disconnect(0x8F).await;
}
