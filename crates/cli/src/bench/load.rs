//! Publisher and subscriber tasks: one task per connection, one socket each, driven by
//! readiness (`readable`/`writable` + `try_read`/`try_write`) so a task never blocks its own
//! reading on a write, and every write carries as many packets as are ready (batched writes).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use bytes::Buf;
use hdrhistogram::Histogram;
use quartet_proto::{Packet, ProtocolVersion, QoS};
use tokio::sync::watch;

use super::wire::{next_packet, put_ack, put_publish, Conn, ConnectOpts, In, Stamp};

/// Bytes queued before a write is issued; also the read chunk.
const BATCH_BYTES: usize = 64 * 1024;

/// Counters every task adds to, read by the progress bar and the drain logic.
#[derive(Debug)]
pub struct Shared {
    /// The clock of the payload stamps.
    pub base: Instant,
    pub published: AtomicU64,
    pub acked: AtomicU64,
    /// First deliveries (not duplicates), all subscribers together.
    pub delivered: AtomicU64,
    /// Publishers connected and waiting for the start signal.
    pub ready: AtomicU64,
}

impl Shared {
    pub fn new() -> Arc<Shared> {
        Arc::new(Shared {
            base: Instant::now(),
            published: AtomicU64::new(0),
            acked: AtomicU64::new(0),
            delivered: AtomicU64::new(0),
            ready: AtomicU64::new(0),
        })
    }

    fn now_ns(&self) -> u64 {
        self.base.elapsed().as_nanos() as u64
    }
}

/// What one publisher does.
#[derive(Debug, Clone)]
pub struct PubSpec {
    pub id: u32,
    pub connect: ConnectOpts,
    pub topic: String,
    pub qos: QoS,
    pub payload_len: usize,
    /// Messages in flight at most (QoS 1/2); capped by the broker's v5 Receive Maximum.
    pub window: usize,
    /// Messages per second of this publisher; `None` is as fast as possible.
    pub rate: Option<f64>,
    /// Stop after this many messages...
    pub count: Option<u64>,
    /// ...or after this long.
    pub duration: Option<Duration>,
    /// How long to wait for the last acknowledgements.
    pub drain: Duration,
}

/// What one publisher did.
#[derive(Debug, Clone, Default)]
pub struct PubResult {
    pub sent: u64,
    pub acked: u64,
    /// When the last message was handed to the socket.
    pub last_send: Option<Instant>,
    /// Connected and counted in [`Shared::ready`].
    pub ready: bool,
    pub error: Option<String>,
}

/// Connects a publisher, waits for `go`, publishes as told, waits for its acknowledgements.
pub async fn publisher(
    addr: SocketAddr,
    version: ProtocolVersion,
    spec: PubSpec,
    shared: Arc<Shared>,
    go: watch::Receiver<bool>,
) -> PubResult {
    let mut res = PubResult::default();
    if let Err(e) = publish_loop(addr, version, &spec, &shared, go, &mut res).await {
        res.error = Some(format!("publisher {}: {e:#}", spec.id));
        // Let the orchestrator stop waiting for this one (if it never got as far as ready).
        if !res.ready {
            shared.ready.fetch_add(1, Ordering::Relaxed);
        }
    }
    res
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Slot {
    Free,
    /// PUBLISH sent, PUBACK or PUBREC awaited.
    Sent,
    /// PUBREL sent, PUBCOMP awaited.
    Released,
}

async fn publish_loop(
    addr: SocketAddr,
    version: ProtocolVersion,
    spec: &PubSpec,
    shared: &Shared,
    mut go: watch::Receiver<bool>,
    res: &mut PubResult,
) -> anyhow::Result<()> {
    let (mut conn, ack) = Conn::connect(addr, version, &spec.connect).await?;
    let mut window = spec.window.clamp(1, 65_535 / 2);
    if let Some(rm) = ack.properties.receive_maximum {
        window = window.min(usize::from(rm.max(1)));
    }
    let qos0 = spec.qos == QoS::AtMostOnce;
    shared.ready.fetch_add(1, Ordering::Relaxed);
    res.ready = true;
    while !*go.borrow_and_update() {
        go.changed().await.context("the run was abandoned")?;
    }
    conn.rbuf.reserve(BATCH_BYTES);
    conn.wbuf.reserve(BATCH_BYTES * 2);
    let start = tokio::time::Instant::now();
    let deadline = spec.duration.map(|d| start + d);
    let mut slots = vec![Slot::Free; 65_536];
    let mut next_pid: u16 = 1;
    let mut inflight = 0usize;
    let mut producing = true;
    let mut drain_deadline = None;
    let limits = conn.limits;
    loop {
        let now = tokio::time::Instant::now();
        if producing
            && (deadline.is_some_and(|d| now >= d) || spec.count.is_some_and(|c| res.sent >= c))
        {
            producing = false;
            drain_deadline = Some(now + spec.drain);
        }
        let mut wake = None;
        if producing && conn.wbuf.len() < BATCH_BYTES {
            let mut n = if qos0 { usize::MAX } else { window - inflight };
            if let Some(c) = spec.count {
                n = n.min((c - res.sent) as usize);
            }
            if let Some(rate) = spec.rate {
                let due = ((now - start).as_secs_f64() * rate) as u64 + 1;
                let due = due.saturating_sub(res.sent) as usize;
                if due == 0 || n == 0 {
                    let next = start + Duration::from_secs_f64((res.sent + 1) as f64 / rate);
                    wake = Some(next);
                }
                n = n.min(due);
            }
            let now_ns = shared.now_ns();
            let before = res.sent;
            while n > 0 && conn.wbuf.len() < BATCH_BYTES {
                let mut pid = 0;
                if !qos0 {
                    while slots[usize::from(next_pid)] != Slot::Free {
                        next_pid = next_pid.checked_add(1).unwrap_or(1);
                    }
                    pid = next_pid;
                    slots[usize::from(pid)] = Slot::Sent;
                    next_pid = next_pid.checked_add(1).unwrap_or(1);
                    inflight += 1;
                }
                // At a fixed rate the stamp is the time the message was due, not the time it
                // left: a late send then shows as latency (no coordinated omission).
                let sent_ns = match spec.rate {
                    Some(rate) => {
                        let due = start + Duration::from_secs_f64(res.sent as f64 / rate);
                        let base = tokio::time::Instant::from_std(shared.base);
                        due.saturating_duration_since(base).as_nanos() as u64
                    }
                    None => now_ns,
                };
                put_publish(
                    &mut conn.wbuf,
                    version,
                    &spec.topic,
                    spec.qos,
                    pid,
                    spec.payload_len,
                    &Stamp {
                        publisher: spec.id,
                        seq: res.sent,
                        sent_ns,
                    },
                );
                res.sent += 1;
                n -= 1;
            }
            if res.sent > before {
                shared
                    .published
                    .fetch_add(res.sent - before, Ordering::Relaxed);
                res.last_send = Some(Instant::now());
            }
        }
        if !producing && inflight == 0 && conn.wbuf.is_empty() {
            break;
        }
        if producing {
            if let Some(d) = deadline {
                wake = Some(wake.map_or(d, |w: tokio::time::Instant| w.min(d)));
            }
        } else {
            wake = drain_deadline;
        }
        let can_write = !conn.wbuf.is_empty();
        tokio::select! {
            biased;
            r = conn.stream.readable() => {
                r?;
                read_some(&mut conn)?;
                let mut acked = 0u64;
                while let Some(p) = next_packet(&mut conn.rbuf, version, &limits)? {
                    match p {
                        In::Other(Packet::PubAck(a)) => {
                            let s = &mut slots[usize::from(a.packet_id.get())];
                            if *s == Slot::Sent && !a.reason.is_error() {
                                *s = Slot::Free;
                                inflight -= 1;
                                acked += 1;
                            } else if a.reason.is_error() {
                                bail!("PUBACK {:?} for packet {}", a.reason, a.packet_id);
                            }
                        }
                        In::Other(Packet::PubRec(a)) => {
                            if a.reason.is_error() {
                                bail!("PUBREC {:?} for packet {}", a.reason, a.packet_id);
                            }
                            let pid = a.packet_id.get();
                            let s = &mut slots[usize::from(pid)];
                            if *s == Slot::Sent {
                                *s = Slot::Released;
                            }
                            put_ack(&mut conn.wbuf, version, Packet::PubRel, pid)?;
                        }
                        In::Other(Packet::PubComp(a)) => {
                            let s = &mut slots[usize::from(a.packet_id.get())];
                            if *s == Slot::Released {
                                *s = Slot::Free;
                                inflight -= 1;
                                acked += 1;
                            }
                        }
                        In::Other(Packet::Disconnect(d)) => {
                            bail!("the broker disconnected: {:?}", d.reason)
                        }
                        In::Other(_) | In::Publish { .. } => {}
                    }
                }
                if acked > 0 {
                    res.acked += acked;
                    shared.acked.fetch_add(acked, Ordering::Relaxed);
                }
            }
            r = conn.stream.writable(), if can_write => {
                r?;
                write_some(&mut conn)?;
            }
            _ = sleep_opt(wake) => {
                if !producing {
                    // The last acknowledgements did not come: report them as unacknowledged.
                    break;
                }
            }
        }
    }
    if qos0 {
        res.acked = res.sent;
    }
    conn.disconnect().await;
    Ok(())
}

async fn sleep_opt(at: Option<tokio::time::Instant>) {
    match at {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

/// Reads what the socket has (up to a few batches); fails on EOF or error.
fn read_some(conn: &mut Conn) -> anyhow::Result<()> {
    for _ in 0..4 {
        if conn.rbuf.capacity() - conn.rbuf.len() < BATCH_BYTES / 4 {
            conn.rbuf.reserve(BATCH_BYTES);
        }
        match conn.stream.try_read_buf(&mut conn.rbuf) {
            Ok(0) => bail!("the broker closed the connection"),
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(()),
            Err(e) => return Err(e).context("read from the broker failed"),
        }
    }
    Ok(())
}

/// Writes as much of the write buffer as the socket takes.
fn write_some(conn: &mut Conn) -> anyhow::Result<()> {
    while !conn.wbuf.is_empty() {
        match conn.stream.try_write(&conn.wbuf) {
            Ok(n) => conn.wbuf.advance(n),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
            Err(e) => return Err(e).context("write to the broker failed"),
        }
    }
    Ok(())
}

/// Per publisher, which sequence numbers a receiver got.
#[derive(Debug, Clone, Default)]
pub struct Track {
    bits: Vec<u64>,
    highest: Option<u64>,
    pub unique: u64,
    pub dups: u64,
    pub out_of_order: u64,
}

impl Track {
    /// Records `seq`; true if it was new.
    pub fn record(&mut self, seq: u64) -> bool {
        let (word, bit) = ((seq / 64) as usize, seq % 64);
        if word >= self.bits.len() {
            self.bits.resize((word + 1).next_power_of_two(), 0);
        }
        if self.bits[word] & (1 << bit) != 0 {
            self.dups += 1;
            return false;
        }
        self.bits[word] |= 1 << bit;
        self.unique += 1;
        match self.highest {
            Some(h) if seq < h => self.out_of_order += 1,
            _ => self.highest = Some(seq),
        }
        true
    }

    /// Adds another receiver's record (members of one shared-subscription group): a message
    /// both got is a duplicate of the group.
    pub fn merge(&mut self, other: &Track) {
        if other.bits.len() > self.bits.len() {
            self.bits.resize(other.bits.len(), 0);
        }
        let mut both = 0u64;
        let mut unique = 0u64;
        for (a, b) in self.bits.iter_mut().zip(other.bits.iter().copied()) {
            both += u64::from((*a & b).count_ones());
            *a |= b;
        }
        for w in &self.bits {
            unique += u64::from(w.count_ones());
        }
        self.unique = unique;
        self.dups += other.dups + both;
        self.out_of_order += other.out_of_order;
    }

    /// How many of `0..sent` are missing.
    pub fn missing(&self, sent: u64) -> u64 {
        let mut have = 0u64;
        let full = (sent / 64) as usize;
        for w in self.bits.iter().take(full) {
            have += u64::from(w.count_ones());
        }
        let rest = sent % 64;
        if rest > 0 {
            if let Some(w) = self.bits.get(full) {
                have += u64::from((w & ((1u64 << rest) - 1)).count_ones());
            }
        }
        sent - have
    }
}

/// What one subscriber does.
#[derive(Debug, Clone)]
pub struct SubSpec {
    pub connect: ConnectOpts,
    pub filters: Vec<String>,
    pub qos: QoS,
}

/// What one subscriber saw.
#[derive(Debug)]
pub struct SubResult {
    /// Indexed by publisher id.
    pub tracks: Vec<Track>,
    /// Messages whose payload was not a benchmark stamp or came from an unknown publisher.
    pub strays: u64,
    pub latency: Histogram<u64>,
    pub last_delivery: Option<Instant>,
    pub first_delivery: Option<Instant>,
    pub error: Option<String>,
}

/// A histogram of microseconds, 1 µs to 1 hour, 3 significant digits.
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000, 3).unwrap_or_else(|_| {
        Histogram::new(3).unwrap_or_else(|_| unreachable!("3 significant digits are valid"))
    })
}

/// Connects and subscribes; the returned connection is handed to [`subscriber`].
pub async fn subscribe(
    addr: SocketAddr,
    version: ProtocolVersion,
    spec: &SubSpec,
) -> anyhow::Result<Conn> {
    let (mut conn, _) = Conn::connect(addr, version, &spec.connect).await?;
    conn.subscribe(&spec.filters, spec.qos).await?;
    Ok(conn)
}

/// Receives, acknowledges and records until `stop` turns true.
pub async fn subscriber(
    conn: Conn,
    publishers: usize,
    shared: Arc<Shared>,
    stop: watch::Receiver<bool>,
) -> SubResult {
    let mut res = SubResult {
        tracks: vec![Track::default(); publishers],
        strays: 0,
        latency: new_histogram(),
        last_delivery: None,
        first_delivery: None,
        error: None,
    };
    match subscribe_loop(conn, &shared, stop, &mut res).await {
        Ok(conn) => conn.disconnect().await,
        Err(e) => res.error = Some(format!("{e:#}")),
    }
    res
}

async fn subscribe_loop(
    mut conn: Conn,
    shared: &Shared,
    mut stop: watch::Receiver<bool>,
    res: &mut SubResult,
) -> anyhow::Result<Conn> {
    conn.rbuf.reserve(BATCH_BYTES);
    // QoS 2 packet ids received and not yet released: a PUBLISH with such an id is the
    // broker's retransmission, not a new message (the receiver's side of method B).
    let mut unreleased = vec![false; 65_536];
    // The handshake may have read packets past CONNACK (a resumed session's queued messages
    // can follow it in the same segment): handle them before waiting for more.
    on_input(&mut conn, &mut unreleased, shared, res)?;
    loop {
        if *stop.borrow_and_update() {
            return Ok(conn);
        }
        let can_write = !conn.wbuf.is_empty();
        tokio::select! {
            biased;
            r = conn.stream.readable() => {
                r?;
                read_some(&mut conn)?;
                on_input(&mut conn, &mut unreleased, shared, res)?;
            }
            r = conn.stream.writable(), if can_write => {
                r?;
                write_some(&mut conn)?;
            }
            r = stop.changed() => {
                if r.is_err() {
                    return Ok(conn);
                }
            }
        }
    }
}

/// Handles every whole packet in the read buffer: records and acknowledges PUBLISH, answers
/// PUBREL, and writes what it can of the acknowledgements.
fn on_input(
    conn: &mut Conn,
    unreleased: &mut [bool],
    shared: &Shared,
    res: &mut SubResult,
) -> anyhow::Result<()> {
    let version = conn.version;
    let limits = conn.limits;
    let now = Instant::now();
    let now_ns = shared.now_ns();
    let mut fresh = 0u64;
    while let Some(p) = next_packet(&mut conn.rbuf, version, &limits)? {
        match p {
            In::Publish {
                qos,
                packet_id,
                stamp,
                ..
            } => {
                let count = match qos {
                    QoS::AtMostOnce => true,
                    QoS::AtLeastOnce => {
                        put_ack(&mut conn.wbuf, version, Packet::PubAck, packet_id)?;
                        true
                    }
                    QoS::ExactlyOnce => {
                        put_ack(&mut conn.wbuf, version, Packet::PubRec, packet_id)?;
                        !std::mem::replace(&mut unreleased[usize::from(packet_id)], true)
                    }
                };
                if !count {
                    continue;
                }
                let track =
                    stamp.and_then(|s| res.tracks.get_mut(s.publisher as usize).map(|t| (s, t)));
                let Some((s, track)) = track else {
                    res.strays += 1;
                    continue;
                };
                if track.record(s.seq) {
                    fresh += 1;
                }
                let us = now_ns.saturating_sub(s.sent_ns) / 1000;
                res.latency.saturating_record(us.max(1));
            }
            In::Other(Packet::PubRel(a)) => {
                let pid = a.packet_id.get();
                unreleased[usize::from(pid)] = false;
                put_ack(&mut conn.wbuf, version, Packet::PubComp, pid)?;
            }
            In::Other(Packet::Disconnect(d)) => {
                bail!("the broker disconnected: {:?}", d.reason)
            }
            In::Other(_) => {}
        }
    }
    if fresh > 0 {
        shared.delivered.fetch_add(fresh, Ordering::Relaxed);
        res.last_delivery = Some(now);
        res.first_delivery.get_or_insert(now);
    }
    if !conn.wbuf.is_empty() {
        write_some(conn)?;
    }
    Ok(())
}
