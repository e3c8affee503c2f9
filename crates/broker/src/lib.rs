//! The sans-IO broker core of Quartet.
//!
//! One [`Broker`] owns all broker state: sessions, the subscription tree, retained messages,
//! wills, timers. It reads no clock and no socket and writes no file: time is an argument,
//! packets come in through `handle_*` calls and everything the broker wants done comes out of
//! [`Broker::poll_action`] as an [`Action`] (send a packet, close a connection, persist a
//! batch). See [`broker`] for the calling contract.
//!
//! # Layout
//! - [`broker`]: [`Broker`], [`Action`], the calling contract, and the exactly-once rules.
//! - [`config`]: [`Config`], every limit with its default.
//! - [`trie`]: [`SubTree`], the subscription tree with shared-subscription groups.
//! - [`metrics`]: [`Metrics`], counters the driver exports (and `$SYS` publishes).
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod broker;
pub mod config;
pub mod metrics;
pub mod trie;

pub use broker::{Action, AllowAll, Authorizer, Broker, ConnId, Millis, Token};
pub use config::Config;
pub use metrics::Metrics;
pub use trie::SubTree;
