//! The client's durable state: a small append-only journal in the state directory.
//!
//! # Why a file format of its own
//! `quartet-store` models a *broker* (sessions, subscriptions, queues, retained messages).
//! A client's durable state is four small things: the outgoing QoS 1/2 messages with their
//! packet ids, which of them were released (PUBREC seen), the received QoS 1/2 packet ids with
//! the receive sequence number each was delivered under, and two counters. Bending the broker
//! model around that would couple the two sides for no gain, so the client keeps its own
//! journal, framed the way `quartet-store`'s log is (length, crc32c, payload), with the same
//! torn-tail rule.
//!
//! # Files
//! `DIR/client.journal`: a 16-byte header (`QCLIJRNL`, format version u32 LE, 4 reserved
//! bytes), then records `len: u32 LE, crc32c(payload): u32 LE, payload`. One payload is one
//! [`Record`]. `DIR/lock` is held (an OS file lock) while a client uses the directory, so two
//! processes never write one journal.
//!
//! # Durability
//! Records are appended to a buffer; [`Journal::commit`] writes the buffer with one `write`
//! and one `fdatasync` ([`SyncMode::Fsync`]) and returns only then. The event loop calls it
//! once per turn, before it writes anything to the socket or hands anything to the
//! application, so one fsync covers every record of that turn (group commit), and nothing
//! that a record promises leaves the process before the record is durable.
//!
//! # Recovery
//! The journal is replayed from the start. A record cut short or failing its checksum at the
//! end is a write that never completed (so nothing it promised was sent): it is cut off.
//!
//! # Compaction
//! When the file passes 4 MiB and holds four times more bytes than the live state needs, the
//! live state is written to `client.journal.tmp`, synced and renamed over the journal.

use std::collections::{BTreeMap, HashMap};
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use quartet_proto::{Limits, Packet, ProtocolVersion, Publish, QoS};

use crate::error::ClientError;

const MAGIC: &[u8; 8] = b"QCLIJRNL";
const FORMAT_VERSION: u32 = 1;
const HEADER_LEN: usize = 16;
const MAX_RECORD_LEN: usize = 512 * 1024 * 1024;
const COMPACT_MIN_BYTES: u64 = 4 * 1024 * 1024;

/// When a commit of the client journal counts as done.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SyncMode {
    /// After `fdatasync`: survives power loss.
    #[default]
    Fsync,
    /// After `write`: survives `kill -9` of the process, not a crash of the machine.
    Os,
}

/// One journal record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Record {
    /// The counters (first record of a compacted journal).
    Counters {
        next_pub_seq: u64,
        next_recv_seq: u64,
    },
    /// An outgoing QoS 1/2 message got publish sequence `seq` and packet id `pid`.
    OutAdd { seq: u64, publish: Box<Publish> },
    /// PUBREC arrived for `pid`: only PUBREL/PUBCOMP remain.
    OutReleased { pid: u16 },
    /// The exchange of `pid` is over (PUBACK, PUBCOMP, or a refusal).
    OutDone { pid: u16 },
    /// A QoS 1/2 PUBLISH with `pid` was received and delivered under receive sequence `rseq`.
    InRecv { pid: u16, qos: u8, rseq: u64 },
    /// The inbound exchange of `pid` is over (PUBACK sent, or PUBREL seen for QoS 2).
    InDone { pid: u16 },
    /// The broker has no session for us: forget every inbound packet id.
    InClear,
}

/// An outgoing message as the journal holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StoredOut {
    pub publish: Publish,
    pub released: bool,
}

/// A received packet id as the journal holds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct StoredIn {
    pub qos: QoS,
    pub rseq: u64,
}

/// The durable state, as replayed from the journal.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Durable {
    /// The publish sequence number the next outgoing QoS 1/2 message gets.
    pub next_pub_seq: u64,
    /// The receive sequence number the next new inbound message gets.
    pub next_recv_seq: u64,
    /// Outgoing messages by publish sequence number (their order).
    pub out: BTreeMap<u64, StoredOut>,
    /// Received packet ids whose exchange is not over.
    pub inbound: HashMap<u16, StoredIn>,
    /// Packet id to publish sequence number, for `out`.
    pids: HashMap<u16, u64>,
}

impl Durable {
    fn apply(&mut self, r: &Record) {
        match r {
            Record::Counters {
                next_pub_seq,
                next_recv_seq,
            } => {
                self.next_pub_seq = self.next_pub_seq.max(*next_pub_seq);
                self.next_recv_seq = self.next_recv_seq.max(*next_recv_seq);
            }
            Record::OutAdd { seq, publish } => {
                self.next_pub_seq = self.next_pub_seq.max(seq + 1);
                if let Some(pid) = publish.packet_id {
                    self.pids.insert(pid.get(), *seq);
                }
                self.out.insert(
                    *seq,
                    StoredOut {
                        publish: (**publish).clone(),
                        released: false,
                    },
                );
            }
            Record::OutReleased { pid } => {
                if let Some(o) = self.pids.get(pid).and_then(|s| self.out.get_mut(s)) {
                    o.released = true;
                }
            }
            Record::OutDone { pid } => {
                if let Some(seq) = self.pids.remove(pid) {
                    self.out.remove(&seq);
                }
            }
            Record::InRecv { pid, qos, rseq } => {
                self.next_recv_seq = self.next_recv_seq.max(rseq + 1);
                self.inbound.insert(
                    *pid,
                    StoredIn {
                        qos: QoS::from_u8(*qos).unwrap_or(QoS::ExactlyOnce),
                        rseq: *rseq,
                    },
                );
            }
            Record::InDone { pid } => {
                self.inbound.remove(pid);
            }
            Record::InClear => self.inbound.clear(),
        }
    }

    /// Records that rebuild this state.
    fn records(&self) -> Vec<Record> {
        let mut v = vec![Record::Counters {
            next_pub_seq: self.next_pub_seq,
            next_recv_seq: self.next_recv_seq,
        }];
        for (seq, o) in &self.out {
            v.push(Record::OutAdd {
                seq: *seq,
                publish: Box::new(o.publish.clone()),
            });
            if o.released {
                if let Some(pid) = o.publish.packet_id {
                    v.push(Record::OutReleased { pid: pid.get() });
                }
            }
        }
        let mut ins: Vec<_> = self.inbound.iter().collect();
        ins.sort_by_key(|(_, s)| s.rseq);
        for (pid, s) in ins {
            v.push(Record::InRecv {
                pid: *pid,
                qos: s.qos as u8,
                rseq: s.rseq,
            });
        }
        v
    }

    fn live_bytes(&self) -> u64 {
        let out: usize = self
            .out
            .values()
            .map(|o| 64 + o.publish.topic.as_str().len() + o.publish.payload.len())
            .sum();
        (64 + out + self.inbound.len() * 32) as u64
    }
}

fn encode_record(r: &Record, buf: &mut BytesMut) -> Result<(), ClientError> {
    let mut payload = BytesMut::new();
    match r {
        Record::Counters {
            next_pub_seq,
            next_recv_seq,
        } => {
            payload.put_u8(1);
            payload.put_u64_le(*next_pub_seq);
            payload.put_u64_le(*next_recv_seq);
        }
        Record::OutAdd { seq, publish } => {
            payload.put_u8(2);
            payload.put_u64_le(*seq);
            // The message is kept as a v5 PUBLISH: the codec already knows how to write and
            // read every field and property of it.
            let mut p = (**publish).clone();
            p.dup = false;
            p.properties.topic_alias = None;
            quartet_proto::encode(&Packet::Publish(p), ProtocolVersion::V5, &mut payload)
                .map_err(|e| ClientError::Store(format!("cannot journal a PUBLISH: {e}")))?;
        }
        Record::OutReleased { pid } => {
            payload.put_u8(3);
            payload.put_u16_le(*pid);
        }
        Record::OutDone { pid } => {
            payload.put_u8(4);
            payload.put_u16_le(*pid);
        }
        Record::InRecv { pid, qos, rseq } => {
            payload.put_u8(5);
            payload.put_u16_le(*pid);
            payload.put_u8(*qos);
            payload.put_u64_le(*rseq);
        }
        Record::InDone { pid } => {
            payload.put_u8(6);
            payload.put_u16_le(*pid);
        }
        Record::InClear => payload.put_u8(7),
    }
    buf.put_u32_le(payload.len() as u32);
    buf.put_u32_le(crc32c::crc32c(&payload));
    buf.put_slice(&payload);
    Ok(())
}

fn decode_record(mut p: Bytes) -> Option<Record> {
    fn need(p: &Bytes, n: usize) -> Option<()> {
        (p.remaining() >= n).then_some(())
    }
    need(&p, 1)?;
    let r = match p.get_u8() {
        1 => {
            need(&p, 16)?;
            Record::Counters {
                next_pub_seq: p.get_u64_le(),
                next_recv_seq: p.get_u64_le(),
            }
        }
        2 => {
            need(&p, 8)?;
            let seq = p.get_u64_le();
            let mut b = BytesMut::from(&p[..]);
            p.advance(p.remaining());
            let Ok(Some(Packet::Publish(publish))) =
                quartet_proto::decode(&mut b, ProtocolVersion::V5, &Limits::default())
            else {
                return None;
            };
            if !b.is_empty() || publish.packet_id.is_none() {
                return None;
            }
            Record::OutAdd {
                seq,
                publish: Box::new(publish),
            }
        }
        3 => {
            need(&p, 2)?;
            Record::OutReleased {
                pid: p.get_u16_le(),
            }
        }
        4 => {
            need(&p, 2)?;
            Record::OutDone {
                pid: p.get_u16_le(),
            }
        }
        5 => {
            need(&p, 11)?;
            Record::InRecv {
                pid: p.get_u16_le(),
                qos: p.get_u8(),
                rseq: p.get_u64_le(),
            }
        }
        6 => {
            need(&p, 2)?;
            Record::InDone {
                pid: p.get_u16_le(),
            }
        }
        7 => Record::InClear,
        _ => return None,
    };
    p.is_empty().then_some(r)
}

fn io(what: impl std::fmt::Display, e: std::io::Error) -> ClientError {
    ClientError::Store(format!("{what}: {e}"))
}

/// The open journal of one state directory.
#[derive(Debug)]
pub(crate) struct Journal {
    dir: PathBuf,
    file: File,
    /// Held for as long as the journal is open: the OS lock on `DIR/lock`.
    _lock: File,
    sync: SyncMode,
    buf: BytesMut,
    len: u64,
    /// The state the journal's records add up to, kept to write a compacted journal.
    mirror: Durable,
    /// Bytes cut off a torn tail at open.
    #[cfg_attr(not(test), allow(dead_code))]
    pub truncated_bytes: u64,
}

impl Journal {
    fn path(dir: &Path) -> PathBuf {
        dir.join("client.journal")
    }

    /// Opens (or creates) the journal in `dir` and replays it.
    pub fn open(dir: &Path, sync: SyncMode) -> Result<(Journal, Durable), ClientError> {
        std::fs::create_dir_all(dir).map_err(|e| io(format!("create {}", dir.display()), e))?;
        let lock_path = dir.join("lock");
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| io(format!("open {}", lock_path.display()), e))?;
        if lock.try_lock().is_err() {
            return Err(ClientError::StateDirInUse(dir.to_path_buf()));
        }
        let path = Self::path(dir);
        let mut file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|e| io(format!("open {}", path.display()), e))?;
        let mut data = Vec::new();
        file.read_to_end(&mut data)
            .map_err(|e| io(format!("read {}", path.display()), e))?;
        let mut state = Durable::default();
        let mut truncated_bytes = 0;
        let len;
        if data.is_empty() {
            let mut h = [0u8; HEADER_LEN];
            h[..8].copy_from_slice(MAGIC);
            h[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
            file.write_all(&h)
                .and_then(|_| file.sync_all())
                .map_err(|e| io(format!("write {}", path.display()), e))?;
            sync_dir(dir)?;
            len = HEADER_LEN as u64;
        } else {
            if data.len() < HEADER_LEN || &data[..8] != MAGIC {
                return Err(ClientError::Store(format!(
                    "{}: not a Quartet client journal (bad header)",
                    path.display()
                )));
            }
            let version = u32::from_le_bytes([data[8], data[9], data[10], data[11]]);
            if version > FORMAT_VERSION {
                return Err(ClientError::Store(format!(
                    "{}: written by a newer Quartet (format version {version})",
                    path.display()
                )));
            }
            let mut pos = HEADER_LEN;
            while let Some((r, next)) = read_record(&data, pos) {
                state.apply(&r);
                pos = next;
            }
            if pos < data.len() {
                truncated_bytes = (data.len() - pos) as u64;
                tracing::warn!(
                    bytes = truncated_bytes,
                    "client journal: cut a torn write off the end (it was never acted on)"
                );
                file.set_len(pos as u64)
                    .and_then(|_| file.sync_all())
                    .map_err(|e| io(format!("truncate {}", path.display()), e))?;
            }
            len = pos as u64;
        }
        use std::io::Seek;
        file.seek(std::io::SeekFrom::Start(len))
            .map_err(|e| io(format!("seek {}", path.display()), e))?;
        Ok((
            Journal {
                dir: dir.to_path_buf(),
                file,
                _lock: lock,
                sync,
                buf: BytesMut::new(),
                len,
                mirror: state.clone(),
                truncated_bytes,
            },
            state,
        ))
    }

    /// Adds a record to the next commit.
    pub fn append(&mut self, r: Record) -> Result<(), ClientError> {
        encode_record(&r, &mut self.buf)?;
        self.mirror.apply(&r);
        Ok(())
    }

    /// True when records wait for [`Journal::commit`].
    pub fn is_dirty(&self) -> bool {
        !self.buf.is_empty()
    }

    /// Makes every appended record durable (one write, one fdatasync).
    pub fn commit(&mut self) -> Result<(), ClientError> {
        if self.buf.is_empty() {
            return Ok(());
        }
        self.file
            .write_all(&self.buf)
            .map_err(|e| io("write the client journal", e))?;
        if self.sync == SyncMode::Fsync {
            self.file
                .sync_data()
                .map_err(|e| io("fsync the client journal", e))?;
        }
        self.len += self.buf.len() as u64;
        self.buf.clear();
        if self.len > COMPACT_MIN_BYTES && self.len > 4 * self.mirror.live_bytes() {
            self.compact()?;
        }
        Ok(())
    }

    fn compact(&mut self) -> Result<(), ClientError> {
        let tmp = self.dir.join("client.journal.tmp");
        let mut data = BytesMut::new();
        let mut h = [0u8; HEADER_LEN];
        h[..8].copy_from_slice(MAGIC);
        h[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
        data.put_slice(&h);
        for r in self.mirror.records() {
            encode_record(&r, &mut data)?;
        }
        let mut f = File::create(&tmp).map_err(|e| io(format!("create {}", tmp.display()), e))?;
        f.write_all(&data)
            .and_then(|_| f.sync_all())
            .map_err(|e| io(format!("write {}", tmp.display()), e))?;
        let path = Self::path(&self.dir);
        std::fs::rename(&tmp, &path).map_err(|e| io(format!("rename {}", tmp.display()), e))?;
        sync_dir(&self.dir)?;
        use std::io::Seek;
        f.seek(std::io::SeekFrom::End(0))
            .map_err(|e| io(format!("seek {}", path.display()), e))?;
        self.file = f;
        self.len = data.len() as u64;
        Ok(())
    }
}

fn sync_dir(dir: &Path) -> Result<(), ClientError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io(format!("sync directory {}", dir.display()), e))
}

fn read_record(data: &[u8], pos: usize) -> Option<(Record, usize)> {
    let header = data.get(pos..pos + 8)?;
    let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
    let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
    if len > MAX_RECORD_LEN {
        return None;
    }
    let payload = data.get(pos + 8..pos + 8 + len)?;
    if crc32c::crc32c(payload) != crc {
        return None;
    }
    let r = decode_record(Bytes::copy_from_slice(payload))?;
    Some((r, pos + 8 + len))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use quartet_proto::{PacketId, PublishProperties, TopicName};

    fn publish(pid: u16, payload: &'static [u8]) -> Publish {
        Publish {
            dup: false,
            qos: QoS::ExactlyOnce,
            retain: false,
            topic: TopicName::new("a/b").unwrap(),
            packet_id: PacketId::new(pid),
            properties: PublishProperties {
                user_properties: vec![("k".into(), "v".into())],
                ..Default::default()
            },
            payload: Bytes::from_static(payload),
        }
    }

    #[test]
    fn replays_and_cuts_a_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (mut j, s) = Journal::open(dir.path(), SyncMode::Fsync).unwrap();
            assert_eq!(s, Durable::default());
            j.append(Record::OutAdd {
                seq: 0,
                publish: Box::new(publish(1, b"x")),
            })
            .unwrap();
            j.append(Record::OutAdd {
                seq: 1,
                publish: Box::new(publish(2, b"y")),
            })
            .unwrap();
            j.append(Record::OutReleased { pid: 1 }).unwrap();
            j.append(Record::InRecv {
                pid: 9,
                qos: 2,
                rseq: 41,
            })
            .unwrap();
            j.append(Record::OutDone { pid: 2 }).unwrap();
            j.commit().unwrap();
        }
        // A half-written record at the end.
        let path = dir.path().join("client.journal");
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(&[20, 0, 0, 0, 1, 2]).unwrap();
        drop(f);
        let (j, s) = Journal::open(dir.path(), SyncMode::Fsync).unwrap();
        assert_eq!(j.truncated_bytes, 6);
        assert_eq!(s.next_pub_seq, 2);
        assert_eq!(s.next_recv_seq, 42);
        assert_eq!(s.out.len(), 1);
        assert!(s.out[&0].released);
        assert_eq!(s.out[&0].publish, publish(1, b"x"));
        assert_eq!(s.inbound[&9].rseq, 41);
    }

    #[test]
    fn a_directory_is_used_by_one_client_at_a_time() {
        let dir = tempfile::tempdir().unwrap();
        let _a = Journal::open(dir.path(), SyncMode::Os).unwrap();
        assert!(matches!(
            Journal::open(dir.path(), SyncMode::Os),
            Err(ClientError::StateDirInUse(_))
        ));
    }

    #[test]
    fn compaction_keeps_the_live_state_and_the_counters() {
        let dir = tempfile::tempdir().unwrap();
        let big = Bytes::from(vec![7u8; 64 * 1024]);
        {
            let (mut j, _) = Journal::open(dir.path(), SyncMode::Os).unwrap();
            for i in 0..100u16 {
                let mut p = publish(i + 1, b"");
                p.payload = big.clone();
                j.append(Record::OutAdd {
                    seq: u64::from(i),
                    publish: Box::new(p),
                })
                .unwrap();
                if i != 50 {
                    j.append(Record::OutDone { pid: i + 1 }).unwrap();
                }
                j.commit().unwrap();
            }
            assert!(j.len < COMPACT_MIN_BYTES, "compacted: {}", j.len);
        }
        let (_, s) = Journal::open(dir.path(), SyncMode::Os).unwrap();
        assert_eq!(s.next_pub_seq, 100);
        assert_eq!(s.out.keys().copied().collect::<Vec<_>>(), vec![50]);
    }
}
