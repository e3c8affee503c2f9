//! The server's configuration: what `quartet serve` reads from its TOML file and flags.
//!
//! Every setting is documented in `config/quartet.example.toml` at the repository root.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::ServerError;

/// Everything the server needs to run.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// TCP listeners, `ADDR:PORT`. Port 0 picks a free port (tests use that).
    pub listen: Vec<SocketAddr>,
    /// Where the durable store keeps its log (`fsync` and `os` durability).
    pub data_dir: PathBuf,
    /// When an acknowledgement that promises state may be sent.
    pub durability: Durability,
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
            data_dir: PathBuf::from("quartet-data"),
            // The library default keeps nothing on disk, so embedding and tests need no
            // directory; `quartet serve` defaults to `fsync` (see [`ServerConfig::for_serve`]).
            durability: Durability::Memory,
            max_connections: 100_000,
            conn_queue_max_packets: 4096,
            limits: quartet_broker::Config::default(),
        }
    }
}

/// What an acknowledgement waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Durability {
    /// The state is written and `fdatasync`ed: survives a crash of the process and of the
    /// machine (power loss).
    Fsync,
    /// The state is written to the OS: survives `kill -9` of the broker, not a power loss.
    Os,
    /// Nothing is stored: a restart starts empty.
    Memory,
}

impl std::str::FromStr for Durability {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "fsync" => Ok(Durability::Fsync),
            "os" => Ok(Durability::Os),
            "memory" => Ok(Durability::Memory),
            other => Err(format!(
                "unknown durability {other:?}: use fsync, os or memory"
            )),
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

    /// The configuration of `quartet serve`: the file's settings if a file is given, with
    /// `durability = "fsync"` unless the file says otherwise. The broker is durable by
    /// default; only the library default ([`ServerConfig::default`]) is `memory`.
    pub fn for_serve(path: Option<&Path>) -> Result<ServerConfig, ServerError> {
        let Some(path) = path else {
            return Ok(ServerConfig {
                durability: Durability::Fsync,
                ..ServerConfig::default()
            });
        };
        let mut config = Self::from_file(path)?;
        let text = std::fs::read_to_string(path)
            .map_err(|e| ServerError::Config(format!("cannot read {}: {e}", path.display())))?;
        let table: toml::Table = text
            .parse()
            .map_err(|e| ServerError::Config(format!("{}: {e}", path.display())))?;
        if !table.contains_key("durability") {
            config.durability = Durability::Fsync;
        }
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn example_file_parses_and_states_the_defaults() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/quartet.example.toml");
        let c = ServerConfig::from_file(&path).unwrap();
        let d = ServerConfig::default();
        assert_eq!(
            c.limits, d.limits,
            "the example documents the real defaults"
        );
        assert_eq!(c.listen, d.listen);
        assert_eq!(c.max_connections, d.max_connections);
        assert_eq!(c.conn_queue_max_packets, d.conn_queue_max_packets);
        assert_eq!(c.durability, Durability::Fsync);
        assert_eq!(
            ServerConfig::for_serve(None).unwrap().durability,
            Durability::Fsync
        );
    }

    #[test]
    fn unknown_keys_and_bad_values_are_named() {
        let e = ServerConfig::from_toml("listen = [\"127.0.0.1:1883\"]\nbogus = 1").unwrap_err();
        assert!(e.to_string().contains("unknown field `bogus`"), "{e}");
        let e = ServerConfig::from_toml("[limits]\nqueue_max_messages = \"x\"").unwrap_err();
        assert!(e.to_string().contains("queue_max_messages"), "{e}");
        let e = ServerConfig::from_toml("durability = \"disk\"").unwrap_err();
        assert!(e.to_string().contains("unknown variant `disk`"), "{e}");
        let e = ServerConfig::from_toml("listen = [\"nowhere\"]").unwrap_err();
        assert!(e.to_string().contains("listen"), "{e}");
    }
}
