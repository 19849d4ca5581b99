//! What differs between the kinds of telemetry the daemon carries.
//!
//! The buffer, the flush driver and the uploader are written once (`pipeline/`). A signal
//! supplies what they need to know about its items: a name for log lines and counters, the
//! batch limits of the API its batches go to, and which counters its deliveries move. How a batch
//! becomes a request body and how the answer is read belong to its [`Sink`](crate::backend::Sink),
//! which knows the API. [`segments`] holds the UDP wire format that tells a segment from the rest;
//! [`spans`] checks and counts the OTLP requests that carry spans.

pub mod segments;
pub mod spans;

use crate::stats::{Api, Delivery, Stats};

/// One kind of telemetry, carried by the pipeline from ingest to its backend.
pub trait Signal: Send + Sync + 'static {
    /// The plural noun in log lines: "segments".
    const NOUN: &'static str;
    /// The singular, as in "segment batch".
    const ITEM: &'static str;
    /// The most items one request may carry.
    const MAX_ITEMS: usize;
    /// The most record bytes one request may carry (a single larger record still goes alone).
    const MAX_BYTES: usize;
    /// The API its batches go to, as `/metrics` labels it and log lines name it (`api`).
    const API: Api;
    /// Its log's directory under the disk spool's: records of one form per directory.
    const SPOOL_DIR: &'static str;
    /// The counters of this signal's deliveries.
    fn delivery(stats: &Stats) -> &Delivery;
}

/// X-Ray segment documents, sent with PutTraceSegments. One record is one document.
#[derive(Debug, Clone, Copy)]
pub struct Segments;

impl Signal for Segments {
    const NOUN: &'static str = "segments";
    const ITEM: &'static str = "segment";
    /// PutTraceSegments takes at most 50 documents a call.
    const MAX_ITEMS: usize = 50;
    /// X-Ray's documents are at most 64 KB each; this keeps a request (and the memory it takes
    /// while in flight) well under the API's request size limit.
    const MAX_BYTES: usize = 1024 * 1024;
    const API: Api = Api::PutTraceSegments;
    const SPOOL_DIR: &'static str = "segments";

    fn delivery(stats: &Stats) -> &Delivery {
        &stats.segments
    }
}

impl Documents for Segments {}

/// OTLP spans, sent to X-Ray's OTLP endpoint (`XRAY_DAEMON_SPAN_UPLOAD=otlp`). One record is
/// one `ExportTraceServiceRequest`, holding many spans.
#[derive(Debug, Clone, Copy)]
pub struct Spans;

impl Signal for Spans {
    const NOUN: &'static str = "spans";
    const ITEM: &'static str = "span";
    /// X-Ray's OTLP endpoint takes at most 10,000 spans a request.
    const MAX_ITEMS: usize = 10_000;
    /// And at most 5 MB, uncompressed.
    const MAX_BYTES: usize = 5_000_000;
    const API: Api = Api::Otlp;
    const SPOOL_DIR: &'static str = "spans";

    fn delivery(stats: &Stats) -> &Delivery {
        &stats.spans
    }
}

/// OTLP spans converted to X-Ray segment documents (`XRAY_DAEMON_SPAN_UPLOAD=segments`, the
/// default), sent with PutTraceSegments. One record is one document; a span makes one, or two
/// when it is a local root that is split into a service segment and a dependency subsegment.
/// Its counters are the spans' (`signal="spans"`), counted in documents.
#[derive(Debug, Clone, Copy)]
pub struct SpanSegments;

impl Signal for SpanSegments {
    const NOUN: &'static str = "span segments";
    const ITEM: &'static str = "span segment";
    const MAX_ITEMS: usize = Segments::MAX_ITEMS;
    const MAX_BYTES: usize = Segments::MAX_BYTES;
    const API: Api = Api::PutTraceSegments;
    const SPOOL_DIR: &'static str = "span-segments";

    fn delivery(stats: &Stats) -> &Delivery {
        &stats.spans
    }
}

impl Documents for SpanSegments {}

/// A signal whose records are X-Ray segment documents, sent with PutTraceSegments.
pub trait Documents: Signal {}
