//! The server's configuration: what `quartet serve` reads from its TOML file and flags.
//!
//! Every setting is documented in `config/quartet.example.toml` at the repository root.

use std::net::SocketAddr;
use std::path::Path;

use serde::Deserialize;

use crate::ServerError;

/// Everything the server needs to run.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// TCP listeners, `ADDR:PORT`. Port 0 picks a free port (tests use that).
    pub listen: Vec<SocketAddr>,
    /// Connections accepted at most; beyond it new sockets are closed at once.
    pub max_connections: usize,
    /// Packets waiting to be written to one connection at most. A QoS 0 message beyond it is
    /// dropped (counted); any other packet beyond it closes the connection (the session
    /// keeps the message and resends it on reconnect).
    pub conn_queue_max_packets: usize,
    /// The broker core's limits.
    pub limits: quartet_broker::Config,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: vec![SocketAddr::from(([127, 0, 0, 1], 1883))],
            max_connections: 100_000,
            conn_queue_max_packets: 4096,
            limits: quartet_broker::Config::default(),
        }
    }
}

impl ServerConfig {
    /// Parses a TOML configuration; unknown keys are errors.
    pub fn from_toml(text: &str) -> Result<ServerConfig, ServerError> {
        toml::from_str(text).map_err(|e| ServerError::Config(e.to_string()))
    }

    /// Reads and parses a TOML configuration file.
    pub fn from_file(path: &Path) -> Result<ServerConfig, ServerError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ServerError::Config(format!("cannot read {}: {e}", path.display())))?;
        toml::from_str(&text).map_err(|e| ServerError::Config(format!("{}: {e}", path.display())))
    }
}
