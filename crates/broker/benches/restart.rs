//! Restart time with many queued messages: the log store is filled with N QoS 2 messages
//! queued for one offline persistent session (and a few retained messages), then the time
//! of what a restart does is measured: open the log (replay), load the state, build the
//! broker core from it.
//!
//! `cargo bench -p quartet-broker --bench restart` (QUARTET_RESTART_MESSAGES, default
//! 1,000,000).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Instant;

use bytes::Bytes;
use quartet_broker::{Broker, Config};
use quartet_proto::{ClientId, ProtocolVersion, PublishProperties, QoS, TopicName};
use quartet_store::*;

fn main() {
    let n: u64 = std::env::var("QUARTET_RESTART_MESSAGES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000);
    let dir = tempfile::tempdir().unwrap();
    let client = ClientId::new("dashboard");
    {
        let mut store = LogStore::open(dir.path(), SyncMode::Os).unwrap();
        store
            .commit(&[Batch {
                ops: vec![Op::PutSession(SessionRecord {
                    client_id: client.clone(),
                    expiry_interval_secs: u32::MAX,
                    protocol: ProtocolVersion::V5,
                    disconnected_at: Some(1),
                    will: None,
                })],
            }])
            .unwrap();
        let topic = TopicName::new("sensors/temperature/livingroom").unwrap();
        let payload = Bytes::from(vec![b'x'; 64]);
        let chunk = 10_000u64;
        let mut id = 1u64;
        while id <= n {
            let mut ops = Vec::with_capacity(2 * chunk as usize);
            for _ in 0..chunk.min(n - id + 1) {
                ops.push(Op::PutMessage {
                    id,
                    message: Message {
                        topic: topic.clone(),
                        payload: payload.clone(),
                        qos: QoS::ExactlyOnce,
                        retain: false,
                        properties: PublishProperties::default(),
                        expires_at: None,
                    },
                });
                ops.push(Op::PutOutbound {
                    client: client.clone(),
                    record: OutboundRecord {
                        seq: id,
                        msg: Some(id),
                        qos: QoS::ExactlyOnce,
                        packet_id: None,
                        phase: OutboundPhase::Queued,
                        retain: false,
                        subscription_ids: Vec::new(),
                    },
                });
                id += 1;
            }
            store.commit(&[Batch { ops }]).unwrap();
        }
    }
    let bytes: u64 = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum();
    let config = Config {
        queue_max_messages: n as usize + 1,
        ..Config::default()
    };
    for run in 1..=3 {
        let t0 = Instant::now();
        let mut store = LogStore::open(dir.path(), SyncMode::Os).unwrap();
        let t1 = Instant::now();
        let state = store.load().unwrap();
        let broker = Broker::new(config.clone(), state, 2);
        let t2 = Instant::now();
        let (queued, inflight) = broker.session_queue(&client).unwrap();
        assert_eq!(queued as u64 + inflight as u64, n);
        println!(
            "run {run}: {n} queued messages, {:.0} MiB of log: replay {:.2} s + core {:.2} s = restart {:.2} s",
            bytes as f64 / (1024.0 * 1024.0),
            (t1 - t0).as_secs_f64(),
            (t2 - t1).as_secs_f64(),
            (t2 - t0).as_secs_f64()
        );
    }
}
