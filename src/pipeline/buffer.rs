//! The one place records wait between ingest and the uploads.
//!
//! It is bounded by the memory it actually holds: each record's allocation (its length rounded
//! up to the allocator's size class) plus its queue slot, not a slot per record, so 1 KB
//! segments cost about 1 KB. The bytes are charged to a [`Budget`], which the buffers of
//! several signals can share. Records taken for upload stay charged until their [`Batch`] lets
//! go of them: a batch holds its records' bytes the way a permit does, and dropping it (or the
//! records it no longer keeps) returns them, so no path can forget to. When a new record does
//! not fit, the oldest waiting records are dropped and reported as spillover. Pushing never
//! blocks on the uploader: the lock is held only for a few pointer moves.
//!
//! It is over 500 lines because of its tests, and because a record's way back from the disk spool
//! (its place on disk, carried by the [`Batch`]) is part of what a batch holds.

use crate::pipeline::disk_log::RecordRef;
use bytes::Bytes;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::Notify;
use tokio::time::Instant;

/// Bytes charged per record on top of its allocation: its queue slot twice over, because the
/// queue's capacity doubles when it grows and so may be up to twice its length.
pub(crate) const ENTRY_OVERHEAD: usize = 2 * std::mem::size_of::<Entry>();

/// The cost of holding one record.
pub fn cost(body: &Bytes) -> usize {
    allocation(body.len()) + ENTRY_OVERHEAD
}

/// What the allocator really reserves for `len` bytes: mimalloc (like jemalloc) rounds a small
/// request up to one of four size classes per power of two, so a 700-byte body takes 768.
fn allocation(len: usize) -> usize {
    let step = (len.next_power_of_two() / 8).max(8);
    len.div_ceil(step) * step
}

/// The memory all buffers together may hold (`-m`).
#[derive(Debug)]
pub(crate) struct Budget {
    limit: usize,
    used: AtomicUsize,
}

impl Budget {
    pub(crate) fn new(limit_bytes: usize) -> Self {
        Budget { limit: limit_bytes, used: AtomicUsize::new(0) }
    }

    /// The byte limit.
    pub(crate) fn limit(&self) -> usize {
        self.limit
    }

    /// Charges `n` bytes if they fit.
    fn try_charge(&self, n: usize) -> bool {
        self.used
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |used| used.checked_add(n).filter(|&t| t <= self.limit))
            .is_ok()
    }

    fn release(&self, n: usize) {
        self.used.fetch_sub(n, Ordering::Relaxed);
    }
}

/// The result of [`Buffer::push`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Push {
    /// Stored; older records holding `evicted` items were dropped to make room.
    Stored { evicted: usize },
    /// Not stored: everything the buffer holds is being uploaded, so nothing older could go.
    Dropped,
}

/// Records taken for one call. Their bytes stay charged until the batch, or the part of it
/// that [`Batch::keep`] lets go, is dropped; [`Batch::requeue`] puts them back instead.
///
/// With a disk spool, a record may also be on disk ([`Batch::refs`]). Then what `keep` lets go
/// is collected as done ([`Batch::take_done`]) for the spool to mark, and a batch dropped while
/// it still holds records (its upload cut off at a shutdown deadline) puts them back in the
/// buffer instead of letting them go, so that the shutdown can write them to disk.
#[derive(Debug)]
pub struct Batch {
    records: Vec<Bytes>,
    /// How many items (segments, spans) each record holds.
    items: Vec<u32>,
    /// Where each record is on disk, if it is.
    refs: Vec<Option<RecordRef>>,
    /// Records on disk that were delivered or refused for good.
    done: Vec<RecordRef>,
    /// When the oldest record of the batch arrived.
    first_arrival: Instant,
    /// The bytes the records hold.
    charge: usize,
    buffer: Arc<Buffer>,
}

impl Batch {
    /// The records, oldest first.
    pub fn records(&self) -> &[Bytes] {
        &self.records
    }

    pub fn len(&self) -> usize {
        self.records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// The items the records hold, all together.
    pub(crate) fn items(&self) -> u64 {
        self.items.iter().map(|&n| u64::from(n)).sum()
    }

    /// How many items each record holds.
    pub(crate) fn item_counts(&self) -> &[u32] {
        &self.items
    }

    /// The items the records at `indices` hold.
    pub(crate) fn items_of(&self, indices: &[usize]) -> u64 {
        indices.iter().filter_map(|&i| self.items.get(i)).map(|&n| u64::from(n)).sum()
    }

    /// Keeps only the records at `indices` (into [`Batch::records`]); the others are done with,
    /// and their bytes go back to the budget now.
    pub fn keep(&mut self, indices: &[usize]) {
        let (before, items_before) = (self.records.len(), self.items());
        let mut refs = std::mem::take(&mut self.refs).into_iter();
        let records = std::mem::take(&mut self.records).into_iter().zip(std::mem::take(&mut self.items));
        for (i, record) in records.enumerate() {
            let at = refs.next().flatten();
            if indices.contains(&i) {
                self.records.push(record.0);
                self.items.push(record.1);
                self.refs.push(at);
            } else {
                self.done.extend(at);
            }
        }
        let kept: usize = self.records.iter().map(cost).sum();
        let items_let_go = (items_before - self.items()) as usize;
        self.buffer.release(before - self.records.len(), items_let_go, self.charge - kept);
        self.charge = kept;
    }

    /// Puts the records back at the front of the queue, oldest first, so they go out next and
    /// are the first to be dropped if the buffer overflows. They stay charged.
    pub(crate) fn requeue(mut self) {
        self.put_back();
    }

    fn put_back(&mut self) {
        let records = std::mem::take(&mut self.records);
        let items = std::mem::take(&mut self.items);
        let mut refs = std::mem::take(&mut self.refs).into_iter().rev();
        self.charge = 0;
        {
            let mut inner = self.buffer.lock();
            inner.in_flight = inner.in_flight.saturating_sub(records.len());
            let held: usize = items.iter().map(|&n| n as usize).sum();
            inner.in_flight_items = inner.in_flight_items.saturating_sub(held);
            for (body, items) in records.into_iter().zip(items).rev() {
                inner.items += items as usize;
                let on_disk = refs.next().flatten();
                inner.queue.push_front(Entry { body, items, arrived: Arrival::of(self.first_arrival), on_disk });
            }
        }
        self.buffer.arrived.notify_one();
    }

    /// Where each record is on disk, if it is (empty when none is).
    pub(crate) fn refs(&self) -> &[Option<RecordRef>] {
        &self.refs
    }

    /// Records the disk places of records just written (one per record, `None` for those that
    /// were not).
    pub(crate) fn set_refs(&mut self, refs: Vec<Option<RecordRef>>) {
        self.refs = refs;
    }

    /// The on-disk records that were delivered or refused since the last call.
    pub(crate) fn take_done(&mut self) -> Vec<RecordRef> {
        std::mem::take(&mut self.done)
    }

    /// Lets every record go without counting it as done: it is on disk now (or could not be
    /// written), and the spool owns it.
    pub(crate) fn forget(&mut self) {
        let n = self.records.len();
        let items = self.items() as usize;
        self.records.clear();
        self.items.clear();
        self.refs.clear();
        self.buffer.release(n, items, std::mem::take(&mut self.charge));
    }
}

impl Drop for Batch {
    fn drop(&mut self) {
        if !self.records.is_empty() && self.buffer.salvage.load(Ordering::Relaxed) {
            self.put_back();
        } else if !self.records.is_empty() || self.charge > 0 {
            self.buffer.release(self.records.len(), self.items() as usize, self.charge);
        }
    }
}

/// A snapshot of what the buffer holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Level {
    /// Records waiting to be taken.
    pub queued: usize,
    /// Items (segments, spans) the waiting records hold.
    pub queued_items: usize,
    /// Records taken for upload and not yet done with.
    pub in_flight: usize,
    /// The items those records hold.
    pub in_flight_items: usize,
    /// Bytes charged for both.
    pub bytes: usize,
}

/// When a record arrived, in 8 bytes where an `Instant` takes 16: nanoseconds since the first
/// record of the process. With it a queue slot stays 56 bytes with the spool's place in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Arrival(u64);

static EPOCH: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();

impl Arrival {
    fn now() -> Arrival {
        Arrival::of(Instant::now())
    }

    fn of(at: Instant) -> Arrival {
        let epoch = *EPOCH.get_or_init(Instant::now);
        Arrival(u64::try_from(at.saturating_duration_since(epoch).as_nanos()).unwrap_or(u64::MAX))
    }

    fn instant(self) -> Instant {
        let epoch = *EPOCH.get_or_init(Instant::now);
        epoch + std::time::Duration::from_nanos(self.0)
    }
}

#[derive(Debug)]
struct Entry {
    body: Bytes,
    items: u32,
    arrived: Arrival,
    /// Set when the record was read back from the disk spool.
    on_disk: Option<RecordRef>,
}

#[derive(Debug, Default)]
struct Inner {
    queue: VecDeque<Entry>,
    /// The items the queue holds.
    items: usize,
    /// This buffer's share of the budget.
    bytes: usize,
    in_flight: usize,
    /// The items the records in flight hold.
    in_flight_items: usize,
}

impl Inner {
    /// Appends a record already charged `cost` bytes. Returns whether to wake the driver: at the
    /// first record, and each time the items waiting pass a multiple of a batch.
    fn store(&mut self, body: Bytes, items: u32, cost: usize, max_batch: usize, on_disk: Option<RecordRef>) -> bool {
        let before = self.items;
        self.bytes += cost;
        self.items += items as usize;
        self.queue.push_back(Entry { body, items, arrived: Arrival::now(), on_disk });
        self.queue.len() == 1 || before / max_batch < self.items / max_batch
    }
}

/// A byte-bounded FIFO of one signal's records, shared by ingest and the flush driver.
#[derive(Debug)]
pub struct Buffer {
    inner: Mutex<Inner>,
    budget: Arc<Budget>,
    max_batch: usize,
    arrived: Notify,
    /// With a disk spool: batches dropped unsettled put their records back.
    salvage: AtomicBool,
    /// With a disk spool: the budget's fill above which a push wakes the spool's mover (0: off).
    high_water: AtomicUsize,
    pressure: Notify,
}

impl Buffer {
    /// A buffer with a budget of its own of `limit_bytes`. `max_batch` is the batch size, in
    /// items, the driver waits for, so the buffer wakes it only when a batch fills or the first
    /// record arrives.
    pub fn new(limit_bytes: usize, max_batch: usize) -> Self {
        Buffer::sharing(Arc::new(Budget::new(limit_bytes)), max_batch)
    }

    /// A buffer that charges `budget`, which other buffers may share.
    pub(crate) fn sharing(budget: Arc<Budget>, max_batch: usize) -> Self {
        Buffer {
            inner: Mutex::new(Inner::default()),
            budget,
            max_batch: max_batch.max(1),
            arrived: Notify::new(),
            salvage: AtomicBool::new(false),
            high_water: AtomicUsize::new(0),
            pressure: Notify::new(),
        }
    }

    /// Turns on what a disk spool needs: batches dropped unsettled come back, and a push that
    /// fills the budget past half wakes [`Buffer::pressure`].
    pub(crate) fn attach_spool(&self) {
        self.salvage.store(true, Ordering::Relaxed);
        self.high_water.store(self.budget.limit / 2, Ordering::Relaxed);
    }

    /// The budget's fill above which the spool's mover should take the oldest records.
    pub(crate) fn high_water(&self) -> usize {
        self.high_water.load(Ordering::Relaxed)
    }

    /// Resolves when a push found the budget over its high-water mark.
    pub(crate) async fn pressure(&self) {
        self.pressure.notified().await;
    }

    /// Bytes the shared budget holds now.
    pub(crate) fn budget_used(&self) -> usize {
        self.budget.used.load(Ordering::Relaxed)
    }

    fn check_pressure(&self) {
        let mark = self.high_water.load(Ordering::Relaxed);
        if mark > 0 && self.budget_used() > mark {
            self.pressure.notify_one();
        }
    }

    /// The byte limit of the budget it charges.
    pub fn limit(&self) -> usize {
        self.budget.limit()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A poisoned lock only means another thread panicked mid-update of plain counters;
        // the queue itself is still consistent, so keep going rather than take the daemon down.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn release(&self, records: usize, items: usize, bytes: usize) {
        {
            let mut inner = self.lock();
            inner.in_flight = inner.in_flight.saturating_sub(records);
            inner.in_flight_items = inner.in_flight_items.saturating_sub(items);
            inner.bytes = inner.bytes.saturating_sub(bytes);
        }
        self.budget.release(bytes);
    }

    /// Stores a record of one item, dropping the oldest waiting records if it would not fit.
    pub fn push(&self, body: Bytes) -> Push {
        self.push_items(body, 1)
    }

    /// Stores a record of `items` items, dropping the oldest waiting records if it would not fit.
    pub(crate) fn push_items(&self, body: Bytes, items: u32) -> Push {
        let need = cost(&body);
        let (result, wake) = {
            let mut inner = self.lock();
            let mut evicted = 0;
            let mut fits = self.budget.try_charge(need);
            while !fits {
                let Some(old) = inner.queue.pop_front() else { break };
                let freed = cost(&old.body);
                inner.bytes -= freed;
                inner.items -= old.items as usize;
                self.budget.release(freed);
                evicted += old.items as usize;
                fits = self.budget.try_charge(need);
            }
            if fits {
                let wake = inner.store(body, items, need, self.max_batch, None);
                (Push::Stored { evicted }, wake)
            } else {
                (Push::Dropped, false)
            }
        };
        if wake {
            self.arrived.notify_one();
        }
        self.check_pressure();
        result
    }

    /// Stores a record of `items` items only if it fits without dropping anything, for senders
    /// that can be told to come back later. Returns whether it was stored.
    pub(crate) fn try_push(&self, body: Bytes, items: u32) -> bool {
        let stored = self.try_store(body, items, None);
        self.check_pressure();
        stored
    }

    /// Stores every one of `records` (one item each) only if all of them fit without dropping
    /// anything, for senders that can be told to come back later. Returns whether they were
    /// stored.
    pub(crate) fn try_push_all(&self, records: Vec<Bytes>) -> bool {
        let need: usize = records.iter().map(cost).sum();
        let wake = {
            let mut inner = self.lock();
            if !self.budget.try_charge(need) {
                return false;
            }
            let mut wake = false;
            for body in records {
                let charge = cost(&body);
                wake |= inner.store(body, 1, charge, self.max_batch, None);
            }
            wake
        };
        if wake {
            self.arrived.notify_one();
        }
        self.check_pressure();
        true
    }

    /// Stores a record read back from the spool only if it fits without dropping anything.
    pub(crate) fn push_loaded(&self, body: Bytes, items: u32, at: RecordRef) -> bool {
        self.try_store(body, items, Some(at))
    }

    fn try_store(&self, body: Bytes, items: u32, on_disk: Option<RecordRef>) -> bool {
        let need = cost(&body);
        let wake = {
            let mut inner = self.lock();
            if !self.budget.try_charge(need) {
                return false;
            }
            inner.store(body, items, need, self.max_batch, on_disk)
        };
        if wake {
            self.arrived.notify_one();
        }
        true
    }

    /// Takes waiting records that hold up to `max_items` items and whose lengths add up to at
    /// most `max_bytes` (always at least one record, if any is waiting).
    pub fn take_batch(self: &Arc<Self>, max_items: usize, max_bytes: usize) -> Option<Batch> {
        let (mut size, mut count) = (0, 0);
        self.take_while(|e, first| {
            let fits = first || (size + e.body.len() <= max_bytes && count + e.items as usize <= max_items);
            if fits {
                size += e.body.len();
                count += e.items as usize;
            }
            fits
        })
    }

    /// Takes the waiting records that arrived at or before `cutoff`, and more of the oldest
    /// while the budget is over its high-water mark: what the spool's mover writes to disk.
    pub(crate) fn take_waiting(self: &Arc<Self>, cutoff: Instant) -> Option<Batch> {
        let mark = self.high_water();
        let mut over = self.budget_used().saturating_sub(mark);
        self.take_while(|e, _| {
            let take = e.arrived.instant() <= cutoff || (mark > 0 && over > 0);
            if take {
                over = over.saturating_sub(cost(&e.body));
            }
            take
        })
    }

    /// Takes waiting records from the front while `take(entry, is_first)` says so (none: `None`).
    fn take_while(self: &Arc<Self>, mut take: impl FnMut(&Entry, bool) -> bool) -> Option<Batch> {
        let mut inner = self.lock();
        let first_arrival = inner.queue.front()?.arrived.instant();
        let (mut records, mut items, mut refs) = (Vec::new(), Vec::new(), Vec::new());
        let (mut count, mut charge, mut any_ref) = (0, 0, false);
        while inner.queue.front().is_some_and(|e| take(e, records.is_empty())) {
            let Some(e) = inner.queue.pop_front() else { break };
            inner.items -= e.items as usize;
            count += e.items as usize;
            charge += cost(&e.body);
            any_ref |= e.on_disk.is_some();
            records.push(e.body);
            items.push(e.items);
            refs.push(e.on_disk);
        }
        if records.is_empty() {
            return None;
        }
        if !any_ref {
            refs.clear();
        }
        inner.in_flight += records.len();
        inner.in_flight_items += count;
        Some(Batch { records, items, refs, done: Vec::new(), first_arrival, charge, buffer: self.clone() })
    }

    /// When the oldest waiting record arrived, if any is waiting.
    pub(crate) fn oldest_arrival(&self) -> Option<Instant> {
        self.lock().queue.front().map(|e| e.arrived.instant())
    }

    /// The items held now, waiting or being uploaded.
    pub(crate) fn held_items(&self) -> u64 {
        let inner = self.lock();
        (inner.items + inner.in_flight_items) as u64
    }

    /// What the buffer holds now.
    pub fn level(&self) -> Level {
        let inner = self.lock();
        Level {
            queued: inner.queue.len(),
            queued_items: inner.items,
            in_flight: inner.in_flight,
            in_flight_items: inner.in_flight_items,
            bytes: inner.bytes,
        }
    }

    /// Resolves when a record arrives (or was put back) since the last call.
    pub async fn arrived(&self) {
        self.arrived.notified().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(n: usize, tag: u8) -> Bytes {
        Bytes::from(vec![tag; n])
    }

    fn tags(batch: &Batch) -> Vec<u8> {
        batch.records().iter().map(|d| d[0]).collect()
    }

    #[test]
    fn a_body_costs_its_size_class_and_its_slot() {
        let sizes: Vec<usize> = [1, 8, 9, 64, 65, 100, 512, 513, 700, 1000, 1024, 1025, 65_507].map(allocation).into();
        assert_eq!(sizes, [8, 8, 16, 64, 80, 112, 512, 640, 768, 1024, 1024, 1280, 65_536]);
        assert_eq!(ENTRY_OVERHEAD, 112);
        assert_eq!(cost(&body(700, 0)), 768 + 112);
    }

    #[test]
    fn bounded_by_bytes_held_not_slots() {
        // 10 KB holds about nine 1 KB segments (plus overhead), not 0 or 10 000.
        let buf = Arc::new(Buffer::new(10 * 1024, 50));
        for i in 0..9 {
            assert_eq!(buf.push(body(1000, i)), Push::Stored { evicted: 0 });
        }
        let level = buf.level();
        assert_eq!(level.queued, 9);
        assert_eq!(level.bytes, 9 * cost(&body(1000, 0)));
        assert!(level.bytes <= buf.limit());
    }

    #[test]
    fn full_buffer_drops_oldest_first() {
        let per = cost(&body(100, 0));
        let buf = Arc::new(Buffer::new(per * 3, 50));
        for i in 0..3 {
            buf.push(body(100, i));
        }
        assert_eq!(buf.push(body(100, 3)), Push::Stored { evicted: 1 });
        // A body that costs more than one and at most two of the others evicts two more.
        assert!(cost(&body(320, 0)) > per && cost(&body(320, 0)) <= 2 * per);
        assert_eq!(buf.push(body(320, 4)), Push::Stored { evicted: 2 });
        let batch = buf.take_batch(50, usize::MAX).unwrap();
        assert_eq!(tags(&batch), vec![3, 4]);
        assert!(buf.level().bytes <= buf.limit());
    }

    #[test]
    fn records_pushed_together_are_all_stored_or_none_is() {
        let per = cost(&body(100, 0));
        let buf = Arc::new(Buffer::new(per * 3, 50));
        buf.push(body(100, 0));
        assert!(!buf.try_push_all(vec![body(100, 1), body(100, 2), body(100, 3)]), "three do not fit beside one");
        assert_eq!(buf.level().queued, 1, "nothing was stored, nothing was evicted");
        assert!(buf.try_push_all(vec![body(100, 1), body(100, 2)]));
        let batch = buf.take_batch(50, usize::MAX).unwrap();
        assert_eq!(tags(&batch), vec![0, 1, 2]);
        assert_eq!(buf.level().bytes, 3 * per);
    }

    #[test]
    fn in_flight_bytes_stay_charged_until_the_batch_is_dropped() {
        let per = cost(&body(100, 0));
        let buf = Arc::new(Buffer::new(per * 2, 50));
        buf.push(body(100, 0));
        buf.push(body(100, 1));
        let batch = buf.take_batch(50, usize::MAX).unwrap();
        assert_eq!(buf.level(), Level { queued: 0, queued_items: 0, in_flight: 2, in_flight_items: 2, bytes: 2 * per });
        // Nothing waiting can be evicted, so a new body is dropped rather than exceed the limit.
        assert_eq!(buf.push(body(100, 2)), Push::Dropped);
        drop(batch);
        assert_eq!(buf.level(), Level::default());
        assert_eq!(buf.push(body(100, 2)), Push::Stored { evicted: 0 });
    }

    #[test]
    fn a_batch_that_keeps_some_records_releases_the_others_at_once() {
        let buf = Arc::new(Buffer::new(1 << 20, 50));
        for (i, n) in [10, 200, 3000].into_iter().enumerate() {
            buf.push(body(n, i as u8));
        }
        let mut batch = buf.take_batch(50, usize::MAX).unwrap();
        batch.keep(&[1]);
        assert_eq!(tags(&batch), vec![1]);
        assert_eq!(
            buf.level(),
            Level { queued: 0, queued_items: 0, in_flight: 1, in_flight_items: 1, bytes: cost(&body(200, 0)) }
        );
        batch.keep(&[]);
        assert!(batch.is_empty());
        assert_eq!(buf.level(), Level::default());
        drop(batch);
        assert_eq!(buf.level(), Level::default(), "nothing is released twice");
    }

    #[test]
    fn requeued_batch_goes_out_first_and_is_evicted_first() {
        let per = cost(&body(10, 0));
        let buf = Arc::new(Buffer::new(per * 4, 50));
        for i in 0..3 {
            buf.push(body(10, i));
        }
        let batch = buf.take_batch(2, usize::MAX).unwrap();
        buf.push(body(10, 3));
        batch.requeue();
        assert_eq!(buf.level(), Level { queued: 4, queued_items: 4, in_flight: 0, in_flight_items: 0, bytes: 4 * per });
        assert_eq!(buf.push(body(10, 4)), Push::Stored { evicted: 1 });
        assert_eq!(tags(&buf.take_batch(50, usize::MAX).unwrap()), vec![1, 2, 3, 4]);
    }

    #[test]
    fn batches_respect_count_and_byte_limits() {
        let buf = Arc::new(Buffer::new(1 << 20, 50));
        for i in 0..120 {
            buf.push(body(100, i as u8));
        }
        assert_eq!(buf.take_batch(50, usize::MAX).unwrap().len(), 50);
        assert_eq!(buf.take_batch(50, 1000).unwrap().len(), 10);
        // A single body larger than the byte limit still goes out alone.
        let big = Arc::new(Buffer::new(1 << 20, 50));
        big.push(body(5000, 0));
        big.push(body(10, 1));
        assert_eq!(big.take_batch(50, 1000).unwrap().len(), 1);
        assert!(Arc::new(Buffer::new(1000, 50)).take_batch(50, 1000).is_none());
    }

    #[test]
    fn buffers_sharing_a_budget_never_hold_more_than_it_together() {
        let per = cost(&body(100, 0));
        let budget = Arc::new(Budget::new(per * 3));
        let a = Arc::new(Buffer::sharing(budget.clone(), 50));
        let b = Arc::new(Buffer::sharing(budget.clone(), 50));
        a.push(body(100, 0));
        a.push(body(100, 1));
        b.push(body(100, 2));
        // b is full only through a's share: it evicts its own oldest, never a's records.
        assert_eq!(b.push(body(100, 3)), Push::Stored { evicted: 1 });
        let taken = b.take_batch(50, usize::MAX).unwrap();
        assert_eq!(b.push(body(100, 4)), Push::Dropped, "b has nothing waiting to evict");
        assert_eq!(a.level().queued + b.level().queued + b.level().in_flight, 3);
        drop(taken);
        assert_eq!(b.push(body(100, 4)), Push::Stored { evicted: 0 });
        assert_eq!(budget.used.load(Ordering::Relaxed), a.level().bytes + b.level().bytes);
    }
}
