//! Connection life cycle: CONNECT rules, keep alive, connect timeout, client identifiers,
//! protocol levels, authentication methods.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod harness;

use harness::*;
use quartet_broker::Config;
use quartet_proto::*;

/// [MQTT-3.1.2-24] (3.1.1) / [MQTT-3.1.2-22] (v5): without a packet from the client for one
/// and a half times the keep alive the server closes the connection; v5 says why with
/// DISCONNECT 0x8D (MQTT 5 §4.13, Keep Alive timeout). Any packet restarts the period.
#[test]
fn keep_alive_timeout_closes_after_one_and_a_half_times() {
    for version in [V31, V311, V5] {
        let mut sim = Sim::new();
        let mut c = persistent(version, "c");
        c.keep_alive = 10;
        let (c, _) = sim.connect(c);
        sim.advance(14_000);
        sim.send(c, Packet::PingReq);
        assert_eq!(sim.expect(c), Packet::PingResp);
        sim.advance(14_999);
        assert!(
            !sim.is_closed(c),
            "{version}: closed before 1.5 x keep alive"
        );
        sim.advance(1);
        assert!(
            sim.is_closed(c),
            "{version}: still open after 1.5 x keep alive"
        );
        if version.is_v5() {
            assert_eq!(
                sim.expect_disconnect(c).reason,
                ReasonCode::KeepAliveTimeout
            );
        }
        sim.expect_silent(c);
        assert_eq!(sim.broker.metrics().clients_connected, 0);
    }
}

/// Keep alive 0 turns the mechanism off (MQTT 5 §3.1.2.10).
#[test]
fn keep_alive_zero_never_times_out() {
    let mut sim = Sim::new();
    let c = sim.persistent(V5, "c");
    sim.advance(24 * 3_600_000);
    assert!(!sim.is_closed(c));
}

/// MQTT 5 §3.2.2.3.14: a server maximum keep alive is imposed (Server Keep Alive) and
/// enforced.
#[test]
fn server_keep_alive_is_imposed() {
    let mut sim = Sim::with_config(Config {
        max_keep_alive_secs: Some(20),
        ..quiet_config()
    });
    let (c, ack) = sim.connect(connect(V5, "c", true));
    assert_eq!(ack.properties.server_keep_alive, Some(20));
    sim.advance(30_000);
    assert!(sim.is_closed(c));
}

/// MQTT 5 §3.1.4 / 3.1.1 §3.1.4: a network connection that sends no CONNECT within a
/// reasonable time is closed (here: `connect_timeout_ms`), with nothing sent.
#[test]
fn connect_timeout() {
    let mut sim = Sim::new();
    let conn = sim.open();
    sim.advance(sim.config.connect_timeout_ms - 1);
    assert!(!sim.is_closed(conn));
    sim.advance(1);
    assert!(sim.is_closed(conn));
    sim.expect_silent(conn);
    assert_eq!(sim.broker.connection_count(), 0);
}

/// [MQTT-3.1.0-2]: a second CONNECT is a protocol violation: v5 DISCONNECT 0x82, closed.
#[test]
fn second_connect_is_a_protocol_error() {
    for version in [V31, V311, V5] {
        let mut sim = Sim::new();
        let c = sim.persistent(version, "c");
        sim.send(c, Packet::Connect(Box::new(persistent(version, "c"))));
        if version.is_v5() {
            assert_eq!(sim.expect_disconnect(c).reason, ReasonCode::ProtocolError);
        }
        sim.expect_silent(c);
        assert!(sim.is_closed(c));
        assert_eq!(sim.broker.metrics().protocol_errors, 1);
    }
}

/// [MQTT-3.1.0-1]: the first packet must be CONNECT; anything else closes the connection
/// without an answer.
#[test]
fn first_packet_not_connect_closes() {
    for first in [
        Packet::PingReq,
        Packet::Publish(publish("a", QoS::AtMostOnce, 0, b"x")),
        Packet::Subscribe(subscribe(1, &[("a", opts(QoS::AtMostOnce))])),
        disconnect(ReasonCode::Success),
    ] {
        let mut sim = Sim::new();
        let conn = sim.open();
        sim.send(conn, first);
        assert!(sim.is_closed(conn));
        sim.expect_silent(conn);
        assert_eq!(sim.broker.metrics().protocol_errors, 1);
    }
}

/// 3.1.1: an empty client id with clean session 1 gets a server-chosen identity
/// ([MQTT-3.1.3-6], [MQTT-3.1.3-7]); with clean session 0 CONNACK 0x02 and close
/// ([MQTT-3.1.3-8]). v5: the server assigns one and returns it as Assigned Client Identifier
/// ([MQTT-3.1.3-6], [MQTT-3.2.2-16]). 3.1 requires 1 to 23 characters: refused with 0x02.
#[test]
fn empty_client_id() {
    let mut sim = Sim::new();
    let (a, ack) = sim.connect(connect(V311, "", true));
    assert!(!ack.session_present);
    let (b, _) = sim.connect(connect(V311, "", true));
    // Two anonymous clients are two sessions: no takeover.
    assert!(!sim.is_closed(a) && !sim.is_closed(b));
    assert_eq!(sim.broker.metrics().sessions, 2);

    for (version, clean) in [(V311, false), (V31, true), (V31, false)] {
        let c = sim.open_connect(connect(version, "", clean));
        let ack = sim.expect_connack(c);
        assert_eq!(
            ack.reason,
            ReasonCode::ClientIdentifierNotValid,
            "{version}"
        );
        assert!(!ack.session_present);
        assert!(sim.is_closed(c));
    }

    let (x, ack) = sim.connect(connect(V5, "", true));
    let id_x = ack.properties.assigned_client_identifier.clone().unwrap();
    assert!(!id_x.is_empty());
    let (_, ack) = sim.connect(connect(V5, "", false));
    let id_y = ack.properties.assigned_client_identifier.unwrap();
    assert_ne!(id_x, id_y);
    assert!(!sim.is_closed(x));
    // A non-empty id is not echoed back.
    let (_, ack) = sim.connect(connect(V5, "named", true));
    assert_eq!(ack.properties.assigned_client_identifier, None);
}

/// [MQTT-3.1.2-2]: an unsupported protocol level gets CONNACK 0x01 (3.1.1 encoding) or 0x84
/// (v5 encoding, for a level above 5) and the connection is closed.
#[test]
fn unsupported_protocol_level() {
    for (level, version) in [(6u8, V5), (2u8, V311), (0u8, V311)] {
        let mut sim = Sim::new();
        let conn = sim.open();
        sim.decode_error(conn, &DecodeError::UnsupportedProtocolLevel(level));
        let got = sim.take(conn);
        let [Packet::ConnAck(ack)] = got.as_slice() else {
            panic!("level {level}: {got:?}");
        };
        assert_eq!(ack.reason, ReasonCode::UnsupportedProtocolVersion);
        assert!(!ack.session_present);
        // Check the bytes: 3.1.1 return code 0x01 for old levels, v5 reason 0x84 for new.
        let mut buf = bytes::BytesMut::new();
        encode(&Packet::ConnAck(ack.clone()), version, &mut buf).unwrap();
        let want: u8 = if version.is_v5() { 0x84 } else { 0x01 };
        assert_eq!(buf[3], want, "level {level}");
        assert!(sim.is_closed(conn));
    }
}

/// A decode error after CONNECT: v5 DISCONNECT with the error's reason code, then close;
/// v3 just closes (MQTT 5 §4.13).
#[test]
fn decode_error_after_connect() {
    for version in [V311, V5] {
        let mut sim = Sim::new();
        let c = sim.persistent(version, "c");
        sim.decode_error(c, &DecodeError::MalformedVarInt);
        if version.is_v5() {
            assert_eq!(sim.expect_disconnect(c).reason, ReasonCode::MalformedPacket);
        }
        sim.expect_silent(c);
        assert!(sim.is_closed(c));
    }
}

/// [MQTT-4.12.0-1]: an Authentication Method the server does not support gets CONNACK 0x8C
/// (Bad authentication method) and the connection is closed.
#[test]
fn auth_method_in_connect_is_refused() {
    let mut sim = Sim::new();
    let mut c = connect(V5, "c", true);
    c.properties.authentication_method = Some("SCRAM-SHA-1".into());
    let conn = sim.open_connect(c);
    let ack = sim.expect_connack(conn);
    assert_eq!(ack.reason, ReasonCode::BadAuthenticationMethod);
    assert!(sim.is_closed(conn));
    assert_eq!(sim.broker.metrics().sessions, 0);
}

/// [MQTT-4.12.0-2] (AUTH without an Authentication Method at CONNECT) and a server-only
/// packet from the client: protocol errors.
#[test]
fn auth_or_server_packets_from_client_are_protocol_errors() {
    for p in [Packet::Auth(Auth::default()), Packet::PingResp] {
        let mut sim = Sim::new();
        let c = sim.persistent(V5, "c");
        sim.send_raw(c, p);
        assert_eq!(sim.expect_disconnect(c).reason, ReasonCode::ProtocolError);
        assert!(sim.is_closed(c));
    }
}

/// MQTT 5 §3.2.2.3: CONNACK announces the server's limits.
#[test]
fn connack_properties_announce_limits() {
    let mut sim = Sim::new();
    let (_, ack) = sim.connect(connect(V5, "c", true));
    let p = &ack.properties;
    assert_eq!(p.receive_maximum, Some(sim.config.receive_maximum));
    assert_eq!(p.maximum_packet_size, Some(sim.config.max_packet_size));
    assert_eq!(p.topic_alias_maximum, Some(sim.config.topic_alias_maximum));
    assert_eq!(p.retain_available, Some(true));
    assert_eq!(p.shared_subscription_available, Some(true));
    // A session expiry above the maximum is cut and said so (MQTT 5 §3.2.2.3.2).
    let mut sim = Sim::with_config(Config {
        session_expiry_max_secs: 60,
        ..quiet_config()
    });
    let mut c = connect(V5, "c", false);
    c.properties.session_expiry_interval = Some(3600);
    let (_, ack) = sim.connect(c);
    assert_eq!(ack.properties.session_expiry_interval, Some(60));
}

/// Shutdown: every v5 connection gets DISCONNECT 0x8B, every connection is closed; the
/// sessions stay and resume.
#[test]
fn shutdown_disconnects_everyone_and_keeps_sessions() {
    let mut sim = Sim::new();
    let a = sim.persistent(V5, "a");
    let b = sim.persistent(V311, "b");
    let pending = sim.open();
    sim.shutdown();
    assert_eq!(
        sim.expect_disconnect(a).reason,
        ReasonCode::ServerShuttingDown
    );
    for c in [a, b, pending] {
        sim.expect_silent(c);
        assert!(sim.is_closed(c));
    }
    assert_eq!(sim.broker.connection_count(), 0);
    sim.crash();
    let (_, ack) = sim.connect(persistent(V5, "a"));
    assert!(ack.session_present);
    let (_, ack) = sim.connect(persistent(V311, "b"));
    assert!(ack.session_present);
}
