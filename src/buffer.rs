//! The one place segments wait between the UDP reader and the uploader.
//!
//! It is bounded by the memory it actually holds: each segment's allocation (its length rounded
//! up to the allocator's size class) plus its queue slot, not a slot per segment, so 1 KB
//! segments cost about 1 KB. Segments taken for upload stay charged until they are delivered or
//! given up, so memory stays within the limit even while batches are being retried. When a new
//! segment does not fit, the oldest waiting segments are dropped and reported as spillover.
//! Pushing never blocks on the uploader: the lock is held only for a few pointer moves.

use bytes::Bytes;
use std::collections::VecDeque;
use std::sync::Mutex;
use tokio::sync::Notify;
use tokio::time::Instant;

/// Bytes charged per segment on top of its allocation: its queue slot twice over, because the
/// queue's capacity doubles when it grows and so may be up to twice its length.
pub const ENTRY_OVERHEAD: usize = 2 * std::mem::size_of::<Entry>();

/// The cost of holding one body.
pub fn cost(body: &Bytes) -> usize {
    allocation(body.len()) + ENTRY_OVERHEAD
}

/// What the allocator really reserves for `len` bytes: mimalloc (like jemalloc) rounds a small
/// request up to one of four size classes per power of two, so a 700-byte body takes 768.
fn allocation(len: usize) -> usize {
    let step = (len.next_power_of_two() / 8).max(8);
    len.div_ceil(step) * step
}

/// The result of [`SegmentBuffer::push`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Push {
    /// Stored; `evicted` older segments were dropped to make room.
    Stored { evicted: usize },
    /// Not stored: everything the buffer holds is being uploaded, so nothing older could go.
    Dropped,
}

/// A group of segments taken for one PutTraceSegments call. Its bytes stay charged to the
/// buffer until it is handed back with [`SegmentBuffer::complete`] or [`SegmentBuffer::requeue`].
#[derive(Debug)]
pub struct Batch {
    pub docs: Vec<Bytes>,
    /// When the oldest segment of the batch arrived.
    pub first_arrival: Instant,
}

impl Batch {
    /// The bytes charged for the batch.
    pub fn cost(&self) -> usize {
        self.docs.iter().map(cost).sum()
    }
}

/// A snapshot of what the buffer holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Level {
    /// Segments waiting to be taken.
    pub queued: usize,
    /// Segments taken for upload and not yet completed.
    pub in_flight: usize,
    /// Bytes charged for both.
    pub bytes: usize,
}

struct Entry {
    body: Bytes,
    arrived: Instant,
}

#[derive(Default)]
struct Inner {
    queue: VecDeque<Entry>,
    bytes: usize,
    in_flight: usize,
}

/// A byte-bounded FIFO of segment bodies shared by the reader and the batcher.
pub struct SegmentBuffer {
    inner: Mutex<Inner>,
    limit: usize,
    max_batch: usize,
    arrived: Notify,
}

impl SegmentBuffer {
    /// A buffer that holds at most `limit_bytes`. `max_batch` is the batch size the batcher
    /// waits for, so the buffer wakes it only when a batch fills or the first segment arrives.
    pub fn new(limit_bytes: usize, max_batch: usize) -> Self {
        SegmentBuffer {
            inner: Mutex::new(Inner::default()),
            limit: limit_bytes,
            max_batch: max_batch.max(1),
            arrived: Notify::new(),
        }
    }

    /// The byte limit.
    pub fn limit(&self) -> usize {
        self.limit
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A poisoned lock only means another thread panicked mid-update of plain counters;
        // the queue itself is still consistent, so keep going rather than take the daemon down.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Stores a body, dropping the oldest waiting bodies if it would not fit.
    pub fn push(&self, body: Bytes) -> Push {
        let need = cost(&body);
        let (result, wake) = {
            let mut inner = self.lock();
            let mut evicted = 0;
            while inner.bytes + need > self.limit {
                match inner.queue.pop_front() {
                    Some(old) => {
                        inner.bytes -= cost(&old.body);
                        evicted += 1;
                    }
                    None => break,
                }
            }
            if inner.bytes + need > self.limit {
                (Push::Dropped, false)
            } else {
                inner.bytes += need;
                inner.queue.push_back(Entry { body, arrived: Instant::now() });
                let len = inner.queue.len();
                (Push::Stored { evicted }, len == 1 || len.is_multiple_of(self.max_batch))
            }
        };
        if wake {
            self.arrived.notify_one();
        }
        result
    }

    /// Takes up to `max_docs` waiting bodies whose lengths add up to at most `max_bytes`
    /// (always at least one body, if any is waiting).
    pub fn take_batch(&self, max_docs: usize, max_bytes: usize) -> Option<Batch> {
        let mut inner = self.lock();
        let first_arrival = inner.queue.front()?.arrived;
        let mut docs = Vec::with_capacity(max_docs.min(inner.queue.len()));
        let mut size = 0;
        while docs.len() < max_docs {
            let fits = inner.queue.front().is_some_and(|e| docs.is_empty() || size + e.body.len() <= max_bytes);
            if !fits {
                break;
            }
            let Some(e) = inner.queue.pop_front() else { break };
            size += e.body.len();
            docs.push(e.body);
        }
        inner.in_flight += docs.len();
        Some(Batch { docs, first_arrival })
    }

    /// Releases bodies that were delivered, rejected for good, or abandoned.
    pub fn complete(&self, docs: &[Bytes]) {
        let mut inner = self.lock();
        inner.in_flight = inner.in_flight.saturating_sub(docs.len());
        inner.bytes = inner.bytes.saturating_sub(docs.iter().map(cost).sum());
    }

    /// Puts bodies that could not be delivered yet back at the front, oldest first, so they
    /// go out next and are the first to be dropped if the buffer overflows.
    pub fn requeue(&self, docs: Vec<Bytes>, first_arrival: Instant) {
        {
            let mut inner = self.lock();
            inner.in_flight = inner.in_flight.saturating_sub(docs.len());
            for body in docs.into_iter().rev() {
                inner.queue.push_front(Entry { body, arrived: first_arrival });
            }
        }
        self.arrived.notify_one();
    }

    /// When the oldest waiting body arrived, if any is waiting.
    pub fn oldest_arrival(&self) -> Option<Instant> {
        self.lock().queue.front().map(|e| e.arrived)
    }

    /// What the buffer holds now.
    pub fn level(&self) -> Level {
        let inner = self.lock();
        Level { queued: inner.queue.len(), in_flight: inner.in_flight, bytes: inner.bytes }
    }

    /// Drops everything waiting and returns how many bodies that was (used when a shutdown
    /// deadline passes).
    pub fn clear(&self) -> usize {
        let mut inner = self.lock();
        let n = inner.queue.len();
        let freed: usize = inner.queue.drain(..).map(|e| cost(&e.body)).sum();
        inner.bytes -= freed;
        n
    }

    /// Resolves when a body arrives (or was put back) since the last call.
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

    #[test]
    fn a_body_costs_its_size_class_and_its_slot() {
        let sizes: Vec<usize> = [1, 8, 9, 64, 65, 100, 512, 513, 700, 1000, 1024, 1025, 65_507].map(allocation).into();
        assert_eq!(sizes, [8, 8, 16, 64, 80, 112, 512, 640, 768, 1024, 1024, 1280, 65_536]);
        assert_eq!(ENTRY_OVERHEAD, 96);
        assert_eq!(cost(&body(700, 0)), 768 + 96);
    }

    #[test]
    fn bounded_by_bytes_held_not_slots() {
        // 10 KB holds about nine 1 KB segments (plus overhead), not 0 or 10 000.
        let buf = SegmentBuffer::new(10 * 1024, 50);
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
        let buf = SegmentBuffer::new(per * 3, 50);
        for i in 0..3 {
            buf.push(body(100, i));
        }
        assert_eq!(buf.push(body(100, 3)), Push::Stored { evicted: 1 });
        // A body that costs twice as much evicts two more.
        assert_eq!(cost(&body(320, 0)), 2 * per);
        assert_eq!(buf.push(body(320, 4)), Push::Stored { evicted: 2 });
        let batch = buf.take_batch(50, usize::MAX).unwrap();
        let tags: Vec<u8> = batch.docs.iter().map(|d| d[0]).collect();
        assert_eq!(tags, vec![3, 4]);
        assert!(buf.level().bytes <= buf.limit());
    }

    #[test]
    fn in_flight_bytes_stay_charged_until_complete() {
        let per = cost(&body(100, 0));
        let buf = SegmentBuffer::new(per * 2, 50);
        buf.push(body(100, 0));
        buf.push(body(100, 1));
        let batch = buf.take_batch(50, usize::MAX).unwrap();
        assert_eq!(buf.level(), Level { queued: 0, in_flight: 2, bytes: 2 * per });
        // Nothing waiting can be evicted, so a new body is dropped rather than exceed the limit.
        assert_eq!(buf.push(body(100, 2)), Push::Dropped);
        buf.complete(&batch.docs);
        assert_eq!(buf.level(), Level::default());
        assert_eq!(buf.push(body(100, 2)), Push::Stored { evicted: 0 });
    }

    #[test]
    fn requeued_batch_goes_out_first_and_is_evicted_first() {
        let per = cost(&body(10, 0));
        let buf = SegmentBuffer::new(per * 4, 50);
        for i in 0..3 {
            buf.push(body(10, i));
        }
        let batch = buf.take_batch(2, usize::MAX).unwrap();
        buf.push(body(10, 3));
        buf.requeue(batch.docs, batch.first_arrival);
        assert_eq!(buf.level(), Level { queued: 4, in_flight: 0, bytes: 4 * per });
        assert_eq!(buf.push(body(10, 4)), Push::Stored { evicted: 1 });
        let tags: Vec<u8> = buf.take_batch(50, usize::MAX).unwrap().docs.iter().map(|d| d[0]).collect();
        assert_eq!(tags, vec![1, 2, 3, 4]);
    }

    #[test]
    fn batches_respect_count_and_byte_limits() {
        let buf = SegmentBuffer::new(1 << 20, 50);
        for i in 0..120 {
            buf.push(body(100, i as u8));
        }
        assert_eq!(buf.take_batch(50, usize::MAX).unwrap().docs.len(), 50);
        assert_eq!(buf.take_batch(50, 1000).unwrap().docs.len(), 10);
        // A single body larger than the byte limit still goes out alone.
        let big = SegmentBuffer::new(1 << 20, 50);
        big.push(body(5000, 0));
        big.push(body(10, 1));
        assert_eq!(big.take_batch(50, 1000).unwrap().docs.len(), 1);
        assert!(SegmentBuffer::new(1000, 50).take_batch(50, 1000).is_none());
    }

    #[test]
    fn clear_reports_what_was_dropped() {
        let buf = SegmentBuffer::new(1 << 20, 50);
        for i in 0..5 {
            buf.push(body(10, i));
        }
        let b = buf.take_batch(2, usize::MAX).unwrap();
        assert_eq!(buf.clear(), 3);
        assert_eq!(buf.level().in_flight, 2);
        buf.complete(&b.docs);
        assert_eq!(buf.level(), Level::default());
    }
}
