//! The store alone: durable records per second and commit latency at batch sizes 1, 32 and
//! 512, next to a raw append-and-fdatasync file and fjall, on the same records, in one run.
//!
//! `cargo bench -p quartet-store --bench store` (set QUARTET_BENCH_SECS to change the time
//! per case, default 2). A "record" is one outbound-queue entry of a 64-byte QoS 2 message
//! (what the broker writes per subscriber per message); a commit makes a batch of them
//! durable with one fdatasync.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs::OpenOptions;
use std::io::Write;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use hdrhistogram::Histogram;
use quartet_proto::{ClientId, PacketId, PublishProperties, QoS, TopicName};
use quartet_store::*;

fn records(n: usize, start: u64) -> Vec<Batch> {
    (0..n as u64)
        .map(|i| {
            let id = start + i;
            Batch {
                ops: vec![
                    Op::PutMessage {
                        id,
                        message: Message {
                            topic: TopicName::new("sensors/temperature/livingroom").unwrap(),
                            payload: Bytes::from(vec![b'x'; 64]),
                            qos: QoS::ExactlyOnce,
                            retain: false,
                            properties: PublishProperties::default(),
                            expires_at: None,
                        },
                    },
                    Op::PutOutbound {
                        client: ClientId::new("dashboard"),
                        record: OutboundRecord {
                            seq: id,
                            msg: Some(id),
                            qos: QoS::ExactlyOnce,
                            packet_id: PacketId::new((id % 65535 + 1) as u16),
                            phase: OutboundPhase::AwaitingAck,
                            retain: false,
                            subscription_ids: Vec::new(),
                        },
                    },
                ],
            }
        })
        .collect()
}

struct Result {
    records_per_sec: f64,
    p50_us: u64,
    p99_us: u64,
}

fn run(secs: f64, batch: usize, mut commit: impl FnMut(u64) -> usize) -> Result {
    let mut hist = Histogram::<u64>::new(3).unwrap();
    let start = Instant::now();
    let mut total = 0usize;
    let mut i = 0u64;
    while start.elapsed() < Duration::from_secs_f64(secs) {
        let t = Instant::now();
        total += commit(i);
        hist.record(t.elapsed().as_micros() as u64).unwrap();
        i += batch as u64;
    }
    Result {
        records_per_sec: total as f64 / start.elapsed().as_secs_f64(),
        p50_us: hist.value_at_quantile(0.5),
        p99_us: hist.value_at_quantile(0.99),
    }
}

fn main() {
    let secs: f64 = std::env::var("QUARTET_BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2.0);
    // Encoded size of one record, so the raw file writes the same bytes.
    let mut probe = BytesMut::new();
    codec::encode_batch(&mut probe, &records(1, 0)[0]);
    let record_len = probe.len() + 8;
    println!("record: {record_len} bytes on disk; {secs} s per case");
    println!(
        "{:<8} {:>6} {:>14} {:>10} {:>10}",
        "store", "batch", "records/s", "p50 µs", "p99 µs"
    );
    for batch in [1usize, 32, 512] {
        let dir = tempfile::tempdir().unwrap();
        // Raw: append the same bytes, fdatasync.
        let raw = {
            let mut f = OpenOptions::new()
                .create(true)
                .append(true)
                .open(dir.path().join("raw"))
                .unwrap();
            let buf = vec![0x5Au8; record_len * batch];
            run(secs, batch, |_| {
                f.write_all(&buf).unwrap();
                f.sync_data().unwrap();
                batch
            })
        };
        let quartet = {
            let mut store = LogStore::open(dir.path().join("quartet"), SyncMode::Fsync).unwrap();
            // The records belong to a session, as in the broker (compaction replays them).
            store
                .commit(&[Batch {
                    ops: vec![Op::PutSession(SessionRecord {
                        client_id: ClientId::new("dashboard"),
                        expiry_interval_secs: u32::MAX,
                        protocol: quartet_proto::ProtocolVersion::V5,
                        disconnected_at: None,
                        will: None,
                    })],
                }])
                .unwrap();
            // Built once, outside the timing, like the raw file's buffer: what is measured is
            // encoding, writing and syncing. Re-putting the same ids replaces the records.
            let recs = records(batch, 1);
            run(secs, batch, |_| {
                store.commit(&recs).unwrap();
                batch
            })
        };
        let fjall = {
            let ks = fjall::Config::new(dir.path().join("fjall")).open().unwrap();
            let part = ks
                .open_partition("records", fjall::PartitionCreateOptions::default())
                .unwrap();
            // The same encoded records as values, one key per record.
            let values: Vec<BytesMut> = records(batch, 1)
                .iter()
                .map(|b| {
                    let mut v = BytesMut::new();
                    codec::encode_batch(&mut v, b);
                    v
                })
                .collect();
            run(secs, batch, |i| {
                for (k, v) in values.iter().enumerate() {
                    part.insert((i + k as u64).to_be_bytes(), &v[..]).unwrap();
                }
                ks.persist(fjall::PersistMode::SyncData).unwrap();
                batch
            })
        };
        for (name, r) in [("raw", &raw), ("quartet", &quartet), ("fjall", &fjall)] {
            println!(
                "{:<8} {:>6} {:>14.0} {:>10} {:>10}",
                name, batch, r.records_per_sec, r.p50_us, r.p99_us
            );
        }
        println!(
            "batch {batch}: quartet/raw = {:.2}, quartet/fjall = {:.2}",
            quartet.records_per_sec / raw.records_per_sec,
            quartet.records_per_sec / fjall.records_per_sec
        );
    }
}
