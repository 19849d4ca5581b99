//! `/metrics`: the daemon's counters in the Prometheus text format (version 0.0.4).
//!
//! The counters already live in [`Stats`] as atomics; this module only writes them out, with
//! names that follow Prometheus conventions (`xray_daemon_*_total` for counters, base units).

use crate::observe::stats::{ErrorClass, ProxyOutcome, Stats, LATENCY_BUCKETS};
use crate::pipeline::buffer::{Buffer, Level};
use std::fmt::Write;

/// The content type of the text format.
pub(crate) const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

struct Out(String);

impl Out {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.0, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }
    fn sample(&mut self, name: &str, labels: &str, value: impl std::fmt::Display) {
        if labels.is_empty() {
            let _ = writeln!(self.0, "{name} {value}");
        } else {
            let _ = writeln!(self.0, "{name}{{{labels}}} {value}");
        }
    }
    fn single(&mut self, name: &str, kind: &str, help: &str, value: u64) {
        self.family(name, kind, help);
        self.sample(name, "", value);
    }
}

/// Renders every metric.
pub(crate) fn render(stats: &Stats, buffer: &Buffer) -> String {
    let s = stats.snapshot();
    let level: Level = buffer.level();
    let mut o = Out(String::with_capacity(4096));
    o.single("xray_daemon_segments_received_total", "counter", "Datagrams received on the UDP port.", s.received);
    o.family(
        "xray_daemon_segments_rejected_total",
        "counter",
        "Segments rejected: bad datagrams at ingest, or refused by X-Ray for good.",
    );
    o.sample("xray_daemon_segments_rejected_total", "stage=\"ingest\"", s.rejected_datagrams);
    o.sample("xray_daemon_segments_rejected_total", "stage=\"xray\"", s.rejected_by_xray);
    o.single(
        "xray_daemon_segments_spillover_total",
        "counter",
        "Segments dropped because the buffer was full.",
        s.spillover,
    );
    o.single("xray_daemon_segments_sent_total", "counter", "Segments accepted by X-Ray.", s.sent);
    o.single(
        "xray_daemon_segments_unprocessed_total",
        "counter",
        "UnprocessedTraceSegments entries reported by X-Ray.",
        s.unprocessed,
    );
    o.single(
        "xray_daemon_segments_undelivered_total",
        "counter",
        "Segments still held when a shutdown deadline passed.",
        s.undelivered,
    );
    o.single("xray_daemon_otlp_datagrams_total", "counter", "OTLP datagrams received and not forwarded.", s.otlp);
    o.single("xray_daemon_upload_retries_total", "counter", "PutTraceSegments attempts that were retries.", s.retries);
    o.single("xray_daemon_put_trace_segments_calls_total", "counter", "PutTraceSegments calls made.", s.put_calls);
    o.family("xray_daemon_backend_errors_total", "counter", "Failed X-Ray API calls by error class.");
    for class in ErrorClass::ALL {
        o.sample("xray_daemon_backend_errors_total", &format!("class=\"{}\"", class.as_str()), s.backend_error(class));
    }
    o.family("xray_daemon_proxy_requests_total", "counter", "Requests on the TCP port by outcome.");
    for outcome in ProxyOutcome::ALL {
        o.sample(
            "xray_daemon_proxy_requests_total",
            &format!("outcome=\"{}\"", outcome.as_str()),
            stats.proxy_requests(outcome),
        );
    }
    o.single(
        "xray_daemon_buffer_bytes",
        "gauge",
        "Bytes held by the segment buffer, waiting or being uploaded.",
        level.bytes as u64,
    );
    o.single("xray_daemon_buffer_limit_bytes", "gauge", "The segment buffer's byte limit.", buffer.limit() as u64);
    o.family("xray_daemon_buffer_segments", "gauge", "Segments held by the buffer.");
    o.sample("xray_daemon_buffer_segments", "state=\"queued\"", level.queued);
    o.sample("xray_daemon_buffer_segments", "state=\"in_flight\"", level.in_flight);
    let name = "xray_daemon_put_trace_segments_duration_seconds";
    o.family(name, "histogram", "Latency of PutTraceSegments calls.");
    let (counts, sum) = stats.segments.latency.read();
    for (bound, count) in LATENCY_BUCKETS.iter().zip(counts) {
        o.sample(&format!("{name}_bucket"), &format!("le=\"{bound}\""), count);
    }
    let total = counts[LATENCY_BUCKETS.len()];
    o.sample(&format!("{name}_bucket"), "le=\"+Inf\"", total);
    o.sample(&format!("{name}_sum"), "", sum);
    o.sample(&format!("{name}_count"), "", total);
    o.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_gauges_and_a_histogram() {
        let stats = Stats::default();
        Stats::add(&stats.received, 17);
        Stats::add(&stats.rejected_datagrams, 7);
        stats.backend_error(ErrorClass::Http5xx);
        stats.proxy_request(ProxyOutcome::TooLarge);
        stats.segments.latency.observe(0.02);
        let buffer = Buffer::new(3 << 20, 50);
        buffer.push(bytes::Bytes::from_static(b"{}"));
        let text = render(&stats, &buffer);
        for line in [
            "# TYPE xray_daemon_segments_received_total counter",
            "xray_daemon_segments_received_total 17",
            "xray_daemon_segments_rejected_total{stage=\"ingest\"} 7",
            "xray_daemon_backend_errors_total{class=\"http_5xx\"} 1",
            "xray_daemon_proxy_requests_total{outcome=\"too_large\"} 1",
            "xray_daemon_buffer_segments{state=\"queued\"} 1",
            "xray_daemon_buffer_limit_bytes 3145728",
            "xray_daemon_put_trace_segments_duration_seconds_bucket{le=\"0.01\"} 0",
            "xray_daemon_put_trace_segments_duration_seconds_bucket{le=\"0.025\"} 1",
            "xray_daemon_put_trace_segments_duration_seconds_bucket{le=\"+Inf\"} 1",
            "xray_daemon_put_trace_segments_duration_seconds_count 1",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line:?} in\n{text}");
        }
    }
}
