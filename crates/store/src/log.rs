//! The broker's own append-only log: the embedded default store.
//!
//! # Files
//! A data directory holds numbered files:
//! - `seg-NNNNNNNNNNNNNNNN.log`: segments of records, appended in order;
//! - `snap-NNNNNNNNNNNNNNNN.snap`: a snapshot of the whole state as of the start of segment
//!   `NNNN…`; written as `.tmp`, synced, then renamed, so a snapshot that exists is complete.
//!
//! Each file starts with a 16-byte header: an 8-byte magic (`QUARTLOG` or `QUARTSNP`), the
//! format version (u32 LE) and 4 reserved bytes. Then records: `len: u32 LE`,
//! `crc32c(payload): u32 LE`, `payload` (one [`Batch`], see [`crate::codec`]).
//!
//! # Durability
//! [`LogStore::commit`] encodes all the batches it is given, writes them with one `write` and,
//! in [`SyncMode::Fsync`], one `fdatasync`. That is the group commit: the caller hands over
//! the batches of every connection that arrived since the last commit. After a new file is
//! created, renamed or deleted the directory is synced too.
//!
//! # Recovery
//! Start-up loads the newest snapshot and replays the segments from its number on. A torn
//! or corrupt record at the end of the last segment is the remains of a write that never
//! completed (so never acknowledged): it is cut off and the number of bytes dropped is
//! reported. A bad record anywhere else stops the start with the file and offset.
//!
//! # Compaction
//! When the segments since the last snapshot outgrow `max(64 MiB, 2 × snapshot)`, the writer
//! starts a new segment and a background thread replays everything before it into a fresh
//! snapshot, then deletes the files it replaces. Commits go on meanwhile.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;

use bytes::BytesMut;

use crate::codec::{decode_batch, encode_batch};
use crate::model::{Batch, Message, Op};
use crate::state::State;
use crate::{Store, StoreError};

/// The on-disk format version this code writes and reads.
pub const FORMAT_VERSION: u32 = 1;
const SEG_MAGIC: &[u8; 8] = b"QUARTLOG";
const SNAP_MAGIC: &[u8; 8] = b"QUARTSNP";
const HEADER_LEN: usize = 16;
const RECORD_HEADER_LEN: usize = 8;
/// A record larger than this is taken as damage, not data.
const MAX_RECORD_LEN: usize = 1 << 30;
/// Segments are rotated past this size.
const SEGMENT_MAX_BYTES: u64 = 64 * 1024 * 1024;
/// What an error about damage suggests.
const REPAIR_HINT: &str = "run `quartet store repair` to keep what is intact";
/// Ops per snapshot record.
const SNAPSHOT_CHUNK_OPS: usize = 4096;

/// When a commit counts as done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncMode {
    /// After `fdatasync`: survives power loss.
    Fsync,
    /// After `write`: survives a crash of the process, not of the machine.
    Os,
}

/// What start-up found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// The snapshot loaded, if any.
    pub snapshot: Option<PathBuf>,
    /// Segments replayed.
    pub segments: usize,
    /// Records (batches) replayed, snapshot included.
    pub records: u64,
    /// Bytes cut off the end of the last segment (a torn write).
    pub truncated_bytes: u64,
}

/// The append-only log store.
#[derive(Debug)]
pub struct LogStore {
    dir: PathBuf,
    sync: SyncMode,
    file: File,
    seg_no: u64,
    seg_len: u64,
    /// Bytes in segments since the newest snapshot, and that snapshot's size.
    since_snapshot: u64,
    snapshot_len: u64,
    state: Option<State>,
    report: RecoveryReport,
    compaction: Option<JoinHandle<Result<(), StoreError>>>,
    buf: BytesMut,
}

fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> StoreError {
    let context = context.into();
    move |source| StoreError::Io { context, source }
}

fn seg_path(dir: &Path, n: u64) -> PathBuf {
    dir.join(format!("seg-{n:016}.log"))
}

fn snap_path(dir: &Path, n: u64) -> PathBuf {
    dir.join(format!("snap-{n:016}.snap"))
}

fn header(magic: &[u8; 8]) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h[..8].copy_from_slice(magic);
    h[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    h
}

fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io(format!("sync directory {}", dir.display())))
}

/// Lists the numbered files of a data directory: (segments, complete snapshots), sorted.
fn list(dir: &Path) -> Result<(Vec<u64>, Vec<u64>), StoreError> {
    let mut segs = Vec::new();
    let mut snaps = Vec::new();
    for entry in fs::read_dir(dir).map_err(io(format!("read directory {}", dir.display())))? {
        let entry = entry.map_err(io(format!("read directory {}", dir.display())))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(n) = name
            .strip_prefix("seg-")
            .and_then(|r| r.strip_suffix(".log"))
        {
            if let Ok(n) = n.parse() {
                segs.push(n);
            }
        } else if let Some(n) = name
            .strip_prefix("snap-")
            .and_then(|r| r.strip_suffix(".snap"))
        {
            if let Ok(n) = n.parse() {
                snaps.push(n);
            }
        }
    }
    segs.sort_unstable();
    snaps.sort_unstable();
    Ok((segs, snaps))
}

/// One record read from a file.
enum Next {
    Record(Batch, usize),
    End,
    /// A record that is cut short or fails its checksum, at this offset.
    Bad(&'static str),
}

fn read_record(data: &[u8], pos: usize) -> Next {
    if pos == data.len() {
        return Next::End;
    }
    if data.len() - pos < RECORD_HEADER_LEN {
        return Next::Bad("record header cut short");
    }
    let len = u32::from_le_bytes([data[pos], data[pos + 1], data[pos + 2], data[pos + 3]]) as usize;
    let crc = u32::from_le_bytes([data[pos + 4], data[pos + 5], data[pos + 6], data[pos + 7]]);
    if len > MAX_RECORD_LEN {
        return Next::Bad("record length out of range");
    }
    let start = pos + RECORD_HEADER_LEN;
    let Some(payload) = data.get(start..start + len) else {
        return Next::Bad("record cut short");
    };
    if crc32c::crc32c(payload) != crc {
        return Next::Bad("checksum mismatch");
    }
    match decode_batch(payload) {
        Ok(b) => Next::Record(b, start + len),
        Err(_) => Next::Bad("record content undecodable"),
    }
}

fn check_header(data: &[u8], magic: &[u8; 8], path: &Path) -> Result<(), StoreError> {
    if data.len() < HEADER_LEN || &data[..8] != magic {
        return Err(StoreError::Corrupt(format!(
            "{}: not a Quartet {} file (bad header)",
            path.display(),
            if magic == SEG_MAGIC {
                "log"
            } else {
                "snapshot"
            }
        )));
    }
    let version = u32::from_le_bytes([data[8], data[9], data[10], data[11]]);
    if version > FORMAT_VERSION {
        return Err(StoreError::Corrupt(format!(
            "{}: written by a newer Quartet (format version {version}, this build reads up to {FORMAT_VERSION}); upgrade Quartet",
            path.display()
        )));
    }
    if version == 0 {
        return Err(StoreError::Corrupt(format!(
            "{}: format version 0 is not valid",
            path.display()
        )));
    }
    Ok(())
}

/// How to treat damage while reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Damage {
    /// Stop with an error (a torn tail of the last segment is still cut off).
    Refuse,
    /// Skip what cannot be read or applied, counting it (`quartet store repair`).
    Salvage,
}

/// What reading a data directory produced.
#[derive(Debug, Default)]
struct Replay {
    state: State,
    report: RecoveryReport,
    /// Number of the last segment and its valid length (where appends continue).
    last_seg: Option<(u64, u64)>,
    /// Total bytes of segments read, and the snapshot's size.
    seg_bytes: u64,
    snapshot_len: u64,
    /// Salvage: records and ops skipped.
    skipped_records: u64,
    skipped_ops: u64,
}

fn apply_batch(
    state: &mut State,
    batch: Batch,
    damage: Damage,
    replay_skipped: &mut u64,
    where_: &dyn Fn() -> String,
) -> Result<(), StoreError> {
    for op in batch.ops {
        if let Err(e) = state.apply_owned(op) {
            match damage {
                Damage::Refuse => return Err(StoreError::Corrupt(format!("{}: {e}", where_()))),
                Damage::Salvage => *replay_skipped += 1,
            }
        }
    }
    Ok(())
}

fn replay_dir(dir: &Path, damage: Damage, upto_seg: Option<u64>) -> Result<Replay, StoreError> {
    let (segs, snaps) = list(dir)?;
    let mut r = Replay::default();
    let start = match upto_seg {
        Some(limit) => snaps.iter().rev().find(|&&n| n <= limit).copied(),
        None => snaps.last().copied(),
    };
    if let Some(n) = start {
        let path = snap_path(dir, n);
        let data = fs::read(&path).map_err(io(format!("read {}", path.display())))?;
        check_header(&data, SNAP_MAGIC, &path)?;
        replay_records(&mut r, &data, &path, damage, false)?;
        r.snapshot_len = data.len() as u64;
        r.report.snapshot = Some(path);
    }
    let first = start.unwrap_or(0);
    let segs: Vec<u64> = segs
        .into_iter()
        .filter(|&n| n >= first && upto_seg.is_none_or(|l| n < l))
        .collect();
    for (i, &n) in segs.iter().enumerate() {
        let expected = if i == 0 {
            start.unwrap_or(n)
        } else {
            segs[i - 1] + 1
        };
        if n != expected && damage == Damage::Refuse {
            return Err(StoreError::Corrupt(format!(
                "segment {} is missing (found {} next); {REPAIR_HINT}",
                seg_path(dir, expected).display(),
                seg_path(dir, n).display()
            )));
        }
        let path = seg_path(dir, n);
        let data = fs::read(&path).map_err(io(format!("read {}", path.display())))?;
        let is_last = i + 1 == segs.len() && upto_seg.is_none();
        if data.len() < HEADER_LEN && is_last {
            // Created but its header never made it to disk: nothing was written to it.
            r.report.truncated_bytes += data.len() as u64;
            r.last_seg = Some((n, 0));
            r.report.segments += 1;
            continue;
        }
        check_header(&data, SEG_MAGIC, &path)?;
        let pos = replay_records(&mut r, &data, &path, damage, is_last)?;
        r.seg_bytes += pos as u64;
        r.report.segments += 1;
        r.last_seg = Some((n, pos as u64));
    }
    r.state.drop_unreferenced();
    Ok(r)
}

/// Applies every record of one file (after its header) to `r`; returns where the valid
/// records end. A bad record is a torn tail when `may_be_torn` (the last segment) and no good
/// record follows it: it is cut off and counted. Any other bad record is refused, or skipped
/// when salvaging.
fn replay_records(
    r: &mut Replay,
    data: &[u8],
    path: &Path,
    damage: Damage,
    may_be_torn: bool,
) -> Result<usize, StoreError> {
    let mut pos = HEADER_LEN;
    loop {
        match read_record(data, pos) {
            Next::Record(b, next) => {
                let p = pos;
                apply_batch(&mut r.state, b, damage, &mut r.skipped_ops, &|| {
                    format!("{} offset {p}", path.display())
                })?;
                r.report.records += 1;
                pos = next;
            }
            Next::End => return Ok(pos),
            Next::Bad(why) => {
                if may_be_torn && !valid_record_follows(data, pos) {
                    r.report.truncated_bytes += (data.len() - pos) as u64;
                    return Ok(pos);
                }
                match damage {
                    Damage::Refuse => {
                        let at = format!("{} offset {pos}", path.display());
                        return Err(StoreError::Corrupt(format!("{at}: {why}; {REPAIR_HINT}")));
                    }
                    Damage::Salvage => {
                        r.skipped_records += 1;
                        match resync(data, pos) {
                            Some(next) => pos = next,
                            None => return Ok(data.len()),
                        }
                    }
                }
            }
        }
    }
}

/// After a bad record at `pos`: does a good record start right after where its length says
/// it ends? Then the damage is in the middle, not a torn tail.
fn valid_record_follows(data: &[u8], pos: usize) -> bool {
    let Some(h) = data.get(pos..pos + 4) else {
        return false;
    };
    let len = u32::from_le_bytes([h[0], h[1], h[2], h[3]]) as usize;
    if len > MAX_RECORD_LEN {
        return false;
    }
    let next = pos + RECORD_HEADER_LEN + len;
    next < data.len() && matches!(read_record(data, next), Next::Record(..))
}

/// Salvage: the next offset after `pos` where a good record starts.
fn resync(data: &[u8], pos: usize) -> Option<usize> {
    (pos + 1..data.len()).find(|&p| matches!(read_record(data, p), Next::Record(..)))
}

fn write_snapshot(dir: &Path, n: u64, state: &State) -> Result<u64, StoreError> {
    let tmp = dir.join(format!("snap-{n:016}.tmp"));
    let path = snap_path(dir, n);
    let mut f = File::create(&tmp).map_err(io(format!("create {}", tmp.display())))?;
    let mut out = BytesMut::new();
    out.extend_from_slice(&header(SNAP_MAGIC));
    let ops = state_ops(state);
    for chunk in ops.chunks(SNAPSHOT_CHUNK_OPS) {
        append_record(
            &mut out,
            &Batch {
                ops: chunk.to_vec(),
            },
        );
    }
    f.write_all(&out)
        .map_err(io(format!("write {}", tmp.display())))?;
    f.sync_all()
        .map_err(io(format!("sync {}", tmp.display())))?;
    fs::rename(&tmp, &path).map_err(io(format!("rename {}", tmp.display())))?;
    sync_dir(dir)?;
    Ok(out.len() as u64)
}

/// The ops that rebuild `state` from nothing, in an order that applies cleanly.
pub fn state_ops(state: &State) -> Vec<Op> {
    let mut ops = Vec::new();
    for (id, m) in &state.messages {
        ops.push(Op::PutMessage {
            id: *id,
            message: Message::clone(&m.message),
        });
    }
    for s in state.sessions.values() {
        ops.push(Op::PutSession(s.record.clone()));
        let client = &s.record.client_id;
        for sub in s.subscriptions.values() {
            ops.push(Op::PutSubscription {
                client: client.clone(),
                sub: sub.clone(),
            });
        }
        for pid in &s.inbound {
            ops.push(Op::PutInbound {
                client: client.clone(),
                packet_id: *pid,
            });
        }
        for r in s.outbound.values() {
            ops.push(Op::PutOutbound {
                client: client.clone(),
                record: r.clone(),
            });
        }
    }
    for m in state.retained.values() {
        ops.push(Op::PutRetained(m.clone()));
    }
    ops
}

fn append_record(out: &mut BytesMut, batch: &Batch) {
    let start = out.len();
    out.extend_from_slice(&[0u8; RECORD_HEADER_LEN]);
    encode_batch(out, batch);
    let len = out.len() - start - RECORD_HEADER_LEN;
    let crc = crc32c::crc32c(&out[start + RECORD_HEADER_LEN..]);
    out[start..start + 4].copy_from_slice(&(len as u32).to_le_bytes());
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

fn create_segment(dir: &Path, n: u64) -> Result<File, StoreError> {
    let path = seg_path(dir, n);
    let mut f = OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .open(&path)
        .map_err(io(format!("create {}", path.display())))?;
    f.write_all(&header(SEG_MAGIC))
        .map_err(io(format!("write {}", path.display())))?;
    f.sync_all()
        .map_err(io(format!("sync {}", path.display())))?;
    sync_dir(dir)?;
    Ok(f)
}

impl LogStore {
    /// Opens (or creates) the data directory and recovers its state.
    pub fn open(dir: impl Into<PathBuf>, sync: SyncMode) -> Result<LogStore, StoreError> {
        let dir = dir.into();
        fs::create_dir_all(&dir).map_err(io(format!("create directory {}", dir.display())))?;
        // Leftovers of a snapshot that was being written when the process died.
        for entry in fs::read_dir(&dir)
            .map_err(io(format!("read directory {}", dir.display())))?
            .flatten()
        {
            if entry
                .file_name()
                .to_str()
                .is_some_and(|n| n.starts_with("snap-") && n.ends_with(".tmp"))
            {
                let _ = fs::remove_file(entry.path());
            }
        }
        let replay = replay_dir(&dir, Damage::Refuse, None)?;
        let (file, seg_no, seg_len) = match replay.last_seg {
            Some((n, valid_len)) => {
                let path = seg_path(&dir, n);
                if valid_len < HEADER_LEN as u64 {
                    (create_segment(&dir, n)?, n, HEADER_LEN as u64)
                } else {
                    let f = OpenOptions::new()
                        .write(true)
                        .open(&path)
                        .map_err(io(format!("open {}", path.display())))?;
                    // Cut off a torn tail so appends continue after the last good record.
                    f.set_len(valid_len)
                        .map_err(io(format!("truncate {}", path.display())))?;
                    f.sync_all()
                        .map_err(io(format!("sync {}", path.display())))?;
                    let mut f = f;
                    use std::io::Seek;
                    f.seek(std::io::SeekFrom::End(0))
                        .map_err(io(format!("seek {}", path.display())))?;
                    (f, n, valid_len)
                }
            }
            None => {
                let n = replay.report.snapshot.as_ref().map_or(0, |_| {
                    list(&dir)
                        .ok()
                        .and_then(|(_, s)| s.last().copied())
                        .unwrap_or(0)
                });
                (create_segment(&dir, n)?, n, HEADER_LEN as u64)
            }
        };
        Ok(LogStore {
            dir,
            sync,
            file,
            seg_no,
            seg_len,
            since_snapshot: replay.seg_bytes,
            snapshot_len: replay.snapshot_len,
            state: Some(replay.state),
            report: replay.report,
            compaction: None,
            buf: BytesMut::with_capacity(64 * 1024),
        })
    }

    /// What start-up found (torn tail cut, records replayed).
    pub fn report(&self) -> &RecoveryReport {
        &self.report
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn rotate(&mut self) -> Result<(), StoreError> {
        self.seg_no += 1;
        self.file = create_segment(&self.dir, self.seg_no)?;
        self.seg_len = HEADER_LEN as u64;
        Ok(())
    }

    fn maybe_compact(&mut self) -> Result<(), StoreError> {
        if let Some(h) = &self.compaction {
            if !h.is_finished() {
                return Ok(());
            }
            if let Some(h) = self.compaction.take() {
                match h.join() {
                    Ok(r) => r?,
                    Err(_) => return Err(StoreError::Corrupt("compaction thread panicked".into())),
                }
            }
        }
        let threshold = (64 * 1024 * 1024u64).max(2 * self.snapshot_len);
        if self.since_snapshot < threshold {
            return Ok(());
        }
        // New commits go to a fresh segment; the thread folds everything before it into
        // a snapshot and then removes the files the snapshot replaces.
        self.rotate()?;
        let upto = self.seg_no;
        let dir = self.dir.clone();
        self.since_snapshot = 0;
        // An estimate until the thread has written it; only used for the next threshold.
        self.snapshot_len = self.snapshot_len.max(threshold / 2);
        self.compaction = Some(std::thread::spawn(move || compact(&dir, upto)));
        Ok(())
    }

    /// Waits for a running compaction (tests and shutdown).
    pub fn finish_compaction(&mut self) -> Result<(), StoreError> {
        match self.compaction.take() {
            Some(h) => h
                .join()
                .map_err(|_| StoreError::Corrupt("compaction thread panicked".into()))?,
            None => Ok(()),
        }
    }

    /// Forces a compaction now and waits for it (used by tests and `quartet store`).
    pub fn compact_now(&mut self) -> Result<(), StoreError> {
        self.finish_compaction()?;
        self.rotate()?;
        compact(&self.dir, self.seg_no)?;
        self.since_snapshot = 0;
        Ok(())
    }
}

impl Drop for LogStore {
    fn drop(&mut self) {
        // A compaction deletes the files it replaces: let it finish before anyone (a restart
        // in the same process, a test) opens the directory again.
        let _ = self.finish_compaction();
    }
}

/// Folds everything before segment `upto` into `snap-upto` and deletes what it replaces.
fn compact(dir: &Path, upto: u64) -> Result<(), StoreError> {
    let replay = replay_dir(dir, Damage::Refuse, Some(upto))?;
    write_snapshot(dir, upto, &replay.state)?;
    let (segs, snaps) = list(dir)?;
    for n in segs.into_iter().filter(|&n| n < upto) {
        fs::remove_file(seg_path(dir, n)).map_err(io("remove old segment"))?;
    }
    for n in snaps.into_iter().filter(|&n| n < upto) {
        fs::remove_file(snap_path(dir, n)).map_err(io("remove old snapshot"))?;
    }
    sync_dir(dir)
}

impl Store for LogStore {
    fn load(&mut self) -> Result<State, StoreError> {
        Ok(self.state.take().unwrap_or_default())
    }

    fn commit(&mut self, batches: &[Batch]) -> Result<(), StoreError> {
        self.buf.clear();
        for b in batches.iter().filter(|b| !b.is_empty()) {
            append_record(&mut self.buf, b);
        }
        if self.buf.is_empty() {
            return Ok(());
        }
        self.file.write_all(&self.buf).map_err(io(format!(
            "append to {}",
            seg_path(&self.dir, self.seg_no).display()
        )))?;
        if self.sync == SyncMode::Fsync {
            self.file.sync_data().map_err(io(format!(
                "fdatasync {}",
                seg_path(&self.dir, self.seg_no).display()
            )))?;
        }
        let n = self.buf.len() as u64;
        self.seg_len += n;
        self.since_snapshot += n;
        if self.seg_len >= SEGMENT_MAX_BYTES {
            self.rotate()?;
        }
        self.maybe_compact()
    }
}

/// What `verify` or `repair` found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CheckReport {
    /// Start-up report (records, torn tail).
    pub recovery: RecoveryReport,
    /// Records that could not be read (repair skipped them).
    pub skipped_records: u64,
    /// Ops that could not be applied (repair skipped them).
    pub skipped_ops: u64,
    /// Sessions in the state.
    pub sessions: usize,
    /// Retained messages in the state.
    pub retained: usize,
    /// Stored message bodies.
    pub messages: usize,
}

/// Reads a data directory without changing it; fails like start-up would.
pub fn verify(dir: &Path) -> Result<(CheckReport, State), StoreError> {
    let r = replay_dir(dir, Damage::Refuse, None)?;
    Ok((check_report(&r), r.state))
}

fn check_report(r: &Replay) -> CheckReport {
    CheckReport {
        recovery: r.report.clone(),
        skipped_records: r.skipped_records,
        skipped_ops: r.skipped_ops,
        sessions: r.state.sessions.len(),
        retained: r.state.retained.len(),
        messages: r.state.messages.len(),
    }
}

/// Salvages what is intact: replays every readable record, skipping damaged records and ops
/// that do not apply, then rewrites the directory as one snapshot. Says what it dropped.
pub fn repair(dir: &Path) -> Result<CheckReport, StoreError> {
    let r = replay_dir(dir, Damage::Salvage, None)?;
    let (segs, snaps) = list(dir)?;
    let next = segs.iter().chain(snaps.iter()).max().map_or(0, |m| m + 1);
    write_snapshot(dir, next, &r.state)?;
    for n in segs {
        fs::remove_file(seg_path(dir, n)).map_err(io("remove old segment"))?;
    }
    for n in snaps.into_iter().filter(|&n| n < next) {
        fs::remove_file(snap_path(dir, n)).map_err(io("remove old snapshot"))?;
    }
    create_segment(dir, next)?;
    Ok(check_report(&r))
}

/// Reads a whole file (helper for tests that damage files).
pub fn read_file(path: &Path) -> Result<Vec<u8>, StoreError> {
    let mut v = Vec::new();
    File::open(path)
        .and_then(|mut f| f.read_to_end(&mut v))
        .map_err(io(format!("read {}", path.display())))?;
    Ok(v)
}
