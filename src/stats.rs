//! Counters for everything that happens to a segment, kept in one place.
//!
//! Every datagram ends in exactly one of: sent (accepted by X-Ray), rejected (bad datagram, or
//! refused by X-Ray for good), spilled over (dropped because the buffer was full), OTLP
//! (recognised and not forwarded), undelivered (still held when a shutdown deadline passed) or
//! still buffered. Telemetry, logs and (later) metrics all read these monotonic counters.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};

/// The classes of backend error that upstream's telemetry reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendError {
    Timeout,
    ConnectionRefused,
    Http4xx,
    Http5xx,
    UnknownHost,
    Other,
}

impl BackendError {
    pub const ALL: [BackendError; 6] = [
        BackendError::Timeout,
        BackendError::ConnectionRefused,
        BackendError::Http4xx,
        BackendError::Http5xx,
        BackendError::UnknownHost,
        BackendError::Other,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            BackendError::Timeout => "timeout",
            BackendError::ConnectionRefused => "connection_refused",
            BackendError::Http4xx => "http_4xx",
            BackendError::Http5xx => "http_5xx",
            BackendError::UnknownHost => "unknown_host",
            BackendError::Other => "other",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// What happened to a request on the TCP port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyOutcome {
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
}

impl ProxyOutcome {
    pub const ALL: [ProxyOutcome; 7] = [
        ProxyOutcome::Forwarded,
        ProxyOutcome::NotAllowed,
        ProxyOutcome::TooLarge,
        ProxyOutcome::UpstreamError,
        ProxyOutcome::SigningFailed,
        ProxyOutcome::ClientError,
        ProxyOutcome::Local,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ProxyOutcome::Forwarded => "forwarded",
            ProxyOutcome::NotAllowed => "not_allowed",
            ProxyOutcome::TooLarge => "too_large",
            ProxyOutcome::UpstreamError => "upstream_error",
            ProxyOutcome::SigningFailed => "signing_failed",
            ProxyOutcome::ClientError => "client_error",
            ProxyOutcome::Local => "local",
        }
    }
}

/// Upper bounds (seconds) of the PutTraceSegments latency histogram.
pub const LATENCY_BUCKETS: [f64; 11] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// A fixed-bucket latency histogram (cumulative counts are computed when read).
#[derive(Debug, Default)]
pub struct Histogram {
    buckets: [AtomicU64; LATENCY_BUCKETS.len() + 1],
    sum_micros: AtomicU64,
}

impl Histogram {
    pub fn observe(&self, seconds: f64) {
        let i = LATENCY_BUCKETS.iter().position(|&b| seconds <= b).unwrap_or(LATENCY_BUCKETS.len());
        self.buckets[i].fetch_add(1, Relaxed);
        self.sum_micros.fetch_add((seconds * 1e6) as u64, Relaxed);
    }

    /// Cumulative counts per bucket (the last is +Inf), and the sum in seconds.
    pub fn read(&self) -> ([u64; LATENCY_BUCKETS.len() + 1], f64) {
        let mut out = [0; LATENCY_BUCKETS.len() + 1];
        let mut total = 0;
        for (i, b) in self.buckets.iter().enumerate() {
            total += b.load(Relaxed);
            out[i] = total;
        }
        (out, self.sum_micros.load(Relaxed) as f64 / 1e6)
    }
}

/// Process-wide counters. All monotonic; readers compute deltas.
#[derive(Default, Debug)]
pub struct Stats {
    /// Datagrams with at least one byte read from the socket.
    pub received: AtomicU64,
    /// Datagrams rejected at ingest (bad header, no body, not UTF-8).
    pub rejected_datagrams: AtomicU64,
    /// Segments X-Ray refused for good (non-retryable unprocessed entries or 4xx responses).
    pub rejected_by_xray: AtomicU64,
    /// Segments dropped because the buffer was full.
    pub spillover: AtomicU64,
    /// Segments X-Ray accepted.
    pub sent: AtomicU64,
    /// UnprocessedTraceSegments entries reported by X-Ray (retryable or not).
    pub unprocessed: AtomicU64,
    /// OTLP datagrams recognised and not forwarded.
    pub otlp: AtomicU64,
    /// PutTraceSegments attempts that were retried.
    pub retries: AtomicU64,
    /// Segments still held when a shutdown deadline passed.
    pub undelivered: AtomicU64,
    /// PutTraceSegments calls that completed (for metrics and benchmarks).
    pub put_calls: AtomicU64,
    /// Latency of PutTraceSegments calls, successful or not.
    pub put_latency: Histogram,
    backend_errors: [AtomicU64; 6],
    proxy: [AtomicU64; 7],
    first_datagram: AtomicBool,
}

/// A plain copy of the counters at one moment.
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
    pub backend_errors: [u64; 6],
}

impl Snapshot {
    /// Everything rejected, at ingest or by X-Ray.
    pub fn rejected(&self) -> u64 {
        self.rejected_datagrams + self.rejected_by_xray
    }

    pub fn backend_error(&self, class: BackendError) -> u64 {
        self.backend_errors[class.index()]
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
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Relaxed);
    }

    pub fn backend_error(&self, class: BackendError) {
        self.backend_errors[class.index()].fetch_add(1, Relaxed);
    }

    pub fn proxy_request(&self, outcome: ProxyOutcome) {
        self.proxy[outcome as usize].fetch_add(1, Relaxed);
    }

    pub fn proxy_requests(&self, outcome: ProxyOutcome) -> u64 {
        self.proxy[outcome as usize].load(Relaxed)
    }

    /// Marks that a datagram arrived; telemetry starts only after the first one.
    pub fn datagram_seen(&self) {
        if !self.first_datagram.load(Relaxed) {
            self.first_datagram.store(true, Relaxed);
        }
    }

    pub fn any_datagram_seen(&self) -> bool {
        self.first_datagram.load(Relaxed)
    }

    pub fn snapshot(&self) -> Snapshot {
        let mut be = [0; 6];
        for (i, v) in be.iter_mut().enumerate() {
            *v = self.backend_errors[i].load(Relaxed);
        }
        Snapshot {
            received: self.received.load(Relaxed),
            rejected_datagrams: self.rejected_datagrams.load(Relaxed),
            rejected_by_xray: self.rejected_by_xray.load(Relaxed),
            spillover: self.spillover.load(Relaxed),
            sent: self.sent.load(Relaxed),
            unprocessed: self.unprocessed.load(Relaxed),
            otlp: self.otlp.load(Relaxed),
            retries: self.retries.load(Relaxed),
            undelivered: self.undelivered.load(Relaxed),
            put_calls: self.put_calls.load(Relaxed),
            backend_errors: be,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_is_cumulative_with_an_infinite_bucket() {
        let h = Histogram::default();
        for s in [0.001, 0.007, 0.007, 0.3, 20.0] {
            h.observe(s);
        }
        let (counts, sum) = h.read();
        assert_eq!(counts[0], 1); // <= 5 ms
        assert_eq!(counts[1], 3); // <= 10 ms
        assert_eq!(counts[6], 4); // <= 500 ms
        assert_eq!(counts[LATENCY_BUCKETS.len()], 5); // +Inf
        assert!((sum - 20.315).abs() < 1e-3);
    }
}
