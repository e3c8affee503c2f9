//! The storage writer: one thread that takes the persist batches of all connections, commits
//! everything that has arrived with one write and one fsync (group commit), and reports the
//! last token it made durable.

use quartet_broker::Token;
use quartet_store::{Batch, Store, StoreError};
use tokio::sync::mpsc;

/// The router's side of the writer.
#[derive(Debug)]
pub(crate) struct Writer {
    pub tx: std::sync::mpsc::Sender<(Token, Batch)>,
    pub done: mpsc::UnboundedReceiver<Result<Token, StoreError>>,
}

/// Batches committed at most per write (bounds one commit's latency and memory).
const MAX_GROUP: usize = 4096;

pub(crate) fn spawn(mut store: Box<dyn Store>) -> Writer {
    let (tx, rx) = std::sync::mpsc::channel::<(Token, Batch)>();
    let (done_tx, done) = mpsc::unbounded_channel();
    std::thread::Builder::new()
        .name("quartet-store-writer".into())
        .spawn(move || {
            let mut tokens = Vec::new();
            let mut batches = Vec::new();
            while let Ok(first) = rx.recv() {
                tokens.clear();
                batches.clear();
                tokens.push(first.0);
                batches.push(first.1);
                while batches.len() < MAX_GROUP {
                    match rx.try_recv() {
                        Ok((t, b)) => {
                            tokens.push(t);
                            batches.push(b);
                        }
                        Err(_) => break,
                    }
                }
                let result = store.commit(&batches);
                let failed = result.is_err();
                let last = tokens.last().copied();
                let msg = match (result, last) {
                    (Ok(()), Some(t)) => Ok(t),
                    (Err(e), _) => Err(e),
                    (Ok(()), None) => continue,
                };
                if done_tx.send(msg).is_err() || failed {
                    return;
                }
            }
        })
        .map(|_| ())
        .unwrap_or_else(|e| tracing::error!(error = %e, "cannot start the store writer thread"));
    Writer { tx, done }
}
