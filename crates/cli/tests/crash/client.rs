//! A small blocking MQTT 5 test client over `std::net::TcpStream` and quartet-proto.
//!
//! The client state lives in the test process, which is never killed (only the broker is):
//!
//! - [`Publisher`]: a persistent session (Clean Start 0, a large Session Expiry). It assigns
//!   packet ids, keeps every unacknowledged QoS 1/2 PUBLISH and every owed PUBREL, and on each
//!   reconnect resends them in their original order, PUBLISH with DUP=1 and the *same* packet
//!   id [MQTT-4.4.0-1], before anything new.
//! - [`Subscriber`]: a persistent session following "method B" on the receiving side of QoS 2
//!   [MQTT-4.3.3-9] [MQTT-4.3.3-10]: a QoS 2 PUBLISH is delivered to the application only when
//!   its packet id is not in the received set; the id is stored and PUBREC sent; PUBREL
//!   removes the id and is answered with PUBCOMP.
//!
//! Both count what a correct broker never does (anomalies) and whether the broker kept the
//! session (Session Present 1 on every CONNACK after the first).

use std::collections::{HashSet, VecDeque};
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use quartet_proto::bytes::{Bytes, BytesMut};
use quartet_proto::*;

/// The version every test client speaks.
pub const V: ProtocolVersion = ProtocolVersion::V5;
/// The longest a CONNECT may wait for its CONNACK (the broker may be recovering).
pub const CONNACK_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a client keeps trying to reconnect to a restarting broker.
pub const RECONNECT_DEADLINE: Duration = Duration::from_secs(30);

fn other(msg: impl Into<String>) -> io::Error {
    io::Error::other(msg.into())
}

/// The CONNECT of a test client: v5, keep alive off, the given Clean Start and Session
/// Expiry Interval, and a Receive Maximum so the broker keeps a bounded window in flight.
pub fn connect_packet(client_id: &str, clean_start: bool, expiry_secs: u32) -> Connect {
    Connect {
        protocol: V,
        clean_start,
        keep_alive: 0,
        client_id: ClientId::new(client_id.to_owned()),
        will: None,
        username: None,
        password: None,
        properties: ConnectProperties {
            session_expiry_interval: Some(expiry_secs),
            receive_maximum: Some(64),
            ..ConnectProperties::default()
        },
    }
}

pub fn topic(s: &str) -> TopicName {
    TopicName::new(s.to_owned()).expect("valid topic name")
}

pub fn filter(s: &str) -> TopicFilter {
    TopicFilter::new(s.to_owned()).expect("valid topic filter")
}

pub fn pid(v: u16) -> PacketId {
    PacketId::new(v).expect("non-zero packet id")
}

/// One network connection: framing over a blocking socket.
#[derive(Debug)]
pub struct Conn {
    stream: TcpStream,
    buf: BytesMut,
}

impl Conn {
    /// Connects, sends CONNECT and waits for a successful CONNACK.
    pub fn open(addr: SocketAddr, connect: Connect) -> io::Result<(Conn, ConnAck)> {
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
        stream.set_nodelay(true)?;
        stream.set_write_timeout(Some(Duration::from_secs(10)))?;
        let mut c = Conn {
            stream,
            buf: BytesMut::with_capacity(16 * 1024),
        };
        c.send(&Packet::Connect(Box::new(connect)))?;
        match c.recv(CONNACK_TIMEOUT)? {
            Some(Packet::ConnAck(ack)) if !ack.reason.is_error() => Ok((c, ack)),
            Some(Packet::ConnAck(ack)) => Err(other(format!("CONNACK refused: {:?}", ack.reason))),
            Some(p) => Err(other(format!("expected CONNACK, got {}", p.packet_type()))),
            None => Err(io::Error::new(io::ErrorKind::TimedOut, "no CONNACK")),
        }
    }

    pub fn send(&mut self, p: &Packet) -> io::Result<()> {
        self.send_all(std::slice::from_ref(p))
    }

    /// Encodes the packets into one buffer and writes it with one call.
    pub fn send_all(&mut self, ps: &[Packet]) -> io::Result<()> {
        let mut out = BytesMut::new();
        for p in ps {
            encode(p, V, &mut out).map_err(|e| other(format!("encode: {e}")))?;
        }
        self.stream.write_all(&out)
    }

    /// The next packet, waiting at most `timeout`; `Ok(None)` when none came. EOF and reset
    /// are errors (the broker died or closed the connection).
    pub fn recv(&mut self, timeout: Duration) -> io::Result<Option<Packet>> {
        let deadline = Instant::now() + timeout;
        let mut tmp = [0u8; 16 * 1024];
        loop {
            match decode(&mut self.buf, V, &Limits::default()) {
                Ok(Some(p)) => return Ok(Some(p)),
                Ok(None) => {}
                Err(e) => return Err(other(format!("undecodable packet from the broker: {e}"))),
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(None);
            }
            self.stream.set_read_timeout(Some(left))?;
            match self.stream.read(&mut tmp) {
                Ok(0) => return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "EOF")),
                Ok(n) => self.buf.extend_from_slice(&tmp[..n]),
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock
                            | io::ErrorKind::TimedOut
                            | io::ErrorKind::Interrupted
                    ) => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// Reads until the broker closes the connection (or `timeout`); true on EOF.
    pub fn wait_closed(&mut self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            match self.recv(Duration::from_millis(50)) {
                Ok(_) => {}
                Err(_) => return true,
            }
        }
        false
    }
}

/// Connects a throwaway client (Clean Start 1), publishes one QoS 1 message and waits for
/// its PUBACK, so the message is durable and routed.
pub fn publish_once(addr: SocketAddr, topic_name: &str, payload: &[u8], retain: bool) {
    let (mut c, _) = Conn::open(addr, connect_packet("publish-once", true, 0)).expect("connect");
    c.send(&Packet::Publish(Publish {
        dup: false,
        qos: QoS::AtLeastOnce,
        retain,
        topic: topic(topic_name),
        packet_id: Some(pid(1)),
        properties: PublishProperties::default(),
        payload: Bytes::copy_from_slice(payload),
    }))
    .expect("send PUBLISH");
    loop {
        match c.recv(Duration::from_secs(10)).expect("read") {
            Some(Packet::PubAck(a)) if a.packet_id == pid(1) => {
                assert!(!a.reason.is_error(), "PUBACK {:?}", a.reason);
                break;
            }
            Some(_) => {}
            None => panic!("no PUBACK"),
        }
    }
    let _ = c.send(&Packet::Disconnect(Disconnect::default()));
    c.wait_closed(Duration::from_secs(5));
}

/// Calls `attempt` every 20 ms until it succeeds or [`RECONNECT_DEADLINE`] passes.
pub fn retry<T>(mut attempt: impl FnMut() -> io::Result<T>) -> io::Result<T> {
    let deadline = Instant::now() + RECONNECT_DEADLINE;
    loop {
        match attempt() {
            Ok(v) => return Ok(v),
            Err(e) if Instant::now() >= deadline => {
                return Err(other(format!(
                    "no connection within {RECONNECT_DEADLINE:?}: {e}"
                )))
            }
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

/// What a client saw a correct broker never does.
#[derive(Debug, Default, Clone)]
pub struct Anomalies {
    pub count: u64,
    pub examples: Vec<String>,
}

impl Anomalies {
    pub fn add(&mut self, what: String) {
        self.count += 1;
        if self.examples.len() < 10 {
            self.examples.push(what);
        }
    }
}

/// One outgoing QoS 1/2 exchange the publisher has not finished.
#[derive(Debug, Clone)]
pub struct Flight {
    pub pid: PacketId,
    pub qos: QoS,
    pub payload: Bytes,
    /// PUBREC received: a PUBREL is owed (and resent on reconnect).
    pub released: bool,
}

/// What a reconnect resent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resent {
    Publish(PacketId),
    PubRel(PacketId),
}

/// A publisher with a persistent session and its in-flight state.
#[derive(Debug)]
pub struct Publisher {
    pub name: String,
    pub topic: TopicName,
    pub qos: QoS,
    pub expiry_secs: u32,
    conn: Option<Conn>,
    next_pid: u16,
    /// Sequence number of the next message; messages `0..next_seq` have been published.
    pub next_seq: u64,
    /// Unfinished exchanges, in the order they started.
    pub inflight: VecDeque<Flight>,
    /// Exchanges finished (PUBACK, or PUBCOMP).
    pub completed: u64,
    /// Set when a CONNACK has been received once: later ones must say Session Present.
    pub connected_once: bool,
    pub connects: u64,
    pub sessions_lost: u64,
    /// Test hook: on PUBREC, record the PUBREL as owed but do not send it (as if the broker
    /// died before it left).
    pub hold_pubrel: bool,
    /// What the last (re)connect resent, in order.
    pub last_resent: Vec<Resent>,
    /// PUBCOMPs that said 0x92 (the broker had already released the id).
    pub pubcomp_not_found: u64,
    pub anomalies: Anomalies,
}

impl Publisher {
    pub fn new(name: &str, topic_name: &str, qos: QoS) -> Publisher {
        Publisher {
            name: name.to_owned(),
            topic: topic(topic_name),
            qos,
            expiry_secs: u32::MAX,
            conn: None,
            next_pid: 1,
            next_seq: 0,
            inflight: VecDeque::new(),
            completed: 0,
            connected_once: false,
            connects: 0,
            sessions_lost: 0,
            hold_pubrel: false,
            last_resent: Vec::new(),
            pubcomp_not_found: 0,
            anomalies: Anomalies::default(),
        }
    }

    pub fn is_connected(&self) -> bool {
        self.conn.is_some()
    }

    /// Connects (Clean Start 0) and resends every unfinished exchange in order: PUBLISH with
    /// DUP=1 and the same packet id, or PUBREL. Returns Session Present.
    pub fn connect(&mut self, addr: SocketAddr) -> io::Result<bool> {
        self.conn = None;
        let (mut conn, ack) =
            Conn::open(addr, connect_packet(&self.name, false, self.expiry_secs))?;
        self.connects += 1;
        if self.connected_once && !ack.session_present {
            self.sessions_lost += 1;
            self.anomalies
                .add(format!("{}: session lost (Session Present 0)", self.name));
        }
        self.connected_once = true;
        self.last_resent.clear();
        let mut packets = Vec::new();
        for f in &self.inflight {
            if f.released {
                self.last_resent.push(Resent::PubRel(f.pid));
                packets.push(Packet::PubRel(PubAck::new(f.pid)));
            } else {
                self.last_resent.push(Resent::Publish(f.pid));
                packets.push(Packet::Publish(Publish {
                    dup: true,
                    qos: f.qos,
                    retain: false,
                    topic: self.topic.clone(),
                    packet_id: Some(f.pid),
                    properties: PublishProperties::default(),
                    payload: f.payload.clone(),
                }));
            }
        }
        if !packets.is_empty() {
            conn.send_all(&packets)?;
        }
        self.conn = Some(conn);
        Ok(ack.session_present)
    }

    /// [`Publisher::connect`] with retries while the broker restarts.
    pub fn reconnect(&mut self, addr: impl Fn() -> SocketAddr) -> io::Result<bool> {
        retry(|| self.connect(addr()))
    }

    fn alloc_pid(&mut self) -> PacketId {
        loop {
            let p = pid(self.next_pid);
            self.next_pid = if self.next_pid == u16::MAX {
                1
            } else {
                self.next_pid + 1
            };
            if !self.inflight.iter().any(|f| f.pid == p) {
                return p;
            }
        }
    }

    /// Publishes the next message (`"{name}:{seq}"`). It counts as published from here on:
    /// the exchange is kept and resent until it finishes. A send error drops the connection.
    pub fn publish_next(&mut self) -> io::Result<u64> {
        let seq = self.next_seq;
        self.next_seq += 1;
        let payload = Bytes::from(format!("{}:{seq}", self.name));
        let p = self.alloc_pid();
        self.inflight.push_back(Flight {
            pid: p,
            qos: self.qos,
            payload: payload.clone(),
            released: false,
        });
        let packet = Packet::Publish(Publish {
            dup: false,
            qos: self.qos,
            retain: false,
            topic: self.topic.clone(),
            packet_id: Some(p),
            properties: PublishProperties::default(),
            payload,
        });
        self.send(&packet)?;
        Ok(seq)
    }

    fn send(&mut self, p: &Packet) -> io::Result<()> {
        let Some(conn) = self.conn.as_mut() else {
            return Err(io::Error::new(io::ErrorKind::NotConnected, "not connected"));
        };
        let r = conn.send(p);
        if r.is_err() {
            self.conn = None;
        }
        r
    }

    /// Reads and handles one packet (`Ok(None)` after `timeout` without one). An I/O error
    /// drops the connection.
    pub fn poll(&mut self, timeout: Duration) -> io::Result<Option<Packet>> {
        let Some(conn) = self.conn.as_mut() else {
            return Err(io::Error::new(io::ErrorKind::NotConnected, "not connected"));
        };
        let p = match conn.recv(timeout) {
            Ok(Some(p)) => p,
            Ok(None) => return Ok(None),
            Err(e) => {
                self.conn = None;
                return Err(e);
            }
        };
        self.handle(&p)?;
        Ok(Some(p))
    }

    fn position(&self, p: PacketId) -> Option<usize> {
        self.inflight.iter().position(|f| f.pid == p)
    }

    fn handle(&mut self, p: &Packet) -> io::Result<()> {
        match p {
            Packet::PubAck(a) => match self.position(a.packet_id) {
                Some(i) if self.inflight[i].qos == QoS::AtLeastOnce => {
                    if a.reason.is_error() {
                        self.anomalies
                            .add(format!("{}: PUBACK refused: {:?}", self.name, a.reason));
                    }
                    self.inflight.remove(i);
                    self.completed += 1;
                }
                _ => self.anomalies.add(format!(
                    "{}: PUBACK for {} which is no QoS 1 exchange in flight",
                    self.name, a.packet_id
                )),
            },
            Packet::PubRec(a) => {
                if a.reason.is_error() {
                    self.anomalies
                        .add(format!("{}: PUBREC refused: {:?}", self.name, a.reason));
                }
                match self.position(a.packet_id) {
                    Some(i) if self.inflight[i].qos == QoS::ExactlyOnce => {
                        if self.inflight[i].released {
                            // Never after a reconnect that resent PUBREL; answer anyway.
                            self.anomalies
                                .add(format!("{}: second PUBREC for {}", self.name, a.packet_id));
                        }
                        self.inflight[i].released = true;
                        if !self.hold_pubrel {
                            self.send(&Packet::PubRel(PubAck::new(a.packet_id)))?;
                        }
                    }
                    _ => self.anomalies.add(format!(
                        "{}: PUBREC for {} which is no QoS 2 exchange in flight",
                        self.name, a.packet_id
                    )),
                }
            }
            Packet::PubComp(a) => match self.position(a.packet_id) {
                Some(i) if self.inflight[i].released => {
                    if a.reason == ReasonCode::PacketIdentifierNotFound {
                        self.pubcomp_not_found += 1;
                    } else if a.reason.is_error() {
                        self.anomalies
                            .add(format!("{}: PUBCOMP {:?}", self.name, a.reason));
                    }
                    self.inflight.remove(i);
                    self.completed += 1;
                }
                _ => self.anomalies.add(format!(
                    "{}: PUBCOMP for {} which is owed no PUBREL",
                    self.name, a.packet_id
                )),
            },
            Packet::Disconnect(d) => {
                self.conn = None;
                return Err(other(format!(
                    "{}: DISCONNECT from the broker: {:?}",
                    self.name, d.reason
                )));
            }
            other_packet => self.anomalies.add(format!(
                "{}: unexpected {}",
                self.name,
                other_packet.packet_type()
            )),
        }
        Ok(())
    }

    /// Polls until `done(packet)` is true for a packet handled; errors on timeout.
    pub fn poll_until(
        &mut self,
        timeout: Duration,
        mut done: impl FnMut(&Packet) -> bool,
    ) -> io::Result<Packet> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "poll_until timed out",
                ));
            }
            if let Some(p) = self.poll(left)? {
                if done(&p) {
                    return Ok(p);
                }
            }
        }
    }

    /// Polls until every exchange has finished.
    pub fn drain(&mut self, timeout: Duration) -> io::Result<()> {
        let deadline = Instant::now() + timeout;
        while !self.inflight.is_empty() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "{}: {} exchanges unfinished",
                        self.name,
                        self.inflight.len()
                    ),
                ));
            }
            self.poll(left)?;
        }
        Ok(())
    }

    /// Normal DISCONNECT (the session stays), then waits for the broker to close.
    pub fn disconnect(&mut self) {
        if let Some(mut conn) = self.conn.take() {
            if conn
                .send(&Packet::Disconnect(Disconnect::default()))
                .is_ok()
            {
                conn.wait_closed(Duration::from_secs(5));
            }
        }
    }
}

/// One message handed to the application.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub topic: String,
    pub payload: Bytes,
    pub qos: QoS,
    pub dup: bool,
    pub retain: bool,
}

impl Delivery {
    /// `"{publisher}:{seq}"` payloads -> (publisher, seq).
    pub fn origin(&self) -> Option<(String, u64)> {
        let s = std::str::from_utf8(&self.payload).ok()?;
        let (name, seq) = s.rsplit_once(':')?;
        Some((name.to_owned(), seq.parse().ok()?))
    }
}

/// A subscriber with a persistent session, receiving by "method B".
#[derive(Debug)]
pub struct Subscriber {
    pub name: String,
    pub expiry_secs: u32,
    conn: Option<Conn>,
    /// QoS 2 packet ids received (PUBREC sent or owed) and not yet released by PUBREL.
    pub received: HashSet<PacketId>,
    /// Messages handed to the application, in order.
    pub deliveries: Vec<Delivery>,
    pub connected_once: bool,
    pub connects: u64,
    pub sessions_lost: u64,
    next_pid: u16,
    /// QoS 2 PUBLISHes whose id was already received (retransmissions, not delivered).
    pub qos2_retransmissions: u64,
    /// PUBRELs for ids not in the received set (answered with PUBCOMP anyway).
    pub pubrel_unknown: u64,
    pub anomalies: Anomalies,
}

impl Subscriber {
    pub fn new(name: &str) -> Subscriber {
        Subscriber {
            name: name.to_owned(),
            expiry_secs: u32::MAX,
            conn: None,
            received: HashSet::new(),
            deliveries: Vec::new(),
            connected_once: false,
            connects: 0,
            sessions_lost: 0,
            next_pid: 1,
            qos2_retransmissions: 0,
            pubrel_unknown: 0,
            anomalies: Anomalies::default(),
        }
    }

    pub fn is_connected(&self) -> bool {
        self.conn.is_some()
    }

    /// Connects with Clean Start 0; returns Session Present.
    pub fn connect(&mut self, addr: SocketAddr) -> io::Result<bool> {
        self.conn = None;
        let (conn, ack) = Conn::open(addr, connect_packet(&self.name, false, self.expiry_secs))?;
        self.connects += 1;
        if self.connected_once && !ack.session_present {
            self.sessions_lost += 1;
            self.anomalies
                .add(format!("{}: session lost (Session Present 0)", self.name));
        }
        self.connected_once = true;
        self.conn = Some(conn);
        Ok(ack.session_present)
    }

    /// Handles what is left on a connection whose broker died (the packets that arrived
    /// before the EOF), then reconnects with retries.
    pub fn reconnect(&mut self, addr: impl Fn() -> SocketAddr) -> io::Result<bool> {
        while self.conn.is_some() {
            if let Ok(None) = self.poll(Duration::from_millis(200)) {
                break;
            }
        }
        retry(|| self.connect(addr()))
    }

    /// SUBSCRIBE and wait for the SUBACK (handling messages meanwhile); the granted codes.
    pub fn subscribe(&mut self, filters: &[(&str, QoS)]) -> io::Result<Vec<ReasonCode>> {
        let p = pid(self.next_pid);
        self.next_pid = self.next_pid % 1000 + 1;
        self.send(&Packet::Subscribe(Subscribe {
            packet_id: p,
            filters: filters
                .iter()
                .map(|(f, qos)| {
                    (
                        filter(f),
                        SubscriptionOptions {
                            qos: *qos,
                            ..SubscriptionOptions::default()
                        },
                    )
                })
                .collect(),
            properties: SubscribeProperties::default(),
        }))?;
        let ack = self.poll_until(
            Duration::from_secs(10),
            |pk| matches!(pk, Packet::SubAck(a) if a.packet_id == p),
        )?;
        match ack {
            Packet::SubAck(a) => Ok(a.reasons),
            _ => unreachable!("poll_until returned the SUBACK"),
        }
    }

    /// UNSUBSCRIBE and wait for the UNSUBACK; its reason codes.
    pub fn unsubscribe(&mut self, filters: &[&str]) -> io::Result<Vec<ReasonCode>> {
        let p = pid(self.next_pid);
        self.next_pid = self.next_pid % 1000 + 1;
        self.send(&Packet::Unsubscribe(Unsubscribe {
            packet_id: p,
            filters: filters.iter().map(|f| filter(f)).collect(),
            properties: Vec::new(),
        }))?;
        let ack = self.poll_until(
            Duration::from_secs(10),
            |pk| matches!(pk, Packet::UnsubAck(a) if a.packet_id == p),
        )?;
        match ack {
            Packet::UnsubAck(a) => Ok(a.reasons),
            _ => unreachable!("poll_until returned the UNSUBACK"),
        }
    }

    fn send(&mut self, p: &Packet) -> io::Result<()> {
        let Some(conn) = self.conn.as_mut() else {
            return Err(io::Error::new(io::ErrorKind::NotConnected, "not connected"));
        };
        let r = conn.send(p);
        if r.is_err() {
            self.conn = None;
        }
        r
    }

    /// The next packet, not handled (the test decides what to do with it).
    pub fn recv_raw(&mut self, timeout: Duration) -> io::Result<Option<Packet>> {
        let Some(conn) = self.conn.as_mut() else {
            return Err(io::Error::new(io::ErrorKind::NotConnected, "not connected"));
        };
        let r = conn.recv(timeout);
        if r.is_err() {
            self.conn = None;
        }
        r
    }

    /// Reads and handles one packet, acknowledging as the protocol says.
    pub fn poll(&mut self, timeout: Duration) -> io::Result<Option<Packet>> {
        let Some(p) = self.recv_raw(timeout)? else {
            return Ok(None);
        };
        self.handle(&p, true)?;
        Ok(Some(p))
    }

    /// Polls until `done(packet)` is true for a packet handled; errors on timeout.
    pub fn poll_until(
        &mut self,
        timeout: Duration,
        mut done: impl FnMut(&Packet) -> bool,
    ) -> io::Result<Packet> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "poll_until timed out",
                ));
            }
            if let Some(p) = self.poll(left)? {
                if done(&p) {
                    return Ok(p);
                }
            }
        }
    }

    /// Polls for `quiet` and returns what arrived (everything is handled).
    pub fn poll_for(&mut self, quiet: Duration) -> io::Result<Vec<Packet>> {
        let deadline = Instant::now() + quiet;
        let mut got = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(got);
            }
            if let Some(p) = self.poll(left)? {
                got.push(p);
            }
        }
    }

    /// Handles a packet by method B. With `send_acks` false the application still gets
    /// the message and the id is stored, but the acknowledgement is not sent (as if the
    /// connection died right before it left).
    pub fn handle(&mut self, p: &Packet, send_acks: bool) -> io::Result<()> {
        match p {
            Packet::Publish(m) => {
                let delivery = Delivery {
                    topic: m.topic.as_str().to_owned(),
                    payload: m.payload.clone(),
                    qos: m.qos,
                    dup: m.dup,
                    retain: m.retain,
                };
                let ack = match (m.qos, m.packet_id) {
                    (QoS::AtMostOnce, _) => {
                        self.deliveries.push(delivery);
                        None
                    }
                    (QoS::AtLeastOnce, Some(id)) => {
                        self.deliveries.push(delivery);
                        Some(Packet::PubAck(PubAck::new(id)))
                    }
                    (QoS::ExactlyOnce, Some(id)) => {
                        if self.received.insert(id) {
                            self.deliveries.push(delivery);
                        } else {
                            self.qos2_retransmissions += 1;
                            if !m.dup {
                                // The broker reused an id whose exchange is still open: a
                                // correct receiver drops the message, so it would be lost.
                                self.anomalies.add(format!(
                                    "{}: QoS 2 PUBLISH without DUP for id {id} still in flight ({:?})",
                                    self.name, m.payload
                                ));
                            }
                        }
                        Some(Packet::PubRec(PubAck::new(id)))
                    }
                    (_, None) => {
                        self.anomalies
                            .add(format!("{}: QoS>0 PUBLISH without id", self.name));
                        None
                    }
                };
                if let (Some(ack), true) = (ack, send_acks) {
                    self.send(&ack)?;
                }
            }
            Packet::PubRel(a) => {
                if !self.received.remove(&a.packet_id) {
                    self.pubrel_unknown += 1;
                }
                if send_acks {
                    self.send(&Packet::PubComp(PubAck::new(a.packet_id)))?;
                }
            }
            Packet::SubAck(_) | Packet::UnsubAck(_) | Packet::PingResp => {}
            Packet::Disconnect(d) => {
                self.conn = None;
                return Err(other(format!(
                    "{}: DISCONNECT from the broker: {:?}",
                    self.name, d.reason
                )));
            }
            other_packet => self.anomalies.add(format!(
                "{}: unexpected {}",
                self.name,
                other_packet.packet_type()
            )),
        }
        Ok(())
    }

    /// Normal DISCONNECT (the session stays), then waits for the broker to close.
    pub fn disconnect(&mut self) {
        if let Some(mut conn) = self.conn.take() {
            if conn
                .send(&Packet::Disconnect(Disconnect::default()))
                .is_ok()
            {
                conn.wait_closed(Duration::from_secs(5));
            }
        }
    }

    /// How many times the application got `"{publisher}:{seq}"`.
    pub fn count_of(&self, publisher: &str, seq: u64) -> usize {
        self.deliveries
            .iter()
            .filter(|d| d.origin().is_some_and(|(n, s)| n == publisher && s == seq))
            .count()
    }
}
