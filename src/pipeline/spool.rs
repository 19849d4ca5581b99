//! The optional disk spool: when records go to disk, and how they come back.
//!
//! Off by default; `XRAY_DAEMON_SPOOL_DIR` turns it on in the sidecar and DaemonSet modes (a
//! frozen Lambda sandbox has no disk that outlives it). The memory buffer stays the fast path:
//! with X-Ray healthy, records are sent from memory and never touch the disk. A record goes to
//! disk only when it waits:
//! - the [`mover`] writes the records that have waited in the buffer longer than the spool
//!   interval (1 s), and the oldest ones while the buffer is over half full, so what the memory
//!   budget cannot hold goes to disk instead of being dropped, and a crash loses at most the
//!   last interval;
//! - an upload that fails, or that the backend's backoff would hold in memory, gives its batch
//!   to [`SpoolLane::spill`] instead of retrying it in memory; an upload still running after the
//!   interval has its records copied to disk meanwhile ([`SpoolLane::copy`]);
//! - at shutdown, whatever the deadline leaves in memory is written.
//!
//! The [`replayer`] reads the disk back, oldest first, at a bounded rate, into the same buffer
//! (only while the buffer has room), so old and new data flow together and the uploads are
//! the same code. A record on disk is marked done only after X-Ray accepted it (or refused it for
//! good). The storage and its reasoning are in [`disk_log`](super::disk_log).
//!
//! One directory per daemon: a lock file (`flock`) taken at start makes a second daemon on the
//! same directory fail with a message that says so. Spans are spooled in the form their upload
//! takes (OTLP requests, or segment documents), each form in a directory of its own; what an
//! earlier run left in the other form is moved over at start ([`absorb`]).
//!
//! It is over 500 lines: the lane, the mover, the replayer and that move share the lane's
//! private state (its log, its counters, its wake-ups), and each is short.

use crate::pipeline::buffer::{Batch, Buffer};
use crate::pipeline::disk_log::{Appended, Cap, DiskLog, RecordRef, Recovered};
use crate::signal::{Segments, Signal, SpanSegments, Spans};
use crate::stats::log_limit::{suppressed_note, RateLimitedWarn};
use crate::stats::SpanRejected;
use crate::stats::{SpoolCounters, Stats};
use crate::translate::{Documents, RandomIds, Translator};
use bytes::Bytes;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

/// How the spool is set up.
#[derive(Debug, Clone)]
pub(crate) struct SpoolSettings {
    pub dir: PathBuf,
    /// The most bytes on disk, all signals together.
    pub max_bytes: u64,
    /// How long a record may wait in memory before it is written.
    pub interval: Duration,
    /// Bytes per second read back for sending.
    pub replay_rate: u64,
}

/// The spool could not be opened.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SpoolError {
    #[error(
        "The spool directory {dir} (XRAY_DAEMON_SPOOL_DIR) is in use by another xray-daemon{holder}. Two daemons \
         must not share a spool directory: give each its own."
    )]
    Locked { dir: String, holder: String },
}

/// The opened spool: the directory lock and one log per signal.
pub(crate) struct Spool {
    pub(crate) settings: SpoolSettings,
    pub(crate) segments: Arc<SpoolLane>,
    pub(crate) spans: Arc<SpoolLane>,
    /// Held for as long as the daemon runs; the lock goes with it.
    _lock: Option<File>,
}

impl Spool {
    /// Takes the directory's lock and reads what an earlier run left. Only another daemon
    /// holding the lock is an error; a directory that cannot be read or written is logged and
    /// the spool runs on, counting every record it could not write as dropped.
    ///
    /// `documents` is the translator when spans go as segment documents (`None`: to the OTLP
    /// endpoint). What an earlier run spooled in the other form is moved, converted, into the
    /// log this run sends from ([`absorb`]), so that changing `XRAY_DAEMON_SPAN_UPLOAD` loses
    /// nothing spooled.
    pub(crate) fn open(
        settings: SpoolSettings,
        stats: &Arc<Stats>,
        documents: Option<&Translator>,
    ) -> Result<Spool, SpoolError> {
        let dir = &settings.dir;
        let lock = match lock(dir) {
            Ok(file) => Some(file),
            Err(LockError::Held(holder)) => {
                return Err(SpoolError::Locked { dir: dir.display().to_string(), holder });
            }
            Err(LockError::Io(e)) => {
                error!(
                    "The spool directory {} cannot be used ({e}): records that wait will be dropped and counted, \
                     not written to disk",
                    dir.display()
                );
                None
            }
        };
        let cap = Arc::new(Cap { limit: settings.max_bytes, used: AtomicU64::new(0) });
        let segments = SpoolLane::open::<Segments>(dir, &cap, stats);
        let spans = match documents {
            Some(translator) => {
                let lane = SpoolLane::open::<SpanSegments>(dir, &cap, stats);
                absorb::<Spans>(dir, &cap, &lane, |request| span_documents(translator, request, stats));
                lane
            }
            None => {
                let lane = SpoolLane::open::<Spans>(dir, &cap, stats);
                absorb::<SpanSegments>(dir, &cap, &segments, |document| vec![document]);
                lane
            }
        };
        Ok(Spool { settings, segments, spans, _lock: lock })
    }
}

/// A spooled OTLP request as segment documents; the spans that make none are counted.
fn span_documents(translator: &Translator, request: Bytes, stats: &Stats) -> Vec<Bytes> {
    let Ok(received) = crate::signal::spans::from_protobuf(request) else { return Vec::new() };
    let mut documents = Documents::new();
    let tally = translator.request(&received.request, &mut RandomIds, &mut documents);
    stats.span_rejected(SpanRejected::TooLarge, u64::from(tally.too_large));
    stats.span_rejected(SpanRejected::Invalid, u64::from(tally.invalid));
    documents.iter().map(Bytes::copy_from_slice).collect()
}

/// Moves the records an earlier run left in signal `S`'s log into `into`'s log, each converted
/// by `convert` into records of one item, and deletes them from `S`'s log as they are written.
/// Runs at start, before anything is read or sent. Every record is written before it is
/// deleted: a crash in between sends it twice, never loses it.
fn absorb<S: Signal>(dir: &Path, cap: &Arc<Cap>, into: &SpoolLane, mut convert: impl FnMut(Bytes) -> Vec<Bytes>) {
    let from = dir.join(S::SPOOL_DIR);
    if !from.is_dir() {
        return;
    }
    let mut log = match DiskLog::open(&from, cap.clone()) {
        Ok((log, _)) => log,
        Err(e) => {
            error!("Could not read the spool directory {}: {e}; what it holds is not sent", from.display());
            return;
        }
    };
    let (mut read, mut written) = (0u64, 0u64);
    let mut target = into.log();
    loop {
        let records = match log.read(S::MAX_ITEMS.max(1_000), S::MAX_BYTES) {
            Ok((records, _)) if !records.is_empty() => records,
            Ok(_) => break,
            Err(e) => {
                error!("Could not read the spool directory {}: {e}; what is left there is not sent", from.display());
                break;
            }
        };
        let done: Vec<RecordRef> = records.iter().map(|r| r.at).collect();
        let converted: Vec<Bytes> = records
            .into_iter()
            .flat_map(|r| {
                read += u64::from(r.items);
                convert(r.body)
            })
            .collect();
        let appended = target.append(converted.iter().map(|b| (b, 1)), false);
        written += appended.written_items;
        into.account(&appended);
        if let Err(e) = log.done(&done) {
            warn!("Could not mark moved records done in {}: {e}; they may be sent twice", from.display());
        }
    }
    into.counters().bytes.store(target.bytes(), Relaxed);
    into.waiting.store(target.has_unread(), Relaxed);
    if read > 0 {
        info!(
            "Moved {read} {} spooled by an earlier run from {} to the spool of {} ({written} records): \
             XRAY_DAEMON_SPAN_UPLOAD changed",
            S::NOUN,
            from.display(),
            into.noun
        );
    }
}
enum LockError {
    Held(String),
    Io(io::Error),
}

/// Creates the directory and takes `LOCK` in it; the file holds the holder's pid for the message.
fn lock(dir: &Path) -> Result<File, LockError> {
    std::fs::create_dir_all(dir).map_err(LockError::Io)?;
    let path = dir.join("LOCK");
    let mut file =
        OpenOptions::new().read(true).write(true).create(true).truncate(false).open(&path).map_err(LockError::Io)?;
    match file.try_lock() {
        Ok(()) => {
            let _ = file.set_len(0);
            let _ = writeln!(file, "{}", std::process::id());
            Ok(file)
        }
        Err(std::fs::TryLockError::WouldBlock) => {
            let mut pid = String::new();
            let _ = file.read_to_string(&mut pid);
            let pid = pid.trim();
            Err(LockError::Held(if pid.is_empty() { String::new() } else { format!(" (pid {pid})") }))
        }
        Err(std::fs::TryLockError::Error(e)) => Err(LockError::Io(e)),
    }
}

/// One signal's log, its counters, and the wake-up for its replayer.
pub(crate) struct SpoolLane {
    log: Mutex<DiskLog>,
    counters: Arc<Stats>,
    delivery: fn(&Stats) -> &SpoolCounters,
    noun: &'static str,
    /// Records were written or released: there may be something to read.
    unread: Notify,
    /// Whether records wait on disk, as of the last operation on the log.
    waiting: AtomicBool,
    /// One rate limit per kind of trouble, so that one does not hide the other.
    full: RateLimitedWarn,
    io: RateLimitedWarn,
    /// When the newest file was last flushed to the disk.
    synced: Mutex<Instant>,
}

impl SpoolLane {
    fn open<S: Signal>(dir: &Path, cap: &Arc<Cap>, stats: &Arc<Stats>) -> Arc<SpoolLane> {
        let dir = dir.join(S::SPOOL_DIR);
        let delivery: fn(&Stats) -> &SpoolCounters = |s| &S::delivery(s).spool;
        let counters = delivery(stats);
        let log = match DiskLog::open(&dir, cap.clone()) {
            Ok((log, found)) => {
                report_recovery::<S>(&dir, &found);
                Stats::add(&counters.corrupt, found.corrupt);
                log
            }
            Err(e) => {
                error!("Could not read the spool directory {}: {e}; starting with an empty spool", dir.display());
                DiskLog::empty(&dir, cap.clone())
            }
        };
        counters.bytes.store(log.bytes(), Relaxed);
        let waiting = AtomicBool::new(log.has_unread());
        Arc::new(SpoolLane {
            log: Mutex::new(log),
            counters: stats.clone(),
            delivery,
            noun: S::NOUN,
            unread: Notify::new(),
            waiting,
            full: RateLimitedWarn::new(10),
            io: RateLimitedWarn::new(10),
            synced: Mutex::new(Instant::now()),
        })
    }

    fn counters(&self) -> &SpoolCounters {
        (self.delivery)(&self.counters)
    }

    fn log(&self) -> MutexGuard<'_, DiskLog> {
        self.log.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs `f` on the log on a blocking thread: disk I/O never runs on the runtime's workers.
    async fn with_log<T: Send + 'static>(self: &Arc<Self>, f: impl FnOnce(&mut DiskLog) -> T + Send + 'static) -> T {
        let lane = self.clone();
        let task = tokio::task::spawn_blocking(move || {
            let mut log = lane.log();
            let out = f(&mut log);
            lane.counters().bytes.store(log.bytes(), Relaxed);
            lane.waiting.store(log.has_unread(), Relaxed);
            out
        });
        match task.await {
            Ok(out) => out,
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        }
    }

    /// Whether records wait on disk (pending and not in memory), as of the last operation on
    /// the log: every change goes through [`SpoolLane::with_log`], which updates it. No lock.
    pub(crate) fn has_unread(&self) -> bool {
        self.waiting.load(Relaxed)
    }

    /// Writes the batch's records that are not on disk yet, releases those that are (they are
    /// read again later), and lets the batch go. Returns the items written.
    pub(crate) async fn spill(self: &Arc<Self>, batch: &mut Batch) -> u64 {
        let records: Vec<(Bytes, u32, Option<RecordRef>)> = records_of(batch);
        batch.forget();
        let appended = self
            .with_log(move |log| {
                let on_disk: Vec<RecordRef> = records.iter().filter_map(|r| r.2).collect();
                let lost = log.release(&on_disk);
                let fresh = records.iter().filter(|r| r.2.is_none());
                let mut appended = log.append(fresh.map(|r| (&r.0, r.1)), false);
                appended.evicted_items += lost;
                appended
            })
            .await;
        self.account(&appended);
        self.sync_if_due().await;
        self.unread.notify_one();
        appended.written_items
    }

    /// Copies to disk the batch's records that are not there yet, leased (their upload is still
    /// running). Returns every record's place, for [`Batch::set_refs`].
    pub(crate) async fn copy(self: &Arc<Self>, batch: &Batch) -> Vec<Option<RecordRef>> {
        let records = records_of(batch);
        let (refs, appended) = self
            .with_log(move |log| {
                let fresh = records.iter().filter(|r| r.2.is_none());
                let mut appended = log.append(fresh.map(|r| (&r.0, r.1)), true);
                let mut new = std::mem::take(&mut appended.refs).into_iter();
                let refs: Vec<Option<RecordRef>> = records.iter().map(|r| r.2.or_else(|| new.next())).collect();
                (refs, appended)
            })
            .await;
        self.account(&appended);
        self.sync_if_due().await;
        refs
    }

    /// Marks delivered records done on disk.
    pub(crate) async fn done(self: &Arc<Self>, refs: Vec<RecordRef>) {
        if refs.is_empty() {
            return;
        }
        if let Err(e) = self.with_log(move |log| log.done(&refs)).await {
            warn_limited(
                &self.io,
                format_args!(
                    "Could not mark sent {} done in the spool ({e}); they may be sent again after a restart",
                    self.noun
                ),
            );
        }
    }

    fn account(&self, appended: &Appended) {
        let c = self.counters();
        Stats::add(&c.written, appended.written_items);
        Stats::add(&c.dropped_full, appended.evicted_items);
        Stats::add(&c.dropped_io, appended.failed_items);
        if appended.evicted_items > 0 {
            warn_limited(
                &self.full,
                format_args!(
                    "The spool is full: dropped the oldest {} {} on disk to make room \
                     (xray_daemon_spool_dropped_total)",
                    appended.evicted_items, self.noun
                ),
            );
        }
        if let Some(e) = &appended.error {
            warn_limited(
                &self.io,
                format_args!(
                    "Could not write {} {} to the spool: {e}; they are dropped (xray_daemon_spool_dropped_total)",
                    appended.failed_items, self.noun
                ),
            );
        }
    }

    /// Flushes the newest file to the disk at most once per second, so a host crash loses at
    /// most about a second more than a process crash (which loses nothing written).
    async fn sync_if_due(self: &Arc<Self>) {
        {
            let mut last = self.synced.lock().unwrap_or_else(|e| e.into_inner());
            if last.elapsed() < Duration::from_secs(1) {
                return;
            }
            *last = Instant::now();
        }
        let _ = self.with_log(|log| log.sync()).await;
    }
}

/// Logs an error at most once per the limiter's interval, with how many were held back.
fn warn_limited(limit: &RateLimitedWarn, message: std::fmt::Arguments<'_>) {
    if let Some(suppressed) = limit.check() {
        error!("{message}{}", suppressed_note(suppressed));
    }
}

fn records_of(batch: &Batch) -> Vec<(Bytes, u32, Option<RecordRef>)> {
    let refs = batch.refs();
    let items = batch.item_counts();
    batch.records().iter().enumerate().map(|(i, b)| (b.clone(), items[i], refs.get(i).copied().flatten())).collect()
}

fn report_recovery<S: Signal>(dir: &Path, found: &Recovered) {
    if found.records > 0 {
        info!(
            "Found {} {} from an earlier run in the spool ({:.1} MB in {} files at {}); sending them first",
            found.items,
            S::NOUN,
            found.bytes as f64 / 1e6,
            found.files,
            dir.display()
        );
    }
    if found.corrupt > 0 {
        warn!(
            "Skipped {} corrupt or torn records in the spool at {} (counted in xray_daemon_spool_corrupt_records_total)",
            found.corrupt,
            dir.display()
        );
    }
}

/// Writes to disk what waits in memory: records older than `interval`, and the oldest while the
/// buffer is over its high-water mark. Runs until `stop`.
pub(crate) async fn mover(lane: Arc<SpoolLane>, buffer: Arc<Buffer>, interval: Duration, stop: CancellationToken) {
    let tick = (interval / 4).max(Duration::from_millis(10));
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(tick) => {}
            _ = buffer.pressure() => {}
        }
        let cutoff = Instant::now().checked_sub(interval).unwrap_or_else(Instant::now);
        while let Some(mut batch) = buffer.take_waiting(cutoff) {
            lane.spill(&mut batch).await;
            if buffer.budget_used() <= buffer.high_water() {
                break;
            }
        }
    }
}

/// Reads the spool back into the buffer, oldest first, at `rate` bytes per second, while the
/// buffer is under half full and the last read has been sent. Runs until `stop`.
pub(crate) async fn replayer<S: Signal>(lane: Arc<SpoolLane>, buffer: Arc<Buffer>, rate: u64, stop: CancellationToken) {
    let rate = rate.max(1);
    // A token bucket of bytes: one second of the rate, at least one full batch.
    let burst = rate.max(S::MAX_BYTES as u64);
    let mut tokens = burst as f64;
    let mut last = Instant::now();
    let poll = Duration::from_millis(50);
    loop {
        if stop.is_cancelled() {
            return;
        }
        let now = Instant::now();
        tokens = (tokens + now.duration_since(last).as_secs_f64() * rate as f64).min(burst as f64);
        last = now;
        if !lane.has_unread() {
            // Nothing to read until a write or a release says so: no polling while idle.
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = lane.unread.notified() => {}
            }
            continue;
        }
        let room = buffer.budget_used() < buffer.high_water();
        if !room || tokens < 1.0 {
            let wait =
                if tokens < 1.0 { Duration::from_secs_f64((1.0 - tokens) / rate as f64).max(poll) } else { poll };
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = lane.unread.notified() => {}
                _ = tokio::time::sleep(wait) => {}
            }
            continue;
        }
        let max_bytes = (tokens as usize).clamp(1, S::MAX_BYTES);
        let read = lane.with_log(move |log| log.read(S::MAX_ITEMS, max_bytes)).await;
        let (records, corrupt) = match read {
            Ok(r) => r,
            Err(e) => {
                warn_limited(&lane.io, format_args!("Could not read the spool of {}: {e}", S::NOUN));
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
                continue;
            }
        };
        let c = lane.counters();
        if corrupt > 0 {
            Stats::add(&c.corrupt, corrupt);
            warn_limited(
                &lane.io,
                format_args!(
                    "Skipped {corrupt} corrupt records in the spool of {} \
                     (xray_daemon_spool_corrupt_records_total)",
                    S::NOUN
                ),
            );
        }
        let mut unplaced = Vec::new();
        for r in records {
            tokens -= r.body.len() as f64;
            if unplaced.is_empty() && buffer.push_loaded(r.body, r.items, r.at) {
                Stats::add(&c.replayed, u64::from(r.items));
            } else {
                unplaced.push(r.at);
            }
        }
        if !unplaced.is_empty() {
            let lost = lane.with_log(move |log| log.release(&unplaced)).await;
            Stats::add(&lane.counters().dropped_full, lost);
        }
    }
}
