//! How a batch gets to X-Ray: one PutTraceSegments call at a time per batch, retried with
//! jittered exponential backoff, with the unprocessed entries sorted into "retry" and "refused".
//!
//! This module decides nothing about *when* to send (that is the batcher's job) and knows
//! nothing about the AWS SDK (that is `aws.rs`, behind the [`XrayApi`] trait), so the retry
//! rules can be tested against a scripted fake.
//!
//! Rules:
//! - throttling, 5xx, timeouts, connection errors and credential/auth failures are retried;
//!   other 4xx answers are final: the batch is counted as rejected and logged once;
//! - retryable `UnprocessedTraceSegments` entries (`ThrottledException`, `InternalFailure`,
//!   `ServiceUnavailable`) are matched to their documents by `Id` and sent again; the others are
//!   logged at error level with their trace id and counted as rejected;
//! - one backoff is shared by all uploads, so an outage slows every sender (no retry storm);
//! - a batch is retried in memory at most [`RetryPolicy::max_attempts`] times or for
//!   [`RetryPolicy::max_elapsed`]; after that it goes back to the front of the buffer, where it
//!   is sent again later or, if the buffer overflows first, counted as spillover.

use crate::buffer::{Batch, SegmentBuffer};
use crate::stats::{BackendError, Stats};
use bytes::Bytes;
use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicU32, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;
use tracing::{debug, error, info, warn};

/// The most documents one PutTraceSegments call may carry (an X-Ray API limit).
pub const MAX_DOCS_PER_CALL: usize = 50;
/// The most document bytes we put in one call. X-Ray's documents are at most 64 KB each; this
/// keeps a request (and the memory it takes while in flight) well under the API's request
/// size limit.
pub const MAX_BYTES_PER_CALL: usize = 1024 * 1024;

/// One `UnprocessedTraceSegments` entry.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Unprocessed {
    pub id: Option<String>,
    pub error_code: Option<String>,
    pub message: Option<String>,
}

impl Unprocessed {
    /// Whether X-Ray may accept the document if it is sent again.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self.error_code.as_deref(),
            Some("ThrottledException" | "ThrottlingException" | "InternalFailure" | "ServiceUnavailable")
        )
    }
}

/// A failed API call, already classified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub class: BackendError,
    pub retryable: bool,
    /// What went wrong, for the log: the error code and message, or the transport error.
    pub detail: String,
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.detail)
    }
}

/// The part of the X-Ray API the daemon calls. `aws.rs` implements it with aws-sdk-xray.
pub trait XrayApi: Send + Sync + 'static {
    /// PutTraceSegments. Returns the unprocessed entries.
    fn put_trace_segments(&self, docs: &[Bytes]) -> impl Future<Output = Result<Vec<Unprocessed>, ApiError>> + Send;

    /// PutTelemetryRecords.
    fn put_telemetry_records(
        &self,
        batch: crate::telemetry::TelemetryBatch,
    ) -> impl Future<Output = Result<(), ApiError>> + Send;
}

impl<T: XrayApi> XrayApi for Arc<T> {
    fn put_trace_segments(&self, docs: &[Bytes]) -> impl Future<Output = Result<Vec<Unprocessed>, ApiError>> + Send {
        (**self).put_trace_segments(docs)
    }

    fn put_telemetry_records(
        &self,
        batch: crate::telemetry::TelemetryBatch,
    ) -> impl Future<Output = Result<(), ApiError>> + Send {
        (**self).put_telemetry_records(batch)
    }
}

/// Bounds on retrying one batch in memory.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    pub max_attempts: u32,
    pub max_elapsed: Duration,
    pub base_delay: Duration,
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 5,
            max_elapsed: Duration::from_secs(30),
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(5),
        }
    }
}

/// Backoff shared by every upload: consecutive failures lengthen the wait for all of them,
/// and one success resets it.
#[derive(Debug, Default)]
pub struct Backoff {
    failures: AtomicU32,
}

impl Backoff {
    pub fn failure(&self) {
        self.failures.fetch_add(1, Relaxed);
    }

    pub fn success(&self) {
        self.failures.store(0, Relaxed);
    }

    /// How long to wait before the next attempt: none while X-Ray is healthy, else
    /// `base * 2^(failures-1)` capped at `max`, with "equal jitter" (half fixed, half random)
    /// so that waits never collapse to zero.
    pub fn delay(&self, policy: &RetryPolicy) -> Option<Duration> {
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

/// Sends batches and does the bookkeeping for what happened to each segment.
pub struct Uploader<A> {
    api: A,
    buffer: Arc<SegmentBuffer>,
    stats: Arc<Stats>,
    backoff: Backoff,
    policy: RetryPolicy,
}

impl<A: XrayApi> Uploader<A> {
    pub fn new(api: A, buffer: Arc<SegmentBuffer>, stats: Arc<Stats>, policy: RetryPolicy) -> Self {
        Uploader { api, buffer, stats, backoff: Backoff::default(), policy }
    }

    /// The API client, shared with telemetry.
    pub fn api(&self) -> &A {
        &self.api
    }

    /// Delivers one batch, retrying within the policy. Every document of the batch ends up
    /// sent, rejected, or back in the buffer.
    pub async fn deliver(&self, batch: Batch) {
        let Batch { docs, first_arrival } = batch;
        let mut pending = docs;
        let started = Instant::now();
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            if let Some(wait) = self.backoff.delay(&self.policy) {
                if attempt > 1 {
                    Stats::add(&self.stats.retries, 1);
                }
                debug!("Waiting {:.3} seconds before sending a batch of {} segments", wait.as_secs_f64(), pending.len());
                tokio::time::sleep(wait).await;
            }
            let t0 = Instant::now();
            let result = self.api.put_trace_segments(&pending).await;
            let secs = t0.elapsed().as_secs_f64();
            self.stats.put_latency.observe(secs);
            let retry = match result {
                Ok(unprocessed) => {
                    Stats::add(&self.stats.put_calls, 1);
                    match self.settle(pending, unprocessed, secs) {
                        Some(again) => again,
                        None => {
                            self.backoff.success();
                            return;
                        }
                    }
                }
                Err(e) => {
                    Stats::add(&self.stats.put_calls, 1);
                    self.stats.backend_error(e.class);
                    if !e.retryable {
                        error!(
                            "Sending segment batch failed with: {e}. The error is not retryable: {} segments rejected",
                            pending.len()
                        );
                        Stats::add(&self.stats.rejected_by_xray, pending.len() as u64);
                        self.buffer.complete(&pending);
                        return;
                    }
                    self.backoff.failure();
                    let next = self.backoff.delay(&self.policy).unwrap_or_default();
                    if attempt < self.policy.max_attempts && started.elapsed() < self.policy.max_elapsed {
                        warn!(
                            "Sending segment batch failed with: {e}. Retrying {} segments in {:.3} seconds (attempt {attempt} of {})",
                            pending.len(),
                            next.as_secs_f64(),
                            self.policy.max_attempts
                        );
                    }
                    pending
                }
            };
            pending = retry;
            if attempt >= self.policy.max_attempts || started.elapsed() >= self.policy.max_elapsed {
                error!(
                    "Could not send {} segments after {attempt} attempts in {:.3} seconds; they stay buffered and will be sent again",
                    pending.len(),
                    started.elapsed().as_secs_f64()
                );
                self.buffer.requeue(pending, first_arrival);
                return;
            }
        }
    }

    /// Accounts for a successful call. Returns the documents to send again, if any.
    fn settle(&self, sent: Vec<Bytes>, unprocessed: Vec<Unprocessed>, secs: f64) -> Option<Vec<Bytes>> {
        let n = sent.len();
        if unprocessed.is_empty() {
            // Counters first: whoever reads the log line must see them updated.
            Stats::add(&self.stats.sent, n as u64);
            self.buffer.complete(&sent);
            info!("Successfully sent batch of {n} segments ({secs:.3} seconds)");
            return None;
        }
        info!("Sent batch of {n} segments but had {} Unprocessed segments ({secs:.3} seconds)", unprocessed.len());
        Stats::add(&self.stats.unprocessed, unprocessed.len() as u64);

        let ids: Vec<DocIds> = sent.iter().map(|d| DocIds::parse(d)).collect();
        let mut fate = vec![Fate::Sent; n];
        for entry in &unprocessed {
            let index = entry
                .id
                .as_deref()
                .and_then(|id| (0..n).find(|&i| fate[i] == Fate::Sent && ids[i].id.as_deref() == Some(id)));
            let trace = index.and_then(|i| ids[i].trace_id.as_deref()).unwrap_or("unknown");
            let code = entry.error_code.as_deref().unwrap_or("unknown");
            let message = entry.message.as_deref().unwrap_or("");
            match index {
                Some(i) if entry.is_retryable() => {
                    fate[i] = Fate::Retry;
                    warn!("Unprocessed trace {trace}, segment {}: {code} {message}; it will be sent again", entry.id.as_deref().unwrap_or(""));
                }
                Some(i) => {
                    fate[i] = Fate::Rejected;
                    error!("Unprocessed trace {trace}, segment {}: {code} {message}", entry.id.as_deref().unwrap_or(""));
                }
                None => {
                    // X-Ray named no document we sent (or none left to match): count it as
                    // rejected so the numbers still add up, and say so.
                    error!(
                        "Unprocessed segment {:?} matches no document in the batch: {code} {message}",
                        entry.id.as_deref().unwrap_or("")
                    );
                }
            }
        }
        let mut done = Vec::with_capacity(n);
        let mut again = Vec::new();
        let (mut accepted, mut rejected) = (0u64, 0u64);
        let unmatched = unprocessed.len() as u64 - fate.iter().filter(|f| **f != Fate::Sent).count() as u64;
        for (doc, f) in sent.into_iter().zip(fate) {
            match f {
                Fate::Sent => {
                    accepted += 1;
                    done.push(doc);
                }
                Fate::Rejected => {
                    rejected += 1;
                    done.push(doc);
                }
                Fate::Retry => again.push(doc),
            }
        }
        // Unmatched entries still stand for documents X-Ray did not take.
        let unmatched = unmatched.min(accepted);
        Stats::add(&self.stats.sent, accepted - unmatched);
        Stats::add(&self.stats.rejected_by_xray, rejected + unmatched);
        self.buffer.complete(&done);
        if again.is_empty() {
            None
        } else {
            self.backoff.failure();
            Some(again)
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    Sent,
    Retry,
    Rejected,
}

/// The `id` and `trace_id` of a segment document, found by parsing it as JSON (so spacing and
/// pretty-printing do not matter). Only done for batches with unprocessed entries.
#[derive(Debug, Default, serde::Deserialize)]
struct DocIds {
    id: Option<String>,
    trace_id: Option<String>,
}

impl DocIds {
    fn parse(doc: &[u8]) -> DocIds {
        serde_json::from_slice(doc).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::TelemetryBatch;
    use std::collections::VecDeque;
    use std::sync::Mutex;

    /// Answers each call from a script; records what it was sent.
    #[derive(Default)]
    struct Scripted {
        answers: Mutex<VecDeque<Result<Vec<Unprocessed>, ApiError>>>,
        calls: Mutex<Vec<Vec<String>>>,
    }

    impl XrayApi for Scripted {
        async fn put_trace_segments(&self, docs: &[Bytes]) -> Result<Vec<Unprocessed>, ApiError> {
            self.calls.lock().unwrap().push(docs.iter().map(as_string).collect());
            self.answers.lock().unwrap().pop_front().unwrap_or(Ok(vec![]))
        }
        async fn put_telemetry_records(&self, _: TelemetryBatch) -> Result<(), ApiError> {
            Ok(())
        }
    }

    fn as_string(doc: &Bytes) -> String {
        String::from_utf8(doc.to_vec()).unwrap()
    }

    fn doc(id: &str) -> Bytes {
        Bytes::from(format!(r#"{{"id": "{id}", "trace_id": "1-5759e988-bd862e3fe1be46a99427{id}"}}"#))
    }

    fn unprocessed(id: &str, code: &str) -> Unprocessed {
        Unprocessed { id: Some(id.into()), error_code: Some(code.into()), message: Some("m".into()) }
    }

    fn server_error() -> ApiError {
        ApiError { class: BackendError::Http5xx, retryable: true, detail: "503".into() }
    }

    fn setup(answers: Vec<Result<Vec<Unprocessed>, ApiError>>, docs: &[&str]) -> (Uploader<Arc<Scripted>>, Arc<Scripted>, Batch) {
        let api = Arc::new(Scripted { answers: Mutex::new(answers.into()), ..Default::default() });
        let buffer = Arc::new(SegmentBuffer::new(1 << 20, 50));
        for d in docs {
            buffer.push(doc(d));
        }
        let batch = buffer.take_batch(50, usize::MAX).unwrap();
        let policy = RetryPolicy { base_delay: Duration::from_millis(1), max_delay: Duration::from_millis(4), ..Default::default() };
        let up = Uploader::new(api.clone(), buffer, Arc::new(Stats::default()), policy);
        (up, api, batch)
    }

    #[tokio::test]
    async fn success_counts_sent_and_frees_the_buffer() {
        let (up, api, batch) = setup(vec![], &["a", "b"]);
        up.deliver(batch).await;
        let s = up.stats.snapshot();
        assert_eq!((s.sent, s.put_calls, s.retries), (2, 1, 0));
        assert_eq!(api.calls.lock().unwrap()[0], vec![as_string(&doc("a")), as_string(&doc("b"))]);
        assert_eq!(up.buffer.level(), Default::default());
    }

    #[tokio::test]
    async fn transient_errors_are_retried_until_delivered() {
        let (up, api, batch) = setup(vec![Err(server_error()), Err(server_error())], &["a"]);
        up.deliver(batch).await;
        let s = up.stats.snapshot();
        assert_eq!((s.sent, s.put_calls, s.retries), (1, 3, 2));
        assert_eq!(s.backend_error(BackendError::Http5xx), 2);
        assert_eq!(api.calls.lock().unwrap().len(), 3);
    }

    #[tokio::test]
    async fn non_retryable_errors_reject_the_batch() {
        let bad = ApiError { class: BackendError::Http4xx, retryable: false, detail: "400".into() };
        let (up, api, batch) = setup(vec![Err(bad)], &["a", "b"]);
        up.deliver(batch).await;
        let s = up.stats.snapshot();
        assert_eq!((s.sent, s.rejected_by_xray), (0, 2));
        assert_eq!(api.calls.lock().unwrap().len(), 1);
        assert_eq!(up.buffer.level(), Default::default());
    }

    #[tokio::test]
    async fn exhausted_retries_put_the_batch_back_in_the_buffer() {
        let answers = (0..5).map(|_| Err(server_error())).collect();
        let (up, _api, batch) = setup(answers, &["a", "b"]);
        up.deliver(batch).await;
        let level = up.buffer.level();
        assert_eq!((level.queued, level.in_flight), (2, 0));
        assert_eq!(up.stats.snapshot().sent, 0);
    }

    #[tokio::test]
    async fn unprocessed_entries_are_matched_by_id_and_sorted() {
        let first = vec![unprocessed("b", "ThrottledException"), unprocessed("c", "InvalidTraceId")];
        let (up, api, batch) = setup(vec![Ok(first)], &["a", "b", "c"]);
        up.deliver(batch).await;
        let calls = api.calls.lock().unwrap();
        assert_eq!(calls.len(), 2);
        assert_eq!(calls[1], vec![as_string(&doc("b"))]);
        let s = up.stats.snapshot();
        assert_eq!((s.sent, s.rejected_by_xray, s.unprocessed), (2, 1, 2));
        assert_eq!(up.buffer.level(), Default::default());
    }

    #[tokio::test]
    async fn pretty_printed_documents_are_matched_too() {
        let api = Arc::new(Scripted {
            answers: Mutex::new(vec![Ok(vec![unprocessed("feed", "InvalidTraceId")])].into()),
            ..Default::default()
        });
        let buffer = Arc::new(SegmentBuffer::new(1 << 20, 50));
        buffer.push(Bytes::from_static(b"{\n  \"id\" : \"feed\",\n  \"trace_id\" : \"1-x\"\n}"));
        buffer.push(Bytes::from_static(b"{\"id\":\"beef\"}"));
        let up = Uploader::new(api, buffer.clone(), Arc::new(Stats::default()), RetryPolicy::default());
        up.deliver(buffer.take_batch(50, usize::MAX).unwrap()).await;
        let s = up.stats.snapshot();
        assert_eq!((s.sent, s.rejected_by_xray), (1, 1));
    }

    #[tokio::test]
    async fn entries_without_a_matching_id_still_add_up() {
        let entry = Unprocessed { id: None, error_code: Some("InvalidTraceId".into()), message: None };
        let (up, _api, batch) = setup(vec![Ok(vec![entry])], &["a", "b"]);
        up.deliver(batch).await;
        let s = up.stats.snapshot();
        assert_eq!(s.sent + s.rejected_by_xray, 2);
        assert_eq!(s.rejected_by_xray, 1);
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
