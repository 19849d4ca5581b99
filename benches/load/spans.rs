//! The bench's OpenTelemetry parts: spans in `T1S` datagrams in both upload modes (`otlp`), and
//! spans over OTLP/gRPC (`grpc`), with the ingest measured apart from the uploads.

use crate::step::{Bench, Row};
use crate::{bisect, gen, grpc};
use gen::Load;
use std::fmt::Write as _;
use std::time::Duration;

/// Spans as ADOT sends them in Lambda (`T1S` datagrams, 20 spans each here) at a few rates, in
/// each upload mode: converted to segment documents for PutTraceSegments (the default), and
/// forwarded to `POST /v1/traces`. Then a bisection for the highest span rate delivered with
/// zero loss in the default mode (when `search`).
pub(crate) fn otlp(bench: &mut Bench, out: &mut String, secs: Duration, search: bool) {
    let step_secs = secs.as_secs();
    let rates: Vec<u64> = match std::env::var("XRAY_BENCH_OTLP_RATES") {
        Ok(list) => list.split(',').filter_map(|r| r.trim().parse().ok()).collect(),
        Err(_) => vec![4_000, 20_000, 40_000],
    };
    let per = gen::SPANS_PER_DATAGRAM;
    let span_bytes = gen::SpanDatagram::new().proto().len() / per;
    let modes = [
        ("segments", "converted to segment documents, sent with PutTraceSegments (`XRAY_DAEMON_SPAN_UPLOAD=segments`, the default)"),
        ("otlp", "to `POST /v1/traces`, gzip (`XRAY_DAEMON_SPAN_UPLOAD=otlp`)"),
    ];
    let mut rows = Vec::new();
    for (mode, what) in modes {
        bench.env = vec![("XRAY_DAEMON_SPAN_UPLOAD".into(), mode.into())];
        let _ = writeln!(
            out,
            "#### OpenTelemetry spans: `T1S` datagrams of {per} spans (about {span_bytes} B a span encoded), \
             {what}, {step_secs} s per rate\n"
        );
        let _ = writeln!(out, "{}", Row::header_spans());
        for &rate in &rates {
            let row = bench.step(Load::Spans, rate, secs, &[], Duration::ZERO);
            eprintln!("{}", row.markdown_spans());
            let _ = writeln!(out, "{}", row.markdown_spans());
            if mode == "segments" {
                rows.push(row);
            }
        }
        let _ = writeln!(out);
    }
    if !search {
        bench.env.clear();
        return;
    }
    bench.env = vec![("XRAY_DAEMON_SPAN_UPLOAD".into(), "segments".into())];
    let lo = rows.iter().filter(|r| r.rate > 0 && r.lossless()).map(|r| r.rate).max().unwrap_or(0);
    // With every row lossless, up to 6 times the highest (240,000/s by default, where these 2
    // cores ran out: the daemon, the sender and the sink took 180 % of them at 200,000/s).
    let hi = rows.iter().filter(|r| r.rate > lo && !r.lossless()).map(|r| r.rate).min().unwrap_or(lo.max(40_000) * 6);
    let _ = writeln!(out, "#### Highest span rate with zero loss, segments mode ({step_secs} s per try)\n");
    let _ = writeln!(out, "{}", Row::header_spans());
    let (lo, hi) = bisect(bench, out, Load::Spans, (lo, hi), secs, 6, Row::markdown_spans);
    bench.env.clear();
    let _ = writeln!(
        out,
        "\nHighest zero-loss span rate found: **{lo} spans/s** (at {hi}/s spans were lost, or the generator could not \
         send that fast).\n"
    );
}

/// The `grpc` part: spans over OTLP/gRPC at each rate (`XRAY_BENCH_GRPC_RATES`, default 4,000,
/// 20,000 and 40,000), then at 4,000/s with the uploads held, for the cost of the ingest alone.
pub(crate) fn grpc(bench: &mut Bench, out: &mut String, secs: Duration) {
    let step_secs = secs.as_secs();
    let rates: Vec<u64> = match std::env::var("XRAY_BENCH_GRPC_RATES") {
        Ok(list) => list.split(',').filter_map(|r| r.trim().parse().ok()).collect(),
        Err(_) => vec![4_000, 20_000, 40_000],
    };
    let _ = writeln!(
        out,
        "#### OpenTelemetry spans over OTLP/gRPC: `Export` calls of {} spans (the `T1S` rows' spans; the \
         datagrams column is calls), at most 8 in flight on one connection, default settings (spans converted to segment documents, \
         sent with PutTraceSegments), {step_secs} s per rate\n",
        grpc::PER_REQUEST
    );
    let _ = writeln!(out, "{}", Row::header_spans());
    let mut at_4000 = None;
    for rate in rates {
        let row = bench.step(Load::GrpcSpans, rate, secs, &[], Duration::ZERO);
        eprintln!("{}", row.markdown_spans());
        let _ = writeln!(out, "{}", row.markdown_spans());
        if rate == 4_000 {
            at_4000 = Some(row.cpu);
        }
    }
    // The ingest alone: the sink holds every upload for a minute and the daemon sends one batch
    // at a time, so that after the first second nothing is uploaded (one batch is encoded).
    bench.env.push(("XRAY_DAEMON_CONCURRENCY".into(), "1".into()));
    let held = bench.step(Load::GrpcSpans, 4_000, secs, &[], Duration::from_secs(60));
    bench.env.retain(|(k, _)| k != "XRAY_DAEMON_CONCURRENCY");
    eprintln!("{}", held.markdown_spans());
    let _ = writeln!(out, "{}", held.markdown_spans());
    let _ = writeln!(
        out,
        "\nThe last row takes the calls with the uploads held (the sink answers after a minute, \
         `XRAY_DAEMON_CONCURRENCY=1`): ingest alone at 4,000 spans/s is **{:.1} % of a core**{}.\n",
        held.cpu,
        at_4000.map_or(String::new(), |all| format!(
            "; with the uploads, {all:.1} %, so uploading them costs about {:.1} %",
            (all - held.cpu).max(0.0)
        ))
    );
}
