//! Interop, tier 4: rumqttc (`AsyncClient` + `EventLoop`, both the 3.1.1 client `rumqttc`
//! and the 5.0 client `rumqttc::v5`) against the real server, started in-process on a free
//! port.
//!
//! The two clients have different types but the same shape, so each module below wraps its
//! client in a `Peer` with one small interface, and the [`suite!`] macro writes the same
//! tests for both. Every test runs under a deadline ([`DEADLINE`]), so a hang fails it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use quartet_server::{Server, ServerConfig};

/// How long one test may take.
const DEADLINE: Duration = Duration::from_secs(30);
/// How long one expected event may take.
const WAIT: Duration = Duration::from_secs(10);
/// Messages per QoS in the round-trip test.
const MANY: u32 = 1000;

async fn start_server() -> (Server, u16) {
    let config = ServerConfig {
        listen: vec![SocketAddr::from(([127, 0, 0, 1], 0))],
        ..ServerConfig::default()
    };
    let server = Server::start(config).await.expect("server starts");
    let port = server.local_addrs()[0].port();
    (server, port)
}

/// A received message, whichever client received it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Msg {
    topic: String,
    payload: Vec<u8>,
    qos: u8,
    retain: bool,
}

/// Counts per payload: every `0..n` exactly once (`exact`) or at least once.
fn check_counts(what: &str, msgs: &[Msg], n: u32, exact: bool) {
    let mut seen = BTreeMap::<u32, u32>::new();
    for m in msgs {
        let i: u32 = std::str::from_utf8(&m.payload)
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("{what}: unexpected payload {:?}", m.payload));
        *seen.entry(i).or_default() += 1;
    }
    let missing: Vec<u32> = (0..n).filter(|i| !seen.contains_key(i)).collect();
    assert!(
        missing.is_empty(),
        "{what}: {} of {n} lost, first {:?}",
        missing.len(),
        &missing[..missing.len().min(10)]
    );
    assert!(seen.keys().all(|i| *i < n), "{what}: payloads out of range");
    if exact {
        let dups: Vec<(&u32, &u32)> = seen.iter().filter(|(_, c)| **c > 1).collect();
        assert!(dups.is_empty(), "{what}: duplicates {dups:?}");
        let order: Vec<u32> = msgs
            .iter()
            .map(|m| std::str::from_utf8(&m.payload).unwrap().parse().unwrap())
            .collect();
        assert_eq!(order, (0..n).collect::<Vec<_>>(), "{what}: order");
    }
}

/// The same tests for both clients; `Peer` comes from the module that invokes it.
macro_rules! suite {
    () => {
        use super::*;

        async fn within<F: std::future::Future<Output = ()>>(f: F) {
            tokio::time::timeout(DEADLINE, f)
                .await
                .expect("the test did not finish in time");
        }

        /// Receives until `marker` arrives on `topic`; returns what came before it.
        async fn until_marker(p: &mut Peer, topic: &str) -> Vec<Msg> {
            let mut got = Vec::new();
            loop {
                let m = p.next().await;
                if m.topic == topic && m.payload == b"marker" {
                    return got;
                }
                got.push(m);
            }
        }

        /// QoS 0, 1 and 2: MANY messages each from one client to another. QoS 2 arrives
        /// exactly once each, in order; QoS 1 loses nothing; QoS 0 too here, because nothing
        /// is ever dropped on an idle loopback below the connection queue bound (4096 >
        /// MANY). A marker after the burst shows that nothing else trails behind it.
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn qos_0_1_2_round_trip_of_many_messages() {
            within(async {
                let (server, port) = start_server().await;
                let (mut sub, _) = Peer::connect(port, "rt-sub", false).await;
                let (publisher, _) = Peer::connect(port, "rt-pub", false).await;
                for qos in [0u8, 1, 2] {
                    let topic = format!("rt/{qos}");
                    sub.subscribe(&topic, qos).await;
                    for i in 0..MANY {
                        publisher
                            .publish(&topic, qos, false, i.to_string().into_bytes())
                            .await;
                    }
                    publisher
                        .publish(&topic, qos, false, b"marker".to_vec())
                        .await;
                    let got = until_marker(&mut sub, &topic).await;
                    assert!(got
                        .iter()
                        .all(|m| m.topic == topic && m.qos == qos && !m.retain));
                    check_counts(&format!("QoS {qos}"), &got, MANY, qos != 1);
                }
                // One PUBACK per QoS 1 and one PUBCOMP per QoS 2 publish, no more.
                let flows = 2 * (MANY as usize + 1);
                publisher.wait_completed(flows).await;
                assert_eq!(publisher.completed(), flows, "PUBACK + PUBCOMP count");
                publisher.disconnect().await;
                sub.disconnect().await;
                server.shutdown().await;
            })
            .await;
        }

        /// Retained: the last retained message of a topic reaches a later subscriber with
        /// the retain flag; a live message to an existing subscription has it clear; an
        /// empty retained message clears the topic.
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn retained_message_reaches_later_subscribers() {
            within(async {
                let (server, port) = start_server().await;
                let (publisher, _) = Peer::connect(port, "ret-pub", false).await;
                publisher.publish("ret/a", 1, true, b"old".to_vec()).await;
                publisher.publish("ret/a", 1, true, b"new".to_vec()).await;
                publisher.publish("ret/b", 2, true, b"bee".to_vec()).await;
                publisher.publish("ret/b", 1, true, Vec::new()).await;
                publisher.wait_completed(4).await;

                let (mut sub, _) = Peer::connect(port, "ret-sub", false).await;
                sub.subscribe("ret/#", 2).await;
                publisher
                    .publish("ret/a", 1, false, b"marker".to_vec())
                    .await;
                let got = until_marker(&mut sub, "ret/a").await;
                assert_eq!(
                    got,
                    vec![Msg {
                        topic: "ret/a".into(),
                        payload: b"new".to_vec(),
                        qos: 1,
                        retain: true
                    }]
                );
                publisher.publish("ret/a", 2, false, b"live".to_vec()).await;
                let live = sub.next().await;
                assert_eq!(
                    (live.payload.as_slice(), live.retain),
                    (&b"live"[..], false)
                );
                publisher.disconnect().await;
                sub.disconnect().await;
                server.shutdown().await;
            })
            .await;
        }

        /// A persistent session (3.1.1 clean session 0; 5.0 clean start 0 with session
        /// expiry): subscribe at QoS 2, disconnect; 200 QoS 1 and 200 QoS 2 messages are
        /// published meanwhile; on reconnect the session is present and every message is
        /// delivered, QoS 2 exactly once and in order, QoS 1 with none lost. Then the
        /// connection is cut in the middle of a QoS 1 stream and resumed: nothing is lost.
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn persistent_session_resumes() {
            within(async {
                let (server, port) = start_server().await;
                let (mut sub, present) = Peer::connect(port, "sess-sub", true).await;
                assert!(!present, "a new session claimed to be present");
                sub.subscribe("sess/#", 2).await;
                sub.disconnect().await;

                let (publisher, _) = Peer::connect(port, "sess-pub", false).await;
                for i in 0..200u32 {
                    publisher
                        .publish("sess/q1", 1, false, i.to_string().into_bytes())
                        .await;
                    publisher
                        .publish("sess/q2", 2, false, i.to_string().into_bytes())
                        .await;
                }
                publisher.wait_completed(400).await;

                let (mut sub, present) = Peer::connect(port, "sess-sub", true).await;
                assert!(present, "the session did not survive the disconnect");
                publisher
                    .publish("sess/q2", 2, false, b"marker".to_vec())
                    .await;
                let got = until_marker(&mut sub, "sess/q2").await;
                let of = |t: &str| -> Vec<Msg> {
                    got.iter().filter(|m| m.topic == t).cloned().collect()
                };
                assert_eq!(of("sess/q1").len() + of("sess/q2").len(), got.len());
                assert!(of("sess/q2").iter().all(|m| m.qos == 2));
                check_counts("offline QoS 2", &of("sess/q2"), 200, true);
                check_counts("offline QoS 1", &of("sess/q1"), 200, false);

                // Cut the connection (no DISCONNECT) in the middle of a stream. First let the
                // QoS 2 flows above finish: rumqttc forgets its incoming QoS 2 state with its
                // event loop, so a fresh one treats the PUBREL the server must resend after
                // a cut (MQTT-4.4.0-1) as unsolicited and drops the connection.
                sub.wait_released(201).await;
                let mut got = Vec::new();
                for i in 0..300u32 {
                    publisher
                        .publish("sess/cut", 1, false, i.to_string().into_bytes())
                        .await;
                }
                while got.len() < 50 {
                    got.push(sub.next().await);
                }
                sub.cut().await;
                let (mut sub, present) = Peer::connect(port, "sess-sub", true).await;
                assert!(present, "the session did not survive the cut");
                publisher
                    .publish("sess/cut", 1, false, b"marker".to_vec())
                    .await;
                got.extend(until_marker(&mut sub, "sess/cut").await);
                check_counts("QoS 1 across a cut", &got, 300, false);

                publisher.disconnect().await;
                sub.disconnect().await;
                server.shutdown().await;
            })
            .await;
        }
    };
}

/// Acknowledges a received message (PUBACK or PUBREC; nothing at QoS 0).
type Ack = Box<dyn FnOnce() + Send>;

/// The shared plumbing of both `Peer`s: a task drives the event loop and reports what it
/// sees through channels.
struct Channels {
    msgs: tokio::sync::mpsc::UnboundedReceiver<(Msg, Ack)>,
    subacks: tokio::sync::mpsc::UnboundedReceiver<Vec<Option<u8>>>,
    /// Outgoing QoS 1/2 flows completed (PUBACK or PUBCOMP received).
    completed: tokio::sync::watch::Receiver<usize>,
    /// Incoming QoS 2 flows completed (PUBCOMP sent and flushed).
    released: tokio::sync::watch::Receiver<usize>,
    task: tokio::task::JoinHandle<()>,
}

struct Senders {
    msgs: tokio::sync::mpsc::UnboundedSender<(Msg, Ack)>,
    subacks: tokio::sync::mpsc::UnboundedSender<Vec<Option<u8>>>,
    completed: tokio::sync::watch::Sender<usize>,
    released: tokio::sync::watch::Sender<usize>,
}

fn channels() -> (Senders, Channels) {
    let (msgs_tx, msgs) = tokio::sync::mpsc::unbounded_channel();
    let (subacks_tx, subacks) = tokio::sync::mpsc::unbounded_channel();
    let (completed_tx, completed) = tokio::sync::watch::channel(0);
    let (released_tx, released) = tokio::sync::watch::channel(0);
    (
        Senders {
            msgs: msgs_tx,
            subacks: subacks_tx,
            completed: completed_tx,
            released: released_tx,
        },
        Channels {
            msgs,
            subacks,
            completed,
            released,
            task: tokio::spawn(async {}),
        },
    )
}

impl Channels {
    /// Drops the connection without DISCONNECT. Messages received but not yet read are
    /// not acknowledged, so they are not lost: the server must send them again.
    async fn cut(self) {
        self.task.abort();
        let _ = self.task.await;
    }

    /// The next message, acknowledged now that the test has it.
    async fn next(&mut self, who: &str) -> Msg {
        let (msg, ack) = tokio::time::timeout(WAIT, self.msgs.recv())
            .await
            .unwrap_or_else(|_| panic!("{who}: no message within {WAIT:?}"))
            .unwrap_or_else(|| panic!("{who}: connection ended"));
        ack();
        msg
    }

    async fn suback(&mut self, who: &str, qos: u8) {
        let codes = tokio::time::timeout(WAIT, self.subacks.recv())
            .await
            .unwrap_or_else(|_| panic!("{who}: no SUBACK within {WAIT:?}"))
            .unwrap_or_else(|| panic!("{who}: connection ended"));
        assert_eq!(codes, vec![Some(qos)], "{who}: SUBACK");
    }

    async fn wait_released(&self, who: &str, n: usize) {
        let mut rx = self.released.clone();
        tokio::time::timeout(WAIT, rx.wait_for(|c| *c >= n))
            .await
            .unwrap_or_else(|_| panic!("{who}: {n} PUBCOMPs not sent within {WAIT:?}"))
            .expect("event loop gone");
    }

    async fn wait_completed(&self, who: &str, n: usize) {
        let mut rx = self.completed.clone();
        tokio::time::timeout(WAIT, rx.wait_for(|c| *c >= n))
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "{who}: {} of {n} publishes acknowledged within {WAIT:?}",
                    *self.completed.borrow()
                )
            })
            .expect("event loop gone");
    }
}

mod v4 {
    use rumqttc::{AsyncClient, Event, EventLoop, MqttOptions, Outgoing, Packet, QoS};

    use super::{channels, Channels, Msg, Senders, WAIT};

    fn qos(q: u8) -> QoS {
        match q {
            0 => QoS::AtMostOnce,
            1 => QoS::AtLeastOnce,
            _ => QoS::ExactlyOnce,
        }
    }

    /// A rumqttc 3.1.1 client.
    struct Peer {
        id: String,
        client: AsyncClient,
        ch: Channels,
    }

    impl Peer {
        /// Connects; `persistent` is clean session 0. Returns CONNACK's session present.
        async fn connect(port: u16, id: &str, persistent: bool) -> (Peer, bool) {
            let mut opts = MqttOptions::new(id, "127.0.0.1", port);
            // Manual acks: a message is acknowledged only when the test reads it, so a cut
            // connection can lose nothing that was acknowledged, and the server has messages
            // in flight to resend when the connection is cut.
            opts.set_clean_session(!persistent)
                .set_keep_alive(Duration::from_secs(30))
                .set_manual_acks(true);
            // Room for every ack of a full in-flight window (the server's is 1024), so
            // `try_ack` never finds the request channel full.
            let (client, mut el) = AsyncClient::new(opts, 4096);
            let present = tokio::time::timeout(WAIT, async {
                loop {
                    match el.poll().await {
                        Ok(Event::Incoming(Packet::ConnAck(c))) => return c.session_present,
                        Ok(_) => {}
                        Err(e) => panic!("{id}: cannot connect: {e}"),
                    }
                }
            })
            .await
            .unwrap_or_else(|_| panic!("{id}: no CONNACK within {WAIT:?}"));
            let (tx, mut ch) = channels();
            ch.task = tokio::spawn(drive(el, tx, client.clone()));
            (
                Peer {
                    id: id.to_owned(),
                    client,
                    ch,
                },
                present,
            )
        }

        async fn subscribe(&mut self, filter: &str, q: u8) {
            self.client.subscribe(filter, qos(q)).await.unwrap();
            self.ch.suback(&self.id, q).await;
        }

        async fn publish(&self, topic: &str, q: u8, retain: bool, payload: Vec<u8>) {
            self.client
                .publish(topic, qos(q), retain, payload)
                .await
                .unwrap();
        }

        async fn next(&mut self) -> Msg {
            self.ch.next(&self.id).await
        }

        async fn wait_completed(&self, n: usize) {
            self.ch.wait_completed(&self.id, n).await;
        }

        async fn wait_released(&self, n: usize) {
            self.ch.wait_released(&self.id, n).await;
        }

        fn completed(&self) -> usize {
            *self.ch.completed.borrow()
        }

        async fn disconnect(self) {
            self.client.disconnect().await.unwrap();
            // The driver ends when the server closes the connection after DISCONNECT.
            tokio::time::timeout(WAIT, self.ch.task)
                .await
                .expect("DISCONNECT did not end the connection")
                .unwrap();
        }

        /// Drops the connection without DISCONNECT.
        async fn cut(self) {
            self.ch.cut().await;
        }
    }

    async fn drive(mut el: EventLoop, tx: Senders, client: AsyncClient) {
        let mut completed = 0;
        let mut released = 0;
        let mut disconnecting = false;
        loop {
            match el.poll().await {
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    let msg = Msg {
                        topic: p.topic.clone(),
                        payload: p.payload.to_vec(),
                        qos: p.qos as u8,
                        retain: p.retain,
                    };
                    let client = client.clone();
                    let ack: Ack = Box::new(move || client.try_ack(&p).expect("ack queued"));
                    let _ = tx.msgs.send((msg, ack));
                }
                Ok(Event::Incoming(Packet::SubAck(s))) => {
                    let codes = s
                        .return_codes
                        .iter()
                        .map(|c| match c {
                            rumqttc::SubscribeReasonCode::Success(q) => Some(*q as u8),
                            rumqttc::SubscribeReasonCode::Failure => None,
                        })
                        .collect();
                    let _ = tx.subacks.send(codes);
                }
                Ok(Event::Incoming(Packet::PubAck(_) | Packet::PubComp(_))) => {
                    completed += 1;
                    tx.completed.send_replace(completed);
                }
                Ok(Event::Outgoing(Outgoing::PubComp(_))) => {
                    released += 1;
                    tx.released.send_replace(released);
                }
                Ok(Event::Outgoing(Outgoing::Disconnect)) => disconnecting = true,
                Ok(_) => {}
                Err(e) => {
                    if !disconnecting {
                        eprintln!("rumqttc (3.1.1) connection ended: {e}");
                    }
                    return;
                }
            }
        }
    }

    use std::time::Duration;

    suite!();
}

mod v5 {
    use rumqttc::v5::mqttbytes::v5::{Packet, SubscribeReasonCode};
    use rumqttc::v5::mqttbytes::QoS;
    use rumqttc::v5::{AsyncClient, Event, EventLoop, MqttOptions};
    use rumqttc::Outgoing;

    use super::{channels, Channels, Msg, Senders, WAIT};

    fn qos(q: u8) -> QoS {
        match q {
            0 => QoS::AtMostOnce,
            1 => QoS::AtLeastOnce,
            _ => QoS::ExactlyOnce,
        }
    }

    /// A rumqttc 5.0 client.
    struct Peer {
        id: String,
        client: AsyncClient,
        ch: Channels,
    }

    impl Peer {
        /// Connects; `persistent` is clean start 0 with a session expiry of 300 s. Returns
        /// CONNACK's session present.
        async fn connect(port: u16, id: &str, persistent: bool) -> (Peer, bool) {
            let mut opts = MqttOptions::new(id, "127.0.0.1", port);
            // Manual acks and a request channel with room for a full in-flight window: see
            // the 3.1.1 `Peer::connect`.
            opts.set_clean_start(!persistent)
                .set_keep_alive(Duration::from_secs(30))
                .set_manual_acks(true);
            if persistent {
                opts.set_session_expiry_interval(Some(300));
            }
            let (client, mut el) = AsyncClient::new(opts, 4096);
            let present = tokio::time::timeout(WAIT, async {
                loop {
                    match el.poll().await {
                        Ok(Event::Incoming(Packet::ConnAck(c))) => return c.session_present,
                        Ok(_) => {}
                        Err(e) => panic!("{id}: cannot connect: {e}"),
                    }
                }
            })
            .await
            .unwrap_or_else(|_| panic!("{id}: no CONNACK within {WAIT:?}"));
            let (tx, mut ch) = channels();
            ch.task = tokio::spawn(drive(el, tx, client.clone()));
            (
                Peer {
                    id: id.to_owned(),
                    client,
                    ch,
                },
                present,
            )
        }

        async fn subscribe(&mut self, filter: &str, q: u8) {
            self.client.subscribe(filter, qos(q)).await.unwrap();
            self.ch.suback(&self.id, q).await;
        }

        async fn publish(&self, topic: &str, q: u8, retain: bool, payload: Vec<u8>) {
            self.client
                .publish(topic, qos(q), retain, payload)
                .await
                .unwrap();
        }

        async fn next(&mut self) -> Msg {
            self.ch.next(&self.id).await
        }

        async fn wait_completed(&self, n: usize) {
            self.ch.wait_completed(&self.id, n).await;
        }

        async fn wait_released(&self, n: usize) {
            self.ch.wait_released(&self.id, n).await;
        }

        fn completed(&self) -> usize {
            *self.ch.completed.borrow()
        }

        async fn disconnect(self) {
            self.client.disconnect().await.unwrap();
            tokio::time::timeout(WAIT, self.ch.task)
                .await
                .expect("DISCONNECT did not end the connection")
                .unwrap();
        }

        /// Drops the connection without DISCONNECT.
        async fn cut(self) {
            self.ch.cut().await;
        }
    }

    async fn drive(mut el: EventLoop, tx: Senders, client: AsyncClient) {
        let mut completed = 0;
        let mut released = 0;
        let mut disconnecting = false;
        loop {
            match el.poll().await {
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    let msg = Msg {
                        topic: String::from_utf8(p.topic.to_vec()).unwrap(),
                        payload: p.payload.to_vec(),
                        qos: p.qos as u8,
                        retain: p.retain,
                    };
                    let client = client.clone();
                    let ack: Ack = Box::new(move || client.try_ack(&p).expect("ack queued"));
                    let _ = tx.msgs.send((msg, ack));
                }
                Ok(Event::Incoming(Packet::SubAck(s))) => {
                    let codes = s
                        .return_codes
                        .iter()
                        .map(|c| match c {
                            SubscribeReasonCode::Success(q) => Some(*q as u8),
                            _ => None,
                        })
                        .collect();
                    let _ = tx.subacks.send(codes);
                }
                Ok(Event::Incoming(Packet::PubAck(_) | Packet::PubComp(_))) => {
                    completed += 1;
                    tx.completed.send_replace(completed);
                }
                Ok(Event::Outgoing(Outgoing::PubComp(_))) => {
                    released += 1;
                    tx.released.send_replace(released);
                }
                Ok(Event::Outgoing(Outgoing::Disconnect)) => disconnecting = true,
                Ok(_) => {}
                Err(e) => {
                    if !disconnecting {
                        eprintln!("rumqttc (5.0) connection ended: {e}");
                    }
                    return;
                }
            }
        }
    }

    use std::time::Duration;

    suite!();
}
