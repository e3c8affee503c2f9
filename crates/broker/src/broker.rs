//! The broker state machine.
//!
//! # Calling contract
//!
//! The driver owns the sockets, the clock and the store; the [`Broker`] owns the state.
//!
//! 1. At start-up: load the [`State`] from the store and build the broker with
//!    [`Broker::new`] (this may already emit a [`Action::Persist`]: sessions that were
//!    connected when the previous process died are marked disconnected).
//! 2. For each accepted connection, [`Broker::handle_open`]; for each decoded packet,
//!    [`Broker::handle_packet`]; for a decode error, [`Broker::handle_decode_error`]; when the
//!    transport ends (EOF, I/O error) without the broker having asked, [`Broker::handle_closed`].
//! 3. After every `handle_*` call, drain [`Broker::poll_action`] until `None`, in order:
//!    - [`Action::Send`]: encode the packet for the given version and write it to the
//!      connection, in the order emitted;
//!    - [`Action::Close`]: flush what was sent to that connection, then close it;
//!    - [`Action::Persist`]: hand the batch to the store writer. When it is durable, call
//!      [`Broker::handle_persisted`] with its token. Tokens must be completed **in the order
//!      they were emitted** (group commit completes a prefix).
//! 4. Call [`Broker::handle_timeout`] when the deadline of [`Broker::poll_timeout`] passes.
//!
//! # Durability
//!
//! A step (one `handle_*` call) that changes durable state collects its [`Op`]s in one
//! [`Batch`]. Every packet of that step that promises state (PUBACK, PUBREC, PUBREL, PUBCOMP,
//! SUBACK, UNSUBACK, CONNACK, and a QoS 1/2 PUBLISH whose packet id was just assigned) waits
//! for the batch's token. So does everything after it on the same connection, so a
//! connection's packets leave in the order they were produced. A step without ops whose
//! packets must be ordered behind an earlier step waits for the latest outstanding token.
//!
//! # Exactly once, inbound (client to broker), "method B" of the spec
//!
//! ```text
//!  client                         broker
//!  PUBLISH(pid) ---------------->  pid not in `inbound`: route the message, insert pid
//!                                  (one batch), then, durable:
//!               <---------------- PUBREC(pid)
//!  PUBLISH(pid, DUP) ----------->  pid in `inbound`: route nothing
//!               <---------------- PUBREC(pid)
//!  PUBREL(pid) ----------------->  remove pid (durably), then
//!               <---------------- PUBCOMP(pid)
//! ```
//!
//! # Exactly once, outbound (broker to client)
//!
//! ```text
//!  broker                                            client
//!  queued -> pid assigned durably -> PUBLISH(pid) --->
//!                                     <------------- PUBREC(pid)
//!  record "released" durably ------> PUBREL(pid) --->
//!                                     <------------- PUBCOMP(pid)
//!  record deleted
//! ```
//! On reconnect, every record with a packet id is resent in seq order (PUBLISH with DUP=1 and
//! the same id, or PUBREL), before any new message; nothing is resent at any other time.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, VecDeque};

// foldhash: several times faster than SipHash on the per-message lookups (session by client
// id, in-flight record by packet id) and still seeded per map against collision flooding.
use foldhash::{HashMap, HashMapExt, HashSet, HashSetExt};
use std::sync::Arc;

use bytestring::ByteString;
use quartet_proto::*;
use quartet_store::{
    Batch, Message, MsgId, Op, OutboundPhase, OutboundRecord, SessionRecord, State,
    SubscriptionRecord, WillRecord,
};

use crate::config::Config;
use crate::metrics::Metrics;
use crate::trie::{Hit, SubEntry, SubTree};

pub use quartet_store::Millis;

/// A connection, named by the driver.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId(pub u64);

/// Names a persist batch; completed in order by [`Broker::handle_persisted`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Token(pub u64);

/// What the broker asks its driver to do.
// Send is by far the most common action; boxing its packet would cost an allocation each.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Encode `packet` for `version` and write it to `conn`.
    Send {
        /// The connection.
        conn: ConnId,
        /// The protocol version to encode for.
        version: ProtocolVersion,
        /// The packet.
        packet: Packet,
    },
    /// Flush and close `conn`. The broker has forgotten it already.
    Close {
        /// The connection.
        conn: ConnId,
    },
    /// Make `batch` durable, then call [`Broker::handle_persisted`] with `token`.
    Persist {
        /// Completion token.
        token: Token,
        /// The ops.
        batch: Batch,
    },
}

/// Decides who may connect, publish and subscribe. The default allows everything.
pub trait Authorizer: Send + std::fmt::Debug {
    /// May this client connect with these credentials?
    fn authenticate(
        &self,
        _client: &ClientId,
        _username: Option<&str>,
        _password: Option<&[u8]>,
    ) -> bool {
        true
    }
    /// May this client subscribe to this filter?
    fn authorize_subscribe(&self, _client: &ClientId, _filter: &TopicFilter) -> bool {
        true
    }
    /// May this client publish to this topic?
    fn authorize_publish(&self, _client: &ClientId, _topic: &TopicName) -> bool {
        true
    }
}

/// Allows everything (no authentication, no ACL).
#[derive(Debug, Clone, Copy, Default)]
pub struct AllowAll;
impl Authorizer for AllowAll {}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Timer {
    /// Connect timeout or keep-alive check of a connection.
    Conn(ConnId),
    /// Session expiry, valid while the session's generation matches.
    SessionExpiry(ClientId, u64),
    /// Will delay, valid while the session's generation matches.
    Will(ClientId, u64),
    /// `$SYS` update.
    Sys,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum ConnState {
    AwaitingConnect,
    Connected(ClientId),
}

#[derive(Debug)]
struct Conn {
    state: ConnState,
    version: ProtocolVersion,
    /// 1.5 times the keep alive, in ms; 0 disables the check.
    keep_alive_window_ms: u64,
    last_seen: Millis,
    /// The latest token this connection's output waits for.
    gate: Option<Token>,
    /// True when this step queued a gated packet for this connection.
    gated_in_step: bool,
    /// The client's Maximum Packet Size (v5).
    send_max_packet: Option<usize>,
    /// In-flight window towards the client: its Receive Maximum capped by config.
    send_window: usize,
    /// The client's Topic Alias Maximum (v5).
    send_alias_max: u16,
    out_aliases: HashMap<ByteString, u16>,
    in_aliases: HashMap<u16, TopicName>,
    /// The session expiry the client asked for at CONNECT (for [MQTT-3.14.2-2]).
    connect_expiry: u32,
}

#[derive(Debug)]
struct Outbound {
    seq: u64,
    msg: Option<Arc<Message>>,
    msg_id: Option<MsgId>,
    qos: QoS,
    packet_id: Option<PacketId>,
    phase: OutboundPhase,
    retain: bool,
    sub_ids: Vec<u32>,
}

impl Outbound {
    fn record(&self) -> OutboundRecord {
        OutboundRecord {
            seq: self.seq,
            msg: self
                .msg_id
                .filter(|_| self.phase != OutboundPhase::Released),
            qos: self.qos,
            packet_id: self.packet_id,
            phase: self.phase,
            retain: self.retain,
            subscription_ids: self.sub_ids.clone(),
        }
    }
    fn payload_len(&self) -> usize {
        self.msg.as_ref().map_or(0, |m| m.payload.len())
    }
}

#[derive(Debug)]
struct Session {
    client_id: ClientId,
    conn: Option<ConnId>,
    version: ProtocolVersion,
    expiry_secs: u32,
    /// Whether the store holds this session (expiry > 0).
    persisted: bool,
    disconnected_at: Option<Millis>,
    will: Option<WillRecord>,
    subs: HashMap<ByteString, SubscriptionRecord>,
    /// Inbound QoS 2 packet ids received and not yet released.
    inbound: HashSet<PacketId>,
    outbound: BTreeMap<u64, Outbound>,
    by_pid: HashMap<PacketId, u64>,
    next_seq: u64,
    next_pid: PacketId,
    /// Records with a packet id (AwaitingAck or Released).
    inflight: usize,
    /// Records still Queued, and their payload bytes.
    queued: usize,
    queued_bytes: usize,
    /// Smallest seq that may still be Queued (Queued records are a suffix of `outbound`).
    first_queued: u64,
    /// Bumped at every connect and disconnect; timers of older generations are void.
    gen: u64,
}

impl Session {
    fn new(client_id: ClientId, version: ProtocolVersion) -> Session {
        Session {
            client_id,
            conn: None,
            version,
            expiry_secs: 0,
            persisted: false,
            disconnected_at: None,
            will: None,
            subs: HashMap::new(),
            inbound: HashSet::new(),
            outbound: BTreeMap::new(),
            by_pid: HashMap::new(),
            next_seq: 1,
            next_pid: PacketId::MIN,
            inflight: 0,
            queued: 0,
            queued_bytes: 0,
            first_queued: 1,
            gen: 0,
        }
    }

    fn record(&self) -> SessionRecord {
        SessionRecord {
            client_id: self.client_id.clone(),
            expiry_interval_secs: self.expiry_secs,
            protocol: self.version,
            disconnected_at: self.disconnected_at,
            will: self.will.clone(),
        }
    }

    fn alloc_pid(&mut self) -> PacketId {
        let mut pid = self.next_pid;
        while self.by_pid.contains_key(&pid) {
            pid = pid.next();
        }
        self.next_pid = pid.next();
        pid
    }
}

/// The broker core. See the [module documentation](self) for the calling contract.
#[derive(Debug)]
pub struct Broker {
    config: Config,
    authorizer: Box<dyn Authorizer>,
    conns: HashMap<ConnId, Conn>,
    sessions: HashMap<ClientId, Session>,
    tree: SubTree,
    retained: BTreeMap<ByteString, Arc<Message>>,
    timers: BinaryHeap<Reverse<(Millis, Timer)>>,
    out: VecDeque<Action>,
    /// Ops of the current step.
    ops: Vec<Op>,
    /// Packets of the current step that wait for durability (or for an earlier token).
    step_gated: Vec<Action>,
    /// Outstanding tokens, oldest first, with the actions released when each completes.
    pending: VecDeque<(Token, Vec<Action>)>,
    next_token: u64,
    next_msg_id: MsgId,
    next_assigned_id: u64,
    metrics: Metrics,
    started_at: Millis,
    hits: Vec<Hit>,
}

fn millis_from_secs(secs: u32) -> u64 {
    u64::from(secs) * 1000
}

impl Broker {
    /// Builds a broker from recovered state. Sessions that were connected when the state was
    /// last written (the previous process died) are now disconnected: their wills are
    /// scheduled and their expiry starts counting at `now`.
    pub fn new(config: Config, recovered: State, now: Millis) -> Broker {
        let mut b = Broker {
            config,
            authorizer: Box::new(AllowAll),
            conns: HashMap::new(),
            sessions: HashMap::new(),
            tree: SubTree::new(),
            retained: BTreeMap::new(),
            timers: BinaryHeap::new(),
            out: VecDeque::new(),
            ops: Vec::new(),
            step_gated: Vec::new(),
            pending: VecDeque::new(),
            next_token: 1,
            next_msg_id: recovered.next_msg_id.max(1),
            next_assigned_id: 1,
            metrics: Metrics::default(),
            started_at: now,
            hits: Vec::new(),
        };
        for (topic, m) in recovered.retained {
            b.retained.insert(topic, Arc::new(m));
        }
        let bodies = recovered.messages;
        // In client id order, not the map's (random) order: shared-group member order and the
        // order of ops and wills depend on it, and the core must be deterministic.
        let mut sessions: Vec<_> = recovered.sessions.into_iter().collect();
        sessions.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        for (client, st) in sessions {
            let mut s = Session::new(client.clone(), st.record.protocol);
            s.expiry_secs = st.record.expiry_interval_secs;
            s.persisted = true;
            s.will = st.record.will;
            s.disconnected_at = st.record.disconnected_at;
            let was_connected = s.disconnected_at.is_none();
            if was_connected {
                s.disconnected_at = Some(now);
            }
            s.inbound = st.inbound.into_iter().collect();
            for (filter, sub) in st.subscriptions {
                b.tree.insert(
                    &sub.filter,
                    &client,
                    SubEntry {
                        options: sub.options,
                        identifier: sub.identifier,
                    },
                );
                s.subs.insert(filter, sub);
            }
            let mut first_queued = None;
            // Records arrive sorted by seq, so the map is built in bulk rather than by
            // one insert each (a restart with a million queued messages).
            let outbound: BTreeMap<u64, Outbound> = st
                .outbound
                .into_iter()
                .filter_map(|(seq, r)| {
                    let msg = r
                        .msg
                        .and_then(|id| bodies.get(&id))
                        .map(|m| m.message.clone());
                    if r.phase != OutboundPhase::Released && msg.is_none() {
                        // A record without its body cannot be delivered; State::apply refuses
                        // such logs, so this only guards against a hand-edited state.
                        return None;
                    }
                    if let Some(pid) = r.packet_id {
                        s.by_pid.insert(pid, seq);
                        s.inflight += 1;
                    } else {
                        s.queued += 1;
                        s.queued_bytes += msg.as_ref().map_or(0, |m| m.payload.len());
                        first_queued.get_or_insert(seq);
                    }
                    s.next_seq = s.next_seq.max(seq + 1);
                    Some((
                        seq,
                        Outbound {
                            seq,
                            msg,
                            msg_id: r.msg,
                            qos: r.qos,
                            packet_id: r.packet_id,
                            phase: r.phase,
                            retain: r.retain,
                            sub_ids: r.subscription_ids,
                        },
                    ))
                })
                .collect();
            s.outbound = outbound;
            s.first_queued = first_queued.unwrap_or(s.next_seq);
            let disconnected_at = s.disconnected_at.unwrap_or(now);
            if s.expiry_secs != u32::MAX {
                b.timers.push(Reverse((
                    disconnected_at + millis_from_secs(s.expiry_secs),
                    Timer::SessionExpiry(client.clone(), 0),
                )));
            }
            if let Some(w) = &s.will {
                b.timers.push(Reverse((
                    disconnected_at + millis_from_secs(w.delay_secs),
                    Timer::Will(client.clone(), 0),
                )));
            }
            if was_connected {
                b.ops.push(Op::PutSession(s.record()));
            }
            b.sessions.insert(client, s);
        }
        if b.config.sys_interval_secs > 0 {
            b.timers.push(Reverse((now, Timer::Sys)));
        }
        b.metrics.sessions = b.sessions.len() as u64;
        b.finish_step();
        b
    }

    /// Replaces the authorizer (the default allows everything).
    pub fn set_authorizer(&mut self, a: Box<dyn Authorizer>) {
        self.authorizer = a;
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The counters.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Adds I/O and driver-side counts (bytes, QoS 0 dropped for slow connections).
    pub fn add_io_stats(&mut self, bytes_received: u64, bytes_sent: u64, dropped_slow_qos0: u64) {
        self.metrics.bytes_received += bytes_received;
        self.metrics.bytes_sent += bytes_sent;
        self.metrics.dropped_slow_qos0 += dropped_slow_qos0;
    }

    /// The number of subscriptions.
    pub fn subscription_count(&self) -> usize {
        self.tree.len()
    }

    /// The number of retained messages.
    pub fn retained_count(&self) -> usize {
        self.retained.len()
    }

    /// Queue length (Queued, not yet in flight) and in-flight count of a session.
    pub fn session_queue(&self, client: &ClientId) -> Option<(usize, usize)> {
        self.sessions.get(client).map(|s| (s.queued, s.inflight))
    }

    /// The next action for the driver.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.out.pop_front()
    }

    /// When [`Broker::handle_timeout`] should be called next.
    pub fn poll_timeout(&self) -> Option<Millis> {
        self.timers.peek().map(|Reverse((t, _))| *t)
    }

    /// A new connection was accepted.
    pub fn handle_open(&mut self, conn: ConnId, now: Millis) {
        self.conns.insert(
            conn,
            Conn {
                state: ConnState::AwaitingConnect,
                version: ProtocolVersion::V311,
                keep_alive_window_ms: 0,
                last_seen: now,
                gate: None,
                gated_in_step: false,
                send_max_packet: None,
                send_window: usize::from(self.config.max_inflight_messages),
                send_alias_max: 0,
                out_aliases: HashMap::new(),
                in_aliases: HashMap::new(),
                connect_expiry: 0,
            },
        );
        self.timers.push(Reverse((
            now + self.config.connect_timeout_ms,
            Timer::Conn(conn),
        )));
        self.finish_step();
    }

    /// The connection's transport ended without the broker asking (EOF, reset, I/O error):
    /// an abnormal disconnect, so the will is published [MQTT-3.1.2-8].
    pub fn handle_closed(&mut self, conn: ConnId, now: Millis) {
        if self.conns.contains_key(&conn) {
            self.drop_conn(conn, now, true);
        }
        self.finish_step();
    }

    /// The bytes from `conn` are not a valid packet: answer with the error's reason code
    /// (v5 DISCONNECT, or CONNACK for an unsupported protocol level) and close.
    pub fn handle_decode_error(&mut self, conn: ConnId, err: &DecodeError, now: Millis) {
        if let Some(c) = self.conns.get(&conn) {
            self.metrics.protocol_errors += 1;
            match (&c.state, err) {
                (ConnState::AwaitingConnect, DecodeError::UnsupportedProtocolLevel(level)) => {
                    // [MQTT-3.1.2-2]: CONNACK 0x01 (v3) / 0x84 (v5), then close.
                    let version = if *level > 5 {
                        ProtocolVersion::V5
                    } else {
                        ProtocolVersion::V311
                    };
                    let packet = Packet::ConnAck(ConnAck {
                        session_present: false,
                        reason: ReasonCode::UnsupportedProtocolVersion,
                        properties: ConnAckProperties::default(),
                    });
                    self.send_as(conn, version, packet);
                    self.drop_conn(conn, now, true);
                }
                (ConnState::AwaitingConnect, _) => self.drop_conn(conn, now, true),
                (ConnState::Connected(_), _) => self.kick(conn, err.reason_code(), now),
            }
        }
        self.finish_step();
    }

    /// The server is shutting down: every connection gets v5 DISCONNECT 0x8B and is closed.
    /// Sessions stay (persistent ones in the store, marked disconnected, wills pending), so a
    /// restart resumes them.
    pub fn handle_shutdown(&mut self, now: Millis) {
        let mut conns: Vec<ConnId> = self.conns.keys().copied().collect();
        // Deterministic order (the wills of these connections are routed in it).
        conns.sort_unstable();
        for conn in conns {
            self.kick(conn, ReasonCode::ServerShuttingDown, now);
        }
        self.finish_step();
    }

    /// Connections the broker knows (connected or awaiting CONNECT).
    pub fn connection_count(&self) -> usize {
        self.conns.len()
    }

    /// A batch is durable. Tokens complete in the order they were emitted.
    pub fn handle_persisted(&mut self, token: Token) {
        while let Some((t, _)) = self.pending.front() {
            if *t > token {
                break;
            }
            let Some((t, actions)) = self.pending.pop_front() else {
                break;
            };
            for a in actions {
                if let Action::Send { conn, .. } | Action::Close { conn } = &a {
                    if let Some(c) = self.conns.get_mut(conn) {
                        if c.gate == Some(t) {
                            c.gate = None;
                        }
                    }
                }
                self.out.push_back(a);
            }
        }
    }

    /// Runs the timers that are due at `now`.
    pub fn handle_timeout(&mut self, now: Millis) {
        while let Some(Reverse((at, _))) = self.timers.peek() {
            if *at > now {
                break;
            }
            let Some(Reverse((_, timer))) = self.timers.pop() else {
                break;
            };
            match timer {
                Timer::Conn(id) => self.check_conn_timer(id, now),
                Timer::SessionExpiry(client, gen) => {
                    if self.timer_is_current(&client, gen) {
                        self.expire_session(&client, now);
                    }
                }
                Timer::Will(client, gen) => {
                    if self.timer_is_current(&client, gen) {
                        self.fire_will(&client, now);
                    }
                }
                Timer::Sys => {
                    self.publish_sys(now);
                    let every = millis_from_secs(self.config.sys_interval_secs);
                    self.timers.push(Reverse((now + every, Timer::Sys)));
                }
            }
        }
        self.finish_step();
    }

    fn check_conn_timer(&mut self, id: ConnId, now: Millis) {
        let Some(c) = self.conns.get(&id) else { return };
        match c.state {
            ConnState::AwaitingConnect => {
                // A CONNECT that never came within the connect timeout.
                self.drop_conn(id, now, true);
            }
            ConnState::Connected(_) if c.keep_alive_window_ms > 0 => {
                let deadline = c.last_seen + c.keep_alive_window_ms;
                if now >= deadline {
                    // [MQTT-3.1.2-24]: no packet within 1.5 times the keep alive.
                    self.kick(id, ReasonCode::KeepAliveTimeout, now);
                } else {
                    self.timers.push(Reverse((deadline, Timer::Conn(id))));
                }
            }
            ConnState::Connected(_) => {}
        }
    }

    /// A packet from `conn`.
    pub fn handle_packet(&mut self, conn: ConnId, packet: Packet, now: Millis) {
        self.on_packet(conn, packet, now);
        self.finish_step();
    }

    fn on_packet(&mut self, conn: ConnId, packet: Packet, now: Millis) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        c.last_seen = now;
        let client = match (&c.state, packet) {
            (ConnState::AwaitingConnect, Packet::Connect(connect)) => {
                return self.on_connect(conn, *connect, now);
            }
            (ConnState::AwaitingConnect, _) => {
                // [MQTT-3.1.0-1]: the first packet must be CONNECT.
                self.metrics.protocol_errors += 1;
                return self.drop_conn(conn, now, true);
            }
            (ConnState::Connected(_), Packet::Connect(_)) => {
                // [MQTT-3.1.0-2]: a second CONNECT is a protocol violation.
                return self.violation(conn, ReasonCode::ProtocolError, now);
            }
            (ConnState::Connected(client), packet) => (client.clone(), packet),
        };
        let (client, packet) = client;
        match packet {
            Packet::Publish(p) => self.on_publish(conn, &client, p, now),
            Packet::PubAck(a) => self.on_puback(conn, &client, a.packet_id, now),
            Packet::PubRec(a) => self.on_pubrec(conn, &client, a, now),
            Packet::PubRel(a) => self.on_pubrel(conn, &client, a.packet_id),
            Packet::PubComp(a) => self.on_pubcomp(conn, &client, a.packet_id, now),
            Packet::Subscribe(s) => self.on_subscribe(conn, &client, s, now),
            Packet::Unsubscribe(u) => self.on_unsubscribe(conn, &client, u),
            Packet::PingReq => self.send(conn, Packet::PingResp, false),
            Packet::Disconnect(d) => self.on_disconnect(conn, &client, d, now),
            Packet::Auth(_) => {
                // No authenticator: AUTH without an Authentication Method in CONNECT is a
                // protocol error [MQTT-4.12.0-2].
                self.violation(conn, ReasonCode::ProtocolError, now)
            }
            Packet::ConnAck(_) | Packet::SubAck(_) | Packet::UnsubAck(_) | Packet::PingResp => {
                self.violation(conn, ReasonCode::ProtocolError, now)
            }
            Packet::Connect(_) => {}
        }
    }

    // -----------------------------------------------------------------------------------------
    // CONNECT

    fn connack_fail(
        &mut self,
        conn: ConnId,
        version: ProtocolVersion,
        reason: ReasonCode,
        now: Millis,
    ) {
        let packet = Packet::ConnAck(ConnAck {
            session_present: false,
            reason,
            properties: ConnAckProperties::default(),
        });
        self.send_as(conn, version, packet);
        self.drop_conn(conn, now, false);
    }

    fn on_connect(&mut self, conn: ConnId, c: Connect, now: Millis) {
        let version = c.protocol;
        if let Some(cs) = self.conns.get_mut(&conn) {
            cs.version = version;
        }
        if version.is_v5() && c.properties.authentication_method.is_some() {
            // No enhanced authentication is configured.
            return self.connack_fail(conn, version, ReasonCode::BadAuthenticationMethod, now);
        }
        let mut assigned = None;
        let client_id = if c.client_id.is_empty() {
            // v3.1.1: an empty id only with clean session [MQTT-3.1.3-7] [MQTT-3.1.3-8];
            // v5: the server assigns one [MQTT-3.1.3-6]; v3.1 needs 1 to 23 characters.
            let allowed = match version {
                ProtocolVersion::V5 => true,
                ProtocolVersion::V311 => c.clean_start,
                ProtocolVersion::V31 => false,
            };
            if !allowed {
                return self.connack_fail(conn, version, ReasonCode::ClientIdentifierNotValid, now);
            }
            let id = ClientId::new(format!("quartet-{:x}-{}", now, self.next_assigned_id));
            self.next_assigned_id += 1;
            if version.is_v5() {
                assigned = Some(id.as_bytestring().clone());
            }
            id
        } else {
            c.client_id.clone()
        };
        if !self
            .authorizer
            .authenticate(&client_id, c.username.as_deref(), c.password.as_deref())
        {
            return self.connack_fail(conn, version, ReasonCode::BadUserNameOrPassword, now);
        }
        let requested_expiry = match version {
            ProtocolVersion::V5 => c.properties.session_expiry_interval.unwrap_or(0),
            _ if c.clean_start => 0,
            _ => u32::MAX,
        };
        let expiry = requested_expiry.min(self.config.session_expiry_max_secs);

        // Takeover of a live client id [MQTT-3.1.4-3].
        if let Some(old) = self.sessions.get(&client_id).and_then(|s| s.conn) {
            if let Some(oc) = self.conns.get(&old) {
                if oc.version.is_v5() {
                    let packet = Packet::Disconnect(Disconnect {
                        reason: ReasonCode::SessionTakenOver,
                        properties: DisconnectProperties::default(),
                    });
                    let v = oc.version;
                    self.send_as(old, v, packet);
                }
            }
            self.drop_conn(old, now, true);
        }

        // Session expiry and will delay are deadlines, not just timers: one that passed before
        // its timer ran (a CONNECT handled first, e.g. right after a restart) has happened.
        self.run_due_session_deadlines(&client_id, now);

        let mut session_present = false;
        if c.clean_start {
            if self.sessions.contains_key(&client_id) {
                self.end_session(&client_id, now);
            }
        } else if let Some(s) = self.sessions.get_mut(&client_id) {
            session_present = true;
            // Resumed before the will delay ran out: the will is not sent [MQTT-3.1.3-9].
            s.will = None;
        }
        let s = self
            .sessions
            .entry(client_id.clone())
            .or_insert_with(|| Session::new(client_id.clone(), version));
        s.conn = Some(conn);
        s.version = version;
        s.expiry_secs = expiry;
        s.disconnected_at = None;
        s.gen += 1;
        s.will = c.will.map(|w| WillRecord {
            delay_secs: w.properties.will_delay_interval.unwrap_or(0),
            message: Message {
                topic: w.topic,
                payload: w.payload,
                qos: w.qos,
                retain: w.retain,
                properties: PublishProperties {
                    payload_format_indicator: w.properties.payload_format_indicator,
                    message_expiry_interval: w.properties.message_expiry_interval,
                    topic_alias: None,
                    response_topic: w.properties.response_topic,
                    correlation_data: w.properties.correlation_data,
                    user_properties: w.properties.user_properties,
                    subscription_identifiers: Vec::new(),
                    content_type: w.properties.content_type,
                },
                expires_at: None,
            },
        });
        if expiry > 0 {
            s.persisted = true;
            self.ops.push(Op::PutSession(s.record()));
        } else if s.persisted {
            s.persisted = false;
            self.ops.push(Op::DeleteSession(client_id.clone()));
        }
        self.metrics.sessions = self.sessions.len() as u64;
        self.metrics.connects_total += 1;
        self.metrics.clients_connected += 1;

        // Keep alive: the server may impose its maximum (v5 Server Keep Alive).
        let mut keep_alive = c.keep_alive;
        let mut server_keep_alive = None;
        if let Some(max) = self.config.max_keep_alive_secs {
            if keep_alive == 0 || keep_alive > max {
                keep_alive = max;
                if version.is_v5() {
                    server_keep_alive = Some(max);
                }
            }
        }
        let window_ms = u64::from(keep_alive) * 1500;
        let max_inflight = usize::from(self.config.max_inflight_messages);
        let Some(cs) = self.conns.get_mut(&conn) else {
            return;
        };
        cs.state = ConnState::Connected(client_id.clone());
        cs.keep_alive_window_ms = window_ms;
        cs.connect_expiry = requested_expiry;
        if version.is_v5() {
            cs.send_max_packet = c.properties.maximum_packet_size.map(|m| m as usize);
            cs.send_window = c
                .properties
                .receive_maximum
                .map_or(max_inflight, |r| usize::from(r).min(max_inflight));
            cs.send_alias_max = c.properties.topic_alias_maximum.unwrap_or(0);
        }
        if window_ms > 0 {
            self.timers
                .push(Reverse((now + window_ms, Timer::Conn(conn))));
        }

        let properties = if version.is_v5() {
            ConnAckProperties {
                session_expiry_interval: (expiry != requested_expiry).then_some(expiry),
                receive_maximum: Some(self.config.receive_maximum),
                maximum_packet_size: Some(self.config.max_packet_size),
                assigned_client_identifier: assigned,
                topic_alias_maximum: Some(self.config.topic_alias_maximum),
                retain_available: Some(true),
                wildcard_subscription_available: Some(true),
                subscription_identifiers_available: Some(true),
                shared_subscription_available: Some(true),
                server_keep_alive,
                ..Default::default()
            }
        } else {
            ConnAckProperties::default()
        };
        let session_present = session_present && version != ProtocolVersion::V31;
        self.send(
            conn,
            Packet::ConnAck(ConnAck {
                session_present,
                reason: ReasonCode::Success,
                properties,
            }),
            true,
        );
        self.resume(&client_id, conn, now);
    }

    /// Does for a disconnected session what its expiry and will timers would do if they had
    /// already run: ends it when its expiry has passed (publishing a pending will), or
    /// publishes its will when only the will delay has passed.
    fn run_due_session_deadlines(&mut self, client: &ClientId, now: Millis) {
        let Some(s) = self.sessions.get(client) else {
            return;
        };
        let Some(at) = s.disconnected_at.filter(|_| s.conn.is_none()) else {
            return;
        };
        if s.expiry_secs != u32::MAX && at + millis_from_secs(s.expiry_secs) <= now {
            self.expire_session(client, now);
        } else if s
            .will
            .as_ref()
            .is_some_and(|w| at + millis_from_secs(w.delay_secs) <= now)
        {
            self.fire_will(client, now);
        }
    }

    /// A session or will timer still applies: the session exists, is disconnected, and has
    /// not connected or disconnected again since the timer was set.
    fn timer_is_current(&self, client: &ClientId, gen: u64) -> bool {
        self.sessions
            .get(client)
            .is_some_and(|s| s.conn.is_none() && s.gen == gen)
    }

    /// The session's expiry interval has passed: it ends (publishing a pending will).
    fn expire_session(&mut self, client: &ClientId, now: Millis) {
        self.metrics.sessions_expired += 1;
        self.end_session(client, now);
    }

    /// The will delay has passed: the will is published and no longer stored.
    fn fire_will(&mut self, client: &ClientId, now: Millis) {
        let Some(s) = self.sessions.get_mut(client) else {
            return;
        };
        let Some(w) = s.will.take() else {
            return;
        };
        if s.persisted {
            self.ops.push(Op::PutSession(s.record()));
        }
        self.publish_will(client, w, now);
    }

    /// Resends every unacknowledged PUBLISH (DUP, same id) and owed PUBREL in order, then
    /// starts the queue [MQTT-4.4.0-1].
    fn resume(&mut self, client: &ClientId, conn: ConnId, now: Millis) {
        let Some(s) = self.sessions.get(client) else {
            return;
        };
        let mut resend = Vec::new();
        for o in s.outbound.values() {
            match (o.phase, o.packet_id) {
                (OutboundPhase::AwaitingAck, Some(pid)) => {
                    if let Some(m) = &o.msg {
                        let again = (m.clone(), o.qos, o.retain, o.sub_ids.clone());
                        resend.push((o.seq, Some(again), pid));
                    }
                }
                (OutboundPhase::Released, Some(pid)) => resend.push((o.seq, None, pid)),
                _ => {}
            }
        }
        for (seq, msg, pid) in resend {
            match msg {
                Some((m, qos, retain, sub_ids)) => {
                    match self.build_publish(conn, &m, qos, retain, Some(pid), true, sub_ids, now) {
                        Some(p) => {
                            self.metrics.messages_sent += 1;
                            self.send(conn, p, true);
                        }
                        // Too large for this connection: discarded as if delivered
                        // [MQTT-3.1.2-25]. QoS 2 goes on to PUBREL, so a client that did get
                        // it on an earlier connection ends its exchange and frees the id.
                        None if qos == QoS::ExactlyOnce => {
                            self.release(client, seq);
                            self.send(conn, Packet::PubRel(PubAck::new(pid)), true);
                        }
                        None => self.forget_outbound(client, seq),
                    }
                }
                None => self.send(conn, Packet::PubRel(PubAck::new(pid)), true),
            }
        }
        self.pump(client, now);
    }

    // -----------------------------------------------------------------------------------------
    // Inbound PUBLISH

    fn on_publish(&mut self, conn: ConnId, client: &ClientId, mut p: Publish, now: Millis) {
        self.metrics.messages_received += 1;
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        let version = c.version;
        // Topic alias (v5) [MQTT-3.3.2-10] .. [MQTT-3.3.2-12].
        if let Some(alias) = p.properties.topic_alias.take() {
            if alias > self.config.topic_alias_maximum {
                return self.violation(conn, ReasonCode::TopicAliasInvalid, now);
            }
            if p.topic.is_empty() {
                match c.in_aliases.get(&alias) {
                    Some(t) => p.topic = t.clone(),
                    None => return self.violation(conn, ReasonCode::ProtocolError, now),
                }
            } else {
                c.in_aliases.insert(alias, p.topic.clone());
            }
        }
        if !p.properties.subscription_identifiers.is_empty() {
            // [MQTT-3.3.4-6]: a client must not send subscription identifiers.
            return self.violation(conn, ReasonCode::ProtocolError, now);
        }
        if p.topic.levels().count() > self.config.max_topic_levels {
            return self.violation(conn, ReasonCode::TopicNameInvalid, now);
        }
        let allowed = !p.topic.as_str().starts_with("$SYS")
            && self.authorizer.authorize_publish(client, &p.topic);
        let refused = if version.is_v5() {
            ReasonCode::NotAuthorized
        } else {
            // v3 has no negative acknowledgement: acknowledge and drop [MQTT-3.3.5-2].
            ReasonCode::Success
        };
        match (p.qos, p.packet_id) {
            (QoS::AtMostOnce, _) => {
                if allowed {
                    self.route_publish(client, p, now);
                }
            }
            (QoS::AtLeastOnce, Some(pid)) => {
                let reason = if allowed {
                    self.route_publish(client, p, now);
                    ReasonCode::Success
                } else {
                    refused
                };
                let ack = PubAck {
                    packet_id: pid,
                    reason,
                    properties: AckProperties::default(),
                };
                self.send(conn, Packet::PubAck(ack), true);
            }
            (QoS::ExactlyOnce, Some(pid)) => {
                let Some(s) = self.sessions.get_mut(client) else {
                    return;
                };
                if s.inbound.contains(&pid) {
                    // A retransmission: route nothing, acknowledge again.
                    self.send(conn, Packet::PubRec(PubAck::new(pid)), true);
                    return;
                }
                if version.is_v5() && s.inbound.len() >= usize::from(self.config.receive_maximum) {
                    return self.violation(conn, ReasonCode::ReceiveMaximumExceeded, now);
                }
                let reason = if allowed {
                    s.inbound.insert(pid);
                    if s.persisted {
                        self.ops.push(Op::PutInbound {
                            client: client.clone(),
                            packet_id: pid,
                        });
                    }
                    self.route_publish(client, p, now);
                    ReasonCode::Success
                } else {
                    refused
                };
                let ack = PubAck {
                    packet_id: pid,
                    reason,
                    properties: AckProperties::default(),
                };
                self.send(conn, Packet::PubRec(ack), true);
            }
            // The codec guarantees a packet id for QoS > 0.
            (_, None) => self.violation(conn, ReasonCode::ProtocolError, now),
        }
    }

    fn route_publish(&mut self, from: &ClientId, p: Publish, now: Millis) {
        let expires_at = p
            .properties
            .message_expiry_interval
            .map(|s| now + millis_from_secs(s));
        let mut properties = p.properties;
        properties.topic_alias = None;
        properties.message_expiry_interval = None;
        let msg = Arc::new(Message {
            topic: p.topic,
            payload: p.payload,
            qos: p.qos,
            retain: p.retain,
            properties,
            expires_at,
        });
        self.route(Some(from), msg, now);
    }

    /// Retains (if asked) and delivers a message to every matching subscription.
    fn route(&mut self, from: Option<&ClientId>, msg: Arc<Message>, now: Millis) {
        if msg.retain {
            self.retain(&msg);
        }
        let mut hits = std::mem::take(&mut self.hits);
        hits.clear();
        {
            let sessions = &self.sessions;
            let online = |c: &ClientId| sessions.get(c).is_some_and(|s| s.conn.is_some());
            self.tree.route(msg.topic.as_str(), &online, &mut hits);
        }
        // No Local [MQTT-3.8.3-3]: not back to the publisher on such a subscription.
        if let Some(from) = from {
            hits.retain(|h| !(h.entry.options.no_local && &h.client == from));
        }
        // One copy per client (and per shared delivery) at the highest QoS of its matching
        // subscriptions, carrying all their identifiers [MQTT-3.3.4-2] [MQTT-3.3.4-3].
        if hits.len() > 1 {
            hits.sort_by(|a, b| (a.shared, &a.client).cmp(&(b.shared, &b.client)));
        }
        let mut msg_id = None;
        let mut i = 0;
        while i < hits.len() {
            let mut j = i + 1;
            while j < hits.len()
                && hits[j].client == hits[i].client
                && hits[j].shared == hits[i].shared
            {
                j += 1;
            }
            let group = &hits[i..j];
            let qos = group
                .iter()
                .map(|h| h.entry.options.qos)
                .max()
                .unwrap_or_default()
                .min(msg.qos);
            // Retain As Published; otherwise RETAIN is cleared on forwarding [MQTT-3.3.1-12].
            let retain = msg.retain && group.iter().any(|h| h.entry.options.retain_as_published);
            let sub_ids: Vec<u32> = group.iter().filter_map(|h| h.entry.identifier).collect();
            let client = hits[i].client.clone();
            self.deliver(&client, &msg, qos, retain, sub_ids, &mut msg_id, now);
            i = j;
        }
        self.hits = hits;
    }

    fn retain(&mut self, msg: &Arc<Message>) {
        let key = msg.topic.as_bytestring();
        let durable = !msg.topic.as_str().starts_with('$');
        if msg.payload.is_empty() {
            // An empty retained message clears the topic [MQTT-3.3.1-10].
            if self.retained.remove(key).is_some() && durable {
                self.ops.push(Op::DeleteRetained(msg.topic.clone()));
            }
            return;
        }
        if !self.retained.contains_key(key)
            && self.retained.len() >= self.config.retained_max_messages
        {
            self.metrics.dropped_retained_full += 1;
            return;
        }
        self.retained.insert(key.clone(), msg.clone());
        if durable {
            self.ops.push(Op::PutRetained(Message::clone(msg)));
        }
    }

    /// Hands one copy of a message to one session.
    #[allow(clippy::too_many_arguments)]
    fn deliver(
        &mut self,
        client: &ClientId,
        msg: &Arc<Message>,
        qos: QoS,
        retain: bool,
        sub_ids: Vec<u32>,
        msg_id: &mut Option<MsgId>,
        now: Millis,
    ) {
        let Some(s) = self.sessions.get_mut(client) else {
            return;
        };
        if qos == QoS::AtMostOnce {
            // QoS 0 goes to connected clients only; it is not queued for offline sessions.
            if let Some(conn) = s.conn {
                if let Some(p) =
                    self.build_publish(conn, msg, qos, retain, None, false, sub_ids, now)
                {
                    self.metrics.messages_sent += 1;
                    self.send(conn, p, false);
                }
            }
            return;
        }
        if s.queued >= self.config.queue_max_messages
            || s.queued_bytes + msg.payload.len() > self.config.queue_max_bytes
        {
            // Drop the newest message for this session; nothing in flight is touched.
            self.metrics.dropped_queue_full += 1;
            return;
        }
        let window = s
            .conn
            .and_then(|c| self.conns.get(&c))
            .map_or(0, |c| c.send_window);
        let send_now = s.conn.is_some() && s.queued == 0 && s.inflight < window;
        // A message that goes out at once is built first: one the client cannot take (larger
        // than its Maximum Packet Size, expired) is discarded as if delivered [MQTT-3.1.2-25]
        // before any record of it exists. (A record put and deleted in this batch would drop
        // the shared body from the store while later records of the batch still name it.)
        let mut now_out = None;
        if let (true, Some(conn)) = (send_now, s.conn) {
            let pid = s.alloc_pid();
            let p = self.build_publish(
                conn,
                msg,
                qos,
                retain,
                Some(pid),
                false,
                sub_ids.clone(),
                now,
            );
            match p {
                Some(p) => now_out = Some((conn, pid, p)),
                None => return,
            }
        }
        let Some(s) = self.sessions.get_mut(client) else {
            return;
        };
        let seq = s.next_seq;
        s.next_seq += 1;
        let mut o = Outbound {
            seq,
            msg: Some(msg.clone()),
            msg_id: None,
            qos,
            packet_id: None,
            phase: OutboundPhase::Queued,
            retain,
            sub_ids,
        };
        if let Some((_, pid, _)) = &now_out {
            o.packet_id = Some(*pid);
            o.phase = OutboundPhase::AwaitingAck;
            s.by_pid.insert(*pid, seq);
            s.inflight += 1;
            s.first_queued = seq + 1;
        } else {
            s.queued += 1;
            s.queued_bytes += msg.payload.len();
        }
        if s.persisted {
            let id = *msg_id.get_or_insert_with(|| {
                let id = self.next_msg_id;
                self.next_msg_id += 1;
                self.ops.push(Op::PutMessage {
                    id,
                    message: Message::clone(msg),
                });
                id
            });
            o.msg_id = Some(id);
            self.ops.push(Op::PutOutbound {
                client: client.clone(),
                record: o.record(),
            });
        }
        s.outbound.insert(seq, o);
        if let Some((conn, _, p)) = now_out {
            self.metrics.messages_sent += 1;
            self.send(conn, p, true);
        }
    }

    /// Sends a freshly assigned outbound PUBLISH, or drops it if it cannot be sent (too large
    /// for the client, expired) as if delivered [MQTT-3.1.2-25].
    #[allow(clippy::too_many_arguments)]
    fn send_outbound(
        &mut self,
        client: &ClientId,
        conn: ConnId,
        seq: u64,
        msg: &Arc<Message>,
        qos: QoS,
        retain: bool,
        pid: Option<PacketId>,
        sub_ids: Vec<u32>,
        now: Millis,
    ) {
        match self.build_publish(conn, msg, qos, retain, pid, false, sub_ids, now) {
            Some(p) => {
                self.metrics.messages_sent += 1;
                self.send(conn, p, true);
            }
            None => self.forget_outbound(client, seq),
        }
    }

    fn forget_outbound(&mut self, client: &ClientId, seq: u64) {
        let Some(s) = self.sessions.get_mut(client) else {
            return;
        };
        let Some(o) = s.outbound.remove(&seq) else {
            return;
        };
        if let Some(pid) = o.packet_id {
            s.by_pid.remove(&pid);
            s.inflight -= 1;
        } else {
            s.queued -= 1;
            s.queued_bytes -= o.payload_len();
        }
        if s.persisted {
            self.ops.push(Op::DeleteOutbound {
                client: client.clone(),
                seq,
            });
        }
    }

    /// Builds the PUBLISH for one connection: v5 properties (remaining expiry, subscription
    /// identifiers, topic alias) or none for v3. `None` when the message has expired or is
    /// larger than the client's Maximum Packet Size (counted).
    #[allow(clippy::too_many_arguments)]
    fn build_publish(
        &mut self,
        conn: ConnId,
        msg: &Message,
        qos: QoS,
        retain: bool,
        packet_id: Option<PacketId>,
        dup: bool,
        sub_ids: Vec<u32>,
        now: Millis,
    ) -> Option<Packet> {
        let c = self.conns.get_mut(&conn)?;
        let remaining = match msg.expires_at {
            Some(at) if at <= now && !dup => {
                self.metrics.dropped_expired += 1;
                return None;
            }
            // The remaining lifetime is forwarded, rounded up [MQTT-3.3.2-6].
            Some(at) => Some((at.saturating_sub(now).div_ceil(1000)).max(1) as u32),
            None => None,
        };
        let mut p = Publish {
            dup,
            qos,
            retain,
            topic: msg.topic.clone(),
            packet_id,
            properties: PublishProperties::default(),
            payload: msg.payload.clone(),
        };
        let mut new_alias = false;
        if c.version.is_v5() {
            p.properties = msg.properties.clone();
            p.properties.message_expiry_interval = remaining;
            p.properties.subscription_identifiers = sub_ids;
            if c.send_alias_max > 0 {
                if let Some(a) = c.out_aliases.get(msg.topic.as_bytestring()) {
                    p.properties.topic_alias = Some(*a);
                    p.topic = TopicName::empty();
                } else if c.out_aliases.len() < usize::from(c.send_alias_max) {
                    let a = c.out_aliases.len() as u16 + 1;
                    c.out_aliases.insert(msg.topic.as_bytestring().clone(), a);
                    p.properties.topic_alias = Some(a);
                    new_alias = true;
                }
            }
        }
        let packet = Packet::Publish(p);
        if let Some(max) = c.send_max_packet {
            if encoded_len(&packet, c.version).map_or(true, |n| n > max) {
                // Not sent, so the client never learns an alias set up by this packet.
                if new_alias {
                    c.out_aliases.remove(msg.topic.as_bytestring());
                }
                self.metrics.dropped_too_large += 1;
                return None;
            }
        }
        Some(packet)
    }

    /// Moves queued messages into flight while the client's window allows.
    fn pump(&mut self, client: &ClientId, now: Millis) {
        loop {
            let Some(s) = self.sessions.get_mut(client) else {
                return;
            };
            let Some(conn) = s.conn else { return };
            let window = self.conns.get(&conn).map_or(0, |c| c.send_window);
            if s.queued == 0 || s.inflight >= window {
                return;
            }
            let Some((&seq, _)) = s
                .outbound
                .range(s.first_queued..)
                .find(|(_, o)| o.phase == OutboundPhase::Queued)
            else {
                return;
            };
            s.first_queued = seq + 1;
            let Some(o) = s.outbound.get_mut(&seq) else {
                return;
            };
            let Some(msg) = o.msg.clone() else { return };
            s.queued -= 1;
            s.queued_bytes -= msg.payload.len();
            if msg.expires_at.is_some_and(|at| at <= now) {
                // Expired while queued: never sent [MQTT-3.3.2-5].
                s.outbound.remove(&seq);
                self.metrics.dropped_expired += 1;
                if s.persisted {
                    self.ops.push(Op::DeleteOutbound {
                        client: client.clone(),
                        seq,
                    });
                }
                continue;
            }
            let pid = s.alloc_pid();
            let Some(o) = s.outbound.get_mut(&seq) else {
                return;
            };
            o.packet_id = Some(pid);
            o.phase = OutboundPhase::AwaitingAck;
            let (qos, retain, sub_ids) = (o.qos, o.retain, o.sub_ids.clone());
            if s.persisted {
                self.ops.push(Op::PutOutbound {
                    client: client.clone(),
                    record: o.record(),
                });
            }
            s.by_pid.insert(pid, seq);
            s.inflight += 1;
            self.send_outbound(
                client,
                conn,
                seq,
                &msg,
                qos,
                retain,
                Some(pid),
                sub_ids,
                now,
            );
        }
    }

    // -----------------------------------------------------------------------------------------
    // Acknowledgements from the client

    fn outbound_seq(&self, client: &ClientId, pid: PacketId) -> Option<u64> {
        self.sessions.get(client)?.by_pid.get(&pid).copied()
    }

    fn on_puback(&mut self, _conn: ConnId, client: &ClientId, pid: PacketId, now: Millis) {
        let Some(seq) = self.outbound_seq(client, pid) else {
            return;
        };
        let matches = self
            .sessions
            .get(client)
            .and_then(|s| s.outbound.get(&seq))
            .is_some_and(|o| o.qos == QoS::AtLeastOnce && o.phase == OutboundPhase::AwaitingAck);
        if matches {
            self.forget_outbound(client, seq);
            self.pump(client, now);
        }
    }

    fn on_pubrec(&mut self, conn: ConnId, client: &ClientId, a: PubAck, now: Millis) {
        let version = self
            .conns
            .get(&conn)
            .map_or(ProtocolVersion::V311, |c| c.version);
        let Some(seq) = self.outbound_seq(client, a.packet_id) else {
            // Unknown id: answer so the client can finish (v5: 0x92).
            let mut rel = PubAck::new(a.packet_id);
            if version.is_v5() {
                rel.reason = ReasonCode::PacketIdentifierNotFound;
            }
            return self.send(conn, Packet::PubRel(rel), true);
        };
        if a.reason.is_error() {
            // The client refused the message (PUBREC reason 0x80 or above): the exchange ends
            // here, no PUBREL follows (v5 §4.3.3, §3.5.2.1).
            self.forget_outbound(client, seq);
            return self.pump(client, now);
        }
        let is_qos2 = self
            .sessions
            .get(client)
            .and_then(|s| s.outbound.get(&seq))
            .is_some_and(|o| o.qos == QoS::ExactlyOnce);
        if !is_qos2 {
            return;
        }
        self.release(client, seq);
        self.send(conn, Packet::PubRel(PubAck::new(a.packet_id)), true);
    }

    /// Moves a QoS 2 record from AwaitingAck to Released (durably); the caller sends PUBREL.
    fn release(&mut self, client: &ClientId, seq: u64) {
        let Some(s) = self.sessions.get_mut(client) else {
            return;
        };
        let Some(o) = s.outbound.get_mut(&seq) else {
            return;
        };
        if o.phase == OutboundPhase::AwaitingAck {
            o.phase = OutboundPhase::Released;
            // The body is no longer needed: only the packet id is owed a PUBREL.
            o.msg = None;
            if s.persisted {
                self.ops.push(Op::PutOutbound {
                    client: client.clone(),
                    record: o.record(),
                });
            }
        }
    }

    fn on_pubcomp(&mut self, _conn: ConnId, client: &ClientId, pid: PacketId, now: Millis) {
        let Some(seq) = self.outbound_seq(client, pid) else {
            return;
        };
        let released = self
            .sessions
            .get(client)
            .and_then(|s| s.outbound.get(&seq))
            .is_some_and(|o| o.phase == OutboundPhase::Released);
        if released {
            self.forget_outbound(client, seq);
            self.pump(client, now);
        }
    }

    fn on_pubrel(&mut self, conn: ConnId, client: &ClientId, pid: PacketId) {
        let version = self
            .conns
            .get(&conn)
            .map_or(ProtocolVersion::V311, |c| c.version);
        let Some(s) = self.sessions.get_mut(client) else {
            return;
        };
        let mut comp = PubAck::new(pid);
        if s.inbound.remove(&pid) {
            if s.persisted {
                self.ops.push(Op::DeleteInbound {
                    client: client.clone(),
                    packet_id: pid,
                });
            }
        } else if version.is_v5() {
            comp.reason = ReasonCode::PacketIdentifierNotFound;
        }
        self.send(conn, Packet::PubComp(comp), true);
    }

    // -----------------------------------------------------------------------------------------
    // SUBSCRIBE / UNSUBSCRIBE

    fn on_subscribe(&mut self, conn: ConnId, client: &ClientId, sub: Subscribe, now: Millis) {
        let mut reasons = Vec::with_capacity(sub.filters.len());
        let mut retained_for = Vec::new();
        for (filter, opts) in sub.filters {
            let Some(s) = self.sessions.get_mut(client) else {
                return;
            };
            let exists = s.subs.contains_key(filter.as_bytestring());
            let reason = if filter.levels().count() > self.config.max_topic_levels {
                ReasonCode::TopicFilterInvalid
            } else if !self.authorizer.authorize_subscribe(client, &filter) {
                ReasonCode::NotAuthorized
            } else if !exists && s.subs.len() >= self.config.max_subscriptions_per_client {
                ReasonCode::QuotaExceeded
            } else {
                ReasonCode::granted(opts.qos)
            };
            reasons.push(reason);
            if reason.is_error() {
                continue;
            }
            let record = SubscriptionRecord {
                filter: filter.clone(),
                options: opts,
                identifier: sub.properties.subscription_identifier,
            };
            // A subscription to an existing filter replaces it [MQTT-3.8.4-3].
            s.subs
                .insert(filter.as_bytestring().clone(), record.clone());
            if s.persisted {
                self.ops.push(Op::PutSubscription {
                    client: client.clone(),
                    sub: record,
                });
            }
            self.tree.insert(
                &filter,
                client,
                SubEntry {
                    options: opts,
                    identifier: sub.properties.subscription_identifier,
                },
            );
            // Retained messages: per Retain Handling, never for shared subscriptions.
            let send_retained = !filter.is_shared()
                && match opts.retain_handling {
                    RetainHandling::SendAtSubscribe => true,
                    RetainHandling::SendIfNew => !exists,
                    RetainHandling::DoNotSend => false,
                };
            if send_retained {
                retained_for.push((filter, opts.qos, sub.properties.subscription_identifier));
            }
        }
        self.send(
            conn,
            Packet::SubAck(SubAck {
                packet_id: sub.packet_id,
                reasons,
                properties: AckProperties::default(),
            }),
            true,
        );
        for (filter, qos, id) in retained_for {
            let matching: Vec<Arc<Message>> = if filter.has_wildcards() {
                self.retained
                    .values()
                    .filter(|m| filter.matches(&m.topic))
                    .cloned()
                    .collect()
            } else {
                self.retained
                    .get(filter.filter())
                    .cloned()
                    .into_iter()
                    .collect()
            };
            for m in matching {
                let mut msg_id = None;
                // Retained messages are sent with RETAIN set [MQTT-3.3.1-8].
                self.deliver(
                    client,
                    &m,
                    qos.min(m.qos),
                    true,
                    id.into_iter().collect(),
                    &mut msg_id,
                    now,
                );
            }
        }
    }

    fn on_unsubscribe(&mut self, conn: ConnId, client: &ClientId, u: Unsubscribe) {
        let version = self
            .conns
            .get(&conn)
            .map_or(ProtocolVersion::V311, |c| c.version);
        let mut reasons = Vec::with_capacity(u.filters.len());
        for filter in u.filters {
            let Some(s) = self.sessions.get_mut(client) else {
                return;
            };
            let existed = s.subs.remove(filter.as_bytestring()).is_some();
            if existed {
                self.tree.remove(&filter, client);
                if s.persisted {
                    self.ops.push(Op::DeleteSubscription {
                        client: client.clone(),
                        filter,
                    });
                }
            }
            reasons.push(if existed {
                ReasonCode::Success
            } else {
                ReasonCode::NoSubscriptionExisted
            });
        }
        if !version.is_v5() {
            reasons.clear();
        }
        self.send(
            conn,
            Packet::UnsubAck(UnsubAck {
                packet_id: u.packet_id,
                reasons,
                properties: AckProperties::default(),
            }),
            true,
        );
    }

    // -----------------------------------------------------------------------------------------
    // DISCONNECT, sessions, wills

    fn on_disconnect(&mut self, conn: ConnId, client: &ClientId, d: Disconnect, now: Millis) {
        let connect_expiry = self.conns.get(&conn).map_or(0, |c| c.connect_expiry);
        if let Some(new_expiry) = d.properties.session_expiry_interval {
            if connect_expiry == 0 && new_expiry != 0 {
                // [MQTT-3.14.2-2]
                return self.violation(conn, ReasonCode::ProtocolError, now);
            }
            if let Some(s) = self.sessions.get_mut(client) {
                s.expiry_secs = new_expiry.min(self.config.session_expiry_max_secs);
                if s.expiry_secs == 0 && s.persisted {
                    s.persisted = false;
                    self.ops.push(Op::DeleteSession(client.clone()));
                }
            }
        }
        // A normal DISCONNECT discards the will, unless v5 reason 0x04 [MQTT-3.14.4-3].
        if d.reason != ReasonCode::DisconnectWithWillMessage {
            if let Some(s) = self.sessions.get_mut(client) {
                s.will = None;
            }
        }
        // With 0x04 the will goes out as after an abnormal close (after its delay).
        let publish_will = d.reason == ReasonCode::DisconnectWithWillMessage;
        self.drop_conn(conn, now, publish_will);
    }

    /// A protocol violation by the client: counted, then [`Broker::kick`].
    fn violation(&mut self, conn: ConnId, reason: ReasonCode, now: Millis) {
        self.metrics.protocol_errors += 1;
        self.kick(conn, reason, now);
    }

    /// Sends v5 DISCONNECT with `reason` (v3: nothing) and closes: a server-side end of the
    /// connection, so the will is published.
    fn kick(&mut self, conn: ConnId, reason: ReasonCode, now: Millis) {
        if let Some(c) = self.conns.get(&conn) {
            if c.version.is_v5() && matches!(c.state, ConnState::Connected(_)) {
                let packet = Packet::Disconnect(Disconnect {
                    reason,
                    properties: DisconnectProperties::default(),
                });
                let version = c.version;
                self.send_as(conn, version, packet);
            }
        }
        self.drop_conn(conn, now, true);
    }

    /// Forgets a connection and detaches its session. With `abnormal`, the will is
    /// published (after its delay).
    fn drop_conn(&mut self, conn: ConnId, now: Millis, abnormal: bool) {
        self.emit(conn, Action::Close { conn }, false);
        let Some(c) = self.conns.remove(&conn) else {
            return;
        };
        let ConnState::Connected(client) = c.state else {
            return;
        };
        self.metrics.clients_connected = self.metrics.clients_connected.saturating_sub(1);
        let Some(s) = self.sessions.get_mut(&client) else {
            return;
        };
        if s.conn != Some(conn) {
            return;
        }
        s.conn = None;
        s.disconnected_at = Some(now);
        s.gen += 1;
        if !abnormal {
            s.will = None;
        }
        if s.expiry_secs == 0 {
            return self.end_session(&client, now);
        }
        let gen = s.gen;
        let mut will_now = None;
        if let Some(w) = &s.will {
            if w.delay_secs == 0 {
                will_now = s.will.take();
            } else {
                self.timers.push(Reverse((
                    now + millis_from_secs(w.delay_secs),
                    Timer::Will(client.clone(), gen),
                )));
            }
        }
        if s.expiry_secs != u32::MAX {
            self.timers.push(Reverse((
                now + millis_from_secs(s.expiry_secs),
                Timer::SessionExpiry(client.clone(), gen),
            )));
        }
        if s.persisted {
            self.ops.push(Op::PutSession(s.record()));
        }
        if let Some(w) = will_now {
            self.publish_will(&client, w, now);
        }
    }

    /// Ends a session: its subscriptions and queues go, and a pending will is published
    /// (the session's end comes before its will delay) [MQTT-3.1.2-8].
    fn end_session(&mut self, client: &ClientId, now: Millis) {
        let Some(s) = self.sessions.remove(client) else {
            return;
        };
        for sub in s.subs.values() {
            self.tree.remove(&sub.filter, client);
        }
        if s.persisted {
            self.ops.push(Op::DeleteSession(client.clone()));
        }
        self.metrics.sessions = self.sessions.len() as u64;
        if let Some(w) = s.will {
            self.publish_will(client, w, now);
        }
    }

    fn publish_will(&mut self, client: &ClientId, w: WillRecord, now: Millis) {
        let mut m = w.message;
        m.expires_at = m
            .properties
            .message_expiry_interval
            .map(|s| now + millis_from_secs(s));
        m.properties.message_expiry_interval = None;
        self.route(Some(client), Arc::new(m), now);
    }

    fn publish_sys(&mut self, now: Millis) {
        let m = &self.metrics;
        let uptime = now.saturating_sub(self.started_at) / 1000;
        let stats: [(&str, String); 12] = [
            ("version", format!("quartet {}", env!("CARGO_PKG_VERSION"))),
            ("uptime", format!("{uptime} seconds")),
            ("clients/connected", m.clients_connected.to_string()),
            ("clients/total", m.sessions.to_string()),
            ("messages/received", m.messages_received.to_string()),
            ("messages/sent", m.messages_sent.to_string()),
            (
                "messages/dropped",
                (m.dropped_queue_full
                    + m.dropped_too_large
                    + m.dropped_expired
                    + m.dropped_slow_qos0)
                    .to_string(),
            ),
            ("subscriptions/count", self.tree.len().to_string()),
            ("retained messages/count", self.retained.len().to_string()),
            ("bytes/received", m.bytes_received.to_string()),
            ("bytes/sent", m.bytes_sent.to_string()),
            ("sessions/expired", m.sessions_expired.to_string()),
        ];
        for (name, value) in stats {
            let Ok(topic) = TopicName::new(format!("$SYS/broker/{name}")) else {
                continue;
            };
            let msg = Arc::new(Message {
                topic,
                payload: bytes::Bytes::from(value),
                qos: QoS::AtMostOnce,
                retain: true,
                properties: PublishProperties::default(),
                expires_at: None,
            });
            self.route(None, msg, now);
        }
    }

    // -----------------------------------------------------------------------------------------
    // Output ordering and durability gates

    fn send(&mut self, conn: ConnId, packet: Packet, gated: bool) {
        let Some(c) = self.conns.get(&conn) else {
            return;
        };
        let version = c.version;
        let mut packet = packet;
        if !version.is_v5() {
            packet.strip_v5();
        }
        self.emit(
            conn,
            Action::Send {
                conn,
                version,
                packet,
            },
            gated,
        );
    }

    /// Sends a packet encoded for `version`, which the connection may not have agreed yet
    /// (a CONNACK refusing its CONNECT, a DISCONNECT as it is closed): not gated.
    fn send_as(&mut self, conn: ConnId, version: ProtocolVersion, packet: Packet) {
        self.emit(
            conn,
            Action::Send {
                conn,
                version,
                packet,
            },
            false,
        );
    }

    /// Queues an action for `conn`: behind the connection's gate if it has one, or if
    /// `gated`; straight out otherwise.
    fn emit(&mut self, conn: ConnId, action: Action, gated: bool) {
        let behind = match self.conns.get_mut(&conn) {
            Some(c) => {
                let behind = gated || c.gate.is_some() || c.gated_in_step;
                if behind {
                    c.gated_in_step = true;
                }
                behind
            }
            None => false,
        };
        if behind {
            self.step_gated.push(action);
        } else {
            self.out.push_back(action);
        }
    }

    /// Ends a step: its ops become one batch, and its gated packets wait for that batch (or
    /// for the latest outstanding one).
    fn finish_step(&mut self) {
        let token = if !self.ops.is_empty() {
            let token = Token(self.next_token);
            self.next_token += 1;
            let batch = Batch {
                ops: std::mem::take(&mut self.ops),
            };
            self.metrics.persist_batches += 1;
            self.out.push_back(Action::Persist { token, batch });
            self.pending.push_back((token, Vec::new()));
            Some(token)
        } else {
            self.pending.back().map(|(t, _)| *t)
        };
        let gated = std::mem::take(&mut self.step_gated);
        match token {
            Some(token) => {
                for a in &gated {
                    if let Action::Send { conn, .. } | Action::Close { conn } = a {
                        if let Some(c) = self.conns.get_mut(conn) {
                            c.gate = Some(token);
                            c.gated_in_step = false;
                        }
                    }
                }
                if let Some((_, list)) = self.pending.back_mut() {
                    list.extend(gated);
                }
            }
            None => {
                for a in gated {
                    if let Action::Send { conn, .. } | Action::Close { conn } = &a {
                        if let Some(c) = self.conns.get_mut(conn) {
                            c.gated_in_step = false;
                        }
                    }
                    self.out.push_back(a);
                }
            }
        }
    }
}

#[cfg(test)]
mod deadline_tests {
    //! Deadlines that passed while nobody ran their timer: right after a restart the driver
    //! may hand the core a CONNECT before its first `handle_timeout` (found by the kill -9
    //! tests of `crates/cli/tests/crash.rs`).
    use super::*;

    fn session(id: &str, expiry: u32, disconnected_at: Millis, will: Option<WillRecord>) -> Op {
        Op::PutSession(SessionRecord {
            client_id: ClientId::new(id.to_owned()),
            expiry_interval_secs: expiry,
            protocol: ProtocolVersion::V5,
            disconnected_at: Some(disconnected_at),
            will,
        })
    }

    /// Opens a connection, sends CONNECT (Clean Start 0) and returns Session Present.
    fn resume(b: &mut Broker, conn: u64, id: &str, expiry: u32, now: Millis) -> bool {
        let conn = ConnId(conn);
        b.handle_open(conn, now);
        let mut connect = Connect {
            protocol: ProtocolVersion::V5,
            clean_start: false,
            keep_alive: 0,
            client_id: ClientId::new(id.to_owned()),
            will: None,
            username: None,
            password: None,
            properties: ConnectProperties::default(),
        };
        connect.properties.session_expiry_interval = Some(expiry);
        b.handle_packet(conn, Packet::Connect(Box::new(connect)), now);
        let mut present = None;
        while let Some(a) = b.poll_action() {
            match a {
                Action::Persist { token, .. } => b.handle_persisted(token),
                Action::Send {
                    conn: c,
                    packet: Packet::ConnAck(ack),
                    ..
                } if c == conn => present = Some(ack.session_present),
                _ => {}
            }
        }
        present.expect("CONNACK")
    }

    #[test]
    fn expired_session_is_not_resumed_before_its_timer_runs() {
        let mut state = State::default();
        state.apply(&session("short", 2, 1_000, None)).unwrap();
        state.apply(&session("long", 3600, 1_000, None)).unwrap();
        let mut b = Broker::new(Config::default(), state, 10_000);
        assert!(!resume(&mut b, 1, "short", 2, 10_000));
        assert!(resume(&mut b, 2, "long", 3600, 10_000));
    }

    #[test]
    fn will_whose_delay_passed_is_published_before_resuming() {
        let will = WillRecord {
            delay_secs: 2,
            message: Message {
                topic: TopicName::new("will/w").unwrap(),
                payload: bytes::Bytes::from_static(b"gone"),
                qos: QoS::AtLeastOnce,
                retain: false,
                properties: PublishProperties::default(),
                expires_at: None,
            },
        };
        let mut state = State::default();
        state.apply(&session("w", 3600, 1_000, Some(will))).unwrap();
        state.apply(&session("sub", u32::MAX, 1_000, None)).unwrap();
        state
            .apply(&Op::PutSubscription {
                client: ClientId::new("sub".to_owned()),
                sub: SubscriptionRecord {
                    filter: TopicFilter::new("will/#").unwrap(),
                    options: SubscriptionOptions {
                        qos: QoS::AtLeastOnce,
                        ..SubscriptionOptions::default()
                    },
                    identifier: None,
                },
            })
            .unwrap();
        let mut b = Broker::new(Config::default(), state, 10_000);
        assert!(resume(&mut b, 1, "w", 3600, 10_000));
        let sub = ClientId::new("sub".to_owned());
        assert_eq!(b.session_queue(&sub), Some((1, 0)), "the will was queued");
    }
}
