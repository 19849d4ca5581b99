//! Counters for everything that happens to a datagram and to what it carries, kept in one place.
//!
//! Every segment datagram ends in exactly one of: sent (accepted by X-Ray), rejected (bad
//! datagram, or refused by X-Ray for good), spilled over (dropped because the buffer was full),
//! undelivered (still held when a shutdown deadline passed) or still buffered. An OTLP datagram is
//! counted by kind: a `T1S` one's spans go on to the span buffer, `T1U` and `M1` ones stop here.
//! Telemetry, logs and `/metrics` all read these monotonic counters. What happens after ingest
//! is counted per signal, in a [`Delivery`]. Failed backend calls are counted twice: by API and
//! [`ErrorClass`] for `/metrics`, and by [`UpstreamClass`] for the telemetry records, whose
//! fields keep upstream's meaning.

//!
//! This folder is the bottom of the crate: every module writes here, and it imports nothing of
//! the crate. Beside the counters sit the [`liveness`] flags of the core's tasks and the
//! [`log_limit`] that keeps the data path's warnings few. What reads them all (`/metrics`,
//! telemetry records, `/health`) is in `report/`, near the top.

pub mod liveness;
pub mod log_limit;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};

/// Declares a fieldless enum with its label values, `ALL` in declaration order and `as_str`.
macro_rules! labels {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $variant:ident => $label:literal,)+ }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum $name { $($(#[$vdoc])* $variant,)+ }

        impl $name {
            pub const ALL: [$name; [$($label),+].len()] = [$($name::$variant),+];

            /// The label value in `/metrics`.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $label,)+ }
            }
        }
    };
}

labels! {
    /// The API a backend call went to (the `api` label).
    Api {
        PutTraceSegments => "put_trace_segments",
        PutTelemetryRecords => "put_telemetry_records",
        /// Requests the TCP port forwards to X-Ray for the SDKs (sampling rules and targets).
        Proxy => "proxy",
        /// X-Ray's OTLP endpoint (`/v1/traces`).
        Otlp => "otlp",
    }
}

labels! {
    /// What went wrong with a backend call, in the terms of what to do about it (the `class` label).
    ErrorClass {
        /// HTTP 429, or an error code that says throttled.
        Throttled => "throttled",
        /// HTTP 401/403, an error code about credentials or signatures, or no credentials at all.
        Auth => "auth",
        /// Any other 4xx: the request was wrong.
        Client => "client",
        /// 5xx (and any other status X-Ray should not answer with).
        Server => "server",
        /// No answer in time.
        Timeout => "timeout",
        /// Refused, name not resolved, or another transport failure.
        Connection => "connection",
    }
}

labels! {
    /// The classes of backend error that upstream's telemetry records report
    /// (`BackendConnectionErrors`); they keep upstream's meaning there.
    UpstreamClass {
        Timeout => "timeout",
        ConnectionRefused => "connection_refused",
        Http4xx => "http_4xx",
        Http5xx => "http_5xx",
        UnknownHost => "unknown_host",
        Other => "other",
    }
}

labels! {
    /// Where spans came in (the `source` label).
    SpanSource {
        /// `T1S` datagrams on the UDP port.
        Udp => "udp",
        /// OTLP/HTTP `POST /v1/traces`.
        Http => "http",
        /// OTLP/gRPC `TraceService/Export`.
        Grpc => "grpc",
    }
}

labels! {
    /// Why a span was taken out at ingest (the `reason` label of `spans_rejected_total`).
    SpanRejected {
        /// Over X-Ray's limit: a span over 200 KB for its OTLP endpoint, a segment document over
        /// 64 KB for PutTraceSegments.
        TooLarge => "too_large",
        /// A trace id that is not 16 bytes or is all zeros, or a span id that is not 8 bytes or
        /// is all zeros.
        Invalid => "invalid",
    }
}

impl Stats {
    /// Counts `n` spans received from `source`.
    pub(crate) fn spans_received(&self, source: SpanSource, n: u64) {
        Stats::add(&self.spans_received[source as usize], n);
    }

    /// Counts `n` spans taken out at ingest for `reason`.
    pub(crate) fn span_rejected(&self, reason: SpanRejected, n: u64) {
        Stats::add(&self.spans_rejected[reason as usize], n);
    }
}

/// What happened to a request on the TCP port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ProxyOutcome {
    /// Forwarded to X-Ray and answered (whatever the status).
    Forwarded,
    /// Not an X-Ray API path the proxy forwards (404).
    NotAllowed,
    /// Body over the limit (413).
    TooLarge,
    /// X-Ray could not be reached, or did not answer in time (502).
    UpstreamError,
    /// The request could not be signed (no credentials) (502).
    SigningFailed,
    /// The client was too slow or broke off the request.
    ClientError,
    /// Answered by the daemon itself: /health, /ready, /metrics.
    Local,
    /// OTLP/HTTP spans, taken by the daemon (`POST /v1/traces`).
    Otlp,
}

impl ProxyOutcome {
    pub(crate) const ALL: [ProxyOutcome; 8] = [
        ProxyOutcome::Forwarded,
        ProxyOutcome::NotAllowed,
        ProxyOutcome::TooLarge,
        ProxyOutcome::UpstreamError,
        ProxyOutcome::SigningFailed,
        ProxyOutcome::ClientError,
        ProxyOutcome::Local,
        ProxyOutcome::Otlp,
    ];

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            ProxyOutcome::Forwarded => "forwarded",
            ProxyOutcome::NotAllowed => "not_allowed",
            ProxyOutcome::TooLarge => "too_large",
            ProxyOutcome::UpstreamError => "upstream_error",
            ProxyOutcome::SigningFailed => "signing_failed",
            ProxyOutcome::ClientError => "client_error",
            ProxyOutcome::Local => "local",
            ProxyOutcome::Otlp => "otlp",
        }
    }
}

/// Upper bounds (seconds) of the call latency histograms.
pub(crate) const LATENCY_BUCKETS: [f64; 11] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// A fixed-bucket latency histogram.
#[derive(Debug, Default)]
pub(crate) struct Histogram {
    buckets: [AtomicU64; LATENCY_BUCKETS.len() + 1],
    sum_micros: AtomicU64,
}

impl Histogram {
    pub(crate) fn observe(&self, seconds: f64) {
        let i = LATENCY_BUCKETS.iter().position(|&b| seconds <= b).unwrap_or(LATENCY_BUCKETS.len());
        self.buckets[i].fetch_add(1, Relaxed);
        self.sum_micros.fetch_add((seconds * 1e6) as u64, Relaxed);
    }

    /// The count of each bucket alone (not cumulative; the last is over the largest bound), and
    /// the sum in seconds.
    pub(crate) fn read(&self) -> ([u64; LATENCY_BUCKETS.len() + 1], f64) {
        (self.buckets.each_ref().map(|b| b.load(Relaxed)), self.sum_micros.load(Relaxed) as f64 / 1e6)
    }
}

/// What happened to one signal's items after ingest.
#[derive(Default, Debug)]
pub struct Delivery {
    /// Items the backend accepted.
    pub sent: AtomicU64,
    /// Items the backend refused for good (non-retryable entries or 4xx answers).
    pub rejected: AtomicU64,
    /// Items the backend reported as not processed (retried or refused).
    pub unprocessed: AtomicU64,
    /// Items dropped because the buffer was full.
    pub spillover: AtomicU64,
    /// Items still held when a shutdown deadline passed.
    pub undelivered: AtomicU64,
    /// Calls that were retries of an earlier attempt.
    pub retries: AtomicU64,
    /// Calls that completed, successfully or not (for metrics and benchmarks).
    pub calls: AtomicU64,
    /// Latency of the calls, successful or not.
    pub(crate) latency: Histogram,
    /// The disk spool's counters for this signal (all zero without a spool).
    pub(crate) spool: SpoolCounters,
}

/// What the disk spool did with one signal's items.
#[derive(Default, Debug)]
pub(crate) struct SpoolCounters {
    /// Bytes on disk now (a gauge).
    pub(crate) bytes: AtomicU64,
    /// Items written to disk.
    pub(crate) written: AtomicU64,
    /// Items read back from disk to be sent (read again if their upload fails).
    pub(crate) replayed: AtomicU64,
    /// Items dropped from disk at the cap or on a full disk, oldest first.
    pub(crate) dropped_full: AtomicU64,
    /// Items that could not be written (the directory or the disk failed).
    pub(crate) dropped_io: AtomicU64,
    /// Corrupt stretches and torn records skipped.
    pub(crate) corrupt: AtomicU64,
}

/// What a server did at its connection limit (`serve::run`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Limited {
    /// The oldest connection waiting for a request was closed to make room for a new one.
    Shed,
    /// Every open connection was busy: the new one was closed.
    Refused,
}

/// Process-wide counters. All monotonic; readers compute deltas.
#[derive(Default, Debug)]
pub struct Stats {
    /// Datagrams with at least one byte read from the socket (segments, OTLP and junk).
    pub received: AtomicU64,
    /// Datagrams the kernel dropped before the reader got to them (its `SO_RXQ_OVFL` counter).
    pub kernel_drops: AtomicU64,
    /// Segment datagrams taken in: stored in the buffer, or spilled over.
    pub segments_received: AtomicU64,
    /// Datagrams rejected at ingest (bad header, no body, not UTF-8, a malformed `T1S` payload).
    pub rejected_datagrams: AtomicU64,
    /// Segment datagrams rejected at ingest, by reason (indexed by `segments::Reject`).
    pub rejected_reasons: [AtomicU64; 4],
    /// OTLP datagrams counted and not forwarded: unsampled spans (`T1U`) and metrics (`M1`).
    pub otlp: AtomicU64,
    /// `T1U` datagrams (unsampled spans) among them.
    pub otlp_unsampled: AtomicU64,
    /// `T1S` datagrams (sampled spans) taken into the span buffer.
    pub otlp_sampled: AtomicU64,
    /// Segments after ingest.
    pub segments: Delivery,
    /// Spans in the requests taken in, by where they came from (indexed by [`SpanSource`]).
    pub spans_received: [AtomicU64; SpanSource::ALL.len()],
    /// OTLP payloads (a datagram or a request) that were not an `ExportTraceServiceRequest`.
    pub spans_malformed: AtomicU64,
    /// Spans taken out at ingest, by why (indexed by [`SpanRejected`]).
    pub spans_rejected: [AtomicU64; SpanRejected::ALL.len()],
    /// OTLP requests refused because the buffer could not take them (the client retries), by
    /// protocol: OTLP/HTTP answers 503, OTLP/gRPC `UNAVAILABLE`, which it also answers when more
    /// requests are being read than it holds at once (indexed by [`SpanSource`]).
    pub otlp_refused: [AtomicU64; SpanSource::ALL.len()],
    /// Spans after ingest.
    pub spans: Delivery,
    /// Connections to the TCP port (or an OTLP listener) closed at the connection limit: the
    /// oldest one waiting for a request, to make room for a new one.
    pub connections_shed: AtomicU64,
    /// New connections closed at once at the limit, because every open one was busy.
    pub connections_refused: AtomicU64,
    /// Failed backend calls by API and class, for `/metrics`.
    backend_errors: [[AtomicU64; ErrorClass::ALL.len()]; Api::ALL.len()],
    /// Failed calls by upstream's classes, for telemetry records.
    upstream_errors: [AtomicU64; UpstreamClass::ALL.len()],
    proxy: [AtomicU64; 8],
    first_datagram: AtomicBool,
}

/// A plain copy of the counters at one moment; delivery counts are the segments'.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Snapshot {
    pub received: u64,
    pub rejected_datagrams: u64,
    pub rejected_by_xray: u64,
    pub spillover: u64,
    pub sent: u64,
    pub unprocessed: u64,
    pub otlp: u64,
    pub retries: u64,
    pub undelivered: u64,
    pub put_calls: u64,
    /// Failed calls by upstream's telemetry classes (indexed by [`UpstreamClass`]).
    pub backend_errors: [u64; 6],
}

impl Snapshot {
    /// Everything rejected, at ingest or by X-Ray.
    pub fn rejected(&self) -> u64 {
        self.rejected_datagrams + self.rejected_by_xray
    }

    pub(crate) fn backend_error(&self, class: UpstreamClass) -> u64 {
        self.backend_errors[class as usize]
    }

    /// Field-wise `self - earlier`.
    pub fn since(&self, earlier: &Snapshot) -> Snapshot {
        let mut be = [0; 6];
        for (i, v) in be.iter_mut().enumerate() {
            *v = self.backend_errors[i].saturating_sub(earlier.backend_errors[i]);
        }
        Snapshot {
            received: self.received.saturating_sub(earlier.received),
            rejected_datagrams: self.rejected_datagrams.saturating_sub(earlier.rejected_datagrams),
            rejected_by_xray: self.rejected_by_xray.saturating_sub(earlier.rejected_by_xray),
            spillover: self.spillover.saturating_sub(earlier.spillover),
            sent: self.sent.saturating_sub(earlier.sent),
            unprocessed: self.unprocessed.saturating_sub(earlier.unprocessed),
            otlp: self.otlp.saturating_sub(earlier.otlp),
            retries: self.retries.saturating_sub(earlier.retries),
            undelivered: self.undelivered.saturating_sub(earlier.undelivered),
            put_calls: self.put_calls.saturating_sub(earlier.put_calls),
            backend_errors: be,
        }
    }
}

impl Stats {
    pub(crate) fn read(counter: &AtomicU64) -> u64 {
        counter.load(Relaxed)
    }

    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Relaxed);
    }

    /// A connection closed at the connection limit.
    pub(crate) fn connection_limited(&self, what: Limited) {
        let counter = match what {
            Limited::Shed => &self.connections_shed,
            Limited::Refused => &self.connections_refused,
        };
        counter.fetch_add(1, Relaxed);
    }

    /// Counts a failed call to `api` in `/metrics`.
    pub(crate) fn backend_error(&self, api: Api, class: ErrorClass) {
        self.backend_errors[api as usize][class as usize].fetch_add(1, Relaxed);
    }

    pub(crate) fn backend_errors(&self, api: Api, class: ErrorClass) -> u64 {
        self.backend_errors[api as usize][class as usize].load(Relaxed)
    }

    /// Counts a failed call in the telemetry records' upstream classes.
    pub(crate) fn upstream_error(&self, class: UpstreamClass) {
        self.upstream_errors[class as usize].fetch_add(1, Relaxed);
    }

    pub(crate) fn proxy_request(&self, outcome: ProxyOutcome) {
        self.proxy[outcome as usize].fetch_add(1, Relaxed);
    }

    pub(crate) fn proxy_requests(&self, outcome: ProxyOutcome) -> u64 {
        self.proxy[outcome as usize].load(Relaxed)
    }

    /// Marks that a datagram arrived; telemetry starts only after the first one.
    pub(crate) fn datagram_seen(&self) {
        if !self.first_datagram.load(Relaxed) {
            self.first_datagram.store(true, Relaxed);
        }
    }

    pub(crate) fn any_datagram_seen(&self) -> bool {
        self.first_datagram.load(Relaxed)
    }

    pub fn snapshot(&self) -> Snapshot {
        let mut be = [0; 6];
        for (i, v) in be.iter_mut().enumerate() {
            *v = self.upstream_errors[i].load(Relaxed);
        }
        let segments = &self.segments;
        Snapshot {
            received: self.received.load(Relaxed),
            rejected_datagrams: self.rejected_datagrams.load(Relaxed),
            rejected_by_xray: segments.rejected.load(Relaxed),
            spillover: segments.spillover.load(Relaxed),
            sent: segments.sent.load(Relaxed),
            unprocessed: segments.unprocessed.load(Relaxed),
            otlp: self.otlp.load(Relaxed),
            retries: segments.retries.load(Relaxed),
            undelivered: segments.undelivered.load(Relaxed),
            put_calls: segments.calls.load(Relaxed),
            backend_errors: be,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_counts_each_bucket_and_what_is_over_the_last() {
        let h = Histogram::default();
        for s in [0.001, 0.007, 0.007, 0.3, 20.0] {
            h.observe(s);
        }
        let (counts, sum) = h.read();
        assert_eq!(counts[0], 1); // <= 5 ms
        assert_eq!(counts[1], 2); // (5 ms, 10 ms]
        assert_eq!(counts[6], 1); // (250 ms, 500 ms]
        assert_eq!(counts[LATENCY_BUCKETS.len()], 1); // over 10 s
        assert_eq!(counts.iter().sum::<u64>(), 5);
        assert!((sum - 20.315).abs() < 1e-3);
    }
}
