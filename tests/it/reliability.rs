//! Reliability: backend outages, throttling, permanent rejects, credential rotation and UDP
//! floods, through the real binary and the fault-injecting fake X-Ray.
//!
//! The outage and flood scenarios are functions with their length as a parameter: `make test`
//! runs short versions here, `make soak` runs the long ones (tests/it/soak.rs) on the release
//! build. Each prints one `figures:` line (sent, delivered, spilled, rejected, peak RSS).

use crate::daemon::{self, http, padded_segment, segment, Summary};
use crate::fake_creds::{FakeCreds, AUTH_TOKEN};
use crate::fake_xray::{Credentials, FakeXray, Fault};
use crate::proxy::metric;
use std::collections::BTreeSet;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(10);

fn fake() -> FakeXray {
    FakeXray::start(Credentials::new(daemon::ACCESS_KEY, daemon::SECRET_KEY))
}

/// A sender on its own thread: `make(i)` for i = 0, 1, … at `per_sec` (0: as fast as it can),
/// until stopped. Returns how many datagrams it sent.
pub struct Sender {
    stop: Arc<AtomicBool>,
    handle: JoinHandle<usize>,
}

impl Sender {
    /// Sends `make(first)`, `make(first + 1)`, … (so senders with their own `first` send
    /// distinct documents) until stopped; `per_sec` 0 means as fast as it can.
    pub fn start(to: SocketAddr, per_sec: u32, first: usize, make: fn(usize) -> String) -> Sender {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let handle = std::thread::spawn(move || {
            let socket = UdpSocket::bind("127.0.0.1:0").expect("bind sender");
            let t0 = Instant::now();
            let mut i = 0;
            while !flag.load(Ordering::Relaxed) {
                let datagram = format!("{}\n{}", daemon::HEADER, make(first + i));
                if socket.send_to(datagram.as_bytes(), to).is_ok() {
                    i += 1;
                }
                if per_sec > 0 && i % 5 == 0 {
                    // Five at a time, on a schedule that does not drift.
                    let due = t0 + Duration::from_secs_f64(i as f64 / f64::from(per_sec));
                    if let Some(wait) = due.checked_duration_since(Instant::now()) {
                        std::thread::sleep(wait);
                    }
                }
            }
            i
        });
        Sender { stop, handle }
    }

    pub fn stop(self) -> usize {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.join().expect("sender thread")
    }
}

/// Waits until the fake holds at least `n` documents; returns them as a set and the raw count.
async fn wait_for_accepted(fake: &FakeXray, n: usize, timeout: Duration) -> (BTreeSet<String>, usize) {
    let deadline = Instant::now() + timeout;
    loop {
        let got = fake.accepted_documents();
        if got.len() >= n || Instant::now() > deadline {
            let count = got.len();
            return (got.into_iter().collect(), count);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The figures a scenario reports.
#[derive(Debug)]
pub struct Figures {
    pub sent: usize,
    pub delivered: usize,
    pub summary: Summary,
    pub peak_rss_kb: u64,
}

impl Figures {
    fn print(&self, name: &str) {
        let s = &self.summary;
        println!(
            "figures: {name}: sent {} received {} delivered {} spilled {} rejected {} not-delivered {} peak-RSS {} KiB",
            self.sent, s.received, self.delivered, s.spillover, s.rejected, s.undelivered, self.peak_rss_kb
        );
    }
}

/// X-Ray fails for `3 × phase` while 500 segments/s arrive: first 503s, then refused
/// connections, then requests that hang past the upload timeout; then it recovers.
/// Asserts: every segment that fit is delivered exactly once, those that did not are counted
/// as spillover and are the oldest, CPU stays low (no retry storm), the backoff is in the log.
pub async fn outage_scenario(name: &str, phase: Duration, buffer_mb: u32, doc: fn(usize) -> String) -> Figures {
    let fake = fake();
    let mut d = daemon::against(&fake)
        .arg("-m")
        .arg(buffer_mb.to_string())
        // Long enough that a slow answer from the fake on a busy machine is not taken for a
        // hang (a timed-out call the fake did process would be sent twice, correctly so).
        .env("XRAY_DAEMON_UPLOAD_TIMEOUT", "5s")
        .spawn()
        .await;
    let sender = Sender::start(d.udp, 500, 0, doc);
    tokio::time::sleep(Duration::from_secs(1)).await;

    let (cpu0, t0) = (d.cpu_seconds(), Instant::now());
    fake.set_mode(Fault::Status(503, "ServiceUnavailableException"));
    let calls0 = fake.put_calls();
    tokio::time::sleep(phase).await;
    let calls_during_503 = fake.put_calls() - calls0;
    fake.stop().await;
    tokio::time::sleep(phase).await;
    fake.restart().expect("rebind the fake's port");
    fake.set_mode(Fault::Hang);
    tokio::time::sleep(phase).await;
    let (cpu, outage) = (d.cpu_seconds() - cpu0, t0.elapsed());
    fake.clear_mode();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let sent = sender.stop();

    let spilled = metric(&d.metrics().await, "xray_daemon_segments_spillover_total") as usize;
    let (got, raw_count) = wait_for_accepted(&fake, sent - spilled, Duration::from_secs(90)).await;
    let m = d.metrics().await;
    for class in ["server", "connection", "timeout"] {
        let n =
            metric(&m, &format!("xray_daemon_backend_errors_total{{api=\"put_trace_segments\",class=\"{class}\"}}"));
        assert!(n > 0.0, "{class} errors are counted: {n}");
    }
    let peak_rss_kb = d.status_kb("VmHWM");
    let (status, _) = d.terminate(Duration::from_secs(15)).await;
    assert!(status.success());
    let s = d.summary();
    let figures = Figures { sent, delivered: got.len(), summary: s, peak_rss_kb };
    figures.print(name);
    println!(
        "figures: {name}: outage {:.1} s, daemon CPU {cpu:.2} s, PutTraceSegments calls during {:.0} s of 503s: {calls_during_503}",
        outage.as_secs_f64(),
        phase.as_secs_f64()
    );

    let mut seen = BTreeSet::new();
    let twice: Vec<String> =
        fake.accepted_documents().into_iter().filter(|doc| !seen.insert(doc.clone())).take(3).collect();
    assert_eq!(raw_count, got.len(), "nothing is delivered twice: {twice:?}");
    assert_eq!(s.received, sent as u64, "no datagram lost before the daemon at 500/s");
    assert_eq!((s.rejected, s.undelivered), (0, 0), "{s:?}");
    assert_eq!(s.sent as usize, got.len(), "{s:?}");
    assert_eq!(got.len() + s.spillover as usize, sent, "delivered + spilled = sent: {s:?}");
    let missing: Vec<usize> = (0..sent).filter(|&i| !got.contains(&doc(i))).collect();
    assert_eq!(missing.len(), s.spillover as usize);
    // Oldest first: whatever was dropped is older than everything that arrived in the last
    // half buffer's worth of segments.
    let per_doc = xray_daemon::pipeline::buffer::cost(&doc(sent).into());
    let newest = (buffer_mb as usize * 1024 * 1024 / 2) / per_doc;
    if let Some(&last_missing) = missing.last() {
        assert!(
            last_missing < sent.saturating_sub(newest),
            "dropped #{last_missing} of {sent}, newer than the newest {newest}"
        );
    }
    // No retry storm: a few calls a second at most while X-Ray answers 503 at once, and the
    // daemon stays mostly idle (a storm would keep a core busy).
    assert!(calls_during_503 as f64 <= 10.0 * phase.as_secs_f64() + 20.0, "{calls_during_503} calls in {phase:?}");
    assert!(cpu < 0.5 * outage.as_secs_f64(), "daemon used {cpu:.2} s of CPU in {outage:?}");
    let backoffs: Vec<f64> = d
        .logs()
        .iter()
        .filter(|l| l.contains("[Warn] Sending segment batch failed with:"))
        .filter_map(|l| l.split(" in ").last()?.split(" seconds").next()?.parse().ok())
        .collect();
    assert!(backoffs.iter().any(|&b| b >= 1.0), "the backoff grows past a second and is logged: {backoffs:?}");
    figures
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_of_503s_refusals_and_hangs_loses_nothing_that_fits_in_the_buffer() {
    outage_scenario("outage-short", Duration::from_secs(4), 16, segment).await;
}

/// Floods the UDP port from `senders` threads as fast as they can for `length` against an
/// X-Ray that takes `delay` per call (at least ten times more than it can drain), while
/// probing `/health`. Asserts /health keeps answering and received = sent + spillover +
/// rejected + still buffered; returns the figures (peak RSS included).
pub async fn flood_scenario(name: &str, length: Duration, buffer_mb: u32, senders: usize) -> Figures {
    let fake = fake();
    fake.set_mode(Fault::Delay(Duration::from_millis(300)));
    let mut d = daemon::against(&fake)
        .arg("-m")
        .arg(buffer_mb.to_string())
        .env("XRAY_DAEMON_UPLOAD_TIMEOUT", "20s")
        .env("XRAY_DAEMON_SHUTDOWN_TIMEOUT", "30s")
        .spawn()
        .await;
    let idle_rss = d.status_kb("VmRSS");
    // Each sender its own ids: the fake X-Ray counts distinct documents.
    let flood: Vec<Sender> =
        (0..senders).map(|k| Sender::start(d.udp, 0, k << 32, |i| padded_segment(i, 700))).collect();
    let t0 = Instant::now();
    let (mut probes, mut slowest) = (0, Duration::ZERO);
    while t0.elapsed() < length {
        let p0 = Instant::now();
        let (status, _, body) = http(d.tcp(), "GET", "/health", &[], "").await;
        assert_eq!((status, body.as_str()), (200, "ok\n"), "health during the flood");
        slowest = slowest.max(p0.elapsed());
        probes += 1;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let sent: usize = flood.into_iter().map(Sender::stop).sum();
    // Mid-run, the counters already add up with what is still buffered.
    let m = d.metrics().await;
    let received = metric(&m, "xray_daemon_segments_received_total");
    let accounted = metric(&m, "xray_daemon_segments_sent_total")
        + metric(&m, "xray_daemon_segments_spillover_total")
        + metric(&m, "xray_daemon_segments_rejected_total{reason=\"xray\"}")
        + metric(&m, "xray_daemon_buffer_segments{state=\"queued\"}")
        + metric(&m, "xray_daemon_buffer_segments{state=\"in_flight\"}");
    // The reader may take a few more between the reads of two counters; never fewer.
    assert!((received - accounted).abs() <= 64.0, "received {received} vs accounted {accounted}\n{m}");
    fake.clear_mode();
    let peak_rss_kb = d.status_kb("VmHWM");
    let (anon_kb, file_kb) = (d.status_kb("RssAnon"), d.status_kb("RssFile"));
    let (status, _) = d.terminate(Duration::from_secs(40)).await;
    assert!(status.success());
    let s = d.summary();
    let delivered: BTreeSet<String> = fake.accepted_documents().into_iter().collect();
    let figures = Figures { sent, delivered: delivered.len(), summary: s, peak_rss_kb };
    figures.print(name);
    println!(
        "figures: {name}: {:.0} datagrams/s offered for {:.0} s, kernel drops {}, idle RSS {idle_rss} KiB, at the end {anon_kb} KiB anonymous + {file_kb} KiB file-backed, {probes} /health probes, slowest {slowest:?}",
        sent as f64 / length.as_secs_f64(),
        length.as_secs_f64(),
        sent as u64 - s.received
    );
    assert_eq!(s.received, s.sent + s.spillover + s.rejected + s.undelivered, "{s:?}");
    // Calls cut off by the shutdown deadline count as not delivered, though the fake X-Ray may
    // have taken them just before: never fewer than `sent`, never more than sent + cut off.
    let d_count = delivered.len() as u64;
    assert!(s.sent <= d_count && d_count <= s.sent + s.undelivered, "delivered {d_count}: {s:?}");
    assert!(s.spillover > 0, "a 10x overload must spill: {s:?}");
    assert!(s.received <= sent as u64);
    figures
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_udp_flood_keeps_health_answering_and_the_counters_add_up() {
    flood_scenario("flood-short", Duration::from_secs(3), 3, 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sustained_throttling_and_throttled_entries_are_retried_until_delivered() {
    let fake = fake();
    fake.set_mode(Fault::Throttle);
    let mut d = daemon::against(&fake).spawn().await;
    let docs: Vec<String> = (0..400).map(segment).collect();
    for (i, doc) in docs[..200].iter().enumerate() {
        d.send_doc(doc);
        if i % 50 == 49 {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    fake.set_mode(Fault::Unprocessed { count: 10, code: "ThrottledException" });
    for doc in &docs[200..] {
        d.send_doc(doc);
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    fake.clear_mode();
    let (got, raw) = wait_for_accepted(&fake, docs.len(), Duration::from_secs(30)).await;
    assert_eq!(got, docs.iter().cloned().collect::<BTreeSet<_>>());
    assert_eq!(raw, docs.len(), "exactly once");
    let m = d.metrics().await;
    assert!(metric(&m, "xray_daemon_backend_retries_total{api=\"put_trace_segments\"}") > 0.0);
    assert!(metric(&m, "xray_daemon_segments_unprocessed_total") >= 10.0);
    let throttled = "xray_daemon_backend_errors_total{api=\"put_trace_segments\",class=\"throttled\"}";
    assert!(metric(&m, throttled) > 0.0, "429s are counted");
    let logs = d.log_text();
    assert!(logs.contains("ThrottlingException") && logs.contains("Retrying"), "{logs}");
    assert!(logs.contains("ThrottledException") && logs.contains("it will be sent again"), "{logs}");
    d.terminate(WAIT).await;
    let s = d.summary();
    assert_eq!((s.sent, s.rejected, s.spillover), (400, 0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_permanently_rejected_batch_is_counted_logged_once_and_not_retried() {
    let fake = fake();
    fake.push_faults([Fault::Status(400, "InvalidRequestException")]);
    let mut d = daemon::against(&fake).spawn().await;
    for i in 0..3 {
        d.send_doc(&segment(i));
    }
    let line = d
        .wait_for_log(|l| l.contains("[Error] Sending segment batch failed with:"), WAIT)
        .await
        .expect("the reject is logged");
    assert!(line.contains("InvalidRequestException") && line.contains("not retryable: 3 segments rejected"), "{line}");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    d.send_doc(&segment(3));
    fake.wait_for_documents(1, WAIT).await;
    d.terminate(WAIT).await;
    assert_eq!(fake.put_calls(), 2, "the rejected batch was sent once");
    let s = d.summary();
    assert_eq!((s.sent, s.rejected), (1, 3));
    assert_eq!(d.logs().iter().filter(|l| l.contains("[Error] Sending segment batch failed")).count(), 1);
}

/// Keys handed out by the fake container-credentials endpoint, with session tokens.
pub fn rotating_keys() -> (Credentials, Credentials) {
    (
        Credentials::new("ASIAROTATEDKEY00001", "rotated-secret-one/abcdefABCDEF0123456789")
            .with_session_token("IQoJb3JpZ2luX2VjEKT1-session-one"),
        Credentials::new("ASIAROTATEDKEY00002", "rotated-secret-two/abcdefABCDEF0123456789")
            .with_session_token("IQoJb3JpZ2luX2VjEKT2-session-two"),
    )
}

/// The daemon with credentials from `creds` only (no keys in its environment).
pub fn with_container_credentials(fake: &FakeXray, creds: &FakeCreds) -> daemon::Builder {
    daemon::against(fake)
        .env("AWS_ACCESS_KEY_ID", "")
        .env("AWS_SECRET_ACCESS_KEY", "")
        .env("AWS_CONTAINER_CREDENTIALS_FULL_URI", creds.url.clone())
        .env("AWS_CONTAINER_AUTHORIZATION_TOKEN", AUTH_TOKEN)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_that_expire_and_rotate_mid_run_lose_no_segment() {
    let (one, two) = rotating_keys();
    let fake = FakeXray::start(one.clone());
    // Valid 15 s from each answer: the SDK refreshes 10-15 s before expiry, so every few seconds.
    let creds = FakeCreds::start(one.clone(), Duration::from_secs(15)).await;
    let mut d = with_container_credentials(&fake, &creds).spawn().await;
    let docs: Vec<String> = (0..300).map(segment).collect();
    for doc in &docs[..50] {
        d.send_doc(doc);
    }
    fake.wait_for_documents(50, WAIT).await;
    // Rotate: the old keys stop working at X-Ray at the same moment.
    creds.rotate(two.clone());
    fake.set_credentials(two.clone());
    for chunk in docs[50..].chunks(25) {
        for doc in chunk {
            d.send_doc(doc);
        }
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
    let (got, raw) = wait_for_accepted(&fake, docs.len(), Duration::from_secs(40)).await;
    assert_eq!(got.len(), docs.len(), "every segment is delivered; log:\n{}", d.log_text());
    assert_eq!(raw, docs.len(), "exactly once");
    let puts = fake.requests_to("/TraceSegments");
    assert!(puts
        .iter()
        .any(|r| r.status == 200 && r.header("x-amz-security-token") == Some("IQoJb3JpZ2luX2VjEKT2-session-two")));
    // The proxy signs with the refreshed keys too.
    let (status, _, body) = http(d.tcp(), "POST", "/GetSamplingRules", &[], "{}").await;
    assert_eq!(status, 200, "{body}");
    let hits = creds.hits();
    assert!(hits.len() >= 2, "credentials were fetched again: {hits:?}");
    assert!(hits.iter().all(|h| h.as_deref() == Some(AUTH_TOKEN)), "{hits:?}");
    d.terminate(WAIT).await;
    let s = d.summary();
    assert_eq!((s.sent, s.rejected, s.spillover, s.undelivered), (300, 0, 0, 0));
}

/// Every case of section 1 of the behaviour reference, plus truncated UTF-8, a NUL in the
/// header, the largest datagrams over IPv4 and IPv6, and a header without a body, through
/// the binary: forwarded byte for byte or rejected and counted, and the daemon still alive.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_malformed_datagram_is_rejected_or_forwarded_as_specified() {
    let fake = fake();
    let mut d = daemon::against(&fake).spawn().await;
    let h = daemon::HEADER;
    let doc = |i: usize| segment(1000 + i);
    // (datagram, the document forwarded, or None when rejected)
    let mut cases: Vec<(Vec<u8>, Option<String>)> = vec![
        (format!("{{\"format\":\"JSON\",\"version\":1}}\n{}", doc(0)).into(), Some(doc(0))),
        (format!("{{\"format\":\"jSoN\",\"version\":1}}\n{}", doc(1)).into(), Some(doc(1))),
        (format!("{{\"version\":1,\"format\":\"json\",\"x\":true}}\n{}", doc(2)).into(), Some(doc(2))),
        (format!("{{\"format\":\"json\",\"version\":2}}\n{}", doc(3)).into(), None),
        (format!("{{\"format\":\"json\",\"version\":\"1\"}}\n{}", doc(4)).into(), None),
        (format!("{{\"format\":\"xml\",\"version\":1}}\n{}", doc(5)).into(), None),
        (format!("\n{}", doc(6)).into(), None),
        (format!("garbage\n{}", doc(7)).into(), None),
        (format!("{h}\r\n{}", doc(8)).into(), Some(doc(8))),
        (format!("{{\"FORMAT\":\"json\",\"Version\":1}}\n{}", doc(9)).into(), Some(doc(9))),
        (format!("  \t{h}\n{}", doc(10)).into(), Some(doc(10))),
        (format!("{{\"format\":\"json\",\"version\":1.0}}\n{}", doc(11)).into(), None),
        (format!("{{\"format\":\"json\",\"version\":1,\"version\":2}}\n{}", doc(12)).into(), None),
        (format!("{{\"format\":\"json\",\"version\":2,\"version\":1}}\n{}", doc(13)).into(), Some(doc(13))),
        (format!("{h} x\n{}", doc(14)).into(), None),
        (format!("\u{feff}{h}\n{}", doc(15)).into(), None),
        (format!("{h}\n\n{}", doc(16)).into(), Some(format!("\n{}", doc(16)))),
        (format!("{h}\nnot json at all {}", 17).into(), Some("not json at all 17".to_owned())),
        (format!("{h}\n{}\n{}", doc(18), doc(19)).into(), Some(format!("{}\n{}", doc(18), doc(19)))),
        (doc(20).into(), None),
        (format!("{h}\n").into(), None),
        (h.as_bytes().to_vec(), None),
        (format!("{{\"format\":\"json\",\0\"version\":1}}\n{}", doc(23)).into(), None),
        (format!("{{\"format\":\"json\\u0000\",\"version\":1}}\n{}", doc(24)).into(), None),
        ([format!("{h}\n{{\"name\":\"caf").into_bytes(), vec![0xC3]].concat(), None),
        ([format!("{h}\n{{\"name\":\"").into_bytes(), vec![0xF0, 0x9F, 0x98], b"\"}".to_vec()].concat(), None),
        ([format!("{h}\n{{\"x\":\"").into_bytes(), vec![0xFF, 0xFE], b"\"}".to_vec()].concat(), None),
    ];
    let largest = padded_segment(27, segment_body_len(65_507));
    cases.push((format!("{h}\n{largest}").into(), Some(largest.clone())));
    cases.push((
        format!("{h}\n{}", padded_segment(28, 65_400 - h.len() - 1)).into(),
        Some(padded_segment(28, 65_400 - h.len() - 1)),
    ));
    for (datagram, _) in &cases {
        d.send(datagram);
    }
    assert_eq!(format!("{h}\n{largest}").len(), 65_507, "the largest IPv4 UDP payload");
    // A zero-length datagram is read and ignored: not counted.
    d.send(b"");
    let expected: BTreeSet<String> = cases.iter().filter_map(|(_, fwd)| fwd.clone()).collect();
    let rejected = cases.iter().filter(|(_, fwd)| fwd.is_none()).count() as u64;
    let (got, raw) = wait_for_accepted(&fake, expected.len(), WAIT).await;
    assert_eq!(got, expected);
    assert_eq!(raw, expected.len());

    // Over IPv6 a datagram may be 65,527 bytes: still read whole.
    let fake6 = self::fake();
    let mut d6 = daemon::against(&fake6).arg("-b").arg("[::1]:0").spawn().await;
    let body6 = padded_segment(29, 65_527 - h.len() - 1);
    let dg6 = format!("{h}\n{body6}");
    assert_eq!(dg6.len(), 65_527);
    d6.send(dg6.as_bytes());
    assert_eq!(fake6.wait_for_documents(1, WAIT).await, vec![body6]);

    let (status, _, body) = http(d.tcp(), "GET", "/health", &[], "").await;
    assert_eq!((status, body.as_str()), (200, "ok\n"), "still alive after every case");
    for daemon in [&mut d, &mut d6] {
        let (status, _) = daemon.terminate(WAIT).await;
        assert!(status.success(), "no panic: {status:?}");
        assert!(!daemon.log_text().contains("panicked"), "{}", daemon.log_text());
    }
    let s = d.summary();
    assert_eq!((s.received, s.sent, s.rejected), (cases.len() as u64, expected.len() as u64, rejected), "{s:?}");
}

/// The size to ask `padded_segment` for so that header + newline + body is `total` bytes.
fn segment_body_len(total: usize) -> usize {
    total - daemon::HEADER.len() - 1
}
