//! The tokio driver of the Quartet broker.
//!
//! # Layout
//! - [`config`]: [`ServerConfig`], read from TOML.
//! - `conn`: one task per connection: reads and decodes packets (framing first), encodes and
//!   writes what the router sends, batching writes.
//! - `router`: the single owner of the [`quartet_broker::Broker`]; it feeds connection
//!   events to the core and carries out its actions.
//! - `writer`: the storage writer thread: group commit of the core's persist batches.
//!
//! Start it with [`Server::start`] (tests do this in-process, on port 0) or [`run`].
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod config;
mod conn;
mod router;
mod writer;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use quartet_broker::{Broker, ConnId};
use quartet_proto::Limits;
use quartet_store::{LogStore, State, Store, SyncMode};
use thiserror::Error;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

pub use config::{Durability, ServerConfig};

use conn::{Event, IoStats};

/// Why the server could not start or run.
#[derive(Debug, Error)]
pub enum ServerError {
    /// A listener could not bind.
    #[error("cannot listen on {addr}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The configuration is invalid.
    #[error("bad configuration: {0}")]
    Config(String),
    /// The store could not be opened or read.
    #[error("cannot open the store")]
    Store(#[from] quartet_store::StoreError),
}

/// A running server.
#[derive(Debug)]
pub struct Server {
    local_addrs: Vec<SocketAddr>,
    shutdown: watch::Sender<bool>,
    router: JoinHandle<()>,
    listeners: Vec<JoinHandle<()>>,
}

impl Server {
    /// Binds every listener and starts serving.
    pub async fn start(config: ServerConfig) -> Result<Server, ServerError> {
        if config.listen.is_empty() {
            return Err(ServerError::Config(
                "no listener: give at least one listen address".into(),
            ));
        }
        let mut bound = Vec::new();
        for addr in &config.listen {
            let l = TcpListener::bind(addr)
                .await
                .map_err(|source| ServerError::Bind {
                    addr: *addr,
                    source,
                })?;
            bound.push(l);
        }
        let local_addrs = bound
            .iter()
            .filter_map(|l| l.local_addr().ok())
            .collect::<Vec<_>>();
        let (state, writer) = match config.durability {
            Durability::Memory => (State::default(), None),
            d => {
                let sync = if d == Durability::Fsync {
                    SyncMode::Fsync
                } else {
                    SyncMode::Os
                };
                let dir = config.data_dir.clone();
                let mut store = tokio::task::spawn_blocking(move || LogStore::open(dir, sync))
                    .await
                    .map_err(|e| ServerError::Config(format!("store task failed: {e}")))??;
                let r = store.report();
                if r.truncated_bytes > 0 {
                    tracing::warn!(
                        bytes = r.truncated_bytes,
                        "cut a torn write off the end of the log (it was never acknowledged)"
                    );
                }
                tracing::info!(
                    dir = %config.data_dir.display(),
                    records = r.records,
                    segments = r.segments,
                    "store recovered"
                );
                let state = store.load()?;
                (state, Some(writer::spawn(Box::new(store))))
            }
        };
        let now = router::now_millis();
        let broker = Broker::new(config.limits.clone(), state, now);
        let stats = Arc::new(IoStats::default());
        let (events_tx, events_rx) = mpsc::channel(8192);
        let (shutdown, shutdown_rx) = watch::channel(false);
        let router = tokio::spawn(
            router::Router::new(broker, stats.clone(), writer).run(events_rx, shutdown_rx.clone()),
        );
        let next_id = Arc::new(AtomicU64::new(1));
        let limits = Limits {
            max_packet_size: config.limits.max_packet_size as usize,
        };
        let listeners = bound
            .into_iter()
            .map(|l| {
                tokio::spawn(accept_loop(
                    l,
                    events_tx.clone(),
                    shutdown_rx.clone(),
                    next_id.clone(),
                    stats.clone(),
                    limits,
                    config.clone(),
                ))
            })
            .collect();
        for a in &local_addrs {
            tracing::info!("listening on {a}");
        }
        Ok(Server {
            local_addrs,
            shutdown,
            router,
            listeners,
        })
    }

    /// The addresses actually bound (useful with port 0).
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.local_addrs
    }

    /// Stops accepting, sends v5 DISCONNECT 0x8B to every client, flushes and returns.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        for l in &self.listeners {
            l.abort();
        }
        let _ = self.router.await;
    }
}

async fn accept_loop(
    listener: TcpListener,
    events: mpsc::Sender<Event>,
    mut shutdown: watch::Receiver<bool>,
    next_id: Arc<AtomicU64>,
    stats: Arc<IoStats>,
    limits: Limits,
    config: ServerConfig,
) {
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = shutdown.changed() => return,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // Out of file descriptors and the like: wait a little instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        if stats.live.load(Ordering::Acquire) >= config.max_connections {
            tracing::warn!(%peer, max = config.max_connections, "connection refused: max_connections reached");
            drop(stream);
            continue;
        }
        let _ = stream.set_nodelay(true);
        let conn = ConnId(next_id.fetch_add(1, Ordering::Relaxed));
        let (tx, rx) = mpsc::channel(config.conn_queue_max_packets.max(1));
        let guard = LiveGuard::new(stats.clone());
        let task_stats = stats.clone();
        let task_events = events.clone();
        // The task waits for the router to have seen Open before it sends anything.
        let (go_tx, go_rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            // Dropped when the task ends or is aborted.
            let _guard = guard;
            if go_rx.await.is_ok() {
                conn::run(conn, stream, task_events, rx, limits, task_stats).await;
            }
        });
        if events
            .send(Event::Open {
                conn,
                tx,
                abort: task.abort_handle(),
            })
            .await
            .is_err()
        {
            task.abort();
            return;
        }
        let _ = go_tx.send(());
    }
}

/// Counts a live connection task for as long as it exists.
struct LiveGuard(Arc<IoStats>);

impl LiveGuard {
    fn new(stats: Arc<IoStats>) -> LiveGuard {
        stats.live.fetch_add(1, Ordering::AcqRel);
        LiveGuard(stats)
    }
}

impl Drop for LiveGuard {
    fn drop(&mut self) {
        self.0.live.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Runs a server until `shutdown` resolves, then shuts it down gracefully.
pub async fn run(
    config: ServerConfig,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), ServerError> {
    let server = Server::start(config).await?;
    shutdown.await;
    tracing::info!("shutting down");
    server.shutdown().await;
    Ok(())
}
