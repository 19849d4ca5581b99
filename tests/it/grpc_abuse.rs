//! Abusive clients on the OTLP/gRPC listener: many streams at once, huge request heads, gzip
//! bombs, garbage instead of the HTTP/2 preface, and hundreds of idle connections. While each
//! runs, `/health` on the TCP port answers within 2 s every time, the UDP reader still takes
//! segments, and the daemon's RSS stays bounded; afterwards the listener still serves an honest
//! client. (The same checks for the TCP port are in `security.rs`.)

use crate::daemon::{http, segment, Daemon};
use crate::fake_otlp::{spans_request, FakeOtlp};
use crate::fake_xray::FakeXray;
use crate::grpc::{
    daemon, framed, gzip, xray, Answer, Client, DEADLINE_EXCEEDED, EXPORT, OK, RESOURCE_EXHAUSTED, UNAVAILABLE,
};
use crate::proxy::metric;
use prost::Message;
use std::future::Future;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(15);

/// A daemon taking OTLP/gRPC, and the fakes it sends to.
struct Target {
    xray: FakeXray,
    otlp: FakeOtlp,
    d: Daemon,
    /// Its gRPC listener.
    addr: SocketAddr,
}

async fn target(args: &[&str], env: &[(&str, &str)]) -> Target {
    let (xray, otlp) = (xray(), FakeOtlp::start().await);
    let d = daemon(&xray, &otlp.url, args, env).await;
    let addr = d.server("OTLP/gRPC");
    Target { xray, otlp, d, addr }
}

/// What the daemon looked like while an abuse ran.
struct Watched<T> {
    /// What the abuse returned.
    outcome: T,
    probes: usize,
    /// RSS before the abuse, and at its highest while it ran, in KiB.
    rss_before: u64,
    rss_peak: u64,
}

impl<T> Watched<T> {
    fn grown_kib(&self) -> u64 {
        self.rss_peak.saturating_sub(self.rss_before)
    }
}

/// Runs `abuse` while `/health` is asked every 250 ms (each answer within 2 s, or the test
/// fails), for at least `at_least`, sampling the daemon's RSS.
async fn watch<T: Send + 'static>(
    d: &Daemon,
    at_least: Duration,
    abuse: impl Future<Output = T> + Send + 'static,
) -> Watched<T> {
    let tcp = d.tcp();
    assert_eq!(http(tcp, "GET", "/health", &[], "").await.0, 200);
    let rss_before = d.status_kb("VmRSS");
    let (start, task) = (Instant::now(), tokio::spawn(abuse));
    let (mut probes, mut rss_peak) = (0, rss_before);
    while !task.is_finished() || start.elapsed() < at_least {
        let answer = tokio::time::timeout(Duration::from_secs(2), http(tcp, "GET", "/health", &[], "")).await;
        let status = answer.unwrap_or_else(|_| panic!("/health took over 2 s at {:?}", start.elapsed())).0;
        assert_eq!(status, 200, "at {:?}", start.elapsed());
        probes += 1;
        rss_peak = rss_peak.max(d.status_kb("VmRSS"));
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let outcome = tokio::time::timeout(Duration::from_secs(60), task).await.expect("the abuse ends").expect("abuse");
    Watched { outcome, probes, rss_before, rss_peak }
}

/// An honest export after the abuse: the listener still serves.
async fn still_serves(addr: SocketAddr, first_id: u64) {
    let mut c = Client::connect(addr).await;
    let a = c.export(&spans_request(first_id, 3, 0).encode_to_vec(), true).await;
    assert_eq!(a.status, Some(OK), "{a:?}");
}

/// 8 connections send 64 requests each of about 1 MB, 32 at a time on each (the most a
/// connection may have open): 256 requests being read at once, 512 MB in all. What the daemon
/// reads at once is bounded (15 MB), as is its buffer (`-m 16`): the requests beyond either are
/// pushed back with a code clients retry, and nothing else. Meanwhile 200 segments sent on UDP
/// are all delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_streams_at_once_are_bounded_in_memory_and_pushed_back() {
    let Target { xray, otlp: _otlp, d, addr } = target(&["-m", "16"], &[]).await;
    let message = spans_request(1, 10, 100_000).encode_to_vec();
    assert!(message.len() > 1_000_000);
    let abuse = at_once(addr, 8, 64, framed(&message, false), &[]);
    let segments: Vec<String> = (0..200).map(segment).collect();
    for doc in &segments[..100] {
        d.send_doc(doc);
    }
    let watched = watch(&d, Duration::from_secs(2), abuse).await;
    for doc in &segments[100..] {
        d.send_doc(doc);
    }
    let answers = &watched.outcome;
    assert_eq!(answers.len(), 512);
    let count = |code| answers.iter().filter(|a| a.status == Some(code)).count();
    let (ok, unavailable, late) = (count(OK), count(UNAVAILABLE), count(DEADLINE_EXCEEDED));
    // Streams opened before the client heard the limit of 32 are refused by HTTP/2 itself
    // (REFUSED_STREAM: gRPC clients send them again on their own). A request whose message
    // shares its connection with 31 others may not arrive at 1 MB/s: DEADLINE_EXCEEDED, which
    // clients retry too.
    let refused_stream = |a: &&Answer| a.error.as_deref().is_some_and(|e| e.contains("refused stream"));
    let refused = answers.iter().filter(refused_stream).count();
    let pushed_back = [Some(OK), Some(UNAVAILABLE), Some(DEADLINE_EXCEEDED)];
    let other = answers.iter().find(|a| !pushed_back.contains(&a.status) && !refused_stream(a));
    assert_eq!(other.map(|a| format!("{a:?}")), None, "every request got OK, a retryable code or REFUSED_STREAM");
    assert!(ok > 0 && unavailable > 0, "{ok} OK, {unavailable} UNAVAILABLE");
    eprintln!(
        "figures: {ok} OK, {unavailable} UNAVAILABLE, {late} DEADLINE_EXCEEDED, {refused} REFUSED_STREAM; RSS {} KiB \
         before, +{} KiB at the peak; {} probes",
        watched.rss_before,
        watched.grown_kib(),
        watched.probes
    );
    // The buffer (16 MB), the messages being read (15 MB), one request inflated and decoded at
    // a time, the connections' receive windows (1 MB each), and the allocator's slack. Without
    // the in-flight bound it was 120 MB and growing with the streams.
    assert!(watched.grown_kib() < 80 * 1024, "RSS grew by {} KiB", watched.grown_kib());
    xray.wait_for_documents(200, WAIT).await;
    let m = d.metrics().await;
    assert_eq!(metric(&m, "xray_daemon_otlp_grpc_refused_total"), unavailable as f64);
    assert_eq!(metric(&m, "xray_daemon_spans_spillover_total"), 0.0);
    still_serves(addr, 10_000).await;
}

/// A request head of 1 MB (16 KiB is the limit) is refused by HTTP/2 itself, at once, and costs
/// nothing to keep: 20 of them on 4 connections.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_header_is_refused_at_once() {
    let Target { xray: _xray, otlp, d, addr } = target(&[], &[]).await;
    let abuse = async move {
        let huge = "h".repeat(1 << 20);
        let mut answers = Vec::new();
        for _ in 0..4 {
            let mut c = Client::connect(addr).await;
            for _ in 0..5 {
                let t0 = Instant::now();
                let body = framed(&spans_request(1, 1, 0).encode_to_vec(), false);
                answers.push((c.call(EXPORT, body, &[("x-huge", &huge)], true).await, t0.elapsed()));
            }
        }
        answers
    };
    let watched = watch(&d, Duration::from_secs(2), abuse).await;
    for (answer, took) in &watched.outcome {
        assert_ne!(answer.status, Some(OK), "{answer:?}");
        assert!(answer.http == 431 || answer.error.is_some(), "{answer:?}");
        assert!(*took < Duration::from_secs(2), "took {took:?}");
    }
    eprintln!("figures: huge headers: {:?}; RSS +{} KiB", watched.outcome[0].0, watched.grown_kib());
    assert!(watched.grown_kib() < 16 * 1024, "RSS grew by {} KiB", watched.grown_kib());
    assert!(otlp.received().is_empty());
    still_serves(addr, 1).await;
}

/// 20 gzip bombs at once (50 MB of zeros, 50 KB gzipped) on 4 connections: each is refused with
/// RESOURCE_EXHAUSTED within seconds, inflated no further than 5 MB.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gzip_bombs_are_refused_within_seconds_and_bounded_in_memory() {
    let bomb = framed(&gzip(&vec![0u8; 50_000_000]), true);
    let Target { xray: _xray, otlp: _otlp, d, addr } = target(&[], &[]).await;
    let abuse = async move {
        let t0 = Instant::now();
        (at_once(addr, 4, 5, bomb, &[("grpc-encoding", "gzip")]).await, t0.elapsed())
    };
    let watched = watch(&d, Duration::from_secs(1), abuse).await;
    let (answers, took) = &watched.outcome;
    assert_eq!(answers.len(), 20);
    assert!(answers.iter().all(|a| a.status == Some(RESOURCE_EXHAUSTED)), "{answers:?}");
    assert!(*took < Duration::from_secs(5), "took {took:?}");
    eprintln!("figures: 20 bombs refused in {took:?}; RSS +{} KiB", watched.grown_kib());
    assert!(watched.grown_kib() < 32 * 1024, "RSS grew by {} KiB", watched.grown_kib());
    still_serves(addr, 1).await;
}

/// 200 connections that send an HTTP/1 request, or bytes that are no HTTP at all, instead of the
/// HTTP/2 preface: each is closed at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_garbage_preface_is_closed_at_once() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Target { xray: _xray, otlp: _otlp, d, addr } = target(&[], &[]).await;
    let abuse = async move {
        let mut slowest = Duration::ZERO;
        for i in 0..200u32 {
            let garbage: Vec<u8> = match i % 3 {
                0 => b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
                1 => b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\xff\xff\xff\xff\xff\xff\xff\xff\xff".to_vec(),
                _ => (0..4096).map(|b| (b * 7 + i) as u8).collect(),
            };
            let mut tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
            let t0 = Instant::now();
            let _ = tcp.write_all(&garbage).await;
            let mut sink = Vec::new();
            let read = tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut sink)).await;
            assert!(read.is_ok(), "connection {i} was not closed");
            slowest = slowest.max(t0.elapsed());
        }
        slowest
    };
    let watched = watch(&d, Duration::from_secs(1), abuse).await;
    eprintln!("figures: the slowest garbage connection closed in {:?}", watched.outcome);
    assert!(watched.outcome < Duration::from_secs(1), "{:?}", watched.outcome);
    still_serves(addr, 1).await;
}

/// 300 connections that complete the HTTP/2 handshake and then send nothing, and 20 that do not
/// even send the preface, against a limit of 200: the oldest are closed to make room, an honest
/// client still gets in while they are held, and every one is closed once it has been idle for
/// the client timeout (here 3 s; the silent ones a second later, when their GOAWAY cannot go).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_are_shed_at_the_limit_and_closed_when_idle() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    const IDLE: usize = 300;
    let env = [("XRAY_DAEMON_MAX_CONNECTIONS", "200"), ("XRAY_DAEMON_PROXY_CLIENT_TIMEOUT", "3s")];
    let Target { xray: _xray, otlp: _otlp, d, addr } = target(&[], &env).await;
    let closed = Arc::new(AtomicUsize::new(0));
    let counted = closed.clone();
    let abuse = async move {
        let start = Instant::now();
        let mut held = Vec::new();
        for _ in 0..IDLE {
            let counted = counted.clone();
            let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
            held.push(tokio::spawn(async move {
                // The handshake may fail when the connection was shed before it completed.
                if let Ok((send, connection)) = h2::client::handshake(tcp).await {
                    let _ = connection.await;
                    drop(send);
                }
                counted.fetch_add(1, Ordering::SeqCst);
                start.elapsed()
            }));
        }
        // And 20 that connect and send nothing, not even the preface.
        for _ in 0..20 {
            let counted = counted.clone();
            let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
            held.push(tokio::spawn(async move {
                use tokio::io::AsyncReadExt;
                let mut tcp = tcp;
                let _ = tcp.read_to_end(&mut Vec::new()).await;
                counted.fetch_add(1, Ordering::SeqCst);
                start.elapsed()
            }));
        }
        // An honest client while they are held.
        still_serves(addr, 1).await;
        let mut closed_at = Vec::new();
        for task in held {
            closed_at.push(tokio::time::timeout(Duration::from_secs(20), task).await.expect("closed").unwrap());
        }
        closed_at
    };
    let watched = watch(&d, Duration::from_secs(1), abuse).await;
    let latest = watched.outcome.iter().max().copied().unwrap_or_default();
    eprintln!(
        "figures: {IDLE} idle HTTP/2 connections, all closed by {latest:?}; RSS {} KiB before, +{} KiB at the peak",
        watched.rss_before,
        watched.grown_kib()
    );
    assert_eq!(closed.load(Ordering::SeqCst), IDLE + 20);
    assert!(latest < Duration::from_secs(10), "the last idle connection was closed at {latest:?}");
    assert!(watched.grown_kib() < 200 * 64, "RSS grew by {} KiB", watched.grown_kib());
    d.wait_for_log(|l| l.contains("otlp grpc server has 200 connections open, its limit"), WAIT)
        .await
        .unwrap_or_else(|| panic!("no line about the limit; log:\n{}", d.log_text()));
    let m = d.metrics().await;
    assert!(metric(&m, "xray_daemon_tcp_connections_limited_total{action=\"shed\"}") >= 100.0);
}

/// `per_connection` calls of `body` (with the headers `extra`) at once on each of `connections`
/// connections, each call on a task of its own; their answers, in order of arrival.
async fn at_once(
    addr: SocketAddr,
    connections: usize,
    per_connection: usize,
    body: Vec<u8>,
    extra: &'static [(&'static str, &'static str)],
) -> Vec<Answer> {
    let mut calls = tokio::task::JoinSet::new();
    for _ in 0..connections {
        let c = Client::connect(addr).await;
        for _ in 0..per_connection {
            let (mut c, body) = (c.clone(), body.clone());
            calls.spawn(async move { c.call(EXPORT, body, extra, true).await });
        }
    }
    let mut answers = Vec::new();
    while let Some(answer) = calls.join_next().await {
        answers.push(answer.expect("a call's task"));
    }
    answers
}
