//! What the interop tests share: the server under test, started in-process on a free port.
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use std::net::SocketAddr;
use std::time::Duration;

use quartet_server::{Server, ServerConfig};

/// A server on its own runtime, so the tests themselves stay plain blocking code.
pub struct TestServer {
    rt: Option<tokio::runtime::Runtime>,
    server: Option<Server>,
    pub port: u16,
}

impl TestServer {
    pub fn start() -> TestServer {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let config = ServerConfig {
            listen: vec![SocketAddr::from(([127, 0, 0, 1], 0))],
            ..ServerConfig::default()
        };
        let server = rt.block_on(Server::start(config)).expect("server starts");
        let port = server.local_addrs()[0].port();
        TestServer {
            rt: Some(rt),
            server: Some(server),
            port,
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let (Some(rt), Some(server)) = (self.rt.take(), self.server.take()) {
            let _ = rt.block_on(async {
                tokio::time::timeout(Duration::from_secs(5), server.shutdown()).await
            });
            rt.shutdown_timeout(Duration::from_secs(1));
        }
    }
}
