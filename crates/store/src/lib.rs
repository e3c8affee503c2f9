//! Durable state for Quartet.
//!
//! The broker core never writes to disk: it emits [`Batch`]es of [`Op`]s, and a driver hands
//! them to a [`Store`]. This crate defines what those operations mean ([`State::apply`]), and
//! the contract of *when they are durable*:
//!
//! > When [`Store::commit`] returns `Ok`, every op of every batch passed to it, and of every
//! > earlier commit, survives a crash of the process (and, for a store configured so, of the
//! > machine). Batches are applied atomically and in order: after a crash the recovered state
//! > is the state after some prefix of whole batches, and that prefix includes every batch
//! > whose commit returned `Ok`.
//!
//! The broker releases an acknowledgement that promises durable state (PUBACK, PUBREC,
//! PUBCOMP, SUBACK, UNSUBACK, CONNACK with session present) only after the commit that holds
//! the state it promises has returned.
//!
//! # Layout
//! - [`model`]: the records ([`Message`], [`SessionRecord`], [`OutboundRecord`], ...) and the
//!   operations [`Op`] on them.
//! - [`state`]: [`State`], the live state as a store rebuilds it, and the one definition of
//!   what each op does to it ([`State::apply`]).
//! - [`codec`]: the binary encoding of ops in the log.
//! - [`log`]: [`LogStore`], the broker's own append-only log with group commit, recovery
//!   and compaction; `verify` and `repair`.
//! - [`memory`]: [`MemoryStore`] (no durability; for tests and `memory` mode) and
//!   [`FaultyStore`], which loses uncommitted batches at a simulated crash.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod codec;
pub mod log;
pub mod memory;
pub mod model;
pub mod state;

pub use log::{LogStore, RecoveryReport, SyncMode};
pub use memory::{FaultyStore, MemoryStore};
pub use model::*;
pub use state::State;

use thiserror::Error;

/// Why a store operation failed.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum StoreError {
    /// An I/O error, with what was being done.
    #[error("{context}: {source}")]
    Io {
        /// What the store was doing.
        context: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The stored data is damaged.
    #[error("corrupt store: {0}")]
    Corrupt(String),
    /// A simulated crash (fault-injecting store only).
    #[error("simulated crash")]
    Crashed,
}

/// A durable store of broker (or client) state.
pub trait Store: Send {
    /// Reads the state as of the last durable batch. Called once, at start-up.
    fn load(&mut self) -> Result<State, StoreError>;

    /// Makes `batches` durable, in order, each atomically. When this returns `Ok`, they (and
    /// everything committed before) survive a crash. The caller groups the batches of many
    /// connections into one call: that is the group commit.
    fn commit(&mut self, batches: &[Batch]) -> Result<(), StoreError>;
}
