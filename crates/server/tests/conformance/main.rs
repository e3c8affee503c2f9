//! Conformance, tier 3 of the testing guide: byte-level scripted scenarios against the real
//! server, started in-process on a free port.
//!
//! Each area of the protocol has its own module, numbered. A scenario is an `async fn(V)`
//! that starts its own server, drives raw TCP peers byte by byte and names the normative
//! statements it checks (`[MQTT-x.y.z-n]`; where a statement differs between 3.1.1 and 5.0
//! both are given). The `tests!` macro runs it once for every protocol version it applies
//! to, the versions concurrently (so wall-clock waits of timing scenarios overlap).
//!
//! The harness:
//! - [`TestServer`]: a server on 127.0.0.1:0 with a given config;
//! - [`Peer`]: a scripted client over a `TcpStream`: [`Peer::send`], [`Peer::expect`] (exact
//!   bytes, hex on mismatch), [`Peer::expect_closed`], [`Peer::expect_nothing`], and
//!   [`Peer::recv`] (a decoded packet, for flows whose exact ids or sizes are not the point);
//! - byte builders ([`Connect`], [`publish`], [`subscribe`], ...) that lay out each field by
//!   hand, so that what goes on the wire is what the test says, not what our codec thinks.
//!
//! Determinism: every wait is bounded. Cross-connection ordering is established by an
//! acknowledgement or by [`Peer::sync`] (PINGREQ/PINGRESP: the server answers in order), and
//! "was not delivered" is shown with a marker message that must arrive next, wherever the
//! protocol allows it, rather than with a quiet period.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod a01_connect;
mod a02_subscribe;
mod a03_qos;
mod a04_resume;
mod a05_retained;
mod a06_will;
mod a07_expiry;
mod a08_shared;
mod a09_topic_alias;
mod a10_flow_control;
mod a11_packet_size;
mod a12_malformed;
mod a13_protocol_error;
mod a14_robustness;

use std::fmt::Write as _;
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::BytesMut;
use quartet_proto::{decode, ConnAck, Limits, Packet, Publish};
use quartet_server::{Server, ServerConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::time::Instant;

pub use quartet_proto::ProtocolVersion as V;

/// Every version.
pub const ALL: [V; 3] = [V::V31, V::V311, V::V5];
/// The versions with a Session Present flag.
pub const V311_V5: [V; 2] = [V::V311, V::V5];
/// 3.1 and 3.1.1.
pub const V3: [V; 2] = [V::V31, V::V311];
/// 5.0 only.
pub const V5: [V; 1] = [V::V5];
/// For scenarios that happen before any version is known (the label only picks the decoder).
pub const ANY: [V; 1] = [V::V311];

/// How long an `expect_*` waits by default.
pub const TIMEOUT: Duration = Duration::from_secs(5);

/// Declares `#[tokio::test]`s that run a scenario for each of the given versions.
#[macro_export]
macro_rules! tests {
    ($($(#[$meta:meta])* $name:ident: $versions:expr;)*) => {
        mod run {
            #[allow(unused_imports)]
            use super::*;
            $(
                $(#[$meta])*
                #[tokio::test]
                async fn $name() {
                    $crate::run_versions(stringify!($name), &$versions, super::$name).await;
                }
            )*
        }
    };
}

/// Runs `f` once per version, concurrently, and fails if any run failed.
pub async fn run_versions<F, Fut>(name: &str, versions: &[V], f: F)
where
    F: Fn(V) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let handles: Vec<_> = versions.iter().map(|&v| (v, tokio::spawn(f(v)))).collect();
    let mut failure = None;
    for (v, h) in handles {
        if let Err(e) = h.await {
            eprintln!("scenario `{name}` FAILED for MQTT {v}");
            if failure.is_none() && e.is_panic() {
                failure = Some(e.into_panic());
            }
        }
    }
    if let Some(p) = failure {
        std::panic::resume_unwind(p);
    }
}

// ---------------------------------------------------------------------------------------------
// The server

/// A server on a free port.
#[derive(Debug)]
pub struct TestServer {
    server: Server,
    pub addr: SocketAddr,
}

/// A scratch directory for a durable server, removed when dropped.
#[derive(Debug)]
pub struct DataDir(pub std::path::PathBuf);

impl DataDir {
    /// A new empty directory under the system's temporary directory.
    pub fn new(name: &str) -> DataDir {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!(
            "quartet-conformance-{}-{name}-{n}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        DataDir(dir)
    }
}

impl Drop for DataDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The configuration every scenario starts from: a free port, no `$SYS` noise.
pub fn test_config() -> ServerConfig {
    let mut config = ServerConfig {
        listen: vec![SocketAddr::from(([127, 0, 0, 1], 0))],
        ..ServerConfig::default()
    };
    config.limits.sys_interval_secs = 0;
    config
}

impl TestServer {
    /// The default configuration.
    pub async fn start() -> TestServer {
        TestServer::start_with(|_| {}).await
    }

    /// A durable server (`os` durability: every acknowledgement waits for the store writer)
    /// keeping its log in `dir`.
    pub async fn start_durable(dir: &DataDir) -> TestServer {
        let path = dir.0.clone();
        TestServer::start_with(move |c| {
            c.durability = quartet_server::Durability::Os;
            c.data_dir = path;
        })
        .await
    }

    /// The default configuration, changed by `f`.
    pub async fn start_with(f: impl FnOnce(&mut ServerConfig)) -> TestServer {
        let mut config = test_config();
        f(&mut config);
        let server = Server::start(config).await.expect("server starts");
        let addr = server.local_addrs()[0];
        TestServer { server, addr }
    }

    /// A TCP connection that has sent nothing yet. `v` picks the decoder of [`Peer::recv`].
    pub async fn raw(&self, v: V, name: &str) -> Peer {
        let stream = TcpStream::connect(self.addr).await.expect("tcp connect");
        stream.set_nodelay(true).unwrap();
        Peer::new(v, name, stream)
    }

    /// Like [`TestServer::raw`] with a small socket receive buffer (for peers that do not read).
    pub async fn raw_small_rcvbuf(&self, v: V, name: &str, bytes: u32) -> Peer {
        let socket = TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(bytes).unwrap();
        let stream = socket.connect(self.addr).await.expect("tcp connect");
        stream.set_nodelay(true).unwrap();
        Peer::new(v, name, stream)
    }

    /// Connects with `connect` and returns the peer and its (successful) CONNACK.
    pub async fn connect(&self, connect: &Connect) -> (Peer, ConnAck) {
        let mut p = self.raw(connect.v, &connect.id).await;
        p.send(&connect.bytes()).await;
        let connack_ = p.recv_connack().await;
        assert_eq!(
            connack_.reason,
            quartet_proto::ReasonCode::Success,
            "{}: CONNACK refused: {connack_:?}",
            p.name
        );
        (p, connack_)
    }

    /// A connected client: clean session, no keep alive, no will.
    pub async fn client(&self, v: V, id: &str) -> Peer {
        let (p, connack_) = self.connect(&Connect::new(v, id)).await;
        assert!(
            !connack_.session_present,
            "{}: session present on a clean start",
            p.name
        );
        p
    }

    /// A connected client subscribed to `filter` at `qos`.
    pub async fn subscriber(&self, v: V, id: &str, filter: &str, qos: u8) -> Peer {
        let mut p = self.client(v, id).await;
        p.subscribe(1, filter, qos).await;
        p
    }

    /// Graceful shutdown (v5 clients get DISCONNECT 0x8B).
    pub async fn shutdown(self) {
        self.server.shutdown().await;
    }
}

// ---------------------------------------------------------------------------------------------
// The scripted peer

/// One end of a TCP connection to the server, scripted byte by byte.
#[derive(Debug)]
pub struct Peer {
    /// The protocol version (for [`Peer::recv`] and the version-dependent helpers).
    pub v: V,
    /// Shown in failures: version and role.
    pub name: String,
    stream: TcpStream,
    /// Received and not yet consumed.
    buf: BytesMut,
    /// How long an `expect_*` waits.
    pub timeout: Duration,
}

/// `0a 1b 2c` for failure messages.
pub fn hex(b: &[u8]) -> String {
    let mut s = String::with_capacity(b.len() * 3);
    for (i, x) in b.iter().enumerate() {
        if i > 0 {
            s.push(' ');
        }
        let _ = write!(s, "{x:02x}");
    }
    s
}

fn is_reset(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::ConnectionReset
            | std::io::ErrorKind::ConnectionAborted
            | std::io::ErrorKind::BrokenPipe
    )
}

impl Peer {
    fn new(v: V, name: &str, stream: TcpStream) -> Peer {
        Peer {
            v,
            name: format!("[MQTT {v}] {name}"),
            stream,
            buf: BytesMut::with_capacity(8192),
            timeout: TIMEOUT,
        }
    }

    /// Writes `bytes`; the connection must take them.
    pub async fn send(&mut self, bytes: &[u8]) {
        if let Err(e) = self.stream.write_all(bytes).await {
            panic!("{}: cannot send {}: {e}", self.name, hex(bytes));
        }
    }

    /// Writes `bytes`, ignoring a connection the server already closed.
    pub async fn send_lossy(&mut self, bytes: &[u8]) {
        let _ = self.stream.write_all(bytes).await;
    }

    /// Reads more bytes into the buffer before `deadline`. `Ok(0)` is EOF.
    async fn read_more(&mut self, deadline: Instant) -> Option<std::io::Result<usize>> {
        tokio::time::timeout_at(deadline, self.stream.read_buf(&mut self.buf))
            .await
            .ok()
    }

    /// Reads until at least `n` bytes are buffered.
    async fn fill(&mut self, n: usize, want: &[u8]) {
        let deadline = Instant::now() + self.timeout;
        while self.buf.len() < n {
            match self.read_more(deadline).await {
                None => panic!(
                    "{}: timed out after {:?} waiting for\n  want: {}\n  got:  {}",
                    self.name,
                    self.timeout,
                    hex(want),
                    hex(&self.buf)
                ),
                Some(Ok(0)) => panic!(
                    "{}: connection closed while waiting for\n  want: {}\n  got:  {}",
                    self.name,
                    hex(want),
                    hex(&self.buf)
                ),
                Some(Err(e)) if is_reset(&e) => panic!(
                    "{}: connection reset ({e}) while waiting for\n  want: {}\n  got:  {}",
                    self.name,
                    hex(want),
                    hex(&self.buf)
                ),
                Some(Err(e)) => panic!("{}: read failed: {e}", self.name),
                Some(Ok(_)) => {}
            }
        }
    }

    /// Reads exactly `want.len()` bytes and compares them with `want`.
    pub async fn expect(&mut self, want: &[u8]) {
        self.fill(want.len(), want).await;
        if &self.buf[..want.len()] != want {
            panic!(
                "{}: unexpected bytes\n  want: {}\n  got:  {}",
                self.name,
                hex(want),
                hex(&self.buf)
            );
        }
        let _ = self.buf.split_to(want.len());
    }

    /// The next packet, decoded for this peer's version.
    pub async fn recv(&mut self) -> Packet {
        let deadline = Instant::now() + self.timeout;
        loop {
            let snapshot = hex(&self.buf[..self.buf.len().min(64)]);
            match decode(&mut self.buf, self.v, &Limits::default()) {
                Ok(Some(p)) => return p,
                Ok(None) => {}
                Err(e) => panic!(
                    "{}: undecodable bytes from the server ({e}): {snapshot}",
                    self.name
                ),
            }
            match self.read_more(deadline).await {
                None => panic!(
                    "{}: timed out waiting for a packet; buffered: {}",
                    self.name,
                    hex(&self.buf)
                ),
                Some(Ok(0)) => panic!(
                    "{}: connection closed while waiting for a packet; buffered: {}",
                    self.name,
                    hex(&self.buf)
                ),
                Some(Err(e)) => {
                    panic!("{}: read failed while waiting for a packet: {e}", self.name)
                }
                Some(Ok(_)) => {}
            }
        }
    }

    /// The next packet, which must be a PUBLISH.
    pub async fn recv_publish(&mut self) -> Publish {
        match self.recv().await {
            Packet::Publish(p) => p,
            other => panic!("{}: expected PUBLISH, got {other:?}", self.name),
        }
    }

    /// The next packet, which must be a CONNACK.
    pub async fn recv_connack(&mut self) -> ConnAck {
        match self.recv().await {
            Packet::ConnAck(a) => a,
            other => panic!("{}: expected CONNACK, got {other:?}", self.name),
        }
    }

    /// The server closes the connection (EOF or reset) without sending anything more.
    pub async fn expect_closed(&mut self) {
        if !self.buf.is_empty() {
            panic!(
                "{}: expected the connection to close, but bytes are pending: {}",
                self.name,
                hex(&self.buf)
            );
        }
        let deadline = Instant::now() + self.timeout;
        match self.read_more(deadline).await {
            None => panic!(
                "{}: the server did not close the connection within {:?}",
                self.name, self.timeout
            ),
            Some(Ok(0)) => {}
            Some(Err(e)) if is_reset(&e) => {}
            Some(Err(e)) => panic!("{}: read failed: {e}", self.name),
            Some(Ok(_)) => panic!(
                "{}: expected the connection to close, got bytes: {}",
                self.name,
                hex(&self.buf)
            ),
        }
    }

    /// Nothing arrives (and the connection stays open) for `ms` milliseconds.
    pub async fn expect_nothing(&mut self, ms: u64) {
        if !self.buf.is_empty() {
            panic!(
                "{}: expected nothing, but bytes are pending: {}",
                self.name,
                hex(&self.buf)
            );
        }
        let deadline = Instant::now() + Duration::from_millis(ms);
        match self.read_more(deadline).await {
            None => {}
            Some(Ok(0)) => panic!(
                "{}: expected nothing, but the connection was closed",
                self.name
            ),
            Some(Err(e)) => panic!("{}: expected nothing, but the read failed: {e}", self.name),
            Some(Ok(_)) => panic!("{}: expected nothing, got: {}", self.name, hex(&self.buf)),
        }
    }

    /// The server ends the connection with `reason`: v5 gets DISCONNECT first, v3 is just
    /// closed [MQTT-4.13.1-1] (5.0) / [MQTT-4.8.0-1] (3.1.1).
    pub async fn expect_disconnect(&mut self, reason: u8) {
        if self.v == V::V5 {
            self.expect(&[
                0xE0, 0x01,   // DISCONNECT, remaining length 1
                reason, // reason code
            ])
            .await;
        }
        self.expect_closed().await;
    }

    /// PINGREQ, then PINGRESP must be the next packet: everything the server produced for
    /// this connection before it saw the PINGREQ has been received or was never sent.
    pub async fn sync(&mut self) {
        self.send(&[0xC0, 0x00]).await; // PINGREQ
        self.expect(&[0xD0, 0x00]).await; // PINGRESP [MQTT-3.12.4-1]
    }

    /// Subscribes to one filter and expects the SUBACK granting `qos`.
    pub async fn subscribe(&mut self, pid: u16, filter: &str, qos: u8) {
        self.send(&subscribe(self.v, pid, &[(filter, qos)], &[]))
            .await;
        self.expect(&suback(self.v, pid, &[qos])).await;
    }

    /// Publishes with QoS 0 and waits until the server has routed it (see [`Peer::sync`]).
    pub async fn publish0(&mut self, topic: &str, payload: &[u8]) {
        self.send(&publish(self.v, QOS0, topic, None, &[], payload))
            .await;
        self.sync().await;
    }

    /// Publishes with QoS 1 and expects the PUBACK.
    pub async fn publish1(&mut self, topic: &str, pid: u16, payload: &[u8]) {
        self.send(&publish(self.v, QOS1, topic, Some(pid), &[], payload))
            .await;
        self.expect(&ack(PUBACK, pid)).await;
    }

    /// Sends DISCONNECT (normal) and expects the server to close.
    pub async fn disconnect(&mut self) {
        self.send(&[0xE0, 0x00]).await;
        self.expect_closed().await;
    }

    /// Reads until EOF or reset (or `timeout`); returns the bytes received and whether the
    /// connection ended.
    pub async fn drain(&mut self, idle: Duration) -> (BytesMut, bool) {
        loop {
            match tokio::time::timeout(idle, self.stream.read_buf(&mut self.buf)).await {
                Err(_) => return (std::mem::take(&mut self.buf), false),
                Ok(Ok(0)) => return (std::mem::take(&mut self.buf), true),
                Ok(Err(e)) if is_reset(&e) => return (std::mem::take(&mut self.buf), true),
                Ok(Err(e)) => panic!("{}: read failed: {e}", self.name),
                Ok(Ok(_)) => {}
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Bytes, laid out by hand

/// PUBLISH flags: QoS 0.
pub const QOS0: u8 = 0x00;
/// PUBLISH flags: QoS 1.
pub const QOS1: u8 = 0x02;
/// PUBLISH flags: QoS 2.
pub const QOS2: u8 = 0x04;
/// PUBLISH flags: DUP.
pub const DUP: u8 = 0x08;
/// PUBLISH flags: RETAIN.
pub const RETAIN: u8 = 0x01;

/// PUBACK first byte.
pub const PUBACK: u8 = 0x40;
/// PUBREC first byte.
pub const PUBREC: u8 = 0x50;
/// PUBREL first byte (flags 0010 [MQTT-3.6.1-1]).
pub const PUBREL: u8 = 0x62;
/// PUBCOMP first byte.
pub const PUBCOMP: u8 = 0x70;

/// A variable byte integer [MQTT-1.5.5].
pub fn varint(mut n: usize) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let mut b = (n & 0x7F) as u8;
        n >>= 7;
        if n > 0 {
            b |= 0x80;
        }
        out.push(b);
        if n == 0 {
            return out;
        }
    }
}

/// A UTF-8 string: two-byte length, then the bytes.
pub fn utf8(s: &str) -> Vec<u8> {
    bin(s.as_bytes())
}

/// Binary data (or raw string bytes, valid or not): two-byte length, then the bytes.
pub fn bin(b: &[u8]) -> Vec<u8> {
    let mut out = (b.len() as u16).to_be_bytes().to_vec();
    out.extend_from_slice(b);
    out
}

/// First byte, remaining length, body.
pub fn frame(first: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![first];
    out.extend(varint(body.len()));
    out.extend_from_slice(body);
    out
}

/// v5: property length and properties; v3: nothing (and there must be no properties).
pub fn props(v: V, p: &[u8]) -> Vec<u8> {
    if v == V::V5 {
        let mut out = varint(p.len());
        out.extend_from_slice(p);
        out
    } else {
        assert!(p.is_empty(), "MQTT {v} has no properties");
        Vec::new()
    }
}

/// v5 properties, one function per property identifier.
pub mod prop {
    /// 0x11 Session Expiry Interval.
    pub fn session_expiry(secs: u32) -> Vec<u8> {
        let mut p = vec![0x11];
        p.extend(secs.to_be_bytes());
        p
    }
    /// 0x21 Receive Maximum.
    pub fn receive_maximum(n: u16) -> Vec<u8> {
        let mut p = vec![0x21];
        p.extend(n.to_be_bytes());
        p
    }
    /// 0x27 Maximum Packet Size.
    pub fn maximum_packet_size(n: u32) -> Vec<u8> {
        let mut p = vec![0x27];
        p.extend(n.to_be_bytes());
        p
    }
    /// 0x22 Topic Alias Maximum.
    pub fn topic_alias_maximum(n: u16) -> Vec<u8> {
        let mut p = vec![0x22];
        p.extend(n.to_be_bytes());
        p
    }
    /// 0x23 Topic Alias.
    pub fn topic_alias(n: u16) -> Vec<u8> {
        let mut p = vec![0x23];
        p.extend(n.to_be_bytes());
        p
    }
    /// 0x18 Will Delay Interval.
    pub fn will_delay(secs: u32) -> Vec<u8> {
        let mut p = vec![0x18];
        p.extend(secs.to_be_bytes());
        p
    }
    /// 0x0B Subscription Identifier.
    pub fn subscription_id(n: usize) -> Vec<u8> {
        let mut p = vec![0x0B];
        p.extend(super::varint(n));
        p
    }
}

/// A will message of [`Connect`].
#[derive(Debug, Clone)]
pub struct Will {
    pub topic: String,
    pub payload: Vec<u8>,
    pub qos: u8,
    pub retain: bool,
    /// v5 will properties (raw).
    pub props: Vec<u8>,
}

impl Will {
    /// QoS 0, not retained, no properties.
    pub fn new(topic: &str, payload: &[u8]) -> Will {
        Will {
            topic: topic.into(),
            payload: payload.into(),
            qos: 0,
            retain: false,
            props: Vec::new(),
        }
    }
}

/// A CONNECT, built field by field.
#[derive(Debug, Clone)]
pub struct Connect {
    pub v: V,
    pub id: String,
    /// Clean Session (3.1/3.1.1) / Clean Start (5.0).
    pub clean: bool,
    pub keep_alive: u16,
    /// v5 CONNECT properties (raw).
    pub props: Vec<u8>,
    pub will: Option<Will>,
    pub username: Option<String>,
    pub password: Option<Vec<u8>>,
}

impl Connect {
    /// Clean, keep alive 0, no will, no properties.
    pub fn new(v: V, id: &str) -> Connect {
        Connect {
            v,
            id: id.into(),
            clean: true,
            keep_alive: 0,
            props: Vec::new(),
            will: None,
            username: None,
            password: None,
        }
    }

    /// Sets the user name and/or password.
    pub fn credentials(mut self, username: Option<&str>, password: Option<&[u8]>) -> Connect {
        self.username = username.map(Into::into);
        self.password = password.map(Into::into);
        self
    }

    /// Sets Clean Session / Clean Start.
    pub fn clean(mut self, clean: bool) -> Connect {
        self.clean = clean;
        self
    }

    /// Sets the keep alive in seconds.
    pub fn keep_alive(mut self, secs: u16) -> Connect {
        self.keep_alive = secs;
        self
    }

    /// Appends v5 properties.
    pub fn prop(mut self, p: Vec<u8>) -> Connect {
        self.props.extend(p);
        self
    }

    /// Sets the will.
    pub fn will(mut self, w: Will) -> Connect {
        self.will = Some(w);
        self
    }

    /// A persistent session: clean 0, and for v5 a session expiry of `secs`.
    pub fn persistent(self, secs: u32) -> Connect {
        let c = self.clean(false);
        if c.v == V::V5 {
            c.prop(prop::session_expiry(secs))
        } else {
            c
        }
    }

    /// The bytes on the wire.
    pub fn bytes(&self) -> Vec<u8> {
        let mut body = utf8(self.v.protocol_name()); // protocol name "MQIsdp" / "MQTT"
        body.push(self.v.level()); // protocol level 3 / 4 / 5
        let mut flags = 0u8;
        if self.clean {
            flags |= 0x02; // clean session / clean start
        }
        if let Some(w) = &self.will {
            flags |= 0x04 | (w.qos << 3); // will flag, will QoS
            if w.retain {
                flags |= 0x20; // will retain
            }
        }
        if self.username.is_some() {
            flags |= 0x80; // user name
        }
        if self.password.is_some() {
            flags |= 0x40; // password
        }
        body.push(flags);
        body.extend(self.keep_alive.to_be_bytes()); // keep alive
        body.extend(props(self.v, &self.props)); // v5 properties
        body.extend(utf8(&self.id)); // client identifier
        if let Some(w) = &self.will {
            body.extend(props(self.v, &w.props)); // v5 will properties
            body.extend(utf8(&w.topic)); // will topic
            body.extend(bin(&w.payload)); // will payload
        }
        if let Some(u) = &self.username {
            body.extend(utf8(u)); // user name
        }
        if let Some(p) = &self.password {
            body.extend(bin(p)); // password
        }
        frame(0x10, &body)
    }
}

/// The CONNACK the default configuration sends.
pub fn connack(v: V, session_present: bool) -> Vec<u8> {
    let sp = u8::from(session_present);
    match v {
        V::V5 => vec![
            0x20, 0x16, // CONNACK, remaining length 22
            sp,   // acknowledge flags: session present
            0x00, // reason code: success
            0x13, // property length 19
            0x21, 0x04, 0x00, // receive maximum 1024
            0x25, 0x01, // retain available
            0x27, 0x00, 0x10, 0x00, 0x00, // maximum packet size 1 MiB
            0x22, 0x00, 0x40, // topic alias maximum 64
            0x28, 0x01, // wildcard subscription available
            0x29, 0x01, // subscription identifiers available
            0x2A, 0x01, // shared subscription available
        ],
        _ => vec![
            0x20, 0x02, // CONNACK, remaining length 2
            sp,   // acknowledge flags (3.1: reserved, always 0)
            0x00, // return code: accepted
        ],
    }
}

/// PUBLISH: fixed header `0x30 | flags`, topic, packet id if QoS > 0, v5 properties, payload.
pub fn publish(
    v: V,
    flags: u8,
    topic: &str,
    pid: Option<u16>,
    properties: &[u8],
    payload: &[u8],
) -> Vec<u8> {
    let mut body = utf8(topic);
    if let Some(pid) = pid {
        body.extend(pid.to_be_bytes());
    }
    body.extend(props(v, properties));
    body.extend_from_slice(payload);
    frame(0x30 | flags, &body)
}

/// SUBSCRIBE (flags 0010): packet id, v5 properties, then filter and options per entry.
pub fn subscribe(v: V, pid: u16, filters: &[(&str, u8)], properties: &[u8]) -> Vec<u8> {
    let mut body = pid.to_be_bytes().to_vec();
    body.extend(props(v, properties));
    for (f, o) in filters {
        body.extend(utf8(f));
        body.push(*o);
    }
    frame(0x82, &body)
}

/// UNSUBSCRIBE (flags 0010): packet id, v5 properties, filters.
pub fn unsubscribe(v: V, pid: u16, filters: &[&str]) -> Vec<u8> {
    let mut body = pid.to_be_bytes().to_vec();
    body.extend(props(v, &[]));
    for f in filters {
        body.extend(utf8(f));
    }
    frame(0xA2, &body)
}

/// SUBACK: packet id, v5 empty properties, one code per filter.
pub fn suback(v: V, pid: u16, codes: &[u8]) -> Vec<u8> {
    let mut body = pid.to_be_bytes().to_vec();
    body.extend(props(v, &[]));
    body.extend_from_slice(codes);
    frame(0x90, &body)
}

/// PUBACK/PUBREC/PUBREL/PUBCOMP, success, short form: first byte, 02, packet id.
pub fn ack(first: u8, pid: u16) -> Vec<u8> {
    let [hi, lo] = pid.to_be_bytes();
    vec![first, 0x02, hi, lo]
}

/// PUBACK/PUBREC/PUBREL/PUBCOMP with a reason code (v5): first byte, 03, packet id, reason.
pub fn ack_rc(first: u8, pid: u16, reason: u8) -> Vec<u8> {
    let [hi, lo] = pid.to_be_bytes();
    vec![first, 0x03, hi, lo, reason]
}
