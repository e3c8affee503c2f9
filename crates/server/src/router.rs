//! The router: the one task that owns the broker core. It turns connection events into
//! `handle_*` calls and carries out the actions the core emits.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use quartet_broker::{Action, Broker, ConnId, Millis, Token};
use quartet_proto::{Packet, QoS};
use quartet_store::StoreError;
use tokio::sync::{mpsc, watch};

use crate::conn::{Event, IoStats, ToConn};
use crate::writer::Writer;

pub(crate) fn now_millis() -> Millis {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

struct Handle {
    tx: mpsc::Sender<ToConn>,
    abort: tokio::task::AbortHandle,
}

pub(crate) struct Router {
    pub broker: Broker,
    conns: HashMap<ConnId, Handle>,
    stats: Arc<IoStats>,
    last_rx: u64,
    last_tx: u64,
    dropped_slow: u64,
    /// The storage writer; `None` in `memory` durability.
    writer: Option<Writer>,
    /// Batches handed to the writer and not yet reported durable.
    unpersisted: usize,
    /// The store failed: acknowledgements can no longer be promised.
    store_failed: bool,
}

impl Router {
    pub fn new(broker: Broker, stats: Arc<IoStats>, writer: Option<Writer>) -> Router {
        Router {
            broker,
            conns: HashMap::new(),
            stats,
            last_rx: 0,
            last_tx: 0,
            dropped_slow: 0,
            writer,
            unpersisted: 0,
            store_failed: false,
        }
    }

    /// Waits for the writer's next report; never resolves without a writer.
    async fn persisted(writer: &mut Option<Writer>) -> Option<Result<Token, StoreError>> {
        match writer {
            Some(w) => w.done.recv().await,
            None => std::future::pending().await,
        }
    }

    fn on_persisted(&mut self, r: Option<Result<Token, StoreError>>) {
        match r {
            Some(Ok(token)) => {
                self.broker.handle_persisted(token);
                self.unpersisted = 0;
            }
            Some(Err(e)) => {
                tracing::error!(
                    error = %e,
                    "the store failed: no acknowledgement can be promised any more; shutting down"
                );
                self.store_failed = true;
            }
            None => {
                tracing::error!("the store writer stopped; shutting down");
                self.store_failed = true;
            }
        }
    }

    pub async fn run(
        mut self,
        mut events: mpsc::Receiver<Event>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        self.dispatch();
        loop {
            let sleep = match self.broker.poll_timeout() {
                Some(at) => Duration::from_millis(at.saturating_sub(now_millis())),
                None => Duration::from_secs(3600),
            };
            tokio::select! {
                ev = events.recv() => {
                    let Some(ev) = ev else { break };
                    self.handle(ev);
                    // Take what else is waiting before carrying out actions: one pass of
                    // dispatch (and one group of writes per connection) for many events.
                    for _ in 0..1024 {
                        match events.try_recv() {
                            Ok(ev) => self.handle(ev),
                            Err(_) => break,
                        }
                    }
                }
                _ = tokio::time::sleep(sleep) => {
                    self.sync_stats();
                    self.broker.handle_timeout(now_millis());
                }
                r = Self::persisted(&mut self.writer) => self.on_persisted(r),
                _ = shutdown.changed() => break,
            }
            self.dispatch();
            if self.store_failed {
                break;
            }
        }
        // Graceful shutdown: DISCONNECT 0x8B to every v5 client, flush, close.
        self.broker.handle_shutdown(now_millis());
        self.dispatch();
        // What was handed to the store is made durable (and its acknowledgements released)
        // before the connections close.
        while self.unpersisted > 0 && !self.store_failed {
            let r = Self::persisted(&mut self.writer).await;
            self.on_persisted(r);
            self.dispatch();
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
        while self.stats.live.load(Ordering::Acquire) > 0 && tokio::time::Instant::now() < deadline
        {
            // Keep draining events so connection tasks are never blocked on a full channel.
            tokio::select! {
                ev = events.recv() => { if let Some(ev) = ev { self.handle(ev); self.dispatch(); } }
                _ = tokio::time::sleep(Duration::from_millis(10)) => {}
            }
        }
        for (_, h) in self.conns.drain() {
            h.abort.abort();
        }
    }

    fn sync_stats(&mut self) {
        let rx = self.stats.rx.load(Ordering::Relaxed);
        let tx = self.stats.tx.load(Ordering::Relaxed);
        self.broker.add_io_stats(
            rx - self.last_rx,
            tx - self.last_tx,
            std::mem::take(&mut self.dropped_slow),
        );
        self.last_rx = rx;
        self.last_tx = tx;
    }

    fn handle(&mut self, ev: Event) {
        let now = now_millis();
        match ev {
            Event::Open { conn, tx, abort } => {
                self.conns.insert(conn, Handle { tx, abort });
                self.broker.handle_open(conn, now);
            }
            Event::Packet(conn, p) => self.broker.handle_packet(conn, p, now),
            Event::DecodeError(conn, e) => self.broker.handle_decode_error(conn, &e, now),
            Event::Closed(conn) => self.broker.handle_closed(conn, now),
        }
    }

    /// Carries out every pending action.
    fn dispatch(&mut self) {
        while let Some(action) = self.broker.poll_action() {
            match action {
                Action::Send {
                    conn,
                    version,
                    packet,
                } => {
                    let Some(h) = self.conns.get(&conn) else {
                        continue;
                    };
                    let qos0 = matches!(&packet, Packet::Publish(p) if p.qos == QoS::AtMostOnce);
                    match h.tx.try_send(ToConn::Packet(version, Box::new(packet))) {
                        Ok(()) => {}
                        Err(mpsc::error::TrySendError::Full(_)) if qos0 => self.dropped_slow += 1,
                        Err(mpsc::error::TrySendError::Full(_)) => {
                            // A client that does not read: close it; its session keeps every
                            // QoS 1/2 message and resends it on reconnect.
                            tracing::info!(?conn, "closing a connection that does not read");
                            if let Some(h) = self.conns.remove(&conn) {
                                h.abort.abort();
                            }
                            self.broker.handle_closed(conn, now_millis());
                        }
                        Err(mpsc::error::TrySendError::Closed(_)) => {}
                    }
                }
                Action::Close { conn } => {
                    if let Some(h) = self.conns.remove(&conn) {
                        if h.tx.try_send(ToConn::Close).is_err() {
                            h.abort.abort();
                        }
                    }
                }
                Action::Persist { token, batch } => match &self.writer {
                    Some(w) => {
                        if w.tx.send((token, batch)).is_err() {
                            self.store_failed = true;
                        } else {
                            self.unpersisted += 1;
                        }
                    }
                    // `memory` durability: nothing to wait for.
                    None => self.broker.handle_persisted(token),
                },
            }
        }
    }
}
