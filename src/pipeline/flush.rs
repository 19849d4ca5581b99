//! When a batch leaves, and how it is sent: the flush driver and the uploader, written once for
//! every signal.
//!
//! *When* is the pure function [`FlushPolicy::decide`]: send when a full batch is waiting, when
//! the oldest waiting record has waited `max_delay` (so a partial batch leaves within 1 s of its
//! first record), or at once while a flush or shutdown is draining the buffer. [`Driver::run`]
//! only carries the decisions out: it takes a batch, starts its upload on a bounded set of
//! tasks, and answers flush requests once the buffer is empty and nothing is in flight.
//!
//! *How* is [`Uploader::deliver`]: one call at a time per batch through the signal's
//! [`Sink`], retried with jittered exponential backoff, the answer settled record by record.
//! The retry rules live here, next to the backoff they drive:
//! - throttling (429 or a `Throttl…` code), 408, 5xx, timeouts, connection errors and
//!   credential/auth failures are retried; other 4xx answers are final: the batch is counted as
//!   rejected and logged once;
//! - records the sink names as retryable (X-Ray's throttled `UnprocessedTraceSegments`) are sent
//!   again; those it refused for good are counted as rejected;
//! - one backoff is shared by all uploads of a signal, so an outage slows every sender (no retry
//!   storm);
//! - a batch is retried in memory at most [`RetryPolicy::max_attempts`] times or for
//!   [`RetryPolicy::max_elapsed`]; after that it goes back to the front of the buffer, where it
//!   is sent again later or, if the buffer overflows first, counted as spillover.
//!
//! The two halves share a file because a batch passes from one to the other and nowhere else;
//! each is its own type with its own tests. That makes it a little over 500 lines.

use crate::backend::{BackendError, ErrorKind, Receipt, Sink};
use crate::pipeline::buffer::{Batch, Buffer};
use crate::pipeline::spool::SpoolLane;
use crate::signal::Signal;
use crate::stats::{Delivery, ErrorClass, Stats};
use std::marker::PhantomData;
use std::sync::atomic::{AtomicU32, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

/// What the driver should do next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Decision {
    /// Take a batch now.
    Send,
    /// Nothing to send before this moment (unless more records arrive).
    WaitUntil(Instant),
    /// The buffer is empty.
    Idle,
}

/// The "when" rules.
#[derive(Debug, Clone, Copy)]
pub(crate) struct FlushPolicy {
    /// A batch of this many records goes at once.
    pub max_items: usize,
    /// A partial batch goes this long after its oldest record arrived.
    pub max_delay: Duration,
}

impl FlushPolicy {
    /// Full batches of signal `S`, partial ones after `max_delay`.
    pub(crate) fn of<S: Signal>(max_delay: Duration) -> Self {
        FlushPolicy { max_items: S::MAX_ITEMS, max_delay }
    }

    /// `queued_items`: the items (segments, spans) waiting; `oldest`: when the oldest arrived.
    pub(crate) fn decide(
        &self,
        queued_items: usize,
        oldest: Option<Instant>,
        now: Instant,
        draining: bool,
    ) -> Decision {
        let Some(oldest) = oldest else { return Decision::Idle };
        let due = oldest + self.max_delay;
        if draining || queued_items >= self.max_items || now >= due {
            Decision::Send
        } else {
            Decision::WaitUntil(due)
        }
    }
}

/// Requests from the pipeline to a driver.
#[derive(Debug)]
pub(crate) enum Command {
    /// Send everything now; answer when the buffer is empty and no upload is in flight.
    Flush(oneshot::Sender<()>),
    /// Like `Flush`, then stop.
    Close,
}

/// Takes batches from one signal's buffer and owns their upload tasks.
pub(crate) struct Driver<S: Signal, K> {
    pub buffer: Arc<Buffer>,
    pub uploader: Arc<Uploader<S, K>>,
    pub policy: FlushPolicy,
    /// The most uploads in flight at once.
    pub concurrency: usize,
}

impl<S: Signal, K: Sink<S>> Driver<S, K> {
    /// Runs until `Close` (or the command channel closes) and the buffer has drained.
    /// `cut` stops the uploads in flight at once (their batches are dropped) and the driver.
    pub(crate) async fn run(self, mut commands: mpsc::Receiver<Command>, cut: CancellationToken) {
        let mut uploads = JoinSet::new();
        let mut waiters: Vec<oneshot::Sender<()>> = Vec::new();
        let mut closing = false;
        let concurrency = self.concurrency.max(1);
        loop {
            let level = self.buffer.level();
            let draining = closing || !waiters.is_empty();
            if draining && level.queued == 0 && uploads.is_empty() {
                for w in waiters.drain(..) {
                    let _ = w.send(());
                }
                if closing {
                    return;
                }
            }
            let decision =
                self.policy.decide(level.queued_items, self.buffer.oldest_arrival(), Instant::now(), draining);
            let slot_free = uploads.len() < concurrency;
            if decision == Decision::Send && slot_free {
                if let Some(batch) = self.buffer.take_batch(self.policy.max_items, S::MAX_BYTES) {
                    let uploader = self.uploader.clone();
                    uploads.spawn(async move { uploader.deliver(batch).await });
                }
                continue;
            }
            let wake_at = match decision {
                Decision::WaitUntil(t) if slot_free => Some(t),
                _ => None,
            };
            tokio::select! {
                () = cut.cancelled() => {
                    uploads.shutdown().await;
                    return;
                }
                _ = self.buffer.arrived() => {}
                Some(_) = uploads.join_next(), if !uploads.is_empty() => {}
                _ = sleep_until(wake_at), if wake_at.is_some() => {}
                command = commands.recv(), if !closing => match command {
                    Some(Command::Flush(reply)) => waiters.push(reply),
                    Some(Command::Close) | None => closing = true,
                },
            }
        }
    }
}

async fn sleep_until(at: Option<Instant>) {
    if let Some(at) = at {
        tokio::time::sleep_until(at).await;
    }
}

/// How hard a batch is tried before it goes back to the buffer.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RetryPolicy {
    pub max_attempts: u32,
    pub max_elapsed: Duration,
    pub base_delay: Duration,
    pub max_delay: Duration,
    /// The longest a service's `Retry-After` is honoured for.
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 5,
            max_elapsed: Duration::from_secs(30),
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(5),
            max_retry_after: Duration::from_secs(30),
        }
    }
}

/// Backoff shared by every upload: consecutive failures lengthen the wait for all of them,
/// and one success resets it.
#[derive(Debug, Default)]
pub(crate) struct Backoff {
    failures: AtomicU32,
}

impl Backoff {
    pub(crate) fn failure(&self) {
        self.failures.fetch_add(1, Relaxed);
    }

    pub(crate) fn success(&self) {
        self.failures.store(0, Relaxed);
    }

    /// How long to wait before the next attempt: none while the backend is healthy, else
    /// `base * 2^(failures-1)` capped at `max`, with "equal jitter" (half fixed, half random)
    /// so that waits never collapse to zero.
    pub(crate) fn delay(&self, policy: &RetryPolicy) -> Option<Duration> {
        let failures = self.failures.load(Relaxed);
        if failures == 0 {
            return None;
        }
        let exp = policy.base_delay.saturating_mul(1u32 << (failures - 1).min(16));
        let capped = exp.min(policy.max_delay);
        let half = capped / 2;
        Some(half + half.mul_f64(fastrand::f64()))
    }
}

/// Whether another attempt may succeed: everything but a 4xx that says the request is wrong.
/// Throttling and auth failures are retried: credentials rotate, roles get fixed, clocks get
/// corrected, and meanwhile the data waits in the buffer.
pub(crate) fn retryable(error: &BackendError) -> bool {
    error.class() != ErrorClass::Client || matches!(error.kind, ErrorKind::Status { status: 408, .. })
}

/// Counts a call that started at `t0` and has just ended; returns how long it took, in seconds.
fn count_call(delivery: &Delivery, t0: Instant) -> f64 {
    let secs = t0.elapsed().as_secs_f64();
    delivery.latency.observe(secs);
    Stats::add(&delivery.calls, 1);
    secs
}

/// Sends batches of signal `S` through sink `K` and counts what happened to each record.
pub(crate) struct Uploader<S, K> {
    sink: K,
    stats: Arc<Stats>,
    backoff: Backoff,
    policy: RetryPolicy,
    /// With a disk spool: the signal's log, and how long an upload may run before its records
    /// are copied to disk.
    spool: Option<(Arc<SpoolLane>, Duration)>,
    signal: PhantomData<S>,
}

impl<S: Signal, K: Sink<S>> Uploader<S, K> {
    pub(crate) fn new(sink: K, stats: Arc<Stats>, policy: RetryPolicy) -> Self {
        Uploader { sink, stats, backoff: Backoff::default(), policy, spool: None, signal: PhantomData }
    }

    /// Retries go through the disk spool instead of memory.
    pub(crate) fn with_spool(mut self, lane: Arc<SpoolLane>, interval: Duration) -> Self {
        self.spool = Some((lane, interval));
        self
    }

    /// Delivers one batch. In memory, it is retried within the policy and every record ends up
    /// sent, rejected, or back in the buffer; with a spool, see [`Uploader::deliver_spooled`].
    pub(crate) async fn deliver(&self, batch: Batch) {
        match &self.spool {
            Some((lane, interval)) => self.deliver_spooled(batch, lane, *interval).await,
            None => self.deliver_in_memory(batch).await,
        }
    }

    /// With a spool, a batch gets one attempt and is never retried from memory:
    /// - while the backend is failing (the shared backoff has failures) and records wait on
    ///   disk, a batch of new records goes straight to disk: the batches read back from disk
    ///   make the attempts. Any other batch is copied to disk first, then waits the backoff and
    ///   makes its attempt (with nothing on disk, new records probe the backend themselves);
    /// - an attempt still running after `interval` has its records copied to disk meanwhile;
    /// - what the attempt does not deliver goes to disk (or, if it is there, stays there).
    ///
    /// Records on disk are marked done once delivered or refused for good.
    async fn deliver_spooled(&self, mut batch: Batch, lane: &Arc<SpoolLane>, interval: Duration) {
        let delivery = S::delivery(&self.stats);
        if let Some(wait) = self.backoff.delay(&self.policy) {
            if batch.refs().iter().all(Option::is_none) && lane.has_unread() {
                lane.spill(&mut batch).await;
                return;
            }
            let refs = lane.copy(&batch).await;
            batch.set_refs(refs);
            tokio::time::sleep(wait).await;
        }
        let t0 = Instant::now();
        let mut copied = None;
        let result = {
            let send = self.sink.send(batch.records());
            tokio::pin!(send);
            tokio::select! {
                result = &mut send => result,
                () = tokio::time::sleep(interval) => {
                    copied = Some(lane.copy(&batch).await);
                    send.await
                }
            }
        };
        if let Some(refs) = copied {
            batch.set_refs(refs);
        }
        let secs = count_call(delivery, t0);
        match result {
            Ok(receipt) => {
                if self.settle(&mut batch, receipt, secs) {
                    self.backoff.success();
                } else {
                    lane.spill(&mut batch).await;
                }
            }
            Err(e) => {
                e.count(S::API, &self.stats);
                if retryable(&e) {
                    self.backoff.failure();
                    let (n, noun, item) = (batch.items(), S::NOUN, S::ITEM);
                    warn!(
                        api = S::API.as_str(),
                        status = e.status(),
                        error_code = e.error_code(),
                        count = n,
                        "Sending {item} batch failed with: {e}. Writing {n} {noun} to the spool, to be sent again"
                    );
                    lane.spill(&mut batch).await;
                } else {
                    self.reject(&mut batch, &e);
                }
            }
        }
        lane.done(batch.take_done()).await;
    }

    /// Counts a batch refused for good and lets it go.
    fn reject(&self, batch: &mut Batch, e: &BackendError) {
        let (n, noun, item) = (batch.items(), S::NOUN, S::ITEM);
        error!(
            api = S::API.as_str(),
            status = e.status(),
            error_code = e.error_code(),
            reason = "not_retryable",
            count = n,
            "Sending {item} batch failed with: {e}. The error is not retryable: {n} {noun} rejected"
        );
        Stats::add(&S::delivery(&self.stats).rejected, n);
        batch.keep(&[]);
    }

    /// Delivers one batch, retrying within the policy. Every record of the batch ends up
    /// sent, rejected, or back in the buffer.
    async fn deliver_in_memory(&self, mut batch: Batch) {
        let delivery = S::delivery(&self.stats);
        let started = Instant::now();
        let mut attempt = 0u32;
        // What the service last asked for with `Retry-After`, honoured up to a cap.
        let mut asked: Option<Duration> = None;
        loop {
            attempt += 1;
            let asked_wait = asked.take().map(|d| d.min(self.policy.max_retry_after));
            if let Some(wait) = self.backoff.delay(&self.policy).max(asked_wait) {
                if attempt > 1 {
                    Stats::add(&delivery.retries, 1);
                }
                let (secs, n, noun) = (wait.as_secs_f64(), batch.len(), S::NOUN);
                debug!("Waiting {secs:.3} seconds before sending a batch of {n} {noun}");
                tokio::time::sleep(wait).await;
            }
            let t0 = Instant::now();
            let result = self.sink.send(batch.records()).await;
            let secs = count_call(delivery, t0);
            match result {
                Ok(receipt) => {
                    if self.settle(&mut batch, receipt, secs) {
                        self.backoff.success();
                        return;
                    }
                }
                Err(e) => {
                    e.count(S::API, &self.stats);
                    if !retryable(&e) {
                        self.reject(&mut batch, &e);
                        return;
                    }
                    self.backoff.failure();
                    asked = e.retry_after;
                    let next = self.backoff.delay(&self.policy).max(asked).unwrap_or_default();
                    if attempt < self.policy.max_attempts && started.elapsed() < self.policy.max_elapsed {
                        warn!(
                            api = S::API.as_str(),
                            status = e.status(),
                            error_code = e.error_code(),
                            count = batch.len(),
                            attempt,
                            "Sending {} batch failed with: {e}. Retrying {} {} in {:.3} seconds (attempt {attempt} of {})",
                            S::ITEM,
                            batch.len(),
                            S::NOUN,
                            next.as_secs_f64(),
                            self.policy.max_attempts
                        );
                    }
                }
            }
            if attempt >= self.policy.max_attempts || started.elapsed() >= self.policy.max_elapsed {
                error!(
                    api = S::API.as_str(),
                    count = batch.len(),
                    attempts = attempt,
                    duration_s = started.elapsed().as_secs_f64(),
                    "Could not send {} {} after {attempt} attempts in {:.3} seconds; they stay buffered and will be sent again",
                    batch.len(),
                    S::NOUN,
                    started.elapsed().as_secs_f64()
                );
                batch.requeue();
                return;
            }
        }
    }

    /// Accounts for an accepted call: releases what is done with, keeps what must go again.
    /// Returns true when nothing is left to send.
    fn settle(&self, batch: &mut Batch, receipt: Receipt, secs: f64) -> bool {
        let delivery = S::delivery(&self.stats);
        let n = batch.items();
        let noun = S::NOUN;
        if receipt.unprocessed == 0 && receipt.retry.is_empty() && receipt.rejected == 0 {
            // Counters and buffer first: whoever reads the log line must see them updated.
            Stats::add(&delivery.sent, n);
            batch.keep(&[]);
            info!(
                target: crate::stats::log_limit::ROUTINE,
                api = S::API.as_str(),
                count = n,
                duration_s = secs,
                "Successfully sent batch of {n} {noun} ({secs:.3} seconds)"
            );
            return true;
        }
        info!(
            api = S::API.as_str(),
            count = n,
            unprocessed = receipt.unprocessed,
            duration_s = secs,
            "Sent batch of {n} {noun} but had {} Unprocessed {noun} ({secs:.3} seconds)",
            receipt.unprocessed
        );
        Stats::add(&delivery.unprocessed, receipt.unprocessed);
        let retry = batch.items_of(&receipt.retry);
        let rejected = receipt.rejected.min(n - retry);
        Stats::add(&delivery.sent, n - retry - rejected);
        Stats::add(&delivery.rejected, rejected);
        batch.keep(&receipt.retry);
        if batch.is_empty() {
            true
        } else {
            self.backoff.failure();
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signal::Segments;
    use crate::stats::{Api, UpstreamClass};
    use bytes::Bytes;
    use std::collections::VecDeque;
    use std::sync::Mutex;

    #[test]
    fn decide_sends_full_batches_at_once() {
        let p = FlushPolicy::of::<Segments>(Duration::from_secs(1));
        let now = Instant::now();
        assert_eq!(p.decide(50, Some(now), now, false), Decision::Send);
        assert_eq!(p.decide(120, Some(now), now, false), Decision::Send);
    }

    #[test]
    fn decide_holds_a_partial_batch_until_one_second_after_its_first_segment() {
        let p = FlushPolicy::of::<Segments>(Duration::from_secs(1));
        let first = Instant::now();
        let later = first + Duration::from_millis(400);
        assert_eq!(p.decide(3, Some(first), later, false), Decision::WaitUntil(first + Duration::from_secs(1)));
        assert_eq!(p.decide(3, Some(first), first + Duration::from_secs(1), false), Decision::Send);
    }

    #[test]
    fn decide_sends_anything_while_draining_and_idles_when_empty() {
        let p = FlushPolicy::of::<Segments>(Duration::from_secs(1));
        let now = Instant::now();
        assert_eq!(p.decide(1, Some(now), now, true), Decision::Send);
        assert_eq!(p.decide(0, None, now, true), Decision::Idle);
        assert_eq!(p.decide(0, None, now, false), Decision::Idle);
    }

    type Answer = Result<Receipt, BackendError>;

    /// Answers each call from a script; records what it was sent.
    #[derive(Default)]
    struct Scripted {
        answers: Mutex<VecDeque<Answer>>,
        calls: Mutex<Vec<Vec<Bytes>>>,
    }

    impl Sink<Segments> for Scripted {
        async fn send(&self, records: &[Bytes]) -> Answer {
            self.calls.lock().unwrap().push(records.to_vec());
            self.answers.lock().unwrap().pop_front().unwrap_or(Ok(Receipt::default()))
        }
    }

    fn status(status: u16, code: Option<&str>) -> BackendError {
        BackendError::new(ErrorKind::Status { status, code: code.map(str::to_owned) }, format!("HTTP {status}"))
    }

    fn setup(answers: Vec<Answer>, n: u8) -> (Uploader<Segments, Arc<Scripted>>, Arc<Scripted>, Arc<Buffer>, Batch) {
        let sink = Arc::new(Scripted { answers: Mutex::new(answers.into()), ..Default::default() });
        let buffer = Arc::new(Buffer::new(1 << 20, 50));
        for i in 0..n {
            buffer.push(Bytes::from(vec![b'a' + i; 10]));
        }
        let batch = buffer.take_batch(50, usize::MAX).unwrap();
        let policy = RetryPolicy {
            base_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(4),
            ..Default::default()
        };
        let up = Uploader::new(sink.clone(), Arc::new(Stats::default()), policy);
        (up, sink, buffer, batch)
    }

    #[tokio::test]
    async fn success_counts_sent_and_frees_the_buffer() {
        let (up, sink, buffer, batch) = setup(vec![], 2);
        up.deliver(batch).await;
        let s = up.stats.snapshot();
        assert_eq!((s.sent, s.put_calls, s.retries), (2, 1, 0));
        assert_eq!(sink.calls.lock().unwrap()[0], vec![Bytes::from(vec![b'a'; 10]), Bytes::from(vec![b'b'; 10])]);
        assert_eq!(buffer.level(), Default::default());
    }

    #[tokio::test]
    async fn transient_errors_are_retried_until_delivered() {
        let (up, sink, _buffer, batch) = setup(vec![Err(status(503, None)), Err(status(503, None))], 1);
        up.deliver(batch).await;
        let s = up.stats.snapshot();
        assert_eq!((s.sent, s.put_calls, s.retries), (1, 3, 2));
        assert_eq!(s.backend_error(UpstreamClass::Http5xx), 2);
        assert_eq!(up.stats.backend_errors(Api::PutTraceSegments, ErrorClass::Server), 2);
        assert_eq!(sink.calls.lock().unwrap().len(), 3);
    }

    #[tokio::test]
    async fn non_retryable_errors_reject_the_batch() {
        let (up, sink, buffer, batch) = setup(vec![Err(status(400, Some("InvalidRequestException")))], 2);
        up.deliver(batch).await;
        let s = up.stats.snapshot();
        assert_eq!((s.sent, s.rejected_by_xray), (0, 2));
        assert_eq!(sink.calls.lock().unwrap().len(), 1);
        assert_eq!(buffer.level(), Default::default());
    }

    #[tokio::test]
    async fn exhausted_retries_put_the_batch_back_in_the_buffer() {
        let answers = (0..5).map(|_| Err(status(500, None))).collect();
        let (up, _sink, buffer, batch) = setup(answers, 2);
        up.deliver(batch).await;
        let level = buffer.level();
        assert_eq!((level.queued, level.in_flight), (2, 0));
        assert_eq!(up.stats.snapshot().sent, 0);
    }

    #[tokio::test]
    async fn a_receipt_resends_what_it_names_and_counts_the_rest() {
        let first = Receipt { retry: vec![1], rejected: 1, unprocessed: 2 };
        let (up, sink, buffer, batch) = setup(vec![Ok(first)], 3);
        up.deliver(batch).await;
        let calls = sink.calls.lock().unwrap();
        assert_eq!(calls.len(), 2);
        assert_eq!(calls[1], vec![Bytes::from(vec![b'b'; 10])]);
        let s = up.stats.snapshot();
        assert_eq!((s.sent, s.rejected_by_xray, s.unprocessed), (2, 1, 2));
        assert_eq!(buffer.level(), Default::default());
    }

    #[tokio::test]
    async fn more_rejections_than_records_still_add_up() {
        let (up, _sink, _buffer, batch) = setup(vec![Ok(Receipt { retry: vec![], rejected: 5, unprocessed: 5 })], 2);
        up.deliver(batch).await;
        let s = up.stats.snapshot();
        assert_eq!((s.sent, s.rejected_by_xray), (0, 2));
    }

    #[tokio::test]
    async fn a_retry_after_is_waited_out_up_to_its_cap() {
        let slow_down = status(429, None).retry_after(Some(Duration::from_millis(300)));
        let too_long = status(503, None).retry_after(Some(Duration::from_secs(3600)));
        let (mut up, sink, _buffer, batch) = setup(vec![Err(slow_down), Err(too_long)], 1);
        up.policy.max_retry_after = Duration::from_millis(500);
        let t0 = Instant::now();
        let capped = tokio::time::timeout(Duration::from_secs(5), up.deliver(batch)).await;
        assert!(capped.is_ok(), "the hour-long Retry-After was not capped");
        assert_eq!(sink.calls.lock().unwrap().len(), 3);
        // 300 ms as asked, then the cap instead of an hour; the backoff itself is milliseconds.
        let waited = t0.elapsed();
        assert!(waited >= Duration::from_millis(800) && waited < Duration::from_millis(2500), "{waited:?}");
    }

    #[test]
    fn retry_decisions_by_status_and_code() {
        let r = |s, c| retryable(&status(s, c));
        assert!(r(500, Some("InternalFailure")) && r(503, None) && r(302, None));
        assert!(r(429, Some("ThrottlingException")) && r(400, Some("ThrottlingException")));
        assert!(r(403, None) && r(401, None) && r(400, Some("ExpiredTokenException")) && r(408, None));
        assert!(!r(400, Some("InvalidRequestException")) && !r(404, None) && !r(413, None));
        for kind in [ErrorKind::Timeout, ErrorKind::Refused, ErrorKind::Dns, ErrorKind::Credentials, ErrorKind::Other] {
            assert!(retryable(&BackendError::new(kind, "")));
        }
    }

    #[test]
    fn backoff_grows_with_jitter_and_resets() {
        let p = RetryPolicy::default();
        let b = Backoff::default();
        assert_eq!(b.delay(&p), None);
        for _ in 0..3 {
            b.failure();
        }
        let d = b.delay(&p).unwrap();
        assert!(d >= Duration::from_millis(200) && d <= Duration::from_millis(400), "{d:?}");
        for _ in 0..30 {
            b.failure();
        }
        let d = b.delay(&p).unwrap();
        assert!(d >= p.max_delay / 2 && d <= p.max_delay, "{d:?}");
        b.success();
        assert_eq!(b.delay(&p), None);
    }
}
