//! `make bench`: the daemon's throughput, CPU and memory under load, as a markdown table.
//!
//! Runs the release binary (`target/release/xray-daemon`, or `XRAY_BENCH_BIN`) as a separate
//! process against [`sink::Sink`], a fast local PutTraceSegments endpoint on loopback that
//! counts the distinct segment ids it receives, and feeds it with [`gen::run`], a fixed-rate
//! UDP sender. Every step starts a fresh daemon with default settings (except where a row says
//! otherwise) and reports, for the daemon process only: CPU as % of one core (user+sys from
//! `/proc/<pid>/stat` over the sending window); memory three ways, each when sending ends and at
//! its peak: RSS (`VmRSS`, peak `VmHWM` reset at the start of the step; upstream's figure, and it
//! counts the binary's clean code pages), anonymous memory (`RssAnon`, peak sampled every 100 ms:
//! what a process really costs a host) and, where the machine allows, the memory charged to a
//! cgroup of the daemon's own ([`cgroup`]: what a container's memory limit, or a Lambda
//! sandbox's "max memory used", counts); delivered/sent, PutTraceSegments calls, and the datagrams the kernel dropped on
//! receive sockets (`RcvbufErrors` in `/proc/net/snmp`).
//!
//! The `otlp` part does the same with OpenTelemetry spans: ADOT-shaped `T1S` datagrams of 20
//! spans ([`gen::SpanDatagram`]) on the same UDP port, in both upload modes: converted to segment
//! documents (the default), whose ids the sink counts as for segments, and forwarded to the sink's
//! `POST /v1/traces` (`XRAY_DAEMON_OTLP_ENDPOINT`), which inflates and decodes each request and
//! counts distinct span ids; rows per span rate, then a bisection for the highest span rate with
//! zero loss in the default mode. Its rows also give the sender's and the sink's own CPU, which
//! share the cores with the daemon.
//!
//! The `grpc` part sends the same spans in OTLP/gRPC `Export` calls of 200 ([`grpc::run`]) to the
//! daemon's gRPC listener: rows per span rate, and the ingest alone at 4,000 spans/s (uploads
//! held: the sink answers after a minute and the daemon uploads one batch at a time), so that
//! taking the calls and uploading the spans are measured apart.
//!
//! Without a `--bench` argument it only checks its own pieces: that the generated datagrams are
//! segments, or `T1S` span requests, the daemon accepts and that the sink finds their ids.
//!
//! Environment: `XRAY_BENCH_BIN` (the daemon to measure), `XRAY_BENCH_STEP_SECS` (default 10),
//! `XRAY_BENCH_ONLY` (`ab`, `table`, `search`, `otlp`, `grpc`, `sizes`, `overload`, `spool`, comma-separated: run
//! only those parts; `otlp-rates` is `otlp` without its bisection), `XRAY_BENCH_RATES` (the table's rates,
//! comma-separated), `XRAY_BENCH_OTLP_RATES`
//! (the `otlp` part's span rates, default 4,000, 20,000 and 40,000), `XRAY_BENCH_ENV` (`NAME=value`
//! pairs, comma-separated, set for every daemon, e.g. `XRAY_DAEMON_OTLP_GZIP=false`),
//! `XRAY_BENCH_OUT` (default `target/bench/results.md`). The `ab` part measures other builds and upstream's
//! daemon beside this one in the same run (`XRAY_BENCH_AB`, `XRAY_BENCH_UPSTREAM_BIN`: see [`ab`]).

mod ab;
mod cgroup;
mod grpc;
mod spans;
mod spool;
mod step;
mod table;

use gen::Load;
use step::{Bench, Row};
use table::fmt_int;
mod gen;
mod sink;

use std::fmt::Write as _;
use std::process::Command;
use std::time::{Duration, Instant};

/// Upstream 3.5 on a 2-core machine, local HTTP sink, 1 KB segments:
/// (segments/s, CPU % of one core, RSS MB, delivered %).
pub(crate) const UPSTREAM: [(u64, f64, f64, Option<f64>); 8] = [
    (0, 0.0, 24.0, None),
    (100, 2.5, 30.0, Some(100.0)),
    (1_000, 17.0, 86.0, Some(100.0)),
    (4_000, 51.0, 204.0, Some(100.0)),
    (10_000, 65.0, 259.0, Some(100.0)),
    (20_000, 81.0, 246.0, Some(99.5)),
    (40_000, 88.0, 284.0, Some(88.0)),
    (80_000, 67.0, 294.0, Some(36.0)),
];

fn main() {
    let bench_mode = std::env::args().any(|a| a == "--bench");
    if !bench_mode {
        self_check();
        return;
    }
    let bin = std::env::var("XRAY_BENCH_BIN")
        .unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/target/release/xray-daemon").to_owned());
    if !std::path::Path::new(&bin).exists() {
        eprintln!("{bin} does not exist: run `cargo build --release` first (make bench does)");
        std::process::exit(1);
    }
    let step_secs: u64 = std::env::var("XRAY_BENCH_STEP_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(10);
    let only = std::env::var("XRAY_BENCH_ONLY").ok();
    let part = |name: &str| only.as_deref().is_none_or(|o| o.split(',').any(|p| p == name));
    let secs = Duration::from_secs(step_secs);
    // The binary's pages in the page cache, charged to the harness's cgroup: no step's cgroup
    // is then charged for reading them (clean file pages, which a host can drop at any time).
    let _ = std::fs::read(&bin);
    let sink = sink::Sink::start();
    let cgroups = cgroup::Parent::find();
    let mut out = String::new();
    let sha_start = sha256_mb_per_s();
    let _ = writeln!(out, "{}\n", machine(&bin, sha_start));
    let cgroup_line = match &cgroups {
        Ok(parent) => parent.describe(),
        Err(why) => format!("n/a: {why}"),
    };
    let _ = writeln!(
        out,
        "Memory columns: RSS is `VmRSS` (peak `VmHWM`), with the binary's clean code pages, as upstream's \
         figures are; anon is `RssAnon` (private anonymous resident memory; peak sampled every 100 ms); \
         cgroup is the memory charged to a cgroup of the daemon's own: {cgroup_line}.\n"
    );
    if let Ok(env) = std::env::var("XRAY_BENCH_ENV") {
        let _ = writeln!(out, "Every daemon of this run had `{env}` in its environment (`XRAY_BENCH_ENV`).\n");
    }
    let mut bench = Bench { bin, sink, cgroups, step: 0, env: Vec::new(), upstream: false };

    if part("ab") {
        ab::run(&mut bench, &mut out, secs);
    }
    let mut table: Vec<Row> = Vec::new();
    if part("table") {
        let _ = writeln!(out, "#### 1 KB segments, default settings, {step_secs} s per rate\n");
        let _ = writeln!(out, "{}", Row::header_with_upstream());
        let rates: Vec<u64> = match std::env::var("XRAY_BENCH_RATES") {
            Ok(list) => list.split(',').filter_map(|r| r.trim().parse().ok()).collect(),
            Err(_) => vec![0, 100, 1_000, 4_000, 10_000, 20_000, 40_000, 50_000, 80_000],
        };
        for rate in rates {
            let row = bench.step(Load::Segments(1024), rate, secs, &[], Duration::ZERO);
            eprintln!("{}", row.markdown_with_upstream());
            let _ = writeln!(out, "{}", row.markdown_with_upstream());
            table.push(row);
        }
        let _ = writeln!(out, "\n{}\n", body_hash_share(&table, sha_start));
    }
    if part("search") {
        // The highest rate delivered with zero loss: bisect between the table's last lossless
        // rate and its first lossy one (or 50,000 and 160,000 when the table did not run).
        let lo = table.iter().filter(|r| r.rate > 0 && r.lossless()).map(|r| r.rate).max().unwrap_or(50_000);
        let hi = table.iter().filter(|r| r.rate > lo && !r.lossless()).map(|r| r.rate).min().unwrap_or(160_000);
        let _ = writeln!(out, "#### Highest rate with zero loss (1 KB, {step_secs} s per try)\n");
        let _ = writeln!(out, "{}", Row::header());
        let (lo, hi) = bisect(&mut bench, &mut out, Load::Segments(1024), (lo, hi), secs, 4, Row::markdown);
        let _ = writeln!(
            out,
            "\nHighest zero-loss rate found: **{lo} segments/s** (at {hi}/s segments were lost, or the generator could not send that fast).\n"
        );
    }
    if part("otlp") || part("otlp-rates") {
        spans::otlp(&mut bench, &mut out, secs, part("otlp"));
    }
    if part("grpc") {
        spans::grpc(&mut bench, &mut out, secs);
    }
    if part("sizes") {
        for size in [200, 8192] {
            let _ = writeln!(out, "#### {} segments, default settings, {step_secs} s per rate\n", size_name(size));
            let _ = writeln!(out, "{}", Row::header());
            for rate in [4_000, 20_000, 50_000] {
                let row = bench.step(Load::Segments(size), rate, secs, &[], Duration::ZERO);
                eprintln!("{}", row.markdown());
                let _ = writeln!(out, "{}", row.markdown());
            }
            let _ = writeln!(out);
        }
    }
    if part("overload") {
        // 10x overload: the sink answers each call after 250 ms, so 8 connections take at most
        // 8 × 50 / 0.25 = 1,600 segments/s, and we send 16,000/s into a 20 MB buffer.
        let over = Duration::from_secs(step_secs * 3);
        let _ = writeln!(
            out,
            "#### 10x overload: `-m 20`, the sink answers after 250 ms (at most 1,600 segments/s get through), 16,000 segments/s of 1 KB for {} s\n",
            over.as_secs()
        );
        let row = bench.step(Load::Segments(1024), 16_000, over, &["-m", "20"], Duration::from_millis(250));
        let _ = writeln!(out, "{}", Row::header());
        let _ = writeln!(out, "{}", row.markdown());
        let samples: Vec<String> = row.rss_samples.iter().map(|(t, mb)| format!("{t:.0} s: {mb:.1}")).collect();
        let _ = writeln!(
            out,
            "\nRSS (MB) while overloaded: {}. Limit: 20 MB buffer + 10 MB = 30 MB.\n",
            samples.join(", ")
        );
    }
    if part("spool") {
        spool::run(&mut bench, &mut out, secs);
    }
    let _ = writeln!(out, "Speed of one core at the end: SHA-256 at {:.0} MB/s.", sha256_mb_per_s());
    print!("{out}");
    let path = std::env::var("XRAY_BENCH_OUT")
        .unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/target/bench/results.md").to_owned());
    if let Some(dir) = std::path::Path::new(&path).parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    match std::fs::write(&path, &out) {
        Ok(()) => eprintln!("written to {path}"),
        Err(e) => eprintln!("cannot write {path}: {e}"),
    }
}

/// Bisects for the highest rate of `load` delivered with zero loss between `lo` (lossless) and
/// `hi` (lossy), `secs` a step, at most `tries` steps, until they are 5,000/s apart; a row per try.
pub(crate) fn bisect(
    bench: &mut Bench,
    out: &mut String,
    load: Load,
    (mut lo, mut hi): (u64, u64),
    secs: Duration,
    tries: usize,
    render: fn(&Row) -> String,
) -> (u64, u64) {
    for _ in 0..tries {
        if hi - lo <= 5_000 {
            break;
        }
        let mid = (lo + hi) / 2 / 1000 * 1000;
        let row = bench.step(load, mid, secs, &[], Duration::ZERO);
        eprintln!("{}", render(&row));
        let _ = writeln!(out, "{}", render(&row));
        if row.lossless() {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    (lo, hi)
}

fn size_name(size: usize) -> String {
    if size >= 1024 {
        format!("{} KB", size / 1024)
    } else {
        format!("{size} B")
    }
}

/// One line about the machine and the binary.
fn machine(bin: &str, sha256: f64) -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|m| m.trim_start_matches([' ', '\t', ':']).to_owned())
        .unwrap_or_default();
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem_gb = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        .unwrap_or(0.0)
        / 1024.0
        / 1024.0;
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let size = std::fs::metadata(bin).map(|m| m.len()).unwrap_or(0);
    let zipped = zipped_size(bin).map(|z| format!(", {:.2} MB zipped (`zip -9`)", z as f64 / 1e6)).unwrap_or_default();
    let rev = Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    let debug = if cfg!(debug_assertions) { " (a debug build: its SHA-256 is not the daemon's)" } else { "" };
    format!(
        "Machine: {model}, {cores} cores, {mem_gb:.0} GB RAM, Linux {}. Daemon `{bin}`, {:.2} MB{zipped}; harness \
         at {rev}{debug}. Sender and sink run on the same cores. Speed of one core at the start: SHA-256 at \
         {sha256:.0} MB/s ({}).",
        kernel.trim(),
        size as f64 / 1e6,
        sha256_code()
    )
}

/// How fast one core is right now, and what the daemon's SigV4 signing pays to hash each request
/// body: SHA-256 of 52 KB (the body of one PutTraceSegments call of 50 1 KB segments) with the
/// `sha2` crate. It is the daemon's own: Cargo.lock has one `sha2`, the one `aws-sigv4` uses, and
/// the release profile builds it at `opt-level = 3` for both; both pick the CPU's SHA instructions
/// at run time where the CPU has them ([`sha256_code`]). A shared VM's speed drifts through the
/// day, and every CPU figure of a run scales with it; the harness measures it at the start and
/// the end.
fn sha256_mb_per_s() -> f64 {
    use sha2::Digest;
    let data = vec![0x5au8; 52_000];
    let start = Instant::now();
    let mut hashed = 0u64;
    while start.elapsed() < Duration::from_millis(500) {
        std::hint::black_box(sha2::Sha256::digest(std::hint::black_box(&data)));
        hashed += data.len() as u64;
    }
    hashed as f64 / start.elapsed().as_secs_f64() / 1e6
}

/// Which SHA-256 code `sha2` runs on this CPU: it checks the same CPU features at run time.
fn sha256_code() -> &'static str {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("sha") && std::arch::is_x86_feature_detected!("sse4.1") {
        return "the CPU's SHA instructions";
    }
    #[cfg(target_arch = "aarch64")]
    if std::arch::is_aarch64_feature_detected!("sha2") {
        return "the CPU's SHA instructions";
    }
    "software: this CPU shows no SHA instructions"
}

/// What hashing the request bodies costs the daemon at each rate of the table: SigV4 hashes each
/// PutTraceSegments body once, and the sink counted their bytes.
fn body_hash_share(table: &[Row], sha256: f64) -> String {
    let rates: Vec<String> = table
        .iter()
        .filter(|r| r.body_bytes > 0)
        .map(|r| {
            let mb_per_s = r.body_bytes as f64 / r.secs.max(1e-9) / 1e6;
            format!("{}/s, {mb_per_s:.1} MB/s: {:.2} %", fmt_int(r.rate), 100.0 * mb_per_s / sha256)
        })
        .collect();
    format!(
        "SHA-256 of the request bodies for SigV4, at the speed measured at the start, in % of one core: {}.",
        if rates.is_empty() { "no bodies".to_owned() } else { rates.join("; ") }
    )
}

fn zipped_size(bin: &str) -> Option<u64> {
    if std::fs::metadata(bin).ok()?.len() > 32 << 20 {
        return None; // a debug build; zipping it takes minutes and tells nothing
    }
    let dir = std::env::temp_dir().join(format!("xray-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).ok()?;
    let zip = dir.join("daemon.zip");
    let ok = Command::new("zip").arg("-9").arg("-q").arg("-j").arg(&zip).arg(bin).status().ok()?.success();
    let size = ok.then(|| std::fs::metadata(&zip).ok().map(|m| m.len())).flatten();
    let _ = std::fs::remove_dir_all(&dir);
    size
}

/// What `cargo test --all-targets` runs: the harness's own pieces, without a daemon. (It does
/// not call into the daemon's library on purpose: linking it would make the fat-LTO `bench`
/// build of this harness as slow as the daemon's own release build.)
fn self_check() {
    let mut passed = 0;
    for size in [200, 1024, 8192] {
        let mut t = gen::Template::new(size);
        t.set_id(gen::id(7, 123_456));
        assert_eq!(t.body_len(), size, "body size");
        let (header, body) = t.bytes.split_at(gen::HEADER.len());
        assert_eq!(header, gen::HEADER);
        let body = body.strip_prefix(b"\n").expect("a newline after the header");
        let doc: serde_json::Value = serde_json::from_slice(body).expect("the body is JSON");
        assert_eq!(doc["id"], format!("{:016x}", gen::id(7, 123_456)));
        // As the request carries it: a JSON string inside the TraceSegmentDocuments array.
        let request = serde_json::json!({ "TraceSegmentDocuments": [std::str::from_utf8(body).unwrap()] }).to_string();
        assert_eq!(sink::ids_in(request.as_bytes()), vec![Some(gen::id(7, 123_456))]);
    }
    passed += 1;
    check_spans();
    passed += 1;
    println!("load harness self-check: {passed} passed, 0 failed (run `make bench` for the measurements)");
}

/// A `T1S` datagram is what ADOT sends (the header line, `T1S`, standard padded base64 of an
/// `ExportTraceServiceRequest`) with unique span ids of 300–500 bytes each, and the sink finds the
/// ids in what the daemon makes of it: the requests of a batch concatenated, gzipped or not.
fn check_spans() {
    use base64::Engine as _;
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use prost::Message as _;
    let per = gen::SPANS_PER_DATAGRAM as u64;
    let mut requests = Vec::new();
    let mut d = gen::SpanDatagram::new();
    for first in [gen::id(7, 40), gen::id(7, 40 + per)] {
        d.set_ids(first);
        let rest = d.bytes.strip_prefix(gen::HEADER).and_then(|r| r.strip_prefix(b"\n")).expect("the header line");
        let b64 = rest.strip_prefix(gen::T1S).expect("T1S after the header line");
        assert!(d.bytes.len() < 65_000, "a datagram of {} bytes", d.bytes.len());
        let proto = base64::engine::general_purpose::STANDARD.decode(b64).expect("standard padded base64");
        assert_eq!(proto, d.proto());
        let request = ExportTraceServiceRequest::decode(&proto[..]).expect("an ExportTraceServiceRequest");
        let spans: Vec<_> = request.resource_spans.iter().flat_map(|r| &r.scope_spans).flat_map(|s| &s.spans).collect();
        assert_eq!(spans.len() as u64, per);
        for (i, span) in spans.iter().enumerate() {
            assert!((300..=500).contains(&span.encoded_len()), "span {i}: {} bytes", span.encoded_len());
            assert_eq!(span.trace_id.len(), 16);
            assert_eq!(span.trace_id[8..], first.to_be_bytes(), "the trace id carries the first span's id");
            let parent = if span.kind == 2 { vec![] } else { first.to_be_bytes().to_vec() };
            assert_eq!(span.parent_span_id, parent, "span {i}'s parent");
        }
        let mut ids: Vec<u64> = spans.iter().map(|s| u64::from_be_bytes(s.span_id[..].try_into().unwrap())).collect();
        ids.sort_unstable();
        assert_eq!(ids, (first..first + per).collect::<Vec<_>>(), "unique span ids");
        requests.push(proto);
    }
    let joined = requests.concat();
    let expected: Vec<u64> = (gen::id(7, 40)..gen::id(7, 40) + 2 * per).collect();
    let (mut ids, raw) = sink::span_ids_in(&joined, false).expect("the joined requests");
    ids.sort_unstable();
    assert_eq!((ids, raw), (expected.clone(), joined.len()));
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, &joined).unwrap();
    let gz = gz.finish().unwrap();
    let (mut ids, raw) = sink::span_ids_in(&gz, true).expect("the joined requests, gzipped");
    ids.sort_unstable();
    assert_eq!((ids, raw), (expected, joined.len()));
    assert!(sink::span_ids_in(&gz, false).is_err(), "gzip read as protobuf");
    assert!(sink::span_ids_in(&joined, true).is_err(), "protobuf read as gzip");
}

#[cfg(test)]
mod tests {
    /// `cargo test --all-targets` runs the self-check too.
    #[test]
    fn the_generator_and_the_sink_agree() {
        super::self_check();
    }
}
