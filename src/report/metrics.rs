//! `/metrics`: the daemon's counters in the Prometheus text format (version 0.0.4).
//!
//! The counters live in [`Stats`] as plain atomics, which the data path bumps without locks or
//! lookups. At each scrape a [`Collector`] reads them and `prometheus-client` (the Prometheus
//! project's Rust client) writes the exposition: names, `_total` suffixes, label escaping,
//! histogram series. Every labelled family lists all its label values from the start, at 0, so
//! that rates and alerts on them return data before the first event. A new family is one line
//! in [`Daemon::encode`]: [`Out::counters`], [`Out::gauges`] or [`Out::histograms`].

use crate::pipeline::buffer::Buffer;
use crate::report::process::Process;
use crate::signal::segments::Reject;
use crate::stats::{
    Api, ErrorClass, Histogram, ProxyOutcome, SpanRejected, SpanSource, SpoolCounters, Stats, LATENCY_BUCKETS,
};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{
    prometheus_text, DescriptorEncoder, EncodeCounterValue, EncodeGaugeValue, EncodeLabelSet, MetricEncoder, NoLabelSet,
};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use std::fmt;
use std::sync::Arc;

/// The content type of the text format.
pub(crate) const CONTENT_TYPE: &str = prometheus_text::CONTENT_TYPE;

/// One label: name and value.
type Label<'a> = (&'static str, &'a str);

/// The label set of a family without labels.
const NONE: [Label<'static>; 0] = [];

/// Writes metric families, one per call.
struct Out<'a>(DescriptorEncoder<'a>);

impl Out<'_> {
    /// One family: its samples, each with its labels, and how a value is written.
    fn family<L: EncodeLabelSet, V>(
        &mut self,
        name: &str,
        help: &str,
        kind: MetricType,
        samples: impl IntoIterator<Item = (L, V)>,
        write: impl Fn(MetricEncoder<'_>, V) -> fmt::Result,
    ) -> fmt::Result {
        let mut family = self.0.encode_descriptor(name, help, None, kind)?;
        for (labels, value) in samples {
            write(family.encode_family(&labels)?, value)?;
        }
        Ok(())
    }

    /// A counter family; `name` ends in `_total`, as it reads in the exposition.
    fn counters<L: EncodeLabelSet, V: EncodeCounterValue>(
        &mut self,
        name: &str,
        help: &str,
        samples: impl IntoIterator<Item = (L, V)>,
    ) -> fmt::Result {
        let base = name.strip_suffix("_total").unwrap_or(name);
        self.family(base, help, MetricType::Counter, samples, |mut m, v| {
            m.encode_counter::<NoLabelSet, _, u64>(&v, None)
        })
    }

    fn counter(&mut self, name: &str, help: &str, value: impl EncodeCounterValue) -> fmt::Result {
        self.counters(name, help, [(NONE, value)])
    }

    fn gauges<L: EncodeLabelSet, V: EncodeGaugeValue>(
        &mut self,
        name: &str,
        help: &str,
        samples: impl IntoIterator<Item = (L, V)>,
    ) -> fmt::Result {
        self.family(name, help, MetricType::Gauge, samples, |mut m, v| m.encode_gauge(&v))
    }

    fn gauge(&mut self, name: &str, help: &str, value: impl EncodeGaugeValue) -> fmt::Result {
        self.gauges(name, help, [(NONE, value)])
    }

    fn histograms<'h, L: EncodeLabelSet>(
        &mut self,
        name: &str,
        help: &str,
        samples: impl IntoIterator<Item = (L, &'h Histogram)>,
    ) -> fmt::Result {
        self.family(name, help, MetricType::Histogram, samples, |mut m, h| {
            let (counts, sum) = h.read();
            let buckets: Vec<(f64, u64)> = LATENCY_BUCKETS.iter().copied().zip(counts).collect();
            m.encode_histogram::<NoLabelSet>(sum, counts.iter().sum(), &buckets, None)
        })
    }

    /// An info metric: one sample of 1 whose labels carry the information; `name` ends in `_info`.
    fn info(&mut self, name: &str, help: &str, labels: &[Label<'_>]) -> fmt::Result {
        let base = name.strip_suffix("_info").unwrap_or(name);
        self.0.encode_descriptor(base, help, None, MetricType::Info)?.encode_info(&labels)
    }
}

/// `[("name", value)]` for each label value.
fn each<T: Copy, V>(
    name: &'static str,
    values: impl IntoIterator<Item = T>,
    label: fn(T) -> &'static str,
    value: impl Fn(T) -> V,
) -> impl Iterator<Item = ([Label<'static>; 1], V)> {
    values.into_iter().map(move |v| ([(name, label(v))], value(v)))
}

/// What a scrape reads.
#[derive(Debug)]
struct Daemon {
    stats: Arc<Stats>,
    segments: Arc<Buffer>,
    spans: Arc<Buffer>,
}

/// The target the binary was built for, as in `x86_64-unknown-linux-musl`.
fn target() -> String {
    let env = if cfg!(target_env = "musl") {
        "-musl"
    } else if cfg!(target_env = "gnu") {
        "-gnu"
    } else {
        ""
    };
    format!("{}-unknown-{}{env}", std::env::consts::ARCH, std::env::consts::OS)
}

impl Daemon {
    fn encode(&self, o: &mut Out<'_>) -> fmt::Result {
        let s = &*self.stats;
        let read = Stats::read;
        let (seg, span) = (&s.segments, &s.spans);
        let (level, span_level) = (self.segments.level(), self.spans.level());

        // The counters without labels: name, help, value.
        let counters = [
            (
                "xray_daemon_udp_datagrams_received_total",
                "UDP datagrams read: segments, OTLP datagrams and datagrams rejected at ingest.",
                read(&s.received),
            ),
            (
                "xray_daemon_udp_kernel_drops_total",
                "Datagrams the kernel dropped for a full receive buffer (SO_RXQ_OVFL; seen at the next read).",
                read(&s.kernel_drops),
            ),
            (
                "xray_daemon_segments_received_total",
                "Segment datagrams taken in (stored in the buffer, or spilled over).",
                read(&s.segments_received),
            ),
            (
                "xray_daemon_segments_spillover_total",
                "Segments dropped because the buffer was full.",
                read(&seg.spillover),
            ),
            ("xray_daemon_segments_sent_total", "Segments accepted by X-Ray.", read(&seg.sent)),
            (
                "xray_daemon_segments_unprocessed_total",
                "UnprocessedTraceSegments entries reported by X-Ray (retried or rejected).",
                read(&seg.unprocessed),
            ),
            (
                "xray_daemon_segments_undelivered_total",
                "Segments still held when a shutdown deadline passed.",
                read(&seg.undelivered),
            ),
            ("xray_daemon_spans_sent_total", "Spans accepted by X-Ray.", read(&span.sent)),
            ("xray_daemon_spans_spillover_total", "Spans dropped because the buffer was full.", read(&span.spillover)),
            (
                "xray_daemon_spans_undelivered_total",
                "Spans still held when a shutdown deadline passed.",
                read(&span.undelivered),
            ),
        ];
        for (name, help, value) in counters {
            o.counter(name, help, value)?;
        }
        let ingest = each("reason", Reject::ALL, Reject::as_str, |r| read(&s.rejected_reasons[r as usize]));
        o.counters(
            "xray_daemon_segments_rejected_total",
            "Segments rejected: datagrams refused at ingest, by reason; reason=\"xray\": refused by X-Ray for good.",
            ingest.chain([([("reason", "xray")], read(&seg.rejected))]),
        )?;
        let unsampled = read(&s.otlp_unsampled);
        o.counters(
            "xray_daemon_otlp_datagrams_total",
            "OTLP datagrams on the UDP port, by kind; only sampled spans (T1S) are forwarded.",
            [
                ([("kind", "sampled_spans")], read(&s.otlp_sampled)),
                ([("kind", "unsampled_spans")], unsampled),
                ([("kind", "metrics")], read(&s.otlp).saturating_sub(unsampled)),
            ],
        )?;

        o.counters(
            "xray_daemon_spans_received_total",
            "Spans in the requests taken in, by where they came from.",
            each("source", SpanSource::ALL, SpanSource::as_str, |source| read(&s.spans_received[source as usize])),
        )?;
        let at_ingest =
            each("reason", SpanRejected::ALL, SpanRejected::as_str, |r| read(&s.spans_rejected[r as usize]));
        o.counters(
            "xray_daemon_spans_rejected_total",
            "Spans refused: by X-Ray; at ingest for being over X-Ray's size limit or for invalid ids; malformed counts \
             payloads, not spans.",
            [([("reason", "xray")], read(&span.rejected))]
                .into_iter()
                .chain(at_ingest)
                .chain([([("reason", "malformed")], read(&s.spans_malformed))]),
        )?;
        o.counter(
            "xray_daemon_otlp_http_refused_total",
            "OTLP/HTTP requests answered 503 because the buffer was full (clients retry them).",
            read(&s.otlp_refused[SpanSource::Http as usize]),
        )?;
        o.counter(
            "xray_daemon_otlp_grpc_refused_total",
            "OTLP/gRPC requests answered UNAVAILABLE because the buffer was full, or more requests were being read \
             than the daemon holds at once (clients retry them).",
            read(&s.otlp_refused[SpanSource::Grpc as usize]),
        )?;
        let pairs = Api::ALL.into_iter().flat_map(|api| ErrorClass::ALL.map(|class| (api, class)));
        o.counters(
            "xray_daemon_backend_errors_total",
            "Failed calls to X-Ray, by API and by class of failure.",
            pairs
                .map(|(api, class)| ([("api", api.as_str()), ("class", class.as_str())], s.backend_errors(api, class))),
        )?;
        o.counters(
            "xray_daemon_backend_retries_total",
            "Calls to X-Ray that were retries of a batch.",
            [
                ([("api", Api::PutTraceSegments.as_str())], read(&seg.retries)),
                ([("api", Api::Otlp.as_str())], read(&span.retries)),
            ],
        )?;
        o.histograms(
            "xray_daemon_backend_request_duration_seconds",
            "Duration of the calls that send batches, answered or not.",
            [([("api", Api::PutTraceSegments.as_str())], &seg.latency), ([("api", Api::Otlp.as_str())], &span.latency)],
        )?;
        o.counters(
            "xray_daemon_proxy_requests_total",
            "Requests on the TCP port, by outcome.",
            each("outcome", ProxyOutcome::ALL, ProxyOutcome::as_str, |p| s.proxy_requests(p)),
        )?;

        o.counters(
            "xray_daemon_tcp_connections_limited_total",
            "Connections to the TCP port or an OTLP listener closed at the connection limit: shed (the oldest \
             one waiting for a request, to make room) or refused (every open one was busy).",
            [
                ([("action", "shed")], read(&s.connections_shed)),
                ([("action", "refused")], read(&s.connections_refused)),
            ],
        )?;
        self.spool(o)?;

        o.gauge(
            "xray_daemon_buffer_bytes",
            "Bytes held by the buffer (segments and spans), waiting or being uploaded.",
            (level.bytes + span_level.bytes) as u64,
        )?;
        o.gauge("xray_daemon_buffer_limit_bytes", "The buffer's byte limit (-m).", self.segments.limit() as u64)?;
        o.gauges(
            "xray_daemon_buffer_segments",
            "Segments held by the buffer.",
            [([("state", "queued")], level.queued), ([("state", "in_flight")], level.in_flight)],
        )?;
        o.gauges(
            "xray_daemon_buffer_spans",
            "Spans held by the buffer.",
            [([("state", "queued")], span_level.queued_items), ([("state", "in_flight")], span_level.in_flight_items)],
        )?;

        let target = target();
        o.info(
            "xray_daemon_build_info",
            "The daemon's version, the commit it was built from, and the target it was built for.",
            &[
                ("version", env!("CARGO_PKG_VERSION")),
                ("revision", option_env!("XRAY_DAEMON_REVISION").unwrap_or("unknown")),
                ("target", &target),
            ],
        )
    }
}

impl Daemon {
    /// The disk spool's families, one series per signal (all zero without a spool).
    fn spool(&self, o: &mut Out<'_>) -> fmt::Result {
        let lanes = [("segments", &self.stats.segments.spool), ("spans", &self.stats.spans.spool)];
        let per_signal = |read: fn(&SpoolCounters) -> u64| lanes.map(|(signal, c)| ([("signal", signal)], read(c)));
        o.gauges("xray_daemon_spool_bytes", "Bytes the disk spool holds.", per_signal(|c| Stats::read(&c.bytes)))?;
        o.counters(
            "xray_daemon_spool_written_total",
            "Items (segments, spans) written to the disk spool.",
            per_signal(|c| Stats::read(&c.written)),
        )?;
        o.counters(
            "xray_daemon_spool_replayed_total",
            "Items read back from the disk spool to be sent (read again after a failed upload).",
            per_signal(|c| Stats::read(&c.replayed)),
        )?;
        o.counters(
            "xray_daemon_spool_corrupt_records_total",
            "Corrupt or torn records skipped in the disk spool.",
            per_signal(|c| Stats::read(&c.corrupt)),
        )?;
        let dropped = lanes.into_iter().flat_map(|(signal, c)| {
            [
                ([("signal", signal), ("reason", "full")], Stats::read(&c.dropped_full)),
                ([("signal", signal), ("reason", "io_error")], Stats::read(&c.dropped_io)),
            ]
        });
        o.counters(
            "xray_daemon_spool_dropped_total",
            "Items the disk spool dropped: reason=\"full\", the oldest at its cap or on a full disk; \
             reason=\"io_error\", not writable.",
            dropped,
        )
    }
}

impl Collector for Daemon {
    fn encode(&self, encoder: DescriptorEncoder) -> fmt::Result {
        Daemon::encode(self, &mut Out(encoder))
    }
}

/// The standard process metrics.
#[derive(Debug)]
struct ProcessMetrics;

impl Collector for ProcessMetrics {
    fn encode(&self, encoder: DescriptorEncoder) -> fmt::Result {
        let p = Process::read();
        let o = &mut Out(encoder);
        if let Some(v) = p.cpu_seconds {
            o.counter("process_cpu_seconds_total", "Total user and system CPU time spent in seconds.", v)?;
        }
        let sizes = [
            ("process_resident_memory_bytes", "Resident memory size in bytes.", p.resident_bytes),
            ("process_virtual_memory_bytes", "Virtual memory size in bytes.", p.virtual_bytes),
            ("process_open_fds", "Number of open file descriptors.", p.open_fds),
            ("process_max_fds", "Maximum number of open file descriptors.", p.max_fds),
        ];
        for (name, help, value) in sizes {
            if let Some(v) = value {
                o.gauge(name, help, v)?;
            }
        }
        if let Some(v) = p.start_time_seconds {
            o.gauge("process_start_time_seconds", "Start time of the process since unix epoch in seconds.", v)?;
        }
        Ok(())
    }
}

/// Renders every metric.
pub(crate) fn render(stats: &Arc<Stats>, segments: &Arc<Buffer>, spans: &Arc<Buffer>) -> String {
    let mut registry = Registry::default();
    let daemon = Daemon { stats: stats.clone(), segments: segments.clone(), spans: spans.clone() };
    registry.register_collector(Box::new(daemon));
    registry.register_collector(Box::new(ProcessMetrics));
    let mut text = String::with_capacity(16 * 1024);
    // Writing into a String cannot fail; a collector's error would leave the text cut short.
    let _ = prometheus_text::encode(&mut text, &registry);
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::{BackendError, ErrorKind};

    fn rendered(stats: &Arc<Stats>, buffer: &Arc<Buffer>) -> String {
        render(stats, buffer, &Arc::new(Buffer::new(3 << 20, 10_000)))
    }

    fn has(text: &str, line: &str) -> bool {
        text.lines().any(|l| l == line)
    }

    #[test]
    fn renders_counters_gauges_a_histogram_and_build_info() {
        let stats = Arc::new(Stats::default());
        Stats::add(&stats.received, 17);
        Stats::add(&stats.kernel_drops, 4);
        Stats::add(&stats.segments_received, 9);
        Stats::add(&stats.rejected_reasons[Reject::InvalidHeader as usize], 7);
        stats.proxy_request(ProxyOutcome::TooLarge);
        stats.segments.latency.observe(0.02);
        stats.spans.latency.observe(20.0);
        let buffer = Arc::new(Buffer::new(3 << 20, 50));
        buffer.push(bytes::Bytes::from_static(b"{}"));
        let text = rendered(&stats, &buffer);
        for line in [
            "# TYPE xray_daemon_udp_datagrams_received_total counter",
            "xray_daemon_udp_datagrams_received_total 17",
            "xray_daemon_udp_kernel_drops_total 4",
            "xray_daemon_segments_received_total 9",
            "xray_daemon_segments_rejected_total{reason=\"invalid_header\"} 7",
            "xray_daemon_segments_rejected_total{reason=\"missing_newline\"} 0",
            "xray_daemon_segments_rejected_total{reason=\"xray\"} 0",
            "xray_daemon_spans_spillover_total 0",
            "xray_daemon_proxy_requests_total{outcome=\"too_large\"} 1",
            "# TYPE xray_daemon_buffer_segments gauge",
            "xray_daemon_buffer_segments{state=\"queued\"} 1",
            "xray_daemon_buffer_limit_bytes 3145728",
            "# TYPE xray_daemon_backend_request_duration_seconds histogram",
            "xray_daemon_backend_request_duration_seconds_bucket{api=\"put_trace_segments\",le=\"0.01\"} 0",
            "xray_daemon_backend_request_duration_seconds_bucket{api=\"put_trace_segments\",le=\"0.025\"} 1",
            "xray_daemon_backend_request_duration_seconds_bucket{api=\"put_trace_segments\",le=\"+Inf\"} 1",
            "xray_daemon_backend_request_duration_seconds_count{api=\"put_trace_segments\"} 1",
            "xray_daemon_backend_request_duration_seconds_bucket{api=\"otlp\",le=\"10\"} 0",
            "xray_daemon_backend_request_duration_seconds_bucket{api=\"otlp\",le=\"+Inf\"} 1",
            "xray_daemon_backend_request_duration_seconds_sum{api=\"otlp\"} 20.0",
            "# TYPE xray_daemon_build_info gauge",
        ] {
            assert!(has(&text, line), "missing {line:?} in\n{text}");
        }
        let version = format!("version=\"{}\"", env!("CARGO_PKG_VERSION"));
        let build = text.lines().find(|l| l.starts_with("xray_daemon_build_info{")).expect("build info");
        assert!(build.contains(&version) && build.contains(",target=\"") && build.ends_with("} 1"), "{build}");
    }

    #[test]
    fn every_api_and_class_is_there_from_the_start_and_errors_land_on_theirs() {
        let stats = Arc::new(Stats::default());
        let buffer = Arc::new(Buffer::new(3 << 20, 50));
        let text = rendered(&stats, &buffer);
        let mut pairs = 0;
        for api in ["put_trace_segments", "put_telemetry_records", "proxy", "otlp"] {
            for class in ["throttled", "auth", "client", "server", "timeout", "connection"] {
                let line = format!("xray_daemon_backend_errors_total{{api=\"{api}\",class=\"{class}\"}} 0");
                assert!(has(&text, &line), "missing {line:?} in\n{text}");
                pairs += 1;
            }
        }
        assert_eq!(text.lines().filter(|l| l.starts_with("xray_daemon_backend_errors_total{")).count(), pairs);
        let status = |status, code: Option<&str>| {
            BackendError::new(ErrorKind::Status { status, code: code.map(str::to_owned) }, "")
        };
        status(403, None).count(Api::PutTraceSegments, &stats);
        status(400, Some("ThrottlingException")).count(Api::Otlp, &stats);
        BackendError::new(ErrorKind::Dns, "").count(Api::PutTelemetryRecords, &stats);
        let text = rendered(&stats, &buffer);
        for line in [
            "xray_daemon_backend_errors_total{api=\"put_trace_segments\",class=\"auth\"} 1",
            "xray_daemon_backend_errors_total{api=\"otlp\",class=\"throttled\"} 1",
            "xray_daemon_backend_errors_total{api=\"put_telemetry_records\",class=\"connection\"} 1",
            "xray_daemon_backend_errors_total{api=\"put_trace_segments\",class=\"throttled\"} 0",
        ] {
            assert!(has(&text, line), "missing {line:?} in\n{text}");
        }
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn process_metrics_are_read_from_proc() {
        let text = rendered(&Arc::new(Stats::default()), &Arc::new(Buffer::new(3 << 20, 50)));
        for name in [
            "process_cpu_seconds_total",
            "process_resident_memory_bytes",
            "process_virtual_memory_bytes",
            "process_start_time_seconds",
            "process_open_fds",
            "process_max_fds",
        ] {
            let value = text
                .lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
                .unwrap_or_else(|| panic!("{name} in\n{text}"));
            assert!(value.parse::<f64>().is_ok_and(|v| v >= 0.0), "{name} {value}");
        }
    }
}
