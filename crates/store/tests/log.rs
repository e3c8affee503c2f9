//! The log store: what a commit promises, and what each kind of damage does.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use quartet_proto::{ClientId, PacketId, ProtocolVersion, PublishProperties, QoS, TopicName};
use quartet_store::log::{repair, verify};
use quartet_store::*;

fn session(id: &str) -> Op {
    Op::PutSession(SessionRecord {
        client_id: ClientId::new(id),
        expiry_interval_secs: 3600,
        protocol: ProtocolVersion::V5,
        disconnected_at: None,
        will: None,
    })
}

fn message(topic: &str, payload: &str) -> Message {
    Message {
        topic: TopicName::new(topic).unwrap(),
        payload: Bytes::copy_from_slice(payload.as_bytes()),
        qos: QoS::ExactlyOnce,
        retain: false,
        properties: PublishProperties {
            user_properties: vec![("k".into(), "v".into())],
            ..Default::default()
        },
        expires_at: Some(42),
    }
}

fn queue(client: &str, seq: u64, msg: MsgId, pid: Option<u16>) -> Op {
    Op::PutOutbound {
        client: ClientId::new(client),
        record: OutboundRecord {
            seq,
            msg: Some(msg),
            qos: QoS::ExactlyOnce,
            packet_id: pid.and_then(PacketId::new),
            phase: if pid.is_some() {
                OutboundPhase::AwaitingAck
            } else {
                OutboundPhase::Queued
            },
            retain: false,
            subscription_ids: vec![7],
        },
    }
}

/// A few batches that exercise every op kind; returns the state they should produce.
fn write_some(store: &mut LogStore) -> State {
    let batches = vec![
        Batch {
            ops: vec![session("a"), session("b")],
        },
        Batch {
            ops: vec![
                Op::PutMessage {
                    id: 1,
                    message: message("t/1", "one"),
                },
                queue("a", 1, 1, Some(5)),
                queue("b", 1, 1, None),
                Op::PutInbound {
                    client: ClientId::new("a"),
                    packet_id: PacketId::new(9).unwrap(),
                },
                Op::PutRetained(message("r/1", "kept")),
            ],
        },
        Batch {
            ops: vec![
                Op::DeleteOutbound {
                    client: ClientId::new("b"),
                    seq: 1,
                },
                Op::DeleteInbound {
                    client: ClientId::new("a"),
                    packet_id: PacketId::new(9).unwrap(),
                },
            ],
        },
    ];
    let mut expected = State::default();
    for b in &batches {
        expected.apply_batch(b).unwrap();
    }
    store.commit(&batches[..1]).unwrap();
    store.commit(&batches[1..]).unwrap();
    expected
}

fn seg(dir: &Path, n: u64) -> PathBuf {
    dir.join(format!("seg-{n:016}.log"))
}

#[test]
fn committed_batches_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let expected = {
        let mut s = LogStore::open(dir.path(), SyncMode::Fsync).unwrap();
        write_some(&mut s)
    };
    let mut s = LogStore::open(dir.path(), SyncMode::Fsync).unwrap();
    assert_eq!(s.report().truncated_bytes, 0);
    assert_eq!(s.report().records, 3, "three batches");
    let state = s.load().unwrap();
    assert_eq!(state.sessions, expected.sessions);
    assert_eq!(state.retained, expected.retained);
    assert_eq!(
        state.messages.len(),
        1,
        "message still referenced by a's in-flight record"
    );
    assert_eq!(state.next_msg_id, 2);
}

#[test]
fn appends_continue_after_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut s = LogStore::open(dir.path(), SyncMode::Os).unwrap();
        s.commit(&[Batch {
            ops: vec![session("a")],
        }])
        .unwrap();
    }
    {
        let mut s = LogStore::open(dir.path(), SyncMode::Os).unwrap();
        s.commit(&[Batch {
            ops: vec![session("b")],
        }])
        .unwrap();
    }
    let mut s = LogStore::open(dir.path(), SyncMode::Os).unwrap();
    assert_eq!(s.load().unwrap().sessions.len(), 2);
}

#[test]
fn torn_tail_is_cut_and_reported() {
    let dir = tempfile::tempdir().unwrap();
    let expected = {
        let mut s = LogStore::open(dir.path(), SyncMode::Fsync).unwrap();
        write_some(&mut s)
    };
    // A write that died half way: a record header promising more than is there.
    let path = seg(dir.path(), 0);
    let mut data = fs::read(&path).unwrap();
    let good_len = data.len();
    data.extend_from_slice(&100u32.to_le_bytes());
    data.extend_from_slice(&[0xAB; 4]);
    data.extend_from_slice(b"partial");
    fs::write(&path, &data).unwrap();
    let mut s = LogStore::open(dir.path(), SyncMode::Fsync).unwrap();
    assert_eq!(s.report().truncated_bytes, 15);
    assert_eq!(s.load().unwrap().sessions, expected.sessions);
    assert_eq!(
        fs::metadata(&path).unwrap().len() as usize,
        good_len,
        "file cut back"
    );
    // And the log is usable after the cut.
    s.commit(&[Batch {
        ops: vec![session("c")],
    }])
    .unwrap();
    drop(s);
    let mut s = LogStore::open(dir.path(), SyncMode::Fsync).unwrap();
    assert_eq!(s.report().truncated_bytes, 0);
    assert_eq!(s.load().unwrap().sessions.len(), 3);
}

#[test]
fn torn_last_record_with_bad_checksum_is_cut() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut s = LogStore::open(dir.path(), SyncMode::Fsync).unwrap();
        write_some(&mut s);
    }
    let path = seg(dir.path(), 0);
    let mut data = fs::read(&path).unwrap();
    let last = data.len() - 1;
    data[last] ^= 0xFF;
    fs::write(&path, &data).unwrap();
    let mut s = LogStore::open(dir.path(), SyncMode::Fsync).unwrap();
    assert!(s.report().truncated_bytes > 0);
    // The last batch (the deletes) is gone; the earlier ones are intact.
    let st = s.load().unwrap();
    assert!(st.sessions[&ClientId::new("a")]
        .inbound
        .contains(&PacketId::new(9).unwrap()));
}

#[test]
fn flipped_bit_in_the_middle_stops_start_with_file_and_offset() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut s = LogStore::open(dir.path(), SyncMode::Fsync).unwrap();
        write_some(&mut s);
    }
    let path = seg(dir.path(), 0);
    let mut data = fs::read(&path).unwrap();
    // Inside the first record's payload (header 16 + record header 8).
    data[16 + 8 + 3] ^= 0x10;
    fs::write(&path, &data).unwrap();
    let err = LogStore::open(dir.path(), SyncMode::Fsync)
        .unwrap_err()
        .to_string();
    assert!(err.contains("seg-0000000000000000.log offset 16"), "{err}");
    assert!(err.contains("checksum mismatch"), "{err}");
    assert!(verify(dir.path()).is_err());
    // repair keeps what is intact and says what it dropped.
    let report = repair(dir.path()).unwrap();
    assert_eq!(report.skipped_records, 1);
    assert!(
        report.skipped_ops > 0,
        "ops of later batches that referred to lost sessions"
    );
    let (after, state) = verify(dir.path()).unwrap();
    assert_eq!(after.skipped_records, 0);
    assert_eq!(
        state.retained.len(),
        1,
        "the retained message was in an intact record"
    );
    LogStore::open(dir.path(), SyncMode::Fsync).unwrap();
}

#[test]
fn missing_segment_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut s = LogStore::open(dir.path(), SyncMode::Os).unwrap();
        s.commit(&[Batch {
            ops: vec![session("a")],
        }])
        .unwrap();
    }
    // Pretend two more segments were written and the middle one was lost.
    fs::copy(seg(dir.path(), 0), seg(dir.path(), 2)).unwrap();
    let err = LogStore::open(dir.path(), SyncMode::Os)
        .unwrap_err()
        .to_string();
    assert!(err.contains("seg-0000000000000001.log is missing"), "{err}");
}

#[test]
fn newer_format_version_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut s = LogStore::open(dir.path(), SyncMode::Os).unwrap();
        s.commit(&[Batch {
            ops: vec![session("a")],
        }])
        .unwrap();
    }
    let path = seg(dir.path(), 0);
    let mut data = fs::read(&path).unwrap();
    data[8..12].copy_from_slice(&2u32.to_le_bytes());
    fs::write(&path, &data).unwrap();
    let err = LogStore::open(dir.path(), SyncMode::Os)
        .unwrap_err()
        .to_string();
    assert!(err.contains("newer Quartet (format version 2"), "{err}");
}

#[test]
fn compaction_keeps_the_state_and_drops_old_files() {
    let dir = tempfile::tempdir().unwrap();
    let expected = {
        let mut s = LogStore::open(dir.path(), SyncMode::Os).unwrap();
        let e = write_some(&mut s);
        // Churn that compaction should fold away.
        for i in 0..100 {
            s.commit(&[Batch {
                ops: vec![
                    session(&format!("tmp{i}")),
                    Op::DeleteSession(ClientId::new(format!("tmp{i}"))),
                ],
            }])
            .unwrap();
        }
        s.compact_now().unwrap();
        s.commit(&[Batch {
            ops: vec![session("late")],
        }])
        .unwrap();
        e
    };
    let names: Vec<String> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert!(names.iter().any(|n| n.ends_with(".snap")), "{names:?}");
    assert!(
        !names.contains(&"seg-0000000000000000.log".to_string()),
        "{names:?}"
    );
    let mut s = LogStore::open(dir.path(), SyncMode::Os).unwrap();
    let st = s.load().unwrap();
    assert_eq!(st.sessions.len(), expected.sessions.len() + 1);
    assert_eq!(
        st.sessions[&ClientId::new("a")],
        expected.sessions[&ClientId::new("a")]
    );
    assert_eq!(st.retained, expected.retained);
}

#[test]
fn every_op_round_trips_through_the_codec() {
    let mut state = State::default();
    let ops = vec![
        session("x"),
        Op::PutMessage {
            id: 3,
            message: message("a/b", "p"),
        },
        queue("x", 4, 3, Some(65535)),
        Op::PutRetained(message("r", "v")),
    ];
    for op in &ops {
        state.apply(op).unwrap();
    }
    let mut buf = bytes::BytesMut::new();
    codec::encode_batch(&mut buf, &Batch { ops: ops.clone() });
    assert_eq!(codec::decode_batch(&buf).unwrap().ops, ops);
    assert!(codec::decode_batch(&buf[..buf.len() - 1]).is_err());
}

#[test]
fn putting_a_message_again_keeps_its_references() {
    // A body re-put under the same id (the broker never reuses ids, but a replayed or
    // repeated batch may) must not orphan the records that reference it.
    let mut st = State::default();
    let batch = Batch {
        ops: vec![
            session("a"),
            Op::PutMessage {
                id: 1,
                message: message("t", "x"),
            },
            queue("a", 1, 1, None),
        ],
    };
    st.apply_batch(&batch).unwrap();
    st.apply_batch(&batch).unwrap();
    assert_eq!(st.messages[&1].refs, 1);
    let mut again = State::default();
    for op in log::state_ops(&st) {
        again.apply(&op).unwrap();
    }
    assert_eq!(again, st, "a snapshot of the state rebuilds it");
}
