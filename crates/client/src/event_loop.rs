//! The background task: one connection at a time, the session state, the journal.
//!
//! # The exchanges it runs
//! ```text
//! Outgoing (this client → broker)          Incoming (broker → this client)
//!
//! QoS 1  journal OutAdd(seq, pid, msg)      QoS 1  PUBLISH(pid) ──▶ journal InRecv(pid, rseq)
//!        PUBLISH(pid) ──▶                          deliver(id = client/rseq) ... app acks
//!        ◀── PUBACK(pid)                           journal InDone(pid); PUBACK(pid) ──▶
//!        journal OutDone(pid)
//!                                           QoS 2  PUBLISH(pid) ──▶ journal InRecv(pid, rseq)
//! QoS 2  journal OutAdd(seq, pid, msg)             deliver(id = client/rseq) ... app acks
//!        PUBLISH(pid) ──▶                          PUBREC(pid) ──▶
//!        ◀── PUBREC(pid)                           ◀── PUBREL(pid)
//!        journal OutReleased(pid)                  journal InDone(pid); PUBCOMP(pid) ──▶
//!        PUBREL(pid) ──▶
//!        ◀── PUBCOMP(pid)
//!        journal OutDone(pid)
//! ```
//! "journal X; then Y" means Y leaves the process only after X is durable: every turn of the
//! loop appends its records, commits them with one fsync ([`Journal::commit`]), and only then
//! writes the socket, hands messages to the application and resolves futures.
//!
//! A PUBLISH whose packet id is in the inbound set is a retransmission of a message already
//! delivered: it is not delivered again in this process; it is answered with PUBACK/PUBREC
//! again if the application has acknowledged it, and otherwise waits for that. After a
//! restart the set is read back from the journal; a retransmitted message that the
//! application had not acknowledged is delivered once more, with the same identity and
//! `redelivered = true`.
//!
//! On reconnect with Session Present = 1, unacknowledged PUBLISH packets are resent with
//! DUP = 1 and their packet ids, and PUBREL for released ones, in their original order, before
//! new messages [MQTT-4.4.0-1]. With Session Present = 0 the broker has forgotten the session:
//! released messages are complete (the broker took them over with PUBREC), the others are sent
//! again as new messages, the inbound set is cleared and the subscriptions made through this
//! client are made again.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use quartet_proto::{
    decode, encode, encoded_len, ConnAck, Connect, ConnectProperties, Disconnect, Limits, Packet,
    PacketId, ProtocolVersion, PubAck, Publish, QoS, ReasonCode, Subscribe, SubscribeProperties,
    SubscriptionOptions, TopicFilter, TopicName, Unsubscribe, UserProperty, Will, MAX_PACKET_SIZE,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot, watch, OwnedSemaphorePermit};
use tokio::time::Instant;

use crate::client::{
    Accepted, AckHandle, Command, Delivery, Message, MessageId, PublishAck, Status,
};
use crate::error::ClientError;
use crate::journal::{Journal, Record};
use crate::options::{topic_name, ConnectOptions};
use crate::trace::{Direction, TraceEvent};

type Done = oneshot::Sender<Result<PublishAck, ClientError>>;
type CtrlDone = oneshot::Sender<Result<Vec<ReasonCode>, ClientError>>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OutState {
    /// Waiting to be sent on this connection.
    Unsent,
    /// PUBLISH sent, PUBACK/PUBREC awaited.
    Sent,
    /// PUBREC received (journaled): PUBREL sent or owed, PUBCOMP awaited.
    Released,
}

#[derive(Debug)]
struct Out {
    publish: Publish,
    seq: Option<u64>,
    state: OutState,
    /// Set once the PUBLISH may have reached the broker: later sends carry DUP = 1.
    dup: bool,
    done: Option<Done>,
    /// A place in the bounded queue, given back when the entry goes.
    _permit: Option<OwnedSemaphorePermit>,
}

#[derive(Debug)]
enum CtrlKind {
    Sub {
        filters: Vec<(TopicFilter, SubscriptionOptions)>,
        properties: SubscribeProperties,
        done: Option<CtrlDone>,
    },
    Unsub {
        filters: Vec<TopicFilter>,
        properties: Vec<UserProperty>,
        done: Option<CtrlDone>,
    },
}

#[derive(Debug)]
struct Ctrl {
    kind: CtrlKind,
    pid: Option<u16>,
}

#[derive(Debug, Clone, Copy)]
struct In {
    qos: QoS,
    rseq: u64,
    /// The application acknowledged it (QoS 2: PUBREC sent or owed).
    acked: bool,
    /// Handed to the application by this process.
    delivered_here: bool,
}

/// What the broker said about itself in the last CONNACK.
#[derive(Debug, Clone, Copy)]
struct BrokerLimits {
    max_qos: QoS,
    retain_available: bool,
    max_packet_size: usize,
    receive_maximum: usize,
    topic_alias_maximum: u16,
}

impl Default for BrokerLimits {
    fn default() -> Self {
        BrokerLimits {
            max_qos: QoS::ExactlyOnce,
            retain_available: true,
            max_packet_size: MAX_PACKET_SIZE,
            receive_maximum: usize::from(u16::MAX),
            topic_alias_maximum: 0,
        }
    }
}

#[derive(Debug)]
struct Conn {
    reader: OwnedReadHalf,
    writer: OwnedWriteHalf,
    rbuf: BytesMut,
    wbuf: BytesMut,
    keep_alive: Option<Duration>,
    last_sent: Instant,
    ping_sent: Option<Instant>,
    aliases_out: HashMap<String, u16>,
    aliases_in: HashMap<u16, TopicName>,
}

#[derive(Debug, PartialEq, Eq)]
enum Flow {
    Continue,
    Stop,
}

#[derive(Debug)]
pub(crate) struct EventLoop {
    opts: ConnectOptions,
    version: ProtocolVersion,
    client_id: Arc<str>,
    started: std::time::Instant,
    /// Weak, so that the loop ends when the application has dropped every handle.
    cmd_tx: mpsc::WeakUnboundedSender<Command>,
    deliver_tx: mpsc::Sender<Delivery>,
    shared_pub_seq: Arc<AtomicU64>,
    status_tx: watch::Sender<Status>,
    journal: Option<Journal>,
    limits: Limits,

    out: BTreeMap<u64, Out>,
    out_pids: HashMap<u16, u64>,
    unsent: BTreeSet<u64>,
    next_order: u64,
    next_pub_seq: u64,
    inflight: usize,
    next_pid: u16,

    ctrl: BTreeMap<u64, Ctrl>,
    ctrl_pids: HashMap<u16, u64>,
    subs: BTreeMap<TopicFilter, SubscriptionOptions>,

    inbound: HashMap<u16, In>,
    next_recv_seq: u64,
    epoch: u64,

    accepted: Vec<(oneshot::Sender<Accepted>, Accepted)>,
    staged: Vec<Delivery>,
    deliveries: VecDeque<Delivery>,
    resolutions: Vec<(Done, Result<PublishAck, ClientError>)>,

    conn: Option<Conn>,
    broker: BrokerLimits,
    connects: u64,
    attempt: u32,
    rng: u64,
    last_error: Option<ClientError>,
    /// Dropped last, after the journal (and so its lock on the state directory): the
    /// client's `disconnect` and `crash` wait for it, so the directory can be reopened at once.
    _released: watch::Sender<()>,
}

impl EventLoop {
    pub(crate) fn new(
        opts: ConnectOptions,
        cmd_tx: mpsc::WeakUnboundedSender<Command>,
        deliver_tx: mpsc::Sender<Delivery>,
        shared_pub_seq: Arc<AtomicU64>,
        status_tx: watch::Sender<Status>,
        released: watch::Sender<()>,
    ) -> Result<EventLoop, ClientError> {
        let (journal, durable) = match &opts.state_dir {
            Some(dir) => {
                let (j, d) = Journal::open(dir, opts.sync)?;
                (Some(j), d)
            }
            None => (None, Default::default()),
        };
        let mut rng = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1)
            ^ (u64::from(std::process::id()) << 32);
        rng |= 1;
        let limits = Limits {
            max_packet_size: opts.max_packet_size.map_or(MAX_PACKET_SIZE, |m| m as usize),
        };
        let mut el = EventLoop {
            version: opts.version,
            client_id: Arc::from(opts.client_id.as_str()),
            started: std::time::Instant::now(),
            cmd_tx,
            deliver_tx,
            shared_pub_seq,
            status_tx,
            journal,
            limits,
            out: BTreeMap::new(),
            out_pids: HashMap::new(),
            unsent: BTreeSet::new(),
            next_order: 0,
            next_pub_seq: durable.next_pub_seq,
            inflight: 0,
            next_pid: 0,
            ctrl: BTreeMap::new(),
            ctrl_pids: HashMap::new(),
            subs: BTreeMap::new(),
            inbound: HashMap::new(),
            next_recv_seq: durable.next_recv_seq,
            epoch: 0,
            accepted: Vec::new(),
            staged: Vec::new(),
            deliveries: VecDeque::new(),
            resolutions: Vec::new(),
            conn: None,
            broker: BrokerLimits::default(),
            connects: 0,
            attempt: 0,
            rng,
            last_error: None,
            _released: released,
            opts,
        };
        for (seq, o) in durable.out {
            let Some(pid) = o.publish.packet_id else {
                continue;
            };
            let order = el.next_order;
            el.next_order += 1;
            el.out_pids.insert(pid.get(), order);
            el.next_pid = el.next_pid.max(pid.get());
            let state = if o.released {
                OutState::Released
            } else {
                el.unsent.insert(order);
                OutState::Unsent
            };
            el.out.insert(
                order,
                Out {
                    publish: o.publish,
                    seq: Some(seq),
                    state,
                    dup: true,
                    done: None,
                    _permit: None,
                },
            );
        }
        for (pid, s) in durable.inbound {
            el.inbound.insert(
                pid,
                In {
                    qos: s.qos,
                    rseq: s.rseq,
                    acked: false,
                    delivered_here: false,
                },
            );
        }
        el.shared_pub_seq.store(el.next_pub_seq, Ordering::Release);
        Ok(el)
    }

    pub(crate) fn client_id(&self) -> Arc<str> {
        self.client_id.clone()
    }

    // -----------------------------------------------------------------------------------
    // The loop

    pub(crate) async fn first_connect(&mut self) -> Result<(), ClientError> {
        self.try_connect().await?;
        self.flush().await
    }

    pub(crate) async fn run(
        mut self,
        mut rx: mpsc::UnboundedReceiver<Command>,
    ) -> Result<(), ClientError> {
        let r = self.run_inner(&mut rx).await;
        self.status_tx.send_modify(|s| {
            s.connected = false;
            s.closed = true;
        });
        // Deliveries already committed still reach the application.
        while let Some(d) = self.deliveries.pop_front() {
            if self.deliver_tx.try_send(d).is_err() {
                break;
            }
        }
        r
    }

    async fn run_inner(
        &mut self,
        rx: &mut mpsc::UnboundedReceiver<Command>,
    ) -> Result<(), ClientError> {
        loop {
            if self.conn.is_none() {
                if !self.opts.reconnect.enabled {
                    return Err(self.last_error.take().unwrap_or(ClientError::Closed));
                }
                let deadline = Instant::now() + self.backoff();
                loop {
                    let dtx = self.deliver_tx.clone();
                    tokio::select! {
                        cmd = rx.recv() => {
                            let Some(cmd) = cmd else { return Ok(()) };
                            if self.handle_command(cmd).await? == Flow::Stop {
                                return Ok(());
                            }
                        }
                        permit = dtx.reserve(), if !self.deliveries.is_empty() => {
                            if let (Ok(p), Some(d)) = (permit, self.deliveries.pop_front()) {
                                p.send(d);
                            }
                        }
                        _ = tokio::time::sleep_until(deadline) => break,
                    }
                    self.flush().await?;
                }
                match self.try_connect().await {
                    Ok(()) => {}
                    Err(e) if e.is_permanent() => return Err(e),
                    Err(e) => {
                        tracing::debug!(error = %e, attempt = self.attempt, "reconnect failed");
                        self.last_error = Some(e);
                        continue;
                    }
                }
                self.flush().await?;
                continue;
            }
            let room = self.deliveries.len() + self.staged.len() < self.opts.incoming_capacity;
            let ka_deadline = self.keepalive_deadline();
            let Some(conn) = self.conn.as_mut() else {
                continue;
            };
            let mut lost = None;
            let dtx = self.deliver_tx.clone();
            tokio::select! {
                biased;
                cmd = rx.recv() => {
                    let Some(cmd) = cmd else { return Ok(()) };
                    if self.handle_command(cmd).await? == Flow::Stop {
                        return Ok(());
                    }
                }
                r = conn.reader.read_buf(&mut conn.rbuf), if room => {
                    match r {
                        Ok(0) => lost = Some(ClientError::Io(std::io::Error::new(
                            std::io::ErrorKind::UnexpectedEof,
                            "the broker closed the connection",
                        ))),
                        Ok(_) => {
                            if let Err(e) = self.process_input() {
                                lost = Some(e);
                            }
                        }
                        Err(e) => lost = Some(ClientError::Io(e)),
                    }
                }
                permit = dtx.reserve(), if !self.deliveries.is_empty() => {
                    if let (Ok(p), Some(d)) = (permit, self.deliveries.pop_front()) {
                        p.send(d);
                    }
                }
                _ = sleep_until_opt(ka_deadline), if ka_deadline.is_some() => {
                    if let Err(e) = self.on_keepalive() {
                        lost = Some(e);
                    }
                }
            }
            if let Some(e) = lost {
                self.lost(e)?;
            }
            // Group commit: whatever else is ready joins this turn's fsync.
            for _ in 0..1024 {
                let Ok(cmd) = rx.try_recv() else { break };
                if self.handle_command(cmd).await? == Flow::Stop {
                    return Ok(());
                }
            }
            self.flush().await?;
        }
    }

    fn backoff(&mut self) -> Duration {
        let r = &self.opts.reconnect;
        let exp = self.attempt.min(20);
        let base = r
            .min_delay
            .saturating_mul(1u32 << exp.min(16))
            .min(r.max_delay)
            .max(Duration::from_millis(1));
        self.attempt = self.attempt.saturating_add(1);
        // xorshift64: jitter needs no cryptographic randomness.
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        let half = base / 2;
        let jitter_ns = (self.rng % (half.as_nanos().max(1) as u64)) as u32;
        half + Duration::from_nanos(u64::from(jitter_ns))
    }

    fn keepalive_deadline(&self) -> Option<Instant> {
        let c = self.conn.as_ref()?;
        let ka = c.keep_alive?;
        Some(match c.ping_sent {
            Some(t) => t + ka,
            None => c.last_sent + ka,
        })
    }

    fn on_keepalive(&mut self) -> Result<(), ClientError> {
        let Some(c) = self.conn.as_mut() else {
            return Ok(());
        };
        if c.ping_sent.is_some() {
            return Err(ClientError::Timeout("no PINGRESP within the keep alive"));
        }
        c.ping_sent = Some(Instant::now());
        self.emit(Packet::PingReq, None);
        Ok(())
    }

    /// The connection is gone: keep the session state, reconnect later (or stop).
    fn lost(&mut self, e: ClientError) -> Result<(), ClientError> {
        tracing::debug!(error = %e, "connection lost");
        self.conn = None;
        self.inflight = 0;
        self.status_tx.send_modify(|s| s.connected = false);
        if !self.opts.reconnect.enabled || e.is_permanent() || matches!(e, ClientError::Store(_)) {
            return Err(e);
        }
        self.last_error = Some(e);
        Ok(())
    }

    /// Commits the journal, then releases what waited for it: replies, deliveries, bytes.
    async fn flush(&mut self) -> Result<(), ClientError> {
        if let Some(j) = self.journal.as_mut() {
            if j.is_dirty() {
                let multi = tokio::runtime::Handle::current().runtime_flavor()
                    == tokio::runtime::RuntimeFlavor::MultiThread;
                if multi {
                    tokio::task::block_in_place(|| j.commit())?;
                } else {
                    j.commit()?;
                }
            }
        }
        for (tx, v) in self.accepted.drain(..) {
            let _ = tx.send(v);
        }
        self.deliveries.extend(self.staged.drain(..));
        for (tx, r) in self.resolutions.drain(..) {
            let _ = tx.send(r);
        }
        let (outgoing, inbound) = (self.out.len(), self.inbound.len());
        self.status_tx.send_if_modified(|s| {
            let changed = s.outgoing != outgoing || s.inbound != inbound;
            s.outgoing = outgoing;
            s.inbound = inbound;
            changed
        });
        let mut failed = None;
        if let Some(c) = self.conn.as_mut() {
            if !c.wbuf.is_empty() {
                match c.writer.write_all(&c.wbuf).await {
                    Ok(()) => {
                        c.wbuf.clear();
                        c.last_sent = Instant::now();
                    }
                    Err(e) => failed = Some(ClientError::Io(e)),
                }
            }
        }
        if let Some(e) = failed {
            self.lost(e)?;
        }
        Ok(())
    }

    // -----------------------------------------------------------------------------------
    // Connecting

    async fn try_connect(&mut self) -> Result<(), ClientError> {
        let timeout = self.opts.connect_timeout;
        match tokio::time::timeout(timeout, self.connect_inner()).await {
            Ok(r) => r,
            Err(_) => Err(ClientError::Timeout(
                "no CONNACK within the connect timeout",
            )),
        }
    }

    async fn connect_inner(&mut self) -> Result<(), ClientError> {
        let addr = self.opts.addr.clone();
        let stream = TcpStream::connect(&addr)
            .await
            .map_err(|error| ClientError::Connect {
                addr: addr.clone(),
                error,
            })?;
        let _ = stream.set_nodelay(true);
        let (mut reader, mut writer) = stream.into_split();
        let v5 = self.version.is_v5();
        // A session that outlives its connection is resumed on every reconnect.
        let clean_start = if self.connects > 0 && self.opts.session_persists() {
            false
        } else {
            self.opts.clean_start
        };
        let will = match &self.opts.will {
            Some(w) => Some(Will {
                topic: topic_name(&w.topic)?,
                payload: w.payload.clone(),
                qos: w.qos,
                retain: w.retain,
                properties: if v5 {
                    w.properties.clone()
                } else {
                    Default::default()
                },
            }),
            None => None,
        };
        let properties = if v5 {
            ConnectProperties {
                session_expiry_interval: (self.opts.session_expiry_secs > 0)
                    .then_some(self.opts.session_expiry_secs),
                receive_maximum: Some(self.opts.receive_maximum),
                maximum_packet_size: self.opts.max_packet_size,
                topic_alias_maximum: (self.opts.topic_alias_maximum > 0)
                    .then_some(self.opts.topic_alias_maximum),
                user_properties: self.opts.user_properties.clone(),
                ..Default::default()
            }
        } else {
            ConnectProperties::default()
        };
        let connect = Packet::Connect(Box::new(Connect {
            protocol: self.version,
            clean_start,
            keep_alive: self.opts.keep_alive_secs,
            client_id: quartet_proto::ClientId::new(self.opts.client_id.as_str()),
            will,
            username: self.opts.username.as_deref().map(Into::into),
            password: self.opts.password.clone(),
            properties,
        }));
        let mut buf = BytesMut::new();
        encode(&connect, self.version, &mut buf)
            .map_err(|e| ClientError::Options(format!("cannot encode CONNECT: {e}")))?;
        self.trace(Direction::Out, &connect, None);
        writer.write_all(&buf).await?;
        let mut rbuf = BytesMut::with_capacity(4096);
        let connack = loop {
            match decode(&mut rbuf, self.version, &self.limits) {
                Ok(Some(p)) => break p,
                Ok(None) => {}
                Err(e) => return Err(ClientError::Protocol(e.to_string())),
            }
            if reader.read_buf(&mut rbuf).await? == 0 {
                return Err(ClientError::Io(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "the broker closed the connection before CONNACK",
                )));
            }
        };
        self.trace(Direction::In, &connack, None);
        let ConnAck {
            session_present,
            reason,
            properties: p,
        } = match connack {
            Packet::ConnAck(c) => c,
            other => {
                return Err(ClientError::Protocol(format!(
                    "expected CONNACK, got {}",
                    other.packet_type()
                )))
            }
        };
        if reason.is_error() {
            return Err(ClientError::Refused {
                reason,
                reason_string: p.reason_string.map(|s| s.to_string()),
            });
        }
        if let Some(id) = &p.assigned_client_identifier {
            self.client_id = Arc::from(&**id);
            self.opts.client_id = id.to_string();
        }
        self.broker = BrokerLimits {
            max_qos: p.maximum_qos.unwrap_or(QoS::ExactlyOnce),
            retain_available: p.retain_available.unwrap_or(true),
            max_packet_size: p
                .maximum_packet_size
                .map_or(MAX_PACKET_SIZE, |m| m as usize),
            receive_maximum: usize::from(p.receive_maximum.unwrap_or(u16::MAX)),
            topic_alias_maximum: if v5 && self.opts.use_topic_aliases {
                p.topic_alias_maximum.unwrap_or(0)
            } else {
                0
            },
        };
        let ka = p.server_keep_alive.unwrap_or(self.opts.keep_alive_secs);
        self.conn = Some(Conn {
            reader,
            writer,
            rbuf,
            wbuf: BytesMut::new(),
            keep_alive: (ka > 0).then(|| Duration::from_secs(u64::from(ka))),
            last_sent: Instant::now(),
            ping_sent: None,
            aliases_out: HashMap::new(),
            aliases_in: HashMap::new(),
        });
        self.attempt = 0;
        let first = self.connects == 0;
        self.connects += 1;
        self.on_session(session_present && !clean_start, first)?;
        let connects = self.connects;
        self.status_tx.send_modify(|s| {
            s.connected = true;
            s.connects = connects;
            s.session_present = session_present;
        });
        // Packets that came with CONNACK.
        self.process_input()
    }

    /// Resumes (or restarts) the session on a fresh connection.
    fn on_session(&mut self, session_present: bool, first: bool) -> Result<(), ClientError> {
        self.inflight = 0;
        if !session_present {
            if !self.inbound.is_empty() {
                self.log(Record::InClear)?;
                self.inbound.clear();
            }
            self.epoch += 1;
            let orders: Vec<u64> = self.out.keys().copied().collect();
            for order in orders {
                let Some(o) = self.out.get_mut(&order) else {
                    continue;
                };
                match o.state {
                    OutState::Released => {
                        // PUBREC came: the broker had taken the message over.
                        self.complete(order, ReasonCode::Success, None)?;
                    }
                    OutState::Sent | OutState::Unsent => {
                        o.state = OutState::Unsent;
                        o.dup = false;
                        self.unsent.insert(order);
                    }
                }
            }
            if !first && !self.subs.is_empty() {
                let filters: Vec<_> = self.subs.iter().map(|(f, o)| (f.clone(), *o)).collect();
                let order = self.next_order;
                self.next_order += 1;
                self.ctrl.insert(
                    order,
                    Ctrl {
                        kind: CtrlKind::Sub {
                            filters,
                            properties: SubscribeProperties::default(),
                            done: None,
                        },
                        pid: None,
                    },
                );
            }
        }
        // SUBSCRIBE/UNSUBSCRIBE not acknowledged (or not sent) go (again).
        let ctrls: Vec<u64> = self.ctrl.keys().copied().collect();
        for order in ctrls {
            self.send_ctrl(order);
        }
        // Resend in the original order: PUBREL for released, PUBLISH (DUP) for the others
        // as far as the broker's receive maximum allows; the rest follows as acks come.
        let window = self.window();
        let orders: Vec<u64> = self.out.keys().copied().collect();
        for order in orders {
            let Some(o) = self.out.get_mut(&order) else {
                continue;
            };
            match o.state {
                OutState::Sent => {
                    o.state = OutState::Unsent;
                    self.unsent.insert(order);
                }
                OutState::Released => {
                    let Some(pid) = o.publish.packet_id else {
                        continue;
                    };
                    self.inflight += 1;
                    self.emit(
                        Packet::PubRel(PubAck::new(pid)),
                        Some("resent on reconnect"),
                    );
                    continue;
                }
                OutState::Unsent => {}
            }
            if self.unsent.first() == Some(&order) {
                let qos0 = self
                    .out
                    .get(&order)
                    .is_some_and(|o| o.publish.qos == QoS::AtMostOnce);
                if qos0 || self.inflight < window {
                    self.unsent.remove(&order);
                    self.transmit(order)?;
                }
            }
        }
        self.pump()
    }

    fn window(&self) -> usize {
        let own = usize::from(self.opts.max_inflight);
        if self.version.is_v5() {
            own.min(self.broker.receive_maximum)
        } else {
            own
        }
    }

    // -----------------------------------------------------------------------------------
    // Sending

    fn trace(&self, direction: Direction, p: &Packet, note: Option<&'static str>) {
        let Some(f) = &self.opts.trace else { return };
        let mut ev = TraceEvent {
            elapsed: self.started.elapsed(),
            direction,
            packet: p.packet_type(),
            packet_id: None,
            qos: None,
            dup: false,
            topic: None,
            reason: None,
            note,
        };
        match p {
            Packet::Publish(x) => {
                ev.packet_id = x.packet_id.map(PacketId::get);
                ev.qos = Some(x.qos);
                ev.dup = x.dup;
                ev.topic = Some(x.topic.as_str().to_owned());
            }
            Packet::PubAck(a) | Packet::PubRec(a) | Packet::PubRel(a) | Packet::PubComp(a) => {
                ev.packet_id = Some(a.packet_id.get());
                ev.reason = Some(a.reason);
            }
            Packet::Subscribe(s) => ev.packet_id = Some(s.packet_id.get()),
            Packet::SubAck(s) => ev.packet_id = Some(s.packet_id.get()),
            Packet::Unsubscribe(s) => ev.packet_id = Some(s.packet_id.get()),
            Packet::UnsubAck(s) => ev.packet_id = Some(s.packet_id.get()),
            Packet::ConnAck(c) => ev.reason = Some(c.reason),
            Packet::Disconnect(d) => ev.reason = Some(d.reason),
            _ => {}
        }
        f(&ev);
    }

    /// Queues a packet for the socket (written after the journal commit of this turn).
    fn emit(&mut self, mut p: Packet, note: Option<&'static str>) {
        if !self.version.is_v5() {
            p.strip_v5();
        }
        if self.conn.is_none() {
            return;
        }
        self.trace(Direction::Out, &p, note);
        if let Some(c) = self.conn.as_mut() {
            if let Err(e) = encode(&p, self.version, &mut c.wbuf) {
                // Our own packets are built valid; this is a bug, not the broker's fault.
                tracing::error!(error = %e, packet = %p.packet_type(), "cannot encode");
            }
        }
    }

    fn alloc_pid(&mut self) -> Option<u16> {
        for _ in 0..u16::MAX {
            self.next_pid = self.next_pid.wrapping_add(1);
            if self.next_pid == 0 {
                self.next_pid = 1;
            }
            if !self.out_pids.contains_key(&self.next_pid)
                && !self.ctrl_pids.contains_key(&self.next_pid)
            {
                return Some(self.next_pid);
            }
        }
        None
    }

    fn log(&mut self, r: Record) -> Result<(), ClientError> {
        match self.journal.as_mut() {
            Some(j) => j.append(r),
            None => Ok(()),
        }
    }

    /// Sends queued messages while the window allows.
    fn pump(&mut self) -> Result<(), ClientError> {
        if self.conn.is_none() {
            return Ok(());
        }
        let window = self.window();
        while let Some(&order) = self.unsent.first() {
            let qos0 = self
                .out
                .get(&order)
                .is_some_and(|o| o.publish.qos == QoS::AtMostOnce);
            if !qos0 && self.inflight >= window {
                break;
            }
            self.unsent.remove(&order);
            self.transmit(order)?;
        }
        Ok(())
    }

    /// Sends one queued PUBLISH.
    fn transmit(&mut self, order: u64) -> Result<(), ClientError> {
        let alias_max = self.broker.topic_alias_maximum;
        let max_packet = self.broker.max_packet_size;
        let Some(o) = self.out.get_mut(&order) else {
            return Ok(());
        };
        let mut p = o.publish.clone();
        p.dup = o.dup && p.qos != QoS::AtMostOnce;
        let size = encoded_len(&Packet::Publish(p.clone()), self.version).unwrap_or(usize::MAX);
        if size > max_packet {
            let e = ClientError::PacketTooLarge {
                size,
                max: max_packet,
            };
            return self.fail(order, e);
        }
        if let Some(c) = self.conn.as_mut() {
            if alias_max > 0 {
                match c.aliases_out.get(p.topic.as_str()) {
                    Some(&a) => {
                        p.properties.topic_alias = Some(a);
                        p.topic = TopicName::empty();
                    }
                    None if c.aliases_out.len() < usize::from(alias_max) => {
                        let a = c.aliases_out.len() as u16 + 1;
                        c.aliases_out.insert(p.topic.as_str().to_owned(), a);
                        p.properties.topic_alias = Some(a);
                    }
                    None => {}
                }
            }
        }
        if p.qos == QoS::AtMostOnce {
            self.emit(Packet::Publish(p), None);
            return self.complete(order, ReasonCode::Success, None);
        }
        o.state = OutState::Sent;
        o.dup = true;
        self.inflight += 1;
        self.emit(Packet::Publish(p), None);
        Ok(())
    }

    /// Ends an outgoing exchange (journaled for QoS 1/2) and resolves its future.
    fn complete(
        &mut self,
        order: u64,
        reason: ReasonCode,
        reason_string: Option<String>,
    ) -> Result<(), ClientError> {
        let Some(o) = self.remove_out(order) else {
            return Ok(());
        };
        if let Some(pid) = o.publish.packet_id {
            self.log(Record::OutDone { pid: pid.get() })?;
        }
        if let Some(done) = o.done {
            self.resolutions.push((
                done,
                Ok(PublishAck {
                    reason,
                    reason_string,
                    packet_id: o.publish.packet_id,
                    seq: o.seq,
                }),
            ));
        }
        Ok(())
    }

    fn fail(&mut self, order: u64, e: ClientError) -> Result<(), ClientError> {
        let Some(o) = self.remove_out(order) else {
            return Ok(());
        };
        if let Some(pid) = o.publish.packet_id {
            self.log(Record::OutDone { pid: pid.get() })?;
        }
        if let Some(done) = o.done {
            self.resolutions.push((done, Err(e)));
        }
        Ok(())
    }

    fn remove_out(&mut self, order: u64) -> Option<Out> {
        let o = self.out.remove(&order)?;
        self.unsent.remove(&order);
        if let Some(pid) = o.publish.packet_id {
            self.out_pids.remove(&pid.get());
        }
        if matches!(o.state, OutState::Sent | OutState::Released) {
            self.inflight = self.inflight.saturating_sub(1);
        }
        Some(o)
    }

    fn send_ctrl(&mut self, order: u64) {
        if self.conn.is_none() {
            return;
        }
        let pid = match self.ctrl.get(&order).and_then(|c| c.pid) {
            Some(p) => p,
            None => {
                let Some(p) = self.alloc_pid() else {
                    return;
                };
                self.ctrl_pids.insert(p, order);
                if let Some(c) = self.ctrl.get_mut(&order) {
                    c.pid = Some(p);
                }
                p
            }
        };
        let Some(packet_id) = PacketId::new(pid) else {
            return;
        };
        let Some(c) = self.ctrl.get(&order) else {
            return;
        };
        let packet = match &c.kind {
            CtrlKind::Sub {
                filters,
                properties,
                ..
            } => Packet::Subscribe(Subscribe {
                packet_id,
                filters: filters.clone(),
                properties: properties.clone(),
            }),
            CtrlKind::Unsub {
                filters,
                properties,
                ..
            } => Packet::Unsubscribe(Unsubscribe {
                packet_id,
                filters: filters.clone(),
                properties: properties.clone(),
            }),
        };
        self.emit(packet, None);
    }

    // -----------------------------------------------------------------------------------
    // Commands from the application

    async fn handle_command(&mut self, cmd: Command) -> Result<Flow, ClientError> {
        match cmd {
            Command::Publish {
                mut publish,
                permit,
                accepted,
                done,
            } => {
                if publish.qos > self.broker.max_qos {
                    let _ = accepted.send(Err(ClientError::NotSupported(
                        "QoS above the broker's Maximum QoS",
                    )));
                    return Ok(Flow::Continue);
                }
                if publish.retain && !self.broker.retain_available {
                    let _ = accepted.send(Err(ClientError::NotSupported("retained messages")));
                    return Ok(Flow::Continue);
                }
                let mut probe = publish.clone();
                if publish.qos != QoS::AtMostOnce {
                    probe.packet_id = Some(PacketId::MIN);
                }
                if !self.version.is_v5() {
                    probe.properties = Default::default();
                }
                let size = encoded_len(&Packet::Publish(probe), self.version).unwrap_or(usize::MAX);
                let max = self.broker.max_packet_size.min(MAX_PACKET_SIZE);
                if size > max {
                    let _ = accepted.send(Err(ClientError::PacketTooLarge { size, max }));
                    return Ok(Flow::Continue);
                }
                if !self.version.is_v5() {
                    publish.properties = Default::default();
                }
                let order = self.next_order;
                self.next_order += 1;
                let mut seq = None;
                if publish.qos != QoS::AtMostOnce {
                    let Some(pid) = self.alloc_pid() else {
                        let _ = accepted.send(Err(ClientError::QueueFull(self.out.len())));
                        return Ok(Flow::Continue);
                    };
                    publish.packet_id = PacketId::new(pid);
                    let s = self.next_pub_seq;
                    self.next_pub_seq += 1;
                    self.shared_pub_seq
                        .store(self.next_pub_seq, Ordering::Release);
                    seq = Some(s);
                    self.log(Record::OutAdd {
                        seq: s,
                        publish: Box::new(publish.clone()),
                    })?;
                    self.out_pids.insert(pid, order);
                }
                self.accepted.push((accepted, Ok((seq, publish.packet_id))));
                self.out.insert(
                    order,
                    Out {
                        publish,
                        seq,
                        state: OutState::Unsent,
                        dup: false,
                        done: Some(done),
                        _permit: Some(permit),
                    },
                );
                self.unsent.insert(order);
                self.pump()?;
            }
            Command::Subscribe {
                filters,
                properties,
                done,
            } => {
                let order = self.next_order;
                self.next_order += 1;
                self.ctrl.insert(
                    order,
                    Ctrl {
                        kind: CtrlKind::Sub {
                            filters,
                            properties,
                            done: Some(done),
                        },
                        pid: None,
                    },
                );
                self.send_ctrl(order);
            }
            Command::Unsubscribe {
                filters,
                properties,
                done,
            } => {
                let order = self.next_order;
                self.next_order += 1;
                self.ctrl.insert(
                    order,
                    Ctrl {
                        kind: CtrlKind::Unsub {
                            filters,
                            properties,
                            done: Some(done),
                        },
                        pid: None,
                    },
                );
                self.send_ctrl(order);
            }
            Command::Ack { pid, epoch } => self.on_app_ack(pid, epoch)?,
            Command::Disconnect { done } => {
                self.flush().await?;
                self.emit(Packet::Disconnect(Disconnect::default()), None);
                self.flush().await?;
                if let Some(mut c) = self.conn.take() {
                    let _ = c.writer.shutdown().await;
                }
                let _ = done.send(());
                return Ok(Flow::Stop);
            }
        }
        Ok(Flow::Continue)
    }

    fn on_app_ack(&mut self, pid: u16, epoch: u64) -> Result<(), ClientError> {
        if epoch != self.epoch {
            return Ok(());
        }
        let Some(e) = self.inbound.get_mut(&pid) else {
            return Ok(());
        };
        if e.acked {
            return Ok(());
        }
        e.acked = true;
        let qos = e.qos;
        let Some(packet_id) = PacketId::new(pid) else {
            return Ok(());
        };
        if self.conn.is_none() {
            // Answered when the broker sends the PUBLISH again after the reconnect.
            return Ok(());
        }
        match qos {
            QoS::AtLeastOnce => {
                self.log(Record::InDone { pid })?;
                self.inbound.remove(&pid);
                self.emit(Packet::PubAck(PubAck::new(packet_id)), None);
            }
            _ => self.emit(Packet::PubRec(PubAck::new(packet_id)), None),
        }
        Ok(())
    }

    // -----------------------------------------------------------------------------------
    // Packets from the broker

    fn process_input(&mut self) -> Result<(), ClientError> {
        loop {
            let Some(c) = self.conn.as_mut() else {
                return Ok(());
            };
            let p = match decode(&mut c.rbuf, self.version, &self.limits) {
                Ok(Some(p)) => p,
                Ok(None) => return Ok(()),
                Err(e) => {
                    let reason = e.reason_code();
                    if self.version.is_v5() {
                        self.emit(
                            Packet::Disconnect(Disconnect {
                                reason,
                                ..Default::default()
                            }),
                            None,
                        );
                    }
                    return Err(ClientError::Protocol(e.to_string()));
                }
            };
            self.handle_packet(p)?;
        }
    }

    fn handle_packet(&mut self, p: Packet) -> Result<(), ClientError> {
        match p {
            Packet::Publish(p) => self.on_publish(p),
            Packet::PubAck(a) => {
                self.trace(Direction::In, &Packet::PubAck(a.clone()), None);
                if let Some(order) = self.out_order(a.packet_id, QoS::AtLeastOnce, OutState::Sent) {
                    self.complete(order, a.reason, reason_string(&a))?;
                }
                self.pump()
            }
            Packet::PubRec(a) => {
                self.trace(Direction::In, &Packet::PubRec(a.clone()), None);
                let pid = a.packet_id;
                let order = self.out_pids.get(&pid.get()).copied();
                let state = order
                    .and_then(|o| self.out.get(&o))
                    .filter(|o| o.publish.qos == QoS::ExactlyOnce)
                    .map(|o| o.state);
                match (order, state) {
                    (Some(order), Some(OutState::Sent)) => {
                        if a.reason.is_error() {
                            self.complete(order, a.reason, reason_string(&a))?;
                            return self.pump();
                        }
                        self.log(Record::OutReleased { pid: pid.get() })?;
                        if let Some(o) = self.out.get_mut(&order) {
                            o.state = OutState::Released;
                        }
                        let note = self.journal.is_some().then_some("after journaling");
                        self.emit(Packet::PubRel(PubAck::new(pid)), note);
                    }
                    (Some(_), Some(OutState::Released)) => {
                        self.emit(Packet::PubRel(PubAck::new(pid)), Some("again"));
                    }
                    _ => {
                        let mut rel = PubAck::new(pid);
                        rel.reason = ReasonCode::PacketIdentifierNotFound;
                        self.emit(Packet::PubRel(rel), Some("unknown packet id"));
                    }
                }
                Ok(())
            }
            Packet::PubComp(a) => {
                self.trace(Direction::In, &Packet::PubComp(a.clone()), None);
                if let Some(order) =
                    self.out_order(a.packet_id, QoS::ExactlyOnce, OutState::Released)
                {
                    self.complete(order, a.reason, reason_string(&a))?;
                }
                self.pump()
            }
            Packet::PubRel(a) => {
                self.trace(Direction::In, &Packet::PubRel(a.clone()), None);
                let pid = a.packet_id.get();
                let known = self
                    .inbound
                    .get(&pid)
                    .is_some_and(|e| e.qos == QoS::ExactlyOnce);
                let mut comp = PubAck::new(a.packet_id);
                if known {
                    self.log(Record::InDone { pid })?;
                    self.inbound.remove(&pid);
                    let note = self.journal.is_some().then_some("after journaling");
                    self.emit(Packet::PubComp(comp), note);
                } else {
                    comp.reason = ReasonCode::PacketIdentifierNotFound;
                    self.emit(Packet::PubComp(comp), Some("unknown packet id"));
                }
                Ok(())
            }
            Packet::SubAck(s) => {
                self.trace(Direction::In, &Packet::SubAck(s.clone()), None);
                let Some(order) = self.ctrl_pids.remove(&s.packet_id.get()) else {
                    return Ok(());
                };
                if let Some(Ctrl {
                    kind: CtrlKind::Sub { filters, done, .. },
                    ..
                }) = self.ctrl.remove(&order)
                {
                    for (i, (f, o)) in filters.into_iter().enumerate() {
                        if s.reasons.get(i).is_some_and(|r| !r.is_error()) {
                            self.subs.insert(f, o);
                        }
                    }
                    if let Some(done) = done {
                        let _ = done.send(Ok(s.reasons));
                    }
                }
                Ok(())
            }
            Packet::UnsubAck(u) => {
                self.trace(Direction::In, &Packet::UnsubAck(u.clone()), None);
                let Some(order) = self.ctrl_pids.remove(&u.packet_id.get()) else {
                    return Ok(());
                };
                if let Some(Ctrl {
                    kind: CtrlKind::Unsub { filters, done, .. },
                    ..
                }) = self.ctrl.remove(&order)
                {
                    for f in filters {
                        self.subs.remove(&f);
                    }
                    if let Some(done) = done {
                        let _ = done.send(Ok(u.reasons));
                    }
                }
                Ok(())
            }
            Packet::PingResp => {
                if let Some(c) = self.conn.as_mut() {
                    c.ping_sent = None;
                }
                Ok(())
            }
            Packet::Disconnect(d) => {
                self.trace(Direction::In, &Packet::Disconnect(d.clone()), None);
                Err(ClientError::Disconnected {
                    reason: d.reason,
                    reason_string: d.properties.reason_string.map(|s| s.to_string()),
                })
            }
            other => Err(ClientError::Protocol(format!(
                "unexpected {} from the broker",
                other.packet_type()
            ))),
        }
    }

    fn out_order(&self, pid: PacketId, qos: QoS, state: OutState) -> Option<u64> {
        let order = *self.out_pids.get(&pid.get())?;
        let o = self.out.get(&order)?;
        (o.publish.qos == qos && o.state == state).then_some(order)
    }

    fn on_publish(&mut self, mut p: Publish) -> Result<(), ClientError> {
        if let Some(alias) = p.properties.topic_alias.take() {
            let Some(c) = self.conn.as_mut() else {
                return Ok(());
            };
            if alias == 0 || alias > self.opts.topic_alias_maximum {
                return Err(ClientError::Protocol(format!(
                    "topic alias {alias} beyond our maximum {}",
                    self.opts.topic_alias_maximum
                )));
            }
            if p.topic.is_empty() {
                match c.aliases_in.get(&alias) {
                    Some(t) => p.topic = t.clone(),
                    None => {
                        return Err(ClientError::Protocol(format!(
                            "unknown topic alias {alias}"
                        )))
                    }
                }
            } else {
                c.aliases_in.insert(alias, p.topic.clone());
            }
        }
        if p.topic.is_empty() {
            return Err(ClientError::Protocol("PUBLISH without a topic".into()));
        }
        let msg = Message {
            topic: p.topic.as_str().to_owned(),
            payload: p.payload.clone(),
            qos: p.qos,
            retain: p.retain,
            dup: p.dup,
            packet_id: p.packet_id,
            properties: p.properties.clone(),
        };
        let Some(packet_id) = p.packet_id else {
            self.trace(Direction::In, &Packet::Publish(p), None);
            self.staged.push(Delivery {
                message: msg,
                id: None,
                redelivered: false,
                ack: None,
            });
            return Ok(());
        };
        let pid = packet_id.get();
        let packet = Packet::Publish(p);
        match self.inbound.get_mut(&pid) {
            Some(e) if e.acked => {
                let qos = e.qos;
                self.trace(
                    Direction::In,
                    &packet,
                    Some("duplicate: acknowledged again"),
                );
                if qos == QoS::AtLeastOnce {
                    self.log(Record::InDone { pid })?;
                    self.inbound.remove(&pid);
                    self.emit(Packet::PubAck(PubAck::new(packet_id)), None);
                } else {
                    self.emit(Packet::PubRec(PubAck::new(packet_id)), None);
                }
            }
            Some(e) if !e.delivered_here => {
                e.delivered_here = true;
                let rseq = e.rseq;
                self.trace(
                    Direction::In,
                    &packet,
                    Some("delivered again: not acknowledged before the restart"),
                );
                self.stage(msg, pid, rseq, true);
            }
            Some(_) => {
                self.trace(
                    Direction::In,
                    &packet,
                    Some("duplicate: the application holds it"),
                );
            }
            None => {
                let rseq = self.next_recv_seq;
                self.next_recv_seq += 1;
                self.log(Record::InRecv {
                    pid,
                    qos: msg.qos as u8,
                    rseq,
                })?;
                self.inbound.insert(
                    pid,
                    In {
                        qos: msg.qos,
                        rseq,
                        acked: false,
                        delivered_here: true,
                    },
                );
                self.trace(Direction::In, &packet, None);
                self.stage(msg, pid, rseq, false);
            }
        }
        Ok(())
    }

    fn stage(&mut self, message: Message, pid: u16, rseq: u64, redelivered: bool) {
        self.staged.push(Delivery {
            message,
            id: Some(MessageId {
                client_id: self.client_id.clone(),
                seq: rseq,
            }),
            redelivered,
            ack: self.cmd_tx.upgrade().map(|tx| AckHandle {
                pid,
                epoch: self.epoch,
                tx,
            }),
        });
    }
}

fn reason_string(a: &PubAck) -> Option<String> {
    a.properties.reason_string.as_ref().map(|s| s.to_string())
}

async fn sleep_until_opt(t: Option<Instant>) {
    match t {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}
