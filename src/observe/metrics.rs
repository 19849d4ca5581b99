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

/// The spans' counters.
fn spans(o: &mut Out, stats: &Stats, level: &Level) {
    let d = &stats.spans;
    let name = "xray_daemon_spans_received_total";
    o.family(name, "counter", "Spans received, by where they came from.");
    o.sample(name, "source=\"udp\"", Stats::read(&stats.spans_udp));
    o.sample(name, "source=\"http\"", Stats::read(&stats.spans_http));
    o.single("xray_daemon_spans_sent_total", "counter", "Spans accepted by X-Ray.", Stats::read(&d.sent));
    let name = "xray_daemon_spans_rejected_total";
    o.family(
        name,
        "counter",
        "Spans refused: by X-Ray, or at ingest for being over 200 KB; malformed counts payloads.",
    );
    o.sample(name, "reason=\"xray\"", Stats::read(&d.rejected));
    o.sample(name, "reason=\"too_large\"", Stats::read(&stats.spans_too_large));
    o.sample(name, "reason=\"malformed\"", Stats::read(&stats.spans_malformed));
    o.single(
        "xray_daemon_spans_dropped_total",
        "counter",
        "Spans dropped because the buffer was full.",
        Stats::read(&d.spillover),
    );
    o.single(
        "xray_daemon_spans_undelivered_total",
        "counter",
        "Spans still held when a shutdown deadline passed.",
        Stats::read(&d.undelivered),
    );
    o.single(
        "xray_daemon_otlp_http_refused_total",
        "counter",
        "OTLP/HTTP requests answered 503 because the buffer was full (clients retry them).",
        Stats::read(&stats.otlp_http_refused),
    );
    o.single("xray_daemon_otlp_calls_total", "counter", "Calls to X-Ray's OTLP endpoint.", Stats::read(&d.calls));
    o.single(
        "xray_daemon_otlp_retries_total",
        "counter",
        "Calls to X-Ray's OTLP endpoint that were retries.",
        Stats::read(&d.retries),
    );
    let name = "xray_daemon_buffer_spans";
    o.family(name, "gauge", "Spans held by the buffer.");
    o.sample(name, "state=\"queued\"", level.queued_items);
    o.sample(name, "state=\"in_flight\"", level.in_flight_items);
}

/// The disk spool's metrics, one series per signal (all zero without a spool).
fn spool(o: &mut Out, stats: &Stats) {
    use crate::observe::stats::SpoolCounters;
    let lanes: [(&str, &SpoolCounters); 2] = [("segments", &stats.segments.spool), ("spans", &stats.spans.spool)];
    let families: [(&str, &str, &str, fn(&SpoolCounters) -> u64); 4] = [
        ("xray_daemon_spool_bytes", "gauge", "Bytes the disk spool holds.", |c| Stats::read(&c.bytes)),
        ("xray_daemon_spool_written_total", "counter", "Items written to the disk spool.", |c| Stats::read(&c.written)),
        (
            "xray_daemon_spool_replayed_total",
            "counter",
            "Items read back from the disk spool to be sent (again after a failed upload).",
            |c| Stats::read(&c.replayed),
        ),
        (
            "xray_daemon_spool_corrupt_records_total",
            "counter",
            "Corrupt or torn records skipped in the disk spool.",
            |c| Stats::read(&c.corrupt),
        ),
    ];
    for (name, kind, help, read) in families {
        o.family(name, kind, help);
        for (signal, c) in lanes {
            o.sample(name, &format!("signal=\"{signal}\""), read(c));
        }
    }
    let name = "xray_daemon_spool_dropped_total";
    o.family(name, "counter", "Items the disk spool dropped: the oldest at the cap or on a full disk, or unwritable.");
    for (signal, c) in lanes {
        o.sample(name, &format!("signal=\"{signal}\",reason=\"full\""), Stats::read(&c.dropped_full));
        o.sample(name, &format!("signal=\"{signal}\",reason=\"io_error\""), Stats::read(&c.dropped_io));
    }
}

/// Renders every metric.
pub(crate) fn render(stats: &Stats, buffer: &Buffer, span_buffer: &Buffer) -> String {
    let s = stats.snapshot();
    let level: Level = buffer.level();
    let span_level: Level = span_buffer.level();
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
    let name = "xray_daemon_otlp_datagrams_total";
    o.family(name, "counter", "OTLP datagrams received, by kind; only sampled spans (T1S) are forwarded.");
    let unsampled = Stats::read(&stats.otlp_unsampled);
    o.sample(name, "kind=\"sampled_spans\"", Stats::read(&stats.otlp_sampled));
    o.sample(name, "kind=\"unsampled_spans\"", unsampled);
    o.sample(name, "kind=\"metrics\"", s.otlp.saturating_sub(unsampled));
    spans(&mut o, stats, &span_level);
    spool(&mut o, stats);
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
        "Bytes held by the buffer (segments and spans), waiting or being uploaded.",
        (level.bytes + span_level.bytes) as u64,
    );
    o.single("xray_daemon_buffer_limit_bytes", "gauge", "The buffer's byte limit (-m).", buffer.limit() as u64);
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
        let span_buffer = Buffer::new(3 << 20, 10_000);
        buffer.push(bytes::Bytes::from_static(b"{}"));
        let text = render(&stats, &buffer, &span_buffer);
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
