//! Area 14: bad input does not hurt anyone else. Garbage, oversized and half-sent packets
//! from some connections leave another client's flow intact; a CONNECT that never completes
//! is closed after `connect_timeout_ms`; a subscriber that never reads loses QoS 0 messages
//! (it stays connected) or is closed when a QoS 1 message does not fit its queue, while a
//! healthy subscriber of the same messages receives every one, in order.

use std::time::Duration;

use bytes::Buf;
use quartet_proto::{decode, Limits, Packet};

use crate::*;

tests! {
    bad_neighbours_do_not_disturb: ALL;
    connect_never_completes: ANY;
    slow_reader_qos0_dropped: ALL;
    slow_reader_qos1_closed: ALL;
    max_connections: ANY;
}

/// A healthy QoS 1 flow from `p` to `s` (30 messages, each acknowledged) while other
/// connections send garbage before and after CONNECT, announce an oversized packet, stop in
/// the middle of a packet, and flood garbage: every message and every PUBACK arrives, in
/// order, and the offenders are closed (5.0: DISCONNECT 0x81 / 0x95 first).
async fn bad_neighbours_do_not_disturb(v: V) {
    let srv = TestServer::start_with(|c| c.limits.connect_timeout_ms = 500).await;
    let mut s = srv.subscriber(v, "healthy sub", "h/t", 1).await;
    let mut p = srv.client(v, "healthy pub").await;
    let mut idle = None;
    for i in 0..30u16 {
        match i {
            5 => {
                let mut g = srv.raw(v, "garbage before CONNECT").await;
                g.send(&[0xFF; 64]).await;
                g.expect_closed().await;
            }
            10 => {
                let mut g = srv.client(v, "garbage after CONNECT").await;
                g.send(&[0x00; 64]).await;
                g.expect_disconnect(0x81).await;
            }
            15 => {
                let mut g = srv.client(v, "oversized").await;
                // PUBLISH announcing 2 MiB, above the 1 MiB default maximum.
                g.send(&[0x30, 0x80, 0x80, 0x80, 0x01]).await;
                g.expect_disconnect(0x95).await;
            }
            20 => {
                let mut g = srv.client(v, "half a packet").await;
                g.send(&publish(v, QOS1, "h/t", Some(1), &[], b"finished late")[..6])
                    .await;
                idle = Some(g);
            }
            25 => {
                let mut g = srv.raw(v, "flood").await;
                for _ in 0..64 {
                    g.send_lossy(&[0x5A; 16 * 1024]).await;
                }
                let (_, closed) = g.drain(Duration::from_secs(2)).await;
                assert!(closed, "the flooding connection is closed");
            }
            _ => {}
        }
        let payload = i.to_be_bytes();
        p.publish1("h/t", i + 1, &payload).await;
        s.expect(&publish(v, QOS1, "h/t", Some(i + 1), &[], &payload))
            .await;
        s.send(&ack(PUBACK, i + 1)).await;
    }
    s.sync().await;
    // The half packet: the server waited for the rest (no keep alive was asked for), and
    // the rest completes it.
    let mut g = idle.unwrap();
    g.send(&publish(v, QOS1, "h/t", Some(1), &[], b"finished late")[6..])
        .await;
    g.expect(&ack(PUBACK, 1)).await;
    s.expect(&publish(v, QOS1, "h/t", Some(31), &[], b"finished late"))
        .await;
}

/// A CONNECT trickled byte by byte, never completed within `connect_timeout_ms` (300 ms):
/// closed at the timeout; a healthy client connected meanwhile is unaffected.
async fn connect_never_completes(v: V) {
    let srv = TestServer::start_with(|c| c.limits.connect_timeout_ms = 300).await;
    let mut c = srv.raw(v, "trickle").await;
    let mut h = srv.client(v, "healthy").await;
    let connect = Connect::new(v, "a-rather-long-client-identifier").bytes();
    let started = tokio::time::Instant::now();
    for b in &connect[..connect.len() - 1] {
        c.send_lossy(&[*b]).await;
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(started.elapsed() > Duration::from_millis(600));
    c.timeout = Duration::from_secs(2);
    c.expect_closed().await;
    h.sync().await;
}

const FLOOD: usize = 160;
const BIG: usize = 64 * 1024;

fn flood_payload(i: usize) -> Vec<u8> {
    let mut p = vec![0u8; BIG];
    p[..4].copy_from_slice(&(i as u32).to_be_bytes());
    p
}

/// The message numbers of the PUBLISHes in `bytes` (a prefix of the stream may end in a
/// partial packet, which is ignored).
fn numbers(v: V, mut bytes: bytes::BytesMut) -> Vec<usize> {
    let limits = Limits::default();
    let mut out = Vec::new();
    while let Ok(Some(p)) = decode(&mut bytes, v, &limits) {
        match p {
            Packet::Publish(m) => {
                let mut b = &m.payload[..];
                out.push(b.get_u32() as usize);
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    out
}

/// A subscriber that reads its CONNACK and SUBACK and then nothing (small socket receive
/// buffer, so the kernel does not hide the problem for long).
async fn slow_subscriber(srv: &TestServer, v: V, qos: u8) -> Peer {
    let mut slow = srv.raw_small_rcvbuf(v, "never reads", 4096).await;
    slow.send(&Connect::new(v, "slow").bytes()).await;
    slow.recv_connack().await;
    slow.subscribe(1, "flood", qos).await;
    slow
}

/// QoS 0 to a client that does not read: beyond `conn_queue_max_packets` its copies are
/// dropped, the connection stays; the healthy subscriber, read in step with the publisher,
/// gets all of them in order.
async fn slow_reader_qos0_dropped(v: V) {
    let srv = TestServer::start_with(|c| c.conn_queue_max_packets = 8).await;
    let mut slow = slow_subscriber(&srv, v, 0).await;
    let mut h = srv.subscriber(v, "healthy", "flood", 0).await;
    let mut p = srv.client(v, "publisher").await;
    for i in 0..FLOOD {
        let m = publish(v, QOS0, "flood", None, &[], &flood_payload(i));
        p.send(&m).await;
        h.expect(&m).await;
    }
    let (bytes, closed) = slow.drain(Duration::from_millis(500)).await;
    assert!(
        !closed,
        "{}: a QoS 0 backlog does not close the connection",
        slow.name
    );
    let got = numbers(v, bytes);
    eprintln!(
        "{}: {} of {FLOOD} QoS 0 messages arrived",
        slow.name,
        got.len()
    );
    assert!(got.windows(2).all(|w| w[0] < w[1]), "in order: {got:?}");
    assert!(
        got.len() < FLOOD,
        "some were dropped ({} of {FLOOD} arrived)",
        got.len()
    );
    slow.sync().await;
}

/// QoS 0 and QoS 1, alternating, to a client that does not read: when a QoS 1 message finds
/// its queue full, the connection is closed (the session would keep the message); the
/// healthy QoS 1 subscriber gets everything, in order, and the publisher every PUBACK.
async fn slow_reader_qos1_closed(v: V) {
    let srv = TestServer::start_with(|c| c.conn_queue_max_packets = 8).await;
    let mut slow = slow_subscriber(&srv, v, 1).await;
    let mut h = srv.subscriber(v, "healthy", "flood", 1).await;
    let mut p = srv.client(v, "publisher").await;
    let mut h_pid = 0u16;
    for i in 0..FLOOD {
        let payload = flood_payload(i);
        if i % 2 == 0 {
            let m = publish(v, QOS0, "flood", None, &[], &payload);
            p.send(&m).await;
            h.expect(&m).await;
        } else {
            p.publish1("flood", i as u16, &payload).await;
            h_pid += 1;
            h.expect(&publish(v, QOS1, "flood", Some(h_pid), &[], &payload))
                .await;
            h.send(&ack(PUBACK, h_pid)).await;
        }
    }
    h.sync().await;
    let (bytes, closed) = slow.drain(Duration::from_secs(2)).await;
    assert!(
        closed,
        "{}: a QoS 1 message that does not fit closes the connection",
        slow.name
    );
    let got = numbers(v, bytes);
    eprintln!(
        "{}: {} of {FLOOD} messages arrived before the close",
        slow.name,
        got.len()
    );
    assert!(got.windows(2).all(|w| w[0] < w[1]), "in order: {got:?}");
    assert!(
        got.len() < FLOOD,
        "closed before the end ({} of {FLOOD} arrived)",
        got.len()
    );
}

/// `max_connections` (2): a third connection is closed at once, without a word; when one
/// goes away, a new one is accepted again.
async fn max_connections(v: V) {
    let srv = TestServer::start_with(|c| c.max_connections = 2).await;
    let mut a = srv.client(v, "a").await;
    let mut b = srv.client(v, "b").await;
    let mut c = srv.raw(v, "third").await;
    c.expect_closed().await;
    a.disconnect().await;
    // The slot is freed when the server's connection task has ended: try a few times.
    let mut accepted = false;
    for _ in 0..50 {
        let mut d = srv.raw(v, "again").await;
        d.send_lossy(&Connect::new(v, "d").bytes()).await;
        let (bytes, _) = d.drain(std::time::Duration::from_millis(100)).await;
        if bytes[..] == connack(v, false)[..] {
            accepted = true;
            break;
        }
    }
    assert!(accepted, "a connection is accepted once one has gone");
    b.sync().await;
}
