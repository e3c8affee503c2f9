//! A deterministic harness for the sans-IO broker core.
//!
//! [`Sim`] owns a [`Broker`], virtual time, the durable [`State`] (what a store has committed:
//! every completed batch applied with `State::apply`, as `FaultyStore` and `MemoryStore` do,
//! without their per-commit copy) and one [`Peer`] per connection
//! (the client's end: an inbox of the packets it received, in order). It drives the broker by
//! the calling contract of `quartet_broker::broker`: after every `handle_*` call it drains
//! `poll_action`; `Persist` batches are completed in order, either at once
//! ([`Sim::new`]) or when the test says so ([`Sim::manual`] + [`Sim::complete_persists`]).
//! [`Sim::crash`] drops the broker and every batch not yet completed and rebuilds the broker
//! from what the store made durable.
//!
//! Every packet the broker emits is checked on the way, whatever the test:
//! - **durability gate**: a packet that promises durable state (CONNACK success, PUBACK,
//!   PUBREC, PUBREL, PUBCOMP, SUBACK, UNSUBACK, a QoS 1/2 PUBLISH) never leaves in the step
//!   that produced it while a persist batch (of that step or an earlier one) is outstanding:
//!   it may only be released by `handle_persisted` (broker docs, "Durability");
//! - it encodes for the connection's protocol version and decodes back (the inbox holds the
//!   decoded packet, what a real client would see);
//! - nothing is sent to a connection after its `Close`, or to a connection never opened;
//! - PUBLISH: a topic alias is within the client's Topic Alias Maximum and an empty topic
//!   has an alias the client knows [MQTT-3.3.2-11]; the packet fits the
//!   client's Maximum Packet Size [MQTT-3.1.2-24]; a new (DUP=0) QoS 1/2 PUBLISH never reuses
//!   a packet id the client still has in flight [MQTT-2.2.1-3], a DUP=1 one with such an id
//!   carries the same message; the client never has more QoS 1/2 messages in flight from the
//!   broker than its Receive Maximum (and the broker's own cap) [MQTT-3.3.4-9];
//! - every batch applies cleanly to the store's state (`State::apply` rejects inconsistent
//!   logs).
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, HashMap, VecDeque};

use bytes::{Bytes, BytesMut};
use quartet_broker::{Action, Broker, Config, ConnId, Millis, Token};
pub use quartet_proto::ProtocolVersion::{V31, V311, V5};
use quartet_proto::*;
use quartet_store::{Batch, State};

// ---------------------------------------------------------------------------------------------
// Packet builders

/// A topic name.
pub fn topic(s: &str) -> TopicName {
    TopicName::new(s).unwrap()
}

/// A topic filter.
pub fn filter(s: &str) -> TopicFilter {
    TopicFilter::new(s).unwrap()
}

/// A packet id (non-zero).
pub fn pid(n: u16) -> PacketId {
    PacketId::new(n).unwrap()
}

/// CONNECT with keep alive 0 and nothing else set.
pub fn connect(version: ProtocolVersion, id: &str, clean: bool) -> Connect {
    Connect {
        protocol: version,
        clean_start: clean,
        keep_alive: 0,
        client_id: ClientId::new(id),
        will: None,
        username: None,
        password: None,
        properties: ConnectProperties::default(),
    }
}

/// CONNECT for a session that survives disconnection: v3 clean session 0; v5 clean start 0
/// and a session expiry interval that never ends.
pub fn persistent(version: ProtocolVersion, id: &str) -> Connect {
    let mut c = connect(version, id, false);
    if version.is_v5() {
        c.properties.session_expiry_interval = Some(u32::MAX);
    }
    c
}

/// CONNECT for a session that ends with the connection.
pub fn clean(version: ProtocolVersion, id: &str) -> Connect {
    connect(version, id, true)
}

/// A will.
pub fn will(t: &str, payload: &'static [u8], qos: QoS) -> Will {
    Will {
        topic: topic(t),
        payload: Bytes::from_static(payload),
        qos,
        retain: false,
        properties: WillProperties::default(),
    }
}

/// PUBLISH; `packet_id` 0 means none (QoS 0).
pub fn publish(t: &str, qos: QoS, packet_id: u16, payload: &[u8]) -> Publish {
    Publish {
        dup: false,
        qos,
        retain: false,
        topic: topic(t),
        packet_id: PacketId::new(packet_id),
        properties: PublishProperties::default(),
        payload: Bytes::copy_from_slice(payload),
    }
}

/// Subscription options with just a QoS.
pub fn opts(qos: QoS) -> SubscriptionOptions {
    SubscriptionOptions {
        qos,
        ..SubscriptionOptions::default()
    }
}

/// SUBSCRIBE.
pub fn subscribe(packet_id: u16, filters: &[(&str, SubscriptionOptions)]) -> Subscribe {
    Subscribe {
        packet_id: pid(packet_id),
        filters: filters.iter().map(|(f, o)| (filter(f), *o)).collect(),
        properties: SubscribeProperties::default(),
    }
}

/// UNSUBSCRIBE.
pub fn unsubscribe(packet_id: u16, filters: &[&str]) -> Unsubscribe {
    Unsubscribe {
        packet_id: pid(packet_id),
        filters: filters.iter().map(|f| filter(f)).collect(),
        properties: Vec::new(),
    }
}

/// PUBACK/PUBREC/PUBREL/PUBCOMP body.
pub fn ack(n: u16) -> PubAck {
    PubAck::new(pid(n))
}

/// A DISCONNECT with the given reason.
pub fn disconnect(reason: ReasonCode) -> Packet {
    Packet::Disconnect(Disconnect {
        reason,
        properties: DisconnectProperties::default(),
    })
}

/// True for packets that promise durable state and so must wait for their batch.
fn promises_durability(p: &Packet) -> bool {
    match p {
        Packet::ConnAck(c) => !c.reason.is_error(),
        Packet::PubAck(_)
        | Packet::PubRec(_)
        | Packet::PubRel(_)
        | Packet::PubComp(_)
        | Packet::SubAck(_)
        | Packet::UnsubAck(_) => true,
        Packet::Publish(p) => p.qos != QoS::AtMostOnce,
        _ => false,
    }
}

// ---------------------------------------------------------------------------------------------
// Deterministic randomness

/// xorshift64*: small, fast, seeded, good enough to pick interleavings.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator from a seed (any value; 0 is remapped).
    pub fn new(seed: u64) -> Rng {
        // splitmix64 of the seed, so close seeds give unrelated streams.
        let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        Rng(if z == 0 { 1 } else { z })
    }
    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// Uniform in `0..n` (`n > 0`).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
    /// True with probability `num / den`.
    pub fn chance(&mut self, num: u64, den: u64) -> bool {
        self.next_u64() % den < num
    }
    /// One element of a non-empty slice.
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

// ---------------------------------------------------------------------------------------------
// The simulation

/// The client's end of one connection.
#[derive(Debug)]
pub struct Peer {
    /// The version of the CONNECT sent on it, once sent.
    pub version: Option<ProtocolVersion>,
    /// The session key (client id; the assigned one for an empty v5 id).
    pub session: Option<String>,
    /// Packets received and not yet taken by the test, decoded as the client would.
    pub inbox: VecDeque<Packet>,
    /// Everything ever received on this connection.
    pub log: Vec<Packet>,
    /// The client's end of the transport is open (false after the client closed it, after
    /// the broker's `Close`, and after a broker crash).
    pub open: bool,
    /// The broker asked to close this connection.
    pub closed_by_broker: bool,
    /// Topic aliases the broker established on this connection (broker to client).
    pub aliases: HashMap<u16, TopicName>,
    /// What the client announced at CONNECT.
    pub alias_max: u16,
    pub max_packet: Option<u32>,
    pub receive_max: u16,
    pub clean_start: bool,
}

impl Peer {
    fn new() -> Peer {
        Peer {
            version: None,
            session: None,
            inbox: VecDeque::new(),
            log: Vec::new(),
            open: true,
            closed_by_broker: false,
            aliases: HashMap::new(),
            alias_max: 0,
            max_packet: None,
            receive_max: u16::MAX,
            clean_start: true,
        }
    }
}

/// What a client's session remembers of broker-to-client QoS 1/2 exchanges: the packet ids
/// it received a PUBLISH for and has not yet finished (PUBACK, PUBCOMP or an error PUBREC
/// sent), with the message, so a DUP can be compared.
#[derive(Debug, Default)]
pub struct PeerSession {
    pub outstanding: BTreeMap<u16, (TopicName, Bytes, QoS)>,
}

/// The simulated world.
#[derive(Debug)]
pub struct Sim {
    pub broker: Broker,
    pub config: Config,
    pub now: Millis,
    /// What the store has made durable: the state after every completed batch.
    durable: State,
    /// Persists stay pending until [`Sim::complete_persists`].
    pub manual: bool,
    pending: VecDeque<(Token, Batch)>,
    peers: BTreeMap<ConnId, Peer>,
    sessions: HashMap<String, PeerSession>,
    next_conn: u64,
    /// How many times [`Sim::crash`] ran.
    pub crashes: u32,
    /// Persist batches completed so far.
    pub batches_completed: u64,
}

/// A configuration without `$SYS` updates (they would add timers and traffic to every test).
pub fn quiet_config() -> Config {
    Config {
        sys_interval_secs: 0,
        ..Config::default()
    }
}

impl Sim {
    /// A broker with [`quiet_config`], an empty store, and persists completing at once.
    pub fn new() -> Sim {
        Sim::with_config(quiet_config())
    }

    /// A broker with `config`, persists completing at once.
    pub fn with_config(config: Config) -> Sim {
        let now = 1_000_000;
        let broker = Broker::new(config.clone(), State::default(), now);
        let mut sim = Sim {
            broker,
            config,
            now,
            durable: State::default(),
            manual: false,
            pending: VecDeque::new(),
            peers: BTreeMap::new(),
            sessions: HashMap::new(),
            next_conn: 1,
            crashes: 0,
            batches_completed: 0,
        };
        sim.drain(true);
        sim
    }

    /// Switches to manual persists: batches stay pending until [`Sim::complete_persists`].
    pub fn manual(mut self) -> Sim {
        self.manual = true;
        self
    }

    /// Sets the persist mode.
    pub fn set_manual(&mut self, manual: bool) {
        self.manual = manual;
        if !manual {
            self.complete_persists();
        }
    }

    // -----------------------------------------------------------------------------------------
    // Driving the broker

    /// Drains `poll_action`, checking every packet (see the module docs). `after_input` is
    /// true when the actions come from a `handle_*` input step (not `handle_persisted`).
    fn drain(&mut self, mut after_input: bool) {
        loop {
            let had_pending = !self.pending.is_empty();
            let mut actions = Vec::new();
            while let Some(a) = self.broker.poll_action() {
                actions.push(a);
            }
            let step_persists = actions.iter().any(|a| matches!(a, Action::Persist { .. }));
            let gate_closed = after_input && (had_pending || step_persists);
            for a in actions {
                match a {
                    Action::Send {
                        conn,
                        version,
                        packet,
                    } => {
                        assert!(
                            !(gate_closed && promises_durability(&packet)),
                            "durability gate: {packet:?} to {conn:?} left in the step that \
                             produced it while a persist batch was outstanding"
                        );
                        self.on_send(conn, version, packet);
                    }
                    Action::Close { conn } => {
                        let peer = self
                            .peers
                            .get_mut(&conn)
                            .unwrap_or_else(|| panic!("Close for unknown {conn:?}"));
                        assert!(!peer.closed_by_broker, "{conn:?} closed twice");
                        peer.closed_by_broker = true;
                        peer.open = false;
                    }
                    Action::Persist { token, batch } => {
                        if let Some((last, _)) = self.pending.back() {
                            assert!(token > *last, "tokens must increase");
                        }
                        self.pending.push_back((token, batch));
                    }
                }
            }
            after_input = false;
            if !self.manual && !self.pending.is_empty() {
                self.complete_n(self.pending.len());
                continue;
            }
            break;
        }
    }

    /// Completes the first `n` pending batches as one group commit.
    fn complete_n(&mut self, n: usize) {
        let n = n.min(self.pending.len());
        if n == 0 {
            return;
        }
        let done: Vec<(Token, Batch)> = self.pending.drain(..n).collect();
        for (_, batch) in &done {
            self.durable
                .apply_batch(batch)
                .unwrap_or_else(|e| panic!("store refused a batch: {e}\n{batch:#?}"));
        }
        self.batches_completed += n as u64;
        let last = done.last().map(|(t, _)| *t).expect("n > 0");
        self.broker.handle_persisted(last);
    }

    /// Makes every pending batch durable (one group commit) and releases what waited.
    pub fn complete_persists(&mut self) {
        self.complete_first(self.pending.len());
    }

    /// Makes the first `n` pending batches durable (a group commit of a prefix).
    pub fn complete_first(&mut self, n: usize) {
        self.complete_n(n);
        self.drain(false);
    }

    /// The durable state.
    pub fn durable(&self) -> &State {
        &self.durable
    }

    /// Batches handed out and not yet durable.
    pub fn pending_persists(&self) -> usize {
        self.pending.len()
    }

    /// The ops of the pending batches.
    pub fn pending_batches(&self) -> Vec<Batch> {
        self.pending.iter().map(|(_, b)| b.clone()).collect()
    }

    /// The process dies: the broker and every batch not yet durable are gone, every
    /// connection is cut. A new broker starts from the durable state.
    pub fn crash(&mut self) {
        self.pending.clear();
        for p in self.peers.values_mut() {
            p.open = false;
            p.closed_by_broker = true;
        }
        let mut state = self.durable.clone();
        state.drop_unreferenced();
        self.broker = Broker::new(self.config.clone(), state, self.now);
        self.crashes += 1;
        self.drain(true);
        self.run_timers();
    }

    /// Runs the timers due at `now`.
    pub fn run_timers(&mut self) {
        while let Some(t) = self.broker.poll_timeout() {
            if t > self.now {
                break;
            }
            self.broker.handle_timeout(self.now);
            self.drain(true);
        }
    }

    /// Moves virtual time forward by `ms`, running each timer at its own deadline.
    pub fn advance(&mut self, ms: u64) {
        let target = self.now + ms;
        while let Some(t) = self.broker.poll_timeout() {
            if t > target {
                break;
            }
            self.now = self.now.max(t);
            self.broker.handle_timeout(self.now);
            self.drain(true);
        }
        self.now = target;
    }

    /// Accepts a new connection.
    pub fn open(&mut self) -> ConnId {
        let conn = ConnId(self.next_conn);
        self.next_conn += 1;
        self.peers.insert(conn, Peer::new());
        self.broker.handle_open(conn, self.now);
        self.drain(true);
        conn
    }

    /// The client sends `packet` (encoded for the connection's version and decoded back, as
    /// the driver would).
    pub fn send(&mut self, conn: ConnId, packet: Packet) {
        let version = match &packet {
            Packet::Connect(c) => c.protocol,
            _ => self.peer(conn).version.unwrap_or(V311),
        };
        let mut buf = BytesMut::new();
        encode(&packet, version, &mut buf)
            .unwrap_or_else(|e| panic!("test sends a packet {version} cannot carry: {e}"));
        let decoded = decode(&mut buf, version, &Limits::default())
            .unwrap_or_else(|e| panic!("test packet does not decode: {e}"))
            .expect("whole packet");
        assert!(buf.is_empty());
        self.send_raw(conn, decoded);
    }

    /// The client sends `packet` as is (no codec round trip).
    pub fn send_raw(&mut self, conn: ConnId, packet: Packet) {
        let peer = self.peers.get_mut(&conn).expect("unknown connection");
        assert!(peer.open, "test sends on a closed connection {conn:?}");
        match &packet {
            Packet::Connect(c) => {
                peer.version = Some(c.protocol);
                peer.session = Some(if c.client_id.is_empty() {
                    format!("<anonymous {}>", conn.0)
                } else {
                    c.client_id.to_string()
                });
                if c.protocol.is_v5() {
                    peer.alias_max = c.properties.topic_alias_maximum.unwrap_or(0);
                    peer.max_packet = c.properties.maximum_packet_size;
                    peer.receive_max = c.properties.receive_maximum.unwrap_or(u16::MAX);
                }
                peer.clean_start = c.clean_start;
            }
            Packet::PubAck(a) | Packet::PubComp(a) => {
                self.finish_outstanding(conn, a.packet_id);
            }
            Packet::PubRec(a) if a.reason.is_error() => {
                self.finish_outstanding(conn, a.packet_id);
            }
            _ => {}
        }
        self.broker.handle_packet(conn, packet, self.now);
        self.drain(true);
    }

    fn finish_outstanding(&mut self, conn: ConnId, id: PacketId) {
        if let Some(key) = self.peer(conn).session.clone() {
            if let Some(s) = self.sessions.get_mut(&key) {
                s.outstanding.remove(&id.get());
            }
        }
    }

    /// The client's transport ends without DISCONNECT (network failure).
    pub fn drop_conn(&mut self, conn: ConnId) {
        let peer = self.peers.get_mut(&conn).expect("unknown connection");
        peer.open = false;
        self.broker.handle_closed(conn, self.now);
        self.drain(true);
    }

    /// The server shuts down (`handle_shutdown`).
    pub fn shutdown(&mut self) {
        self.broker.handle_shutdown(self.now);
        self.drain(true);
    }

    /// The driver could not decode what `conn` sent.
    pub fn decode_error(&mut self, conn: ConnId, err: &DecodeError) {
        self.broker.handle_decode_error(conn, err, self.now);
        self.drain(true);
    }

    fn on_send(&mut self, conn: ConnId, version: ProtocolVersion, packet: Packet) {
        let config_inflight = self.config.max_inflight_messages;
        let peer = self
            .peers
            .get_mut(&conn)
            .unwrap_or_else(|| panic!("Send to unknown {conn:?}: {packet:?}"));
        if peer.closed_by_broker {
            // After a crash the old connections are gone; nothing can reach them. A live
            // broker must never send after its own Close.
            panic!("Send after Close to {conn:?}: {packet:?}");
        }
        if let Some(v) = peer.version {
            assert_eq!(
                v, version,
                "packet for {conn:?} encoded for the wrong version"
            );
        }
        let mut buf = BytesMut::new();
        let size = encode(&packet, version, &mut buf).unwrap_or_else(|e| {
            panic!("broker packet does not encode for {version}: {e}\n{packet:?}")
        });
        let decoded = decode(&mut buf, version, &Limits::default())
            .unwrap_or_else(|e| {
                panic!("broker packet does not decode for {version}: {e}\n{packet:?}")
            })
            .expect("whole packet");
        if !peer.open {
            // The client already closed its end; the bytes go nowhere.
            return;
        }
        if let Packet::Publish(p) = &decoded {
            if let Some(max) = peer.max_packet {
                assert!(
                    size <= max as usize,
                    "[MQTT-3.1.2-24] PUBLISH of {size} bytes exceeds the client's maximum {max}"
                );
            }
            let resolved = match p.properties.topic_alias {
                Some(a) => {
                    assert!(
                        a >= 1 && a <= peer.alias_max,
                        "[MQTT-3.3.2-11] topic alias {a} beyond the client's maximum {}",
                        peer.alias_max
                    );
                    if p.topic.is_empty() {
                        peer.aliases
                            .get(&a)
                            .cloned()
                            .unwrap_or_else(|| panic!("empty topic with unknown alias {a}"))
                    } else {
                        peer.aliases.insert(a, p.topic.clone());
                        p.topic.clone()
                    }
                }
                None => p.topic.clone(),
            };
            if let (Some(id), Some(key)) = (p.packet_id, peer.session.clone()) {
                let limit = usize::from(peer.receive_max.min(config_inflight));
                let s = self.sessions.entry(key).or_default();
                let entry = (resolved, p.payload.clone(), p.qos);
                match s.outstanding.get(&id.get()) {
                    Some(prev) if !p.dup => panic!(
                        "[MQTT-2.2.1-3] packet id {id} reused while in flight \
                         (in flight: {prev:?}, new: {p:?})"
                    ),
                    Some(prev) => assert_eq!(
                        prev, &entry,
                        "DUP PUBLISH with packet id {id} carries another message"
                    ),
                    None => {
                        s.outstanding.insert(id.get(), entry);
                    }
                }
                if !p.dup {
                    assert!(
                        s.outstanding.len() <= limit,
                        "[MQTT-3.3.4-9] {} messages in flight, receive maximum {limit}",
                        s.outstanding.len()
                    );
                }
            }
        }
        if let Packet::ConnAck(c) = &decoded {
            if !c.reason.is_error() {
                if let Some(id) = &c.properties.assigned_client_identifier {
                    peer.session = Some(id.to_string());
                }
                let discarded = peer.clean_start || (!c.session_present && version != V31);
                if let Some(key) = peer.session.clone() {
                    if discarded {
                        self.sessions.remove(&key);
                    } else if let Some(s) = self.sessions.get_mut(&key) {
                        // A QoS 1 receiver keeps no state: what is still in flight comes
                        // again (DUP) and is tracked again; what the broker discarded as if
                        // delivered [MQTT-3.1.2-25] is gone. QoS 2 ids stay until PUBCOMP.
                        s.outstanding.retain(|_, (_, _, q)| *q == QoS::ExactlyOnce);
                    }
                }
            }
        }
        let peer = self.peers.get_mut(&conn).expect("checked above");
        peer.log.push(decoded.clone());
        peer.inbox.push_back(decoded);
    }

    // -----------------------------------------------------------------------------------------
    // Client helpers

    /// The peer of a connection.
    pub fn peer(&self, conn: ConnId) -> &Peer {
        self.peers.get(&conn).expect("unknown connection")
    }

    /// Everything every connection received, in order, as text (to compare runs).
    pub fn received_digest(&self) -> Vec<String> {
        self.peers
            .iter()
            .map(|(conn, p)| format!("{conn:?}: {:?}", p.log))
            .collect()
    }

    /// True when the broker closed `conn`.
    pub fn is_closed(&self, conn: ConnId) -> bool {
        self.peer(conn).closed_by_broker
    }

    /// Opens a connection and sends `c`; returns the connection without expecting anything.
    pub fn open_connect(&mut self, c: Connect) -> ConnId {
        let conn = self.open();
        self.send(conn, Packet::Connect(Box::new(c)));
        conn
    }

    /// Opens a connection, sends `c` and expects a successful CONNACK (completing persists
    /// first in manual mode).
    pub fn connect(&mut self, c: Connect) -> (ConnId, ConnAck) {
        let conn = self.open_connect(c);
        if self.peer(conn).inbox.is_empty() && self.manual {
            self.complete_persists();
        }
        let ack = self.expect_connack(conn);
        assert_eq!(ack.reason, ReasonCode::Success, "CONNACK refused: {ack:?}");
        (conn, ack)
    }

    /// Connects a persistent session (see [`persistent`]) and expects a successful CONNACK.
    pub fn persistent(&mut self, version: ProtocolVersion, id: &str) -> ConnId {
        self.connect(persistent(version, id)).0
    }

    /// Connects a clean session and expects a successful CONNACK.
    pub fn clean(&mut self, version: ProtocolVersion, id: &str) -> ConnId {
        self.connect(clean(version, id)).0
    }

    /// Subscribes (one packet) and expects the SUBACK.
    pub fn subscribe(
        &mut self,
        conn: ConnId,
        packet_id: u16,
        filters: &[(&str, SubscriptionOptions)],
    ) -> SubAck {
        self.send(conn, Packet::Subscribe(subscribe(packet_id, filters)));
        let ack = self.expect_suback(conn);
        assert_eq!(ack.packet_id, pid(packet_id));
        ack
    }

    /// Subscribes to one filter with a QoS and checks it was granted.
    pub fn sub(&mut self, conn: ConnId, packet_id: u16, f: &str, qos: QoS) {
        let ack = self.subscribe(conn, packet_id, &[(f, opts(qos))]);
        assert_eq!(ack.reasons, vec![ReasonCode::granted(qos)]);
    }

    /// Sends a PUBLISH.
    pub fn publish(&mut self, conn: ConnId, p: Publish) {
        self.send(conn, Packet::Publish(p));
    }

    /// Publishes and completes the publisher's side of the exchange (PUBACK, or PUBREC +
    /// PUBREL + PUBCOMP).
    pub fn publish_acked(&mut self, conn: ConnId, p: Publish) {
        let qos = p.qos;
        let id = p.packet_id;
        self.publish(conn, p);
        match (qos, id) {
            (QoS::AtMostOnce, _) => {}
            (QoS::AtLeastOnce, Some(id)) => {
                assert_eq!(self.expect_puback(conn).packet_id, id);
            }
            (QoS::ExactlyOnce, Some(id)) => {
                assert_eq!(self.expect_pubrec(conn).packet_id, id);
                self.send(conn, Packet::PubRel(PubAck::new(id)));
                assert_eq!(self.expect_pubcomp(conn).packet_id, id);
            }
            _ => panic!("QoS > 0 needs a packet id"),
        }
    }

    /// Acknowledges a received PUBLISH as a correct client would and runs the exchange to
    /// its end (QoS 2: PUBREC, expect PUBREL, PUBCOMP).
    pub fn ack_publish(&mut self, conn: ConnId, p: &Publish) {
        let Some(id) = p.packet_id else { return };
        match p.qos {
            QoS::AtMostOnce => {}
            QoS::AtLeastOnce => self.send(conn, Packet::PubAck(PubAck::new(id))),
            QoS::ExactlyOnce => {
                self.send(conn, Packet::PubRec(PubAck::new(id)));
                assert_eq!(self.expect_pubrel(conn).packet_id, id);
                self.send(conn, Packet::PubComp(PubAck::new(id)));
            }
        }
    }

    /// Receives one PUBLISH and acknowledges it fully.
    pub fn receive(&mut self, conn: ConnId) -> Publish {
        let p = self.expect_publish(conn);
        self.ack_publish(conn, &p);
        p
    }

    // -----------------------------------------------------------------------------------------
    // Expectations

    /// Takes everything received on `conn`.
    pub fn take(&mut self, conn: ConnId) -> Vec<Packet> {
        self.peers
            .get_mut(&conn)
            .expect("unknown connection")
            .inbox
            .drain(..)
            .collect()
    }

    /// Takes the next packet received on `conn`, if any.
    pub fn next(&mut self, conn: ConnId) -> Option<Packet> {
        self.peers
            .get_mut(&conn)
            .expect("unknown connection")
            .inbox
            .pop_front()
    }

    /// Takes the next packet received on `conn`; panics if there is none.
    pub fn expect(&mut self, conn: ConnId) -> Packet {
        self.next(conn).unwrap_or_else(|| {
            panic!(
                "{conn:?} expected a packet, got nothing (closed: {}, pending persists: {})",
                self.is_closed(conn),
                self.pending.len()
            )
        })
    }

    /// Asserts nothing is waiting on `conn`.
    pub fn expect_silent(&mut self, conn: ConnId) {
        let got = self.take(conn);
        assert!(got.is_empty(), "{conn:?} expected nothing, got {got:#?}");
    }

    /// Takes all PUBLISH packets from the inbox; panics on anything else.
    pub fn take_publishes(&mut self, conn: ConnId) -> Vec<Publish> {
        self.take(conn)
            .into_iter()
            .map(|p| match p {
                Packet::Publish(p) => p,
                other => panic!("{conn:?} expected PUBLISH, got {other:?}"),
            })
            .collect()
    }
}

macro_rules! expect_kind {
    ($name:ident, $variant:ident, $ty:ty) => {
        impl Sim {
            /// Takes the next packet and asserts its type.
            pub fn $name(&mut self, conn: ConnId) -> $ty {
                match self.expect(conn) {
                    Packet::$variant(x) => x,
                    other => panic!("{conn:?} expected {}, got {other:?}", stringify!($variant)),
                }
            }
        }
    };
}

expect_kind!(expect_connack, ConnAck, ConnAck);
expect_kind!(expect_publish, Publish, Publish);
expect_kind!(expect_puback, PubAck, PubAck);
expect_kind!(expect_pubrec, PubRec, PubAck);
expect_kind!(expect_pubrel, PubRel, PubAck);
expect_kind!(expect_pubcomp, PubComp, PubAck);
expect_kind!(expect_suback, SubAck, SubAck);
expect_kind!(expect_unsuback, UnsubAck, UnsubAck);
expect_kind!(expect_disconnect, Disconnect, Disconnect);

impl Default for Sim {
    fn default() -> Self {
        Sim::new()
    }
}

/// The payload as text, for assertions.
pub fn text(p: &Publish) -> &str {
    std::str::from_utf8(&p.payload).expect("utf-8 payload")
}
