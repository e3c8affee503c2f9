//! Area 1: CONNECT and CONNACK, the connection's life: CONNACK bytes per version, refused
//! levels and names, the first and the second CONNECT, client identifiers, takeover, session
//! present, keep alive (the client's and the server's), connect timeout, shutdown.

use std::time::Duration;

use crate::*;

tests! {
    connack_accepted: ALL;
    unsupported_protocol_level: ANY;
    invalid_protocol_name: ANY;
    reserved_connect_flag: ALL;
    first_packet_not_connect: ANY;
    second_connect: ALL;
    empty_client_id: ALL;
    takeover: ALL;
    session_present: ALL;
    keep_alive_timeout: ALL;
    server_keep_alive: V5;
    connect_timeout: ANY;
    shutdown: ALL;
    username_password: ALL;
}

/// A CONNECT written out byte by byte: client id "c1", clean, keep alive 0.
fn connect_c1(v: V) -> Vec<u8> {
    match v {
        V::V31 => vec![
            0x10, 0x10, // CONNECT, remaining length 16
            0x00, 0x06, b'M', b'Q', b'I', b's', b'd', b'p', // protocol name
            0x03, // protocol level 3
            0x02, // connect flags: clean session
            0x00, 0x00, // keep alive 0
            0x00, 0x02, b'c', b'1', // client identifier
        ],
        V::V311 => vec![
            0x10, 0x0E, // CONNECT, remaining length 14
            0x00, 0x04, b'M', b'Q', b'T', b'T', // protocol name
            0x04, // protocol level 4
            0x02, // connect flags: clean session
            0x00, 0x00, // keep alive 0
            0x00, 0x02, b'c', b'1', // client identifier
        ],
        V::V5 => vec![
            0x10, 0x0F, // CONNECT, remaining length 15
            0x00, 0x04, b'M', b'Q', b'T', b'T', // protocol name
            0x05, // protocol level 5
            0x02, // connect flags: clean start
            0x00, 0x00, // keep alive 0
            0x00, // property length 0
            0x00, 0x02, b'c', b'1', // client identifier
        ],
    }
}

/// [MQTT-3.2.0-1] the server's first packet is CONNACK; [MQTT-3.2.2-1] (3.1.1) /
/// [MQTT-3.2.2-2] (5.0) session present 0 on a clean session; 5.0 CONNACK properties tell
/// the server's limits (3.2.2.3); [MQTT-3.12.4-1] PINGREQ gets PINGRESP; after DISCONNECT
/// the server closes the connection (3.14.4).
async fn connack_accepted(v: V) {
    let srv = TestServer::start().await;
    assert_eq!(
        connect_c1(v),
        Connect::new(v, "c1").bytes(),
        "builder matches the literal"
    );
    let mut c = srv.raw(v, "c1").await;
    c.send(&connect_c1(v)).await;
    c.expect(&connack(v, false)).await;
    c.send(&[0xC0, 0x00]).await; // PINGREQ
    c.expect(&[0xD0, 0x00]).await; // PINGRESP
    c.send(&[0xE0, 0x00]).await; // DISCONNECT (v5: remaining length 0 means reason 0x00)
    c.expect_closed().await;
}

/// [MQTT-3.1.2-2]: an unsupported protocol level gets CONNACK 0x01 (3.1.1) / 0x84 (5.0) and
/// the connection is closed. A level above 5 is answered in the 5.0 format.
async fn unsupported_protocol_level(v: V) {
    let srv = TestServer::start().await;
    for (name, level) in [("MQTT", 2u8), ("MQTT", 3), ("MQIsdp", 4)] {
        let mut c = srv.raw(v, "client").await;
        let mut body = utf8(name);
        body.extend([level, 0x02, 0x00, 0x00]); // level, clean, keep alive 0
        body.extend(utf8("c"));
        c.send(&frame(0x10, &body)).await;
        c.expect(&[
            0x20, 0x02, // CONNACK, remaining length 2
            0x00, // acknowledge flags
            0x01, // return code 1: unacceptable protocol version
        ])
        .await;
        c.expect_closed().await;
    }
    let mut c = srv.raw(v, "client").await;
    let mut body = utf8("MQTT");
    body.extend([0x06, 0x02, 0x00, 0x00, 0x00]); // level 6, clean, keep alive 0, no properties
    body.extend(utf8("c"));
    c.send(&frame(0x10, &body)).await;
    c.expect(&[
        0x20, 0x03, // CONNACK, remaining length 3
        0x00, // acknowledge flags
        0x84, // reason code: unsupported protocol version
        0x00, // property length 0
    ])
    .await;
    c.expect_closed().await;
}

/// [MQTT-3.1.2-1]: a protocol name other than "MQTT"/"MQIsdp": the server may disconnect
/// without a CONNACK, and does.
async fn invalid_protocol_name(v: V) {
    let srv = TestServer::start().await;
    let mut c = srv.raw(v, "client").await;
    let mut body = utf8("MQTX");
    body.extend([0x04, 0x02, 0x00, 0x00]);
    body.extend(utf8("c"));
    c.send(&frame(0x10, &body)).await;
    c.expect_closed().await;
}

/// [MQTT-3.1.2-3]: the reserved flag of CONNECT must be 0, or the server disconnects.
async fn reserved_connect_flag(v: V) {
    let srv = TestServer::start().await;
    let mut c = srv.raw(v, "client").await;
    let mut bytes = Connect::new(v, "c").bytes();
    let flags_at = 2 + 2 + v.protocol_name().len() + 1;
    bytes[flags_at] |= 0x01; // reserved bit
    c.send(&bytes).await;
    c.expect_closed().await;
}

/// [MQTT-3.1.0-1]: the first packet must be CONNECT; anything else closes the connection,
/// with nothing sent.
async fn first_packet_not_connect(v: V) {
    let srv = TestServer::start().await;
    let firsts: [&[u8]; 4] = [
        &[0xC0, 0x00],                                     // PINGREQ
        &[0x30, 0x04, 0x00, 0x01, b't', b'x'],             // PUBLISH QoS 0 "t" payload "x"
        &[0x82, 0x06, 0x00, 0x01, 0x00, 0x01, b't', 0x00], // SUBSCRIBE "t" QoS 0
        &[0xE0, 0x00],                                     // DISCONNECT
    ];
    for first in firsts {
        let mut c = srv.raw(v, "client").await;
        c.send(first).await;
        c.expect_closed().await;
    }
}

/// [MQTT-3.1.0-2]: a second CONNECT is a protocol violation: 5.0 DISCONNECT 0x82, then close.
async fn second_connect(v: V) {
    let srv = TestServer::start().await;
    let mut c = srv.client(v, "twice").await;
    c.send(&Connect::new(v, "twice").bytes()).await;
    c.expect_disconnect(0x82).await;
}

/// Empty client identifiers. 3.1: the identifier has 1 to 23 characters, refused with
/// CONNACK 0x02. 3.1.1: allowed with clean session 1 [MQTT-3.1.3-6]; with clean session 0
/// CONNACK 0x02 and close [MQTT-3.1.3-8]. 5.0: the server assigns one and returns it in
/// Assigned Client Identifier [MQTT-3.1.3-6] [MQTT-3.2.2-16].
async fn empty_client_id(v: V) {
    let srv = TestServer::start().await;
    let refused = [
        0x20, 0x02, // CONNACK, remaining length 2
        0x00, // acknowledge flags
        0x02, // return code 2: identifier rejected
    ];
    match v {
        V::V31 => {
            let mut c = srv.raw(v, "empty").await;
            c.send(&Connect::new(v, "").bytes()).await;
            c.expect(&refused).await;
            c.expect_closed().await;
        }
        V::V311 => {
            let mut c = srv.raw(v, "empty clean").await;
            c.send(&Connect::new(v, "").bytes()).await;
            c.expect(&connack(v, false)).await;
            c.sync().await;
            let mut c = srv.raw(v, "empty persistent").await;
            c.send(&Connect::new(v, "").clean(false).bytes()).await;
            c.expect(&refused).await;
            c.expect_closed().await;
        }
        V::V5 => {
            let mut ids = Vec::new();
            for clean in [true, false] {
                let mut c = srv.raw(v, "empty").await;
                c.send(&Connect::new(v, "").clean(clean).bytes()).await;
                let connack_ = c.recv_connack().await;
                assert_eq!(connack_.reason, quartet_proto::ReasonCode::Success);
                assert!(!connack_.session_present);
                let id = connack_
                    .properties
                    .assigned_client_identifier
                    .expect("CONNACK carries Assigned Client Identifier [MQTT-3.2.2-16]");
                assert!(!id.is_empty());
                ids.push(id);
                c.sync().await;
            }
            assert_ne!(
                ids[0], ids[1],
                "assigned identifiers are unique [MQTT-3.1.3-6]"
            );
        }
    }
}

/// [MQTT-3.1.4-3]: a second connection with the same client id takes over: the old one gets
/// DISCONNECT 0x8E (5.0) and is closed; the new one works.
async fn takeover(v: V) {
    let srv = TestServer::start().await;
    let mut old = srv.client(v, "same").await;
    let mut new = srv.client(v, "same").await;
    old.expect_disconnect(0x8E).await;
    new.sync().await;
}

/// Session present: 0 with a clean session/start [MQTT-3.2.2-1] (3.1.1) / [MQTT-3.2.2-2]
/// (5.0); 1 when a stored session is resumed and 0 when there is none [MQTT-3.2.2-2]
/// [MQTT-3.2.2-3] (3.1.1) / [MQTT-3.2.2-3] (5.0). A clean start discards the stored session
/// [MQTT-3.1.2-6] (3.1.1) / [MQTT-3.1.2-4] (5.0). MQTT 3.1 has no such flag: the byte is 0.
async fn session_present(v: V) {
    let srv = TestServer::start().await;
    let resumed = v != V::V31;
    let persistent = Connect::new(v, "sp").persistent(60);
    for (connect, present) in [
        (persistent.clone(), false),
        (persistent.clone(), resumed),
        (Connect::new(v, "sp"), false),
        (persistent.clone(), false),
    ] {
        let mut c = srv.raw(v, "sp").await;
        c.send(&connect.bytes()).await;
        c.expect(&connack(v, present)).await;
        c.disconnect().await;
    }
}

/// [MQTT-3.1.2-24] (3.1.1) / [MQTT-3.1.2-22] (5.0): with keep alive 1 s, packets every
/// 0.6 s keep the connection; after 1.5 s of silence the server closes it (5.0: DISCONNECT
/// 0x8D first).
async fn keep_alive_timeout(v: V) {
    let srv = TestServer::start().await;
    let (mut c, _) = srv.connect(&Connect::new(v, "ka").keep_alive(1)).await;
    for _ in 0..4 {
        c.expect_nothing(600).await;
        c.sync().await;
    }
    c.expect_nothing(1200).await;
    c.timeout = Duration::from_millis(1500);
    c.expect_disconnect(0x8D).await;
}

/// [MQTT-3.2.2-21] 5.0: a server whose maximum keep alive is lower than the client's tells it
/// Server Keep Alive in CONNACK and enforces that value.
async fn server_keep_alive(v: V) {
    let srv = TestServer::start_with(|c| c.limits.max_keep_alive_secs = Some(1)).await;
    for asked in [60u16, 0] {
        let mut c = srv.raw(v, "ka").await;
        c.send(&Connect::new(v, "ka").keep_alive(asked).bytes())
            .await;
        c.expect(&[
            0x20, 0x19, // CONNACK, remaining length 25
            0x00, // session present 0
            0x00, // success
            0x16, // property length 22
            0x21, 0x04, 0x00, // receive maximum 1024
            0x25, 0x01, // retain available
            0x27, 0x00, 0x10, 0x00, 0x00, // maximum packet size
            0x22, 0x00, 0x40, // topic alias maximum 64
            0x28, 0x01, // wildcard subscription available
            0x29, 0x01, // subscription identifiers available
            0x2A, 0x01, // shared subscription available
            0x13, 0x00, 0x01, // server keep alive 1
        ])
        .await;
        c.expect_nothing(1200).await;
        c.timeout = Duration::from_millis(1500);
        c.expect_disconnect(0x8D).await;
    }
}

/// A connection that sends no CONNECT is closed after `connect_timeout_ms` (3.1.4: the
/// server should close a connection that does not send CONNECT within a reasonable time).
async fn connect_timeout(v: V) {
    let srv = TestServer::start_with(|c| c.limits.connect_timeout_ms = 300).await;
    let mut c = srv.raw(v, "silent").await;
    c.expect_nothing(150).await;
    c.timeout = Duration::from_secs(2);
    c.expect_closed().await;
}

/// Graceful shutdown: 5.0 clients get DISCONNECT 0x8B (server shutting down); every
/// connection is closed.
async fn shutdown(v: V) {
    let srv = TestServer::start().await;
    let mut a = srv.client(v, "a").await;
    let mut b = srv.client(v, "b").await;
    srv.shutdown().await;
    a.expect_disconnect(0x8B).await;
    b.expect_disconnect(0x8B).await;
}

/// User name and password are carried and (with the default allow-all authenticator)
/// accepted (3.1.3.5, 3.1.3.6); 5.0 allows a password without a user name (3.1.2.9).
async fn username_password(v: V) {
    let srv = TestServer::start().await;
    let mut c = srv.raw(v, "both").await;
    c.send(
        &Connect::new(v, "c")
            .credentials(Some("user"), Some(b"\x00secret\xFF"))
            .bytes(),
    )
    .await;
    c.expect(&connack(v, false)).await;
    c.sync().await;
    if v == V::V5 {
        let mut c = srv.raw(v, "password only").await;
        c.send(&Connect::new(v, "d").credentials(None, Some(b"pw")).bytes())
            .await;
        c.expect(&connack(v, false)).await;
        c.sync().await;
    }
}
