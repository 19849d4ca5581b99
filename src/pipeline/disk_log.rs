//! The spool's storage: one signal's records in an append-only log of rotating files.
//!
//! Why this and not an embedded store. The spool's access pattern is a queue: records are
//! appended in order, read back in order once, and forgotten. The designs node operators trust
//! for exactly this are logs, not key-value stores: Fluent Bit's filesystem buffer is a set of
//! append-only chunk files, Vector's disk buffer (v2) is a ledger beside rotating data files of
//! length-delimited, checksummed records, and the OpenTelemetry Collector's persistent queue
//! keeps a read index and a write index over a key-value store (bbolt). An embedded store here
//! (sled, redb) would bring a B-tree, its page cache and its compaction for a FIFO, tens of
//! thousands of lines for a few hundred. So this is the Vector shape, smaller:
//!
//! - files `NNNNNNNNNNNNNNNNNNNN.log` in the signal's directory, rotated at [`file_limit`]; the
//!   oldest file is deleted whole when the cap needs room or when every record in it is done;
//! - a record is a 16-byte header (state byte, magic `XRS`, length, item count, CRC-32 of the
//!   length, the count and the body) and the body;
//! - acknowledging a record rewrites its state byte in place (one byte, which a disk writes
//!   atomically), so no ledger file has to be kept in step with the data; a file whose records
//!   are all done is deleted;
//! - recovery reads every file once at start: a record whose checksum fails, or bytes that are
//!   not a record, are counted and skipped by searching for the next valid header; a torn last
//!   record (a crash mid-write) is counted and ignored. New records always go to a new file, so
//!   nothing is ever appended after a torn tail.
//!
//! Records in memory (loaded for replay, or written while their upload was still running) are
//! *leased*: the reader skips them until they are done or released, so no record is sent twice
//! from one run. A crash can still repeat the uploads that were in flight: their records were
//! never marked done.
//!
//! It is over 500 lines because of its tests: the format, recovery from damage and the cap are
//! tested here, on real files, record by record.

use bytes::Bytes;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

const HEADER: usize = 16;
const MAGIC: &[u8; 3] = b"XRS";
const PENDING: u8 = 0xA5;
const DONE: u8 = 0x00;
/// No record is larger (a span batch body is at most 5 MB); a longer length is corruption.
const MAX_RECORD: u32 = 64 << 20;
/// Records are written in chunks of about this many bytes, so a large append never holds a
/// second copy of everything it writes.
const CHUNK: usize = 256 << 10;

/// The size a file is rotated at: a sixteenth of the cap, between 64 KiB and 8 MiB, so that
/// dropping the oldest file under the cap gives back a small share of it.
pub(crate) fn file_limit(cap: u64) -> u64 {
    (cap / 16).clamp(64 << 10, 8 << 20)
}

/// Where a record is: its file and its offset in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct RecordRef {
    seq: u32,
    offset: u32,
}

/// The byte cap shared by the logs of every signal.
#[derive(Debug)]
pub(crate) struct Cap {
    pub(crate) limit: u64,
    pub(crate) used: AtomicU64,
}

#[derive(Debug, Default, Clone, Copy)]
struct FileState {
    size: u64,
    /// Records not yet done, and the items and bytes they hold.
    pending: u64,
    pending_items: u64,
}

/// What an append did.
#[derive(Debug, Default)]
pub(crate) struct Appended {
    /// One per record written, in order; the records after the first failure are not written.
    pub(crate) refs: Vec<RecordRef>,
    /// Items of the records written.
    pub(crate) written_items: u64,
    /// Items of older records deleted to make room (at the cap or on a full disk).
    pub(crate) evicted_items: u64,
    /// Items of the records given that could not be written, and why.
    pub(crate) failed_items: u64,
    pub(crate) error: Option<io::Error>,
}

/// What reading at start found.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Recovered {
    pub(crate) files: usize,
    pub(crate) records: u64,
    pub(crate) items: u64,
    pub(crate) bytes: u64,
    /// Corrupt stretches and torn last records skipped.
    pub(crate) corrupt: u64,
}

/// One record read back for replay.
#[derive(Debug)]
pub(crate) struct Loaded {
    pub(crate) at: RecordRef,
    pub(crate) body: Bytes,
    pub(crate) items: u32,
}

/// One signal's log.
#[derive(Debug)]
pub(crate) struct DiskLog {
    dir: PathBuf,
    files: BTreeMap<u32, FileState>,
    /// The file being appended to (the newest), opened for appending.
    writer: Option<(u32, File)>,
    next_seq: u32,
    /// Where reading goes on from.
    cursor: RecordRef,
    /// Records in memory, and the items each holds.
    leased: HashMap<RecordRef, u32>,
    /// Leased records whose file was deleted to make room: lost if their upload fails.
    orphans: HashMap<RecordRef, u32>,
    /// Delivered records whose state byte could not be rewritten: done in memory, skipped when
    /// read (only a restart can send them again).
    unmarked: HashSet<RecordRef>,
    cap: Arc<Cap>,
    file_limit: u64,
}

/// How a record at an offset reads.
enum Parsed {
    Record {
        state: u8,
        items: u32,
        body: Vec<u8>,
        next: u64,
    },
    /// The file ends inside the record.
    Torn,
    /// Not a valid record here.
    Corrupt,
}

fn file_name(seq: u32) -> String {
    format!("{seq:020}.log")
}

fn read_record(file: &File, offset: u64, size: u64) -> io::Result<Parsed> {
    if offset + HEADER as u64 > size {
        return Ok(Parsed::Torn);
    }
    let mut header = [0u8; HEADER];
    file.read_exact_at(&mut header, offset)?;
    if &header[1..4] != MAGIC {
        return Ok(Parsed::Corrupt);
    }
    let word = |i: usize| u32::from_le_bytes([header[i], header[i + 1], header[i + 2], header[i + 3]]);
    let (len, items, crc) = (word(4), word(8), word(12));
    if len > MAX_RECORD {
        return Ok(Parsed::Corrupt);
    }
    let next = offset + HEADER as u64 + u64::from(len);
    if next > size {
        return Ok(Parsed::Torn);
    }
    let mut body = vec![0u8; len as usize];
    file.read_exact_at(&mut body, offset + HEADER as u64)?;
    if checksum(&header[4..12], &body) != crc {
        return Ok(Parsed::Corrupt);
    }
    Ok(Parsed::Record { state: header[0], items, body, next })
}

fn checksum(len_and_items: &[u8], body: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(len_and_items);
    h.update(body);
    h.finalize()
}

/// The offset of the next valid record after a corrupt one at `from`, or `size`.
fn resync(file: &File, from: u64, size: u64) -> io::Result<u64> {
    let mut window = vec![0u8; 64 << 10];
    let mut at = from + 1;
    while at + HEADER as u64 <= size {
        let n = window.len().min((size - at) as usize);
        file.read_exact_at(&mut window[..n], at)?;
        // A header's magic is at bytes 1..4, so a candidate record starts one byte before it.
        for i in 1..n.saturating_sub(2) {
            if &window[i..i + 3] == MAGIC {
                let candidate = at + i as u64 - 1;
                if candidate > from && matches!(read_record(file, candidate, size)?, Parsed::Record { .. }) {
                    return Ok(candidate);
                }
            }
        }
        at += (n as u64).saturating_sub(3).max(1);
    }
    Ok(size)
}

/// Rewrites a record's state byte to done. Returns its item count: `items` when the caller
/// knows it, else read from the record's header.
fn mark_done(file: &File, offset: u64, items: Option<u32>) -> io::Result<u32> {
    let items = match items {
        Some(n) => n,
        None => {
            let mut word = [0u8; 4];
            file.read_exact_at(&mut word, offset + 8)?;
            u32::from_le_bytes(word)
        }
    };
    file.write_all_at(&[DONE], offset)?;
    Ok(items)
}

/// Whether an error means the disk (or the file system's quota) is full.
fn disk_full(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOSPC) | Some(libc::EDQUOT) | Some(libc::EFBIG))
}

impl DiskLog {
    /// Opens (creating) the directory and reads what an earlier run left in it.
    pub(crate) fn open(dir: &Path, cap: Arc<Cap>) -> io::Result<(DiskLog, Recovered)> {
        fs::create_dir_all(dir)?;
        let mut seqs: Vec<u32> = Vec::new();
        for entry in fs::read_dir(dir)? {
            let name = entry?.file_name();
            let name = name.to_string_lossy();
            if let Some(seq) = name.strip_suffix(".log").and_then(|s| s.parse().ok()) {
                seqs.push(seq);
            }
        }
        seqs.sort_unstable();
        let limit = file_limit(cap.limit);
        let mut log = DiskLog {
            dir: dir.to_owned(),
            files: BTreeMap::new(),
            writer: None,
            next_seq: seqs.last().map_or(1, |s| s.saturating_add(1)),
            cursor: RecordRef { seq: 0, offset: 0 },
            leased: HashMap::new(),
            orphans: HashMap::new(),
            unmarked: HashSet::new(),
            cap,
            file_limit: limit,
        };
        let mut found = Recovered::default();
        for seq in seqs {
            let file = File::open(log.path(seq))?;
            // Offsets are 32-bit: the log writes files of at most a few MB.
            let size = file.metadata()?.len().min(u64::from(u32::MAX));
            let mut state = FileState { size, ..FileState::default() };
            let mut offset = 0;
            while offset < size {
                match read_record(&file, offset, size)? {
                    Parsed::Record { state: s, items, next, .. } => {
                        if s != DONE {
                            state.pending += 1;
                            state.pending_items += u64::from(items);
                        }
                        offset = next;
                    }
                    Parsed::Torn => {
                        found.corrupt += 1;
                        break;
                    }
                    Parsed::Corrupt => {
                        found.corrupt += 1;
                        offset = resync(&file, offset, size)?;
                    }
                }
            }
            if state.pending == 0 {
                let _ = fs::remove_file(log.path(seq));
                continue;
            }
            found.files += 1;
            found.records += state.pending;
            found.items += state.pending_items;
            found.bytes += size;
            log.cap.used.fetch_add(size, Relaxed);
            log.files.insert(seq, state);
        }
        log.rewind();
        Ok((log, found))
    }

    /// A log with nothing recovered, for a directory that could not be read: every write is
    /// tried, and fails while the directory stays unusable.
    pub(crate) fn empty(dir: &Path, cap: Arc<Cap>) -> DiskLog {
        let limit = file_limit(cap.limit);
        DiskLog {
            dir: dir.to_owned(),
            files: BTreeMap::new(),
            writer: None,
            next_seq: 1,
            cursor: RecordRef { seq: 1, offset: 0 },
            leased: HashMap::new(),
            orphans: HashMap::new(),
            unmarked: HashSet::new(),
            cap,
            file_limit: limit,
        }
    }

    fn path(&self, seq: u32) -> PathBuf {
        self.dir.join(file_name(seq))
    }

    /// Bytes on disk.
    pub(crate) fn bytes(&self) -> u64 {
        self.files.values().map(|f| f.size).sum()
    }

    /// Items in records not yet done.
    #[cfg(test)]
    pub(crate) fn pending_items(&self) -> u64 {
        self.files.values().map(|f| f.pending_items).sum()
    }

    /// Whether a record may be waiting to be read (not done, not leased).
    pub(crate) fn has_unread(&self) -> bool {
        self.files.values().map(|f| f.pending).sum::<u64>() > self.leased.len() as u64
    }

    /// Reading starts again at the oldest record: after a release, the records released may be
    /// behind the cursor.
    pub(crate) fn rewind(&mut self) {
        let seq = self.files.keys().next().copied().unwrap_or(self.next_seq);
        self.cursor = RecordRef { seq, offset: 0 };
    }

    /// Appends records of `(body, items)`. They are leased when `lease` (their upload is still
    /// running). The oldest files are deleted while the cap or a full disk leaves no room.
    pub(crate) fn append<'a>(&mut self, records: impl IntoIterator<Item = (&'a Bytes, u32)>, lease: bool) -> Appended {
        let mut out = Appended::default();
        let mut chunk: Vec<u8> = Vec::new();
        let mut chunk_items: Vec<(u32, usize)> = Vec::new(); // (items, body len) per record
        let mut records = records.into_iter().peekable();
        while records.peek().is_some() {
            chunk.clear();
            chunk_items.clear();
            let chunk_limit = CHUNK.min(self.file_limit as usize / 2);
            while let Some((body, items)) = records.next_if(|_| chunk.len() < chunk_limit) {
                let mut len_items = [0u8; 8];
                len_items[..4].copy_from_slice(&(body.len() as u32).to_le_bytes());
                len_items[4..].copy_from_slice(&items.to_le_bytes());
                chunk.push(PENDING);
                chunk.extend_from_slice(MAGIC);
                chunk.extend_from_slice(&len_items);
                chunk.extend_from_slice(&checksum(&len_items, body).to_le_bytes());
                chunk.extend_from_slice(body);
                chunk_items.push((items, body.len()));
            }
            if out.error.is_some() {
                out.failed_items += chunk_items.iter().map(|&(n, _)| u64::from(n)).sum::<u64>();
                continue;
            }
            match self.write_chunk(&chunk, &mut out) {
                Ok((seq, start)) => {
                    let mut offset = start as u32;
                    let mut state = self.files.get(&seq).copied().unwrap_or_default();
                    for &(items, len) in &chunk_items {
                        let at = RecordRef { seq, offset };
                        if lease {
                            self.leased.insert(at, items);
                        }
                        out.refs.push(at);
                        out.written_items += u64::from(items);
                        state.pending += 1;
                        state.pending_items += u64::from(items);
                        offset += (HEADER + len) as u32;
                    }
                    state.size = u64::from(offset);
                    self.files.insert(seq, state);
                }
                Err(e) => {
                    out.failed_items += chunk_items.iter().map(|&(n, _)| u64::from(n)).sum::<u64>();
                    out.error = Some(e);
                }
            }
        }
        out
    }

    /// Writes one encoded chunk to the newest file, making room first. Returns the file and the
    /// offset the chunk starts at.
    fn write_chunk(&mut self, chunk: &[u8], out: &mut Appended) -> io::Result<(u32, u64)> {
        let need = chunk.len() as u64;
        if need > self.cap.limit {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "a record larger than the spool's cap"));
        }
        while self.cap.used.load(Relaxed) + need > self.cap.limit {
            if !self.evict_oldest(out) {
                return Err(io::Error::new(io::ErrorKind::StorageFull, "the spool's cap is reached"));
            }
        }
        let mut retried = false;
        loop {
            let (seq, start) = self.writable()?;
            let result = match &mut self.writer {
                Some((_, file)) => file.write_all(chunk),
                None => unreachable_writer(),
            };
            match result {
                Ok(()) => {
                    self.cap.used.fetch_add(need, Relaxed);
                    return Ok((seq, start));
                }
                Err(e) => {
                    // Nothing of a failed chunk stays: a later start must not find half of it.
                    if let Some((_, file)) = &self.writer {
                        let _ = file.set_len(start);
                    }
                    if disk_full(&e) && !retried && self.evict_oldest(out) {
                        retried = true;
                        continue;
                    }
                    return Err(e);
                }
            }
        }
    }

    /// The newest file, rotated when full; its sequence number and size.
    fn writable(&mut self) -> io::Result<(u32, u64)> {
        let current = self.writer.as_ref().map(|(seq, _)| *seq);
        if let Some(seq) = current {
            let size = self.files.get(&seq).map_or(0, |f| f.size);
            if size < self.file_limit {
                return Ok((seq, size));
            }
            self.writer = None;
            self.forget_if_done(seq);
        }
        let seq = self.next_seq;
        let file = OpenOptions::new().create_new(true).append(true).open(self.path(seq))?;
        self.next_seq += 1;
        self.files.insert(seq, FileState::default());
        self.writer = Some((seq, file));
        Ok((seq, 0))
    }

    /// Deletes the oldest file to make room, counting its pending items as evicted. The file
    /// being written is rotated away first if it is the only one. False if nothing can go.
    fn evict_oldest(&mut self, out: &mut Appended) -> bool {
        let Some((&seq, state)) = self.files.iter().next() else { return false };
        let state = *state;
        if self.writer.as_ref().is_some_and(|(w, _)| *w == seq) {
            self.writer = None;
        }
        let in_memory = self.remove(seq, state.size);
        // Records in memory are not lost yet: they count as dropped only if their upload fails.
        out.evicted_items += state.pending_items - in_memory;
        true
    }

    /// Deletes a file; returns the items of its records that were in memory (now orphans).
    fn remove(&mut self, seq: u32, size: u64) -> u64 {
        let _ = fs::remove_file(self.path(seq));
        self.files.remove(&seq);
        self.cap.used.fetch_sub(size, Relaxed);
        let mut in_memory = 0;
        let orphans = &mut self.orphans;
        self.unmarked.retain(|r| r.seq != seq);
        self.leased.retain(|r, items| {
            let keep = r.seq != seq;
            if !keep {
                in_memory += u64::from(*items);
                orphans.insert(*r, *items);
            }
            keep
        });
        if self.cursor.seq == seq {
            self.cursor = RecordRef { seq: seq + 1, offset: 0 };
        }
        in_memory
    }

    /// Deletes a file whose records are all done, unless it is being written.
    fn forget_if_done(&mut self, seq: u32) {
        let writing = self.writer.as_ref().is_some_and(|(w, _)| *w == seq);
        if let Some(state) = self.files.get(&seq).copied() {
            if state.pending == 0 && !writing {
                self.remove(seq, state.size);
            }
        }
    }

    /// Reads the next records not done and not leased, oldest first, up to `max_items` items and
    /// `max_bytes` of bodies (at least one record), and leases them. Also returns the corrupt
    /// stretches skipped (corruption after start: a disk that changed under us).
    pub(crate) fn read(&mut self, max_items: usize, max_bytes: usize) -> io::Result<(Vec<Loaded>, u64)> {
        let mut out = Vec::new();
        let (mut items, mut bytes, mut corrupt) = (0usize, 0usize, 0u64);
        let seqs: Vec<u32> = self.files.range(self.cursor.seq..).map(|(s, _)| *s).collect();
        for seq in seqs {
            if self.cursor.seq != seq {
                self.cursor = RecordRef { seq, offset: 0 };
            }
            let size = self.files[&seq].size;
            let file = File::open(self.path(seq))?;
            while u64::from(self.cursor.offset) < size {
                let at = self.cursor;
                match read_record(&file, u64::from(at.offset), size)? {
                    Parsed::Record { state, items: n, body, next } => {
                        let fits =
                            out.is_empty() || (items + n as usize <= max_items && bytes + body.len() <= max_bytes);
                        if !fits {
                            return Ok((out, corrupt));
                        }
                        self.cursor.offset = next as u32;
                        if state != DONE && !self.leased.contains_key(&at) && !self.unmarked.contains(&at) {
                            self.leased.insert(at, n);
                            items += n as usize;
                            bytes += body.len();
                            out.push(Loaded { at, body: Bytes::from(body), items: n });
                        }
                    }
                    Parsed::Torn => break,
                    Parsed::Corrupt => {
                        corrupt += 1;
                        self.cursor.offset = resync(&file, u64::from(at.offset), size)? as u32;
                    }
                }
            }
            self.cursor = RecordRef { seq: seq + 1, offset: 0 };
        }
        Ok((out, corrupt))
    }

    /// The records were delivered (or refused for good): mark them done on disk, and delete the
    /// files left with nothing pending.
    pub(crate) fn done(&mut self, refs: &[RecordRef]) -> io::Result<()> {
        let mut touched = Vec::new();
        let mut first_error = None;
        // Consecutive records are mostly in one file: it is opened once for them.
        let mut open: Option<(u32, File)> = None;
        for &at in refs {
            let in_memory = self.leased.remove(&at).or(self.orphans.remove(&at));
            let Some(state) = self.files.get_mut(&at.seq) else { continue };
            if state.pending == 0 {
                continue;
            }
            if open.as_ref().is_none_or(|(seq, _)| *seq != at.seq) {
                let opened = OpenOptions::new().read(true).write(true).open(self.dir.join(file_name(at.seq)));
                open = opened.map(|f| (at.seq, f)).map_err(|e| first_error.get_or_insert(e)).ok();
            }
            let marked = match &open {
                Some((_, file)) => mark_done(file, u64::from(at.offset), in_memory),
                None => Err(io::Error::other("the spool file could not be opened")),
            };
            let items = match marked {
                Ok(items) => items,
                Err(e) => {
                    // Done all the same for this run: the record must not be read and sent again.
                    self.unmarked.insert(at);
                    first_error.get_or_insert(e);
                    in_memory.unwrap_or(0)
                }
            };
            state.pending -= 1;
            state.pending_items = state.pending_items.saturating_sub(u64::from(items));
            touched.push(at.seq);
        }
        touched.dedup();
        for seq in touched {
            self.forget_if_done(seq);
        }
        first_error.map_or(Ok(()), Err)
    }

    /// The records' upload did not succeed: they stay pending, and reading starts again from
    /// the oldest record so they are read again. Returns the items of those whose file was
    /// deleted meanwhile to make room: they are lost now.
    pub(crate) fn release(&mut self, refs: &[RecordRef]) -> u64 {
        let mut lost = 0;
        for at in refs {
            self.leased.remove(at);
            lost += self.orphans.remove(at).map_or(0, u64::from);
        }
        if !refs.is_empty() {
            self.rewind();
        }
        lost
    }

    /// Flushes the newest file's data to the disk.
    pub(crate) fn sync(&self) -> io::Result<()> {
        match &self.writer {
            Some((_, file)) => file.sync_data(),
            None => Ok(()),
        }
    }
}

#[cold]
fn unreachable_writer() -> io::Result<()> {
    Err(io::Error::other("no spool file open for writing"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cap(limit: u64) -> Arc<Cap> {
        Arc::new(Cap { limit, used: AtomicU64::new(0) })
    }

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("xray-disk-log-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        d
    }

    fn bodies(n: usize) -> Vec<Bytes> {
        (0..n).map(|i| Bytes::from(format!("{{\"id\":\"{i:016x}\",\"pad\":\"{}\"}}", "x".repeat(100)))).collect()
    }

    fn append_all(log: &mut DiskLog, b: &[Bytes]) -> Appended {
        log.append(b.iter().map(|b| (b, 1)), false)
    }

    fn read_all(log: &mut DiskLog) -> Vec<Loaded> {
        let (records, corrupt) = log.read(usize::MAX, usize::MAX).unwrap();
        assert_eq!(corrupt, 0);
        records
    }

    #[test]
    fn records_come_back_in_order_and_once_done_are_gone_after_a_restart() {
        let d = dir("order");
        let (mut log, found) = DiskLog::open(&d, cap(1 << 20)).unwrap();
        assert_eq!(found, Recovered::default());
        let b = bodies(10);
        assert_eq!(append_all(&mut log, &b).refs.len(), 10);
        let first = read_all(&mut log);
        assert_eq!(first.iter().map(|r| r.body.clone()).collect::<Vec<_>>(), b);
        // Leased: a second read finds nothing until they are released.
        assert!(read_all(&mut log).is_empty());
        let refs: Vec<RecordRef> = first.iter().map(|r| r.at).collect();
        log.done(&refs[..4]).unwrap();
        log.release(&refs[4..]);
        let again = read_all(&mut log);
        assert_eq!(again.iter().map(|r| r.body.clone()).collect::<Vec<_>>(), b[4..]);
        drop(log);
        let (mut log, found) = DiskLog::open(&d, cap(1 << 20)).unwrap();
        assert_eq!((found.records, found.items, found.corrupt), (6, 6, 0));
        assert_eq!(read_all(&mut log).iter().map(|r| r.body.clone()).collect::<Vec<_>>(), b[4..]);
        let _ = fs::remove_dir_all(d);
    }

    #[test]
    fn a_file_whose_records_are_all_done_is_deleted() {
        let d = dir("delete");
        let (mut log, _) = DiskLog::open(&d, cap(1 << 20)).unwrap();
        let b = bodies(700); // about 2 files of 64 KiB
        append_all(&mut log, &b);
        assert!(log.files.len() >= 2, "{:?}", log.files);
        let loaded = read_all(&mut log);
        let refs: Vec<_> = loaded.iter().map(|r| r.at).collect();
        log.done(&refs).unwrap();
        // Only the file being written remains, and it is deleted when rotated or at the next start.
        assert_eq!(log.files.len(), 1);
        assert_eq!(log.pending_items(), 0);
        drop(log);
        let (log, found) = DiskLog::open(&d, cap(1 << 20)).unwrap();
        assert_eq!(found, Recovered::default());
        assert_eq!(fs::read_dir(&d).unwrap().count(), 0);
        assert_eq!(log.bytes(), 0);
        let _ = fs::remove_dir_all(d);
    }

    #[test]
    fn at_the_cap_the_oldest_file_goes_and_its_items_are_counted() {
        let d = dir("cap");
        let c = cap(256 << 10);
        let (mut log, _) = DiskLog::open(&d, c.clone()).unwrap();
        let b = bodies(5000); // ~680 KB, over twice the cap
        let out = append_all(&mut log, &b);
        assert!(out.error.is_none(), "{:?}", out.error);
        assert_eq!(out.refs.len(), 5000);
        assert!(c.used.load(Relaxed) <= c.limit);
        let kept = read_all(&mut log);
        assert_eq!(kept.len() as u64 + out.evicted_items, 5000);
        // What is kept is the newest, in order.
        assert_eq!(kept.last().unwrap().body, b[4999]);
        let first = b.iter().position(|x| *x == kept[0].body).unwrap();
        assert_eq!(first as u64, out.evicted_items);
        let _ = fs::remove_dir_all(d);
    }

    #[test]
    fn a_torn_last_record_and_a_corrupted_one_are_skipped_and_counted() {
        let d = dir("corrupt");
        let (mut log, _) = DiskLog::open(&d, cap(1 << 20)).unwrap();
        let b = bodies(20);
        append_all(&mut log, &b);
        drop(log);
        let path = d.join(file_name(1));
        let mut data = fs::read(&path).unwrap();
        let record = HEADER + b[0].len();
        // Random bytes over the middle of record 5's body, and half of the last record cut off.
        for (i, byte) in data[5 * record + 20..5 * record + 40].iter_mut().enumerate() {
            *byte = (i as u8).wrapping_mul(37) ^ 0x5c;
        }
        data.truncate(data.len() - record / 2);
        fs::write(&path, &data).unwrap();
        let (mut log, found) = DiskLog::open(&d, cap(1 << 20)).unwrap();
        assert_eq!(found.corrupt, 2);
        assert_eq!(found.records, 18);
        let (loaded, corrupt) = log.read(usize::MAX, usize::MAX).unwrap();
        assert_eq!(corrupt, 1, "the corrupt record is skipped again when read");
        let expect: Vec<Bytes> =
            b.iter().enumerate().filter(|&(i, _)| i != 5 && i != 19).map(|(_, x)| x.clone()).collect();
        assert_eq!(loaded.iter().map(|r| r.body.clone()).collect::<Vec<_>>(), expect);
        let _ = fs::remove_dir_all(d);
    }

    #[test]
    fn garbage_at_the_start_of_a_file_is_skipped_up_to_the_first_valid_record() {
        let d = dir("garbage");
        fs::create_dir_all(&d).unwrap();
        let (mut log, _) = DiskLog::open(&d, cap(1 << 20)).unwrap();
        append_all(&mut log, &bodies(3));
        drop(log);
        let path = d.join(file_name(1));
        let mut data = b"XRSXRS not a record at all \x00\xff".to_vec();
        data.extend(fs::read(&path).unwrap());
        fs::write(&path, &data).unwrap();
        let (mut log, found) = DiskLog::open(&d, cap(1 << 20)).unwrap();
        assert_eq!((found.records, found.corrupt), (3, 1));
        let (loaded, _) = log.read(usize::MAX, usize::MAX).unwrap();
        assert_eq!(loaded.len(), 3);
        let _ = fs::remove_dir_all(d);
    }

    #[test]
    fn a_delivered_record_whose_done_mark_fails_is_not_read_again() {
        let d = dir("unmarked");
        let (mut log, _) = DiskLog::open(&d, cap(1 << 20)).unwrap();
        append_all(&mut log, &bodies(3));
        let loaded = read_all(&mut log);
        let path = d.join(file_name(1));
        // An immutable file (root writes through permissions, not through this flag).
        let immutable = std::process::Command::new("chattr").arg("+i").arg(&path).status();
        if !immutable.is_ok_and(|s| s.success()) {
            println!("skipped: chattr +i is not available here");
            return;
        }
        let refs: Vec<RecordRef> = loaded.iter().map(|r| r.at).collect();
        let marked = log.done(&refs[..2]);
        let _ = std::process::Command::new("chattr").arg("-i").arg(&path).status();
        assert!(marked.is_err(), "the state bytes could not be written");
        assert_eq!(log.pending_items(), 1);
        // A release rewinds: only the record not delivered is read again.
        log.release(&refs[2..]);
        let again = read_all(&mut log);
        assert_eq!(again.iter().map(|r| r.at).collect::<Vec<_>>(), refs[2..]);
        let _ = fs::remove_dir_all(d);
    }

    #[test]
    fn reads_stop_at_the_batch_limits() {
        let d = dir("limits");
        let (mut log, _) = DiskLog::open(&d, cap(1 << 20)).unwrap();
        append_all(&mut log, &bodies(120));
        let (first, _) = log.read(50, usize::MAX).unwrap();
        assert_eq!(first.len(), 50);
        let (second, _) = log.read(usize::MAX, 3 * first[0].body.len()).unwrap();
        assert_eq!(second.len(), 3);
        let _ = fs::remove_dir_all(d);
    }
}
