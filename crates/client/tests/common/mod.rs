//! Helpers shared by the client tests: an in-process Quartet broker, a scripted fake broker
//! speaking raw packets, and option builders.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use bytes::BytesMut;
use quartet_client::{ConnectOptions, Delivery, Incoming, ProtocolVersion};
use quartet_proto::{decode, encode, Limits, Packet};
use quartet_server::{Durability, Server, ServerConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

pub const WAIT: Duration = Duration::from_secs(10);

/// A broker in memory on a free port.
pub async fn server() -> Server {
    Server::start(ServerConfig {
        listen: vec![SocketAddr::from(([127, 0, 0, 1], 0))],
        ..ServerConfig::default()
    })
    .await
    .unwrap()
}

/// A durable broker (fsync off: `os`) keeping its log in `dir`, on `port` (0: any).
pub async fn durable_server(dir: &Path, port: u16) -> Server {
    let mut tries = 0;
    loop {
        let r = Server::start(ServerConfig {
            listen: vec![SocketAddr::from(([127, 0, 0, 1], port))],
            data_dir: dir.to_path_buf(),
            durability: Durability::Os,
            ..ServerConfig::default()
        })
        .await;
        match r {
            Ok(s) => return s,
            Err(e) if tries < 50 => {
                tries += 1;
                let _ = e;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("cannot restart the broker: {e}"),
        }
    }
}

pub fn addr(s: &Server) -> String {
    s.local_addrs()[0].to_string()
}

pub fn opts(addr: &str, id: &str, version: ProtocolVersion) -> ConnectOptions {
    let mut o = ConnectOptions::new(addr, id);
    o.version = version;
    o.reconnect.min_delay = Duration::from_millis(20);
    o.reconnect.max_delay = Duration::from_millis(200);
    o.sync = quartet_client::SyncMode::Os;
    o
}

pub async fn next(incoming: &mut Incoming) -> Delivery {
    tokio::time::timeout(WAIT, incoming.recv())
        .await
        .expect("no message in time")
        .expect("client stopped")
}

pub async fn nothing_more(incoming: &mut Incoming, wait: Duration) {
    if let Ok(Some(d)) = tokio::time::timeout(wait, incoming.recv()).await {
        panic!("unexpected message {:?}", d.message);
    }
}

/// One side of a raw MQTT connection, for a scripted fake broker.
pub struct Raw {
    pub stream: TcpStream,
    pub buf: BytesMut,
    pub version: ProtocolVersion,
}

impl Raw {
    pub async fn recv(&mut self) -> Packet {
        tokio::time::timeout(WAIT, async {
            loop {
                if let Some(p) = decode(&mut self.buf, self.version, &Limits::default()).unwrap() {
                    if let Packet::Connect(c) = &p {
                        self.version = c.protocol;
                    }
                    return p;
                }
                let n = self.stream.read_buf(&mut self.buf).await.unwrap();
                assert!(n > 0, "client closed the connection");
            }
        })
        .await
        .expect("no packet in time")
    }

    /// The next packet that is not a PINGREQ.
    pub async fn recv_no_ping(&mut self) -> Packet {
        loop {
            match self.recv().await {
                Packet::PingReq => self.send(Packet::PingResp).await,
                p => return p,
            }
        }
    }

    pub async fn send(&mut self, p: Packet) {
        let mut b = BytesMut::new();
        encode(&p, self.version, &mut b).unwrap();
        self.stream.write_all(&b).await.unwrap();
    }

    /// True if the peer closed within `wait` (reading and dropping anything else).
    pub async fn closed_within(&mut self, wait: Duration) -> bool {
        tokio::time::timeout(wait, async {
            loop {
                match self.stream.read_buf(&mut self.buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
            }
        })
        .await
        .is_ok()
    }
}

pub struct FakeBroker {
    pub listener: TcpListener,
}

impl FakeBroker {
    pub async fn new() -> FakeBroker {
        FakeBroker {
            listener: TcpListener::bind("127.0.0.1:0").await.unwrap(),
        }
    }

    pub fn addr(&self) -> String {
        self.listener.local_addr().unwrap().to_string()
    }

    pub async fn accept(&self) -> Raw {
        let (stream, _) = tokio::time::timeout(WAIT, self.listener.accept())
            .await
            .expect("no connection in time")
            .unwrap();
        Raw {
            stream,
            buf: BytesMut::new(),
            version: ProtocolVersion::V5,
        }
    }
}
