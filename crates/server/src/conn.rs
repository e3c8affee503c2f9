//! One task per connection: framing in, encoding and batched writes out.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::BytesMut;
use quartet_broker::ConnId;
use quartet_proto::{decode, encode, DecodeError, Limits, Packet, ProtocolVersion};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

/// What the router tells a connection task.
///
/// The packet is boxed: a channel allocates its slots in blocks of 32 as soon as it is
/// created, so the size of this type is paid per connection, idle or not (a 264-byte packet
/// made that 8.5 KiB of every connection's memory).
#[derive(Debug)]
pub(crate) enum ToConn {
    /// Encode for this version and write.
    Packet(ProtocolVersion, Box<Packet>),
    /// Flush and close.
    Close,
}

/// What a connection task tells the router.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub(crate) enum Event {
    /// A new connection; sent before any other event of it.
    Open {
        conn: ConnId,
        tx: mpsc::Sender<ToConn>,
        abort: tokio::task::AbortHandle,
    },
    /// A decoded packet.
    Packet(ConnId, Packet),
    /// The bytes were not a valid packet; the task reads no more.
    DecodeError(ConnId, DecodeError),
    /// The peer closed the connection or it failed.
    Closed(ConnId),
}

/// Byte counters shared by all connection tasks.
#[derive(Debug, Default)]
pub(crate) struct IoStats {
    pub rx: AtomicU64,
    pub tx: AtomicU64,
    pub live: AtomicUsize,
}

/// Writes are batched: everything queued for the connection is encoded into one buffer and
/// written with one call, up to this many bytes.
const WRITE_BATCH_BYTES: usize = 64 * 1024;

pub(crate) async fn run(
    conn: ConnId,
    stream: TcpStream,
    events: mpsc::Sender<Event>,
    mut rx: mpsc::Receiver<ToConn>,
    limits: Limits,
    stats: Arc<IoStats>,
) {
    let (mut rd, mut wr) = stream.into_split();
    let mut rbuf = BytesMut::with_capacity(4096);
    // Grown by the first encode to what the connection actually sends: an idle connection
    // keeps a buffer the size of its CONNACK, not a page.
    let mut wbuf = BytesMut::new();
    // The first packet is CONNECT, which carries its own version; later packets are decoded
    // for the version it declared.
    let mut version = ProtocolVersion::V311;
    let mut reading = true;
    loop {
        tokio::select! {
            biased;
            msg = rx.recv() => {
                let mut close = false;
                let mut next = msg;
                loop {
                    match next {
                        Some(ToConn::Packet(v, p)) => {
                            if let Err(e) = encode(&p, v, &mut wbuf) {
                                tracing::error!(?conn, error = %e, "cannot encode {}", p.packet_type());
                            }
                        }
                        Some(ToConn::Close) | None => {
                            close = true;
                            break;
                        }
                    }
                    if wbuf.len() >= WRITE_BATCH_BYTES {
                        break;
                    }
                    match rx.try_recv() {
                        Ok(m) => next = Some(m),
                        Err(_) => break,
                    }
                }
                if !wbuf.is_empty() {
                    let n = wbuf.len();
                    if wr.write_all(&wbuf).await.is_err() {
                        wbuf.clear();
                        if reading {
                            let _ = events.send(Event::Closed(conn)).await;
                            reading = false;
                        }
                        if close { break; }
                        continue;
                    }
                    stats.tx.fetch_add(n as u64, Ordering::Relaxed);
                    wbuf.clear();
                }
                if close {
                    let _ = wr.shutdown().await;
                    break;
                }
            }
            r = rd.read_buf(&mut rbuf), if reading => {
                match r {
                    Ok(0) | Err(_) => {
                        reading = false;
                        let _ = events.send(Event::Closed(conn)).await;
                    }
                    Ok(n) => {
                        stats.rx.fetch_add(n as u64, Ordering::Relaxed);
                        loop {
                            match decode(&mut rbuf, version, &limits) {
                                Ok(Some(p)) => {
                                    if let Packet::Connect(c) = &p {
                                        version = c.protocol;
                                    }
                                    if events.send(Event::Packet(conn, p)).await.is_err() {
                                        return;
                                    }
                                }
                                Ok(None) => break,
                                Err(e) => {
                                    tracing::debug!(?conn, error = %e, "malformed packet");
                                    reading = false;
                                    let _ = events.send(Event::DecodeError(conn, e)).await;
                                    break;
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}
