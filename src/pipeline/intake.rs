//! The one door into the pipeline: every source (the UDP reader, the OTLP/HTTP and OTLP/gRPC
//! servers) hands its records to an [`Intake`], and only the intake pushes into the buffers.
//!
//! The sources know their wire formats and their clients; the intake knows what a record is
//! once it is in: a segment document goes to the segment buffer, and the spans of a request go
//! to the span buffer in the form their upload takes ([`SpanForm`]): each span converted to
//! segment documents for PutTraceSegments (the default), or the request as received for X-Ray's
//! OTLP endpoint. Spans X-Ray would refuse are taken out here, counted by reason, and reported
//! to the client in OTLP's `partial_success`. It counts what it takes and what does
//! not fit, and logs the spillover (rate-limited). A source that can tell its client to come
//! back later (HTTP, gRPC) asks for [`WhenFull::Refuse`]: nothing buffered is dropped for it.
//! The UDP reader cannot, and asks for [`WhenFull::DropOldest`].
//!
//! The pipeline's commands reach the sources that read on their own (the UDP reader) through a
//! [`SourceControl`]: stop, or read what the socket already holds and say when done.

use crate::pipeline::buffer::{Buffer, Push};
use crate::signal::spans::{self, Received};
use crate::signal::{Segments, Signal, SpanSegments, Spans};
use crate::stats::log_limit::{suppressed_note, RateLimitedWarn};
use crate::stats::{SpanRejected, SpanSource, Stats};
use crate::translate::{Documents, RandomIds, Translator, MAX_DOCUMENT_BYTES};
use bytes::Bytes;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tracing::warn;

/// The most of the translator's scratch buffer kept between requests, in bytes (a 20-span
/// datagram's documents take about 16 KB).
const SCRATCH_KEPT: usize = 256 * 1024;

/// What to do when the buffer cannot take a record without dropping others.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WhenFull {
    /// Drop the oldest waiting records and count them as spillover.
    DropOldest,
    /// Take nothing, so that the client sends it again later.
    Refuse,
}

/// The buffer could not take a request without dropping others ([`WhenFull::Refuse`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the buffer is full")]
pub struct Full;

/// What became of the spans of one request that was taken.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SpansTaken {
    /// Spans stored for upload.
    pub stored: u32,
    /// Spans taken out for being over X-Ray's size limit: a span over 200 KB for its OTLP
    /// endpoint, a segment document over 64 KB for PutTraceSegments.
    pub too_large: u32,
    /// Spans taken out for invalid ids.
    pub invalid: u32,
}

impl SpansTaken {
    /// Spans the client should hear were refused (OTLP's `partial_success.rejected_spans`).
    pub fn rejected(&self) -> u32 {
        self.too_large.saturating_add(self.invalid)
    }

    /// What OTLP's `partial_success.error_message` says about them; empty when none was.
    pub fn message(&self) -> String {
        let mut parts = Vec::new();
        if self.invalid > 0 {
            parts.push(format!(
                "{} spans with an invalid trace id (not 16 bytes, or all zeros) or span id (not 8 bytes, or all zeros)",
                self.invalid
            ));
        }
        if self.too_large > 0 {
            parts.push(format!(
                "{} spans too large for X-Ray (a span over {} bytes, or a segment document over {} bytes)",
                self.too_large,
                spans::MAX_SPAN_BYTES,
                MAX_DOCUMENT_BYTES
            ));
        }
        parts.join("; ")
    }
}

/// The form spans are stored in, which their upload decides.
pub(crate) enum SpanForm {
    /// Segment documents, one record each, for PutTraceSegments.
    Segments(Translator),
    /// The request as received (protobuf), for X-Ray's OTLP endpoint.
    Otlp,
}

struct Shared {
    segments: Arc<Buffer>,
    spans: Arc<Buffer>,
    form: SpanForm,
    stats: Arc<Stats>,
    spill_warn: RateLimitedWarn,
}

/// Where sources hand records to the pipeline. Clones share it.
#[derive(Clone)]
pub struct Intake(Arc<Shared>);

impl Intake {
    /// Segment documents go to `segments`, spans to `spans` in the given form.
    pub(crate) fn new(segments: Arc<Buffer>, spans: Arc<Buffer>, form: SpanForm, stats: Arc<Stats>) -> Intake {
        Intake(Arc::new(Shared { segments, spans, form, stats, spill_warn: RateLimitedWarn::new(10) }))
    }

    /// An intake whose spans are kept as received (the OTLP form), for tests and benches.
    pub fn otlp(segments: Arc<Buffer>, spans: Arc<Buffer>, stats: Arc<Stats>) -> Intake {
        Intake::new(segments, spans, SpanForm::Otlp, stats)
    }

    /// The counters every source writes.
    pub fn stats(&self) -> &Arc<Stats> {
        &self.0.stats
    }

    /// Stores one segment document, dropping the oldest waiting ones if it does not fit.
    pub fn segment(&self, body: Bytes) {
        match self.0.segments.push(body) {
            Push::Stored { evicted: 0 } => {}
            Push::Stored { evicted } => self.spilled::<Segments>(evicted as u64, "Dropping oldest segment document"),
            Push::Dropped => self
                .spilled::<Segments>(1, "Dropping the new segment document: all buffered segments are being uploaded"),
        }
    }

    /// Stores the spans of one request from `source`. With [`WhenFull::Refuse`] it takes all of
    /// them or none ([`Full`]), and counts nothing of a request it did not take.
    pub fn spans(&self, received: Received, source: SpanSource, when_full: WhenFull) -> Result<SpansTaken, Full> {
        let total = received.spans() as u64;
        let taken = match &self.0.form {
            SpanForm::Segments(translator) => self.span_documents(translator, &received, source, when_full)?,
            SpanForm::Otlp => self.span_request(received, source, when_full)?,
        };
        let stats = &self.0.stats;
        stats.spans_received(source, total);
        stats.span_rejected(SpanRejected::TooLarge, u64::from(taken.too_large));
        stats.span_rejected(SpanRejected::Invalid, u64::from(taken.invalid));
        Ok(taken)
    }

    /// Each span as its segment documents, a record each.
    fn span_documents(
        &self,
        translator: &Translator,
        received: &Received,
        source: SpanSource,
        when_full: WhenFull,
    ) -> Result<SpansTaken, Full> {
        // The documents are written into a buffer kept for the next request (its growth would be
        // most of the allocations a request costs), then copied out one record each: a record is
        // charged what it holds, its own allocation.
        thread_local! {
            static SCRATCH: std::cell::RefCell<Documents> = std::cell::RefCell::new(Documents::new());
        }
        SCRATCH.with_borrow_mut(|documents| {
            documents.clear();
            let tally = translator.request(&received.request, &mut RandomIds, documents);
            let taken = SpansTaken { stored: tally.spans, too_large: tally.too_large, invalid: tally.invalid };
            let stored = self.store_documents(documents, source, when_full).map(|()| taken);
            // What a large request grew it to is not kept: memory outside the budget stays small.
            if documents.capacity() > SCRATCH_KEPT {
                *documents = Documents::new();
            }
            stored
        })
    }

    /// Stores each of `documents` as a record of its own.
    fn store_documents(&self, documents: &Documents, source: SpanSource, when_full: WhenFull) -> Result<(), Full> {
        let records = documents.iter().map(Bytes::copy_from_slice);
        match when_full {
            WhenFull::Refuse => {
                if !documents.is_empty() && !self.0.spans.try_push_all(records.collect()) {
                    Stats::add(&self.0.stats.otlp_refused[source as usize], 1);
                    return Err(Full);
                }
            }
            WhenFull::DropOldest => {
                for record in records {
                    self.store::<SpanSegments>(&self.0.spans, record, 1);
                }
            }
        }
        Ok(())
    }

    /// The request as received, without the spans X-Ray's OTLP endpoint would refuse.
    fn span_request(&self, received: Received, source: SpanSource, when_full: WhenFull) -> Result<SpansTaken, Full> {
        let checked = spans::for_otlp(received);
        let taken = SpansTaken { stored: checked.spans, too_large: checked.too_large, invalid: checked.invalid };
        if checked.spans == 0 {
            return Ok(taken);
        }
        match when_full {
            WhenFull::Refuse => {
                if !self.0.spans.try_push(checked.body, checked.spans) {
                    Stats::add(&self.0.stats.otlp_refused[source as usize], 1);
                    return Err(Full);
                }
            }
            WhenFull::DropOldest => self.store::<Spans>(&self.0.spans, checked.body, checked.spans),
        }
        Ok(taken)
    }

    /// Stores a record of `items` items of signal `S`, dropping the oldest waiting records if
    /// it does not fit, and counts and logs what was dropped.
    fn store<S: Signal>(&self, buffer: &Buffer, body: Bytes, items: u32) {
        match buffer.push_items(body, items) {
            Push::Stored { evicted: 0 } => {}
            Push::Stored { evicted } => self.spilled::<S>(evicted as u64, &format!("Dropping the oldest {}", S::NOUN)),
            Push::Dropped => self.spilled::<S>(
                u64::from(items),
                &format!("Dropping the new {}: all buffered {} are being uploaded", S::NOUN, S::NOUN),
            ),
        }
    }

    fn spilled<S: Signal>(&self, n: u64, what: &str) {
        Stats::add(&S::delivery(&self.0.stats).spillover, n);
        if let Some(suppressed) = self.0.spill_warn.check() {
            // Upstream's line for segments, word for word ("Segment buffer is full"); the same
            // for spans.
            let (first, rest) = S::ITEM.split_at(1);
            warn!(
                reason = "buffer_full",
                signal = S::NOUN,
                dropped = n,
                suppressed,
                "{}{rest} buffer is full ({} bytes). {what}. Consider increasing memory limit{}",
                first.to_ascii_uppercase(),
                self.0.segments.limit(),
                suppressed_note(suppressed)
            );
        }
    }
}

/// What the pipeline asks of a source that reads on its own (the UDP reader): to stop, or to
/// read what it already holds and then answer.
pub struct SourceControl {
    stop: CancellationToken,
    drain: mpsc::Receiver<oneshot::Sender<()>>,
}

/// The pipeline's side of a [`SourceControl`].
pub(crate) struct SourceHandle {
    pub(crate) drain: mpsc::Sender<oneshot::Sender<()>>,
}

impl SourceControl {
    /// A control stopped by `stop`, and the handle that sends it drain requests.
    pub(crate) fn new(stop: CancellationToken) -> (SourceControl, SourceHandle) {
        let (drain, requests) = mpsc::channel(4);
        (SourceControl { stop, drain: requests }, SourceHandle { drain })
    }

    /// A control for tests and benches: the token stops the source, and drain requests go
    /// through the returned sender.
    pub fn standalone(stop: CancellationToken) -> (SourceControl, mpsc::Sender<oneshot::Sender<()>>) {
        let (control, handle) = SourceControl::new(stop);
        (control, handle.drain)
    }

    /// Whether the source should stop now.
    pub fn is_stopped(&self) -> bool {
        self.stop.is_cancelled()
    }

    /// Resolves when the source should stop. The future holds no borrow of the control, so
    /// that it can wait beside [`SourceControl::drain_requested`].
    pub fn stopped(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        self.stop.clone().cancelled_owned()
    }

    /// The next drain request, when one comes (pending forever once the pipeline is gone).
    pub async fn drain_requested(&mut self) -> oneshot::Sender<()> {
        match self.drain.recv().await {
            Some(reply) => reply,
            None => std::future::pending().await,
        }
    }

    /// A drain request already waiting, if any.
    pub fn try_drain_request(&mut self) -> Option<oneshot::Sender<()>> {
        self.drain.try_recv().ok()
    }
}
