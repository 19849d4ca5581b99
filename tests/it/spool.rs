//! The disk spool (`XRAY_DAEMON_SPOOL_DIR`) through real processes, the fault-injecting fake
//! X-Ray and real signals: a rollout during an outage, a `kill -9`, an outage ten times the
//! memory budget (under and over the disk cap), spans as well as segments, damaged files, a
//! read-only directory, a full disk, two daemons on one directory, and uploads that hang or are
//! slow past the spool interval (copied to disk meanwhile; not sent again once accepted).
//!
//! The read-only directory and the full disk are tmpfs mounts made by the test, so those two
//! need root (CI runs as root); without it they say so and pass.

use crate::daemon::{self, http, padded_segment, segment, Builder, Daemon};
use crate::fake_otlp::{t1s_datagram, FakeOtlp};
use crate::fake_xray::{Credentials, FakeXray, Fault};
use crate::proxy::metric;
use crate::reliability::Sender;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

fn fake() -> FakeXray {
    FakeXray::start(Credentials::new(daemon::ACCESS_KEY, daemon::SECRET_KEY))
}

/// A fresh directory for one test's spool.
pub fn spool_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("xray-spool-it-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

pub fn with_spool(fake: &FakeXray, dir: &Path) -> Builder {
    daemon::against(fake).env("XRAY_DAEMON_SPOOL_DIR", dir.display().to_string())
}

async fn read_metric(d: &Daemon, name: &str) -> f64 {
    metric(&d.metrics().await, name)
}

/// Waits until `name` reaches `at_least`; returns its last value.
async fn wait_metric(d: &Daemon, name: &str, at_least: f64, timeout: Duration) -> f64 {
    let deadline = Instant::now() + timeout;
    loop {
        let v = read_metric(d, name).await;
        if v >= at_least || Instant::now() > deadline {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Sends `make(i)` for i in `range`, in bursts of 100 every 20 ms (5,000/s), so the kernel's
/// receive buffer never overflows.
async fn send_paced(d: &Daemon, range: std::ops::Range<usize>, make: impl Fn(usize) -> String) {
    for i in range {
        d.send_doc(&make(i));
        if i % 100 == 99 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Waits until the fake holds at least `n` documents, then a little longer for any extra.
async fn accepted(fake: &FakeXray, n: usize, timeout: Duration) -> Vec<String> {
    let deadline = Instant::now() + timeout;
    while fake.accepted_documents().len() < n && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    fake.accepted_documents()
}

fn spool_files(dir: &Path, signal: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir.join(signal))
        .map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    files.retain(|p| p.extension().is_some_and(|e| e == "log"));
    files.sort();
    files
}

/// The rollout case: X-Ray unreachable, 5,000 segments in, SIGTERM, a second daemon on the same
/// directory with X-Ray back. Returns the directory and the fake for the tests that go on from
/// there.
async fn buffered_then_terminated(name: &str, n: usize) -> (PathBuf, FakeXray) {
    let dir = spool_dir(name);
    let fake = fake();
    fake.stop().await;
    let mut d = with_spool(&fake, &dir).spawn().await;
    send_paced(&d, 0..n, segment).await;
    let got = wait_metric(&d, "xray_daemon_segments_received_total", n as f64, Duration::from_secs(10)).await;
    assert_eq!(got as usize, n, "every datagram reached the daemon");
    let (status, took) = d.terminate(Duration::from_secs(15)).await;
    assert!(status.success(), "exit {status:?}; log:\n{}", d.log_text());
    assert!(took < Duration::from_secs(6), "the shutdown keeps its 5 s deadline: {took:?}");
    let s = d.summary();
    assert_eq!((s.spillover, s.undelivered), (0, 0), "nothing dropped or left undelivered: {s:?}");
    assert!(!spool_files(&dir, "segments").is_empty(), "the segments are on disk");
    fake.restart().expect("rebind the fake's port");
    (dir, fake)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollout_during_an_outage_delivers_every_segment_exactly_once_after_the_restart() {
    let n = 5000;
    let (dir, fake) = buffered_then_terminated("rollout", n).await;
    let mut d = with_spool(&fake, &dir).spawn().await;
    assert!(
        d.logs().iter().any(|l| l.contains(&format!("Found {n} segments from an earlier run in the spool"))),
        "{}",
        d.log_text()
    );
    // Ready while the spool drains.
    let (status, _, body) = http(d.tcp(), "GET", "/ready", &[], "").await;
    assert_eq!(status, 200, "{body}");
    let got = accepted(&fake, n, Duration::from_secs(30)).await;
    let unique: BTreeSet<&String> = got.iter().collect();
    let expected: BTreeSet<String> = (0..n).map(segment).collect();
    assert_eq!(got.len(), n, "exactly once: {} documents, {} distinct", got.len(), unique.len());
    assert!(expected.iter().all(|doc| unique.contains(doc)), "every segment arrived");
    assert!(read_metric(&d, "xray_daemon_spool_replayed_total{signal=\"segments\"}").await >= n as f64);
    let bytes = wait_metric(&d, "xray_daemon_spool_bytes{signal=\"segments\"}", 0.0, Duration::from_secs(1)).await;
    assert_eq!(bytes, 0.0, "the delivered files are deleted");
    let (status, _) = d.terminate(Duration::from_secs(10)).await;
    assert!(status.success());

    // A clean restart sends nothing again.
    let mut again = with_spool(&fake, &dir).spawn().await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(fake.accepted_documents().len(), n, "nothing is sent twice after a clean restart");
    again.terminate(Duration::from_secs(10)).await;
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_kill_9_everything_older_than_the_spool_interval_arrives() {
    let dir = spool_dir("crash");
    let fake = fake();
    fake.set_mode(Fault::Status(503, "ServiceUnavailableException"));
    let mut d = with_spool(&fake, &dir).spawn().await;
    let t0 = Instant::now();
    let sender = Sender::start(d.udp, 500, 0, segment);
    tokio::time::sleep(Duration::from_secs(4)).await;
    d.signal(libc::SIGKILL);
    let killed = t0.elapsed();
    let sent = sender.stop();
    d.wait_exit(Duration::from_secs(5)).await.expect("killed");
    assert!(fake.accepted_documents().is_empty(), "X-Ray accepted nothing before the crash");

    fake.clear_mode();
    let mut d = with_spool(&fake, &dir).spawn().await;
    // Segment i left the sender about i/500 s after t0; those older than the 1 s interval
    // (with half a second for a busy machine) when the daemon died must all arrive.
    let must = ((killed.as_secs_f64() - 1.5) * 500.0) as usize;
    assert!(must > 1000 && must < sent, "{must} of {sent}");
    let got = accepted(&fake, must, Duration::from_secs(30)).await;
    let unique: BTreeSet<&String> = got.iter().collect();
    let missing: Vec<usize> = (0..must).filter(|&i| !unique.contains(&segment(i))).collect();
    assert!(
        missing.is_empty(),
        "{} of the {must} older segments missing, first {:?}",
        missing.len(),
        &missing[..missing.len().min(5)]
    );
    // Only uploads in flight at the crash may repeat: a few batches of 50 at most.
    assert!(got.len() - unique.len() <= 8 * 50, "{} repeated", got.len() - unique.len());
    println!(
        "figures: crash: sent {sent}, older than the interval {must}, delivered {}, repeated {}",
        unique.len(),
        got.len() - unique.len()
    );
    d.terminate(Duration::from_secs(10)).await;
    let _ = std::fs::remove_dir_all(dir);
}

/// 30 MB of 1 KB segments against a 3 MB buffer during an outage.
async fn long_outage(name: &str, cap_mb: Option<u32>) -> (usize, Vec<String>, Daemon, FakeXray, PathBuf) {
    let dir = spool_dir(name);
    let fake = fake();
    fake.stop().await;
    let mut b = with_spool(&fake, &dir).arg("-m").arg("3").env("XRAY_DAEMON_SPOOL_REPLAY_RATE_KB", "50000");
    if let Some(mb) = cap_mb {
        b = b.env("XRAY_DAEMON_SPOOL_MAX_MB", mb.to_string());
    }
    let d = b.spawn().await;
    let n = 30_000;
    send_paced(&d, 0..n, |i| padded_segment(i, 1000)).await;
    let received = wait_metric(&d, "xray_daemon_segments_received_total", n as f64, Duration::from_secs(10)).await;
    assert_eq!(received as usize, n);
    assert_eq!(read_metric(&d, "xray_daemon_segments_spillover_total").await, 0.0, "nothing dropped from memory");
    fake.restart().expect("rebind the fake's port");
    (n, Vec::new(), d, fake, dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_ten_times_the_memory_budget_is_delivered_from_disk() {
    let (n, _, mut d, fake, dir) = long_outage("outage", None).await;
    let got = accepted(&fake, n, Duration::from_secs(60)).await;
    let unique: BTreeSet<&String> = got.iter().collect();
    assert_eq!(unique.len(), n, "all {n} arrived ({} calls)", fake.put_calls());
    assert_eq!(got.len(), n, "each once");
    assert!(read_metric(&d, "xray_daemon_spool_written_total{signal=\"segments\"}").await >= 27_000.0);
    let peak = d.status_kb("VmHWM");
    println!("figures: outage x10: {n} segments of 1 KB, 3 MB buffer, all delivered, peak RSS {peak} KiB");
    d.terminate(Duration::from_secs(10)).await;
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn above_the_disk_cap_the_oldest_are_dropped_and_counted() {
    let (n, _, mut d, fake, dir) = long_outage("cap", Some(8)).await;
    let dropped_metric = "xray_daemon_spool_dropped_total{signal=\"segments\",reason=\"full\"}";
    let drained = Instant::now() + Duration::from_secs(60);
    while read_metric(&d, "xray_daemon_spool_bytes{signal=\"segments\"}").await > 0.0 && Instant::now() < drained {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let dropped = read_metric(&d, dropped_metric).await as usize;
    assert!(dropped > 10_000, "about 22 MB over an 8 MB cap: {dropped}");
    let got = accepted(&fake, n - dropped, Duration::from_secs(60)).await;
    let unique: BTreeSet<&String> = got.iter().collect();
    assert_eq!(unique.len() + dropped, n, "delivered + dropped = sent");
    let missing: Vec<usize> = (0..n).filter(|&i| !unique.contains(&padded_segment(i, 1000))).collect();
    // Oldest first: the newest 6 MB (of the 8 MB cap) all arrived.
    let newest = 6 * 1024;
    assert!(missing.iter().all(|&i| i < n - newest), "dropped one of the newest: {:?}", missing.last());
    assert!(d.logs().iter().any(|l| l.contains("The spool is full: dropped the oldest")), "{}", d.log_text());
    d.terminate(Duration::from_secs(10)).await;
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_torn_last_record_and_random_bytes_are_skipped_counted_and_the_rest_delivered() {
    let n = 1000;
    let (dir, fake) = buffered_then_terminated("damaged", n).await;
    fake.stop().await;
    let files = spool_files(&dir, "segments");
    let (first, last) = (&files[0], &files[files.len() - 1]);
    // Random bytes in the middle of the first file, and the last record cut short.
    let mut data = std::fs::read(first).unwrap();
    let mid = data.len() / 2;
    let mut x: u32 = 0x9e37_79b9;
    for byte in &mut data[mid..mid + 40] {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        *byte = x as u8;
    }
    std::fs::write(first, &data).unwrap();
    let size = std::fs::metadata(last).unwrap().len();
    std::fs::OpenOptions::new().write(true).open(last).unwrap().set_len(size - 7).unwrap();

    fake.restart().unwrap();
    let mut d = with_spool(&fake, &dir).spawn().await;
    let line = d.wait_for_log(|l| l.contains("corrupt or torn records in the spool"), Duration::from_secs(5)).await;
    assert!(line.is_some_and(|l| l.contains("Skipped 2 corrupt or torn records")), "{}", d.log_text());
    let got = accepted(&fake, n - 3, Duration::from_secs(30)).await;
    let unique: BTreeSet<&String> = got.iter().collect();
    assert!(unique.len() >= n - 3 && unique.len() < n, "{} of {n} delivered", unique.len());
    assert_eq!(got.len(), unique.len(), "each once");
    assert!(read_metric(&d, "xray_daemon_spool_corrupt_records_total{signal=\"segments\"}").await >= 2.0);
    // It keeps serving.
    d.send_doc(&segment(n + 1));
    let deadline = Instant::now() + Duration::from_secs(10);
    while !fake.accepted_documents().contains(&segment(n + 1)) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(fake.accepted_documents().contains(&segment(n + 1)), "it keeps serving");
    let (status, _, _) = http(d.tcp(), "GET", "/health", &[], "").await;
    assert_eq!(status, 200);
    d.terminate(Duration::from_secs(10)).await;
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_daemon_on_the_same_directory_is_refused_with_a_clear_message() {
    let dir = spool_dir("lock");
    let fake = fake();
    let mut first = with_spool(&fake, &dir).spawn().await;
    let mut second = with_spool(&fake, &dir).start();
    let status = second.wait_exit(Duration::from_secs(10)).await.expect("the second daemon exits");
    assert_eq!(status.code(), Some(1));
    let pid = first.pid();
    let expected =
        format!("is in use by another xray-daemon (pid {pid}). Two daemons must not share a spool directory");
    assert!(second.log_text().contains(&expected), "{}", second.log_text());
    first.terminate(Duration::from_secs(10)).await;
    let _ = std::fs::remove_dir_all(dir);
}

/// A tmpfs of `size` at a new directory, optionally read-only; `None` without root.
fn tmpfs(name: &str, size: &str, read_only: bool) -> Option<Mount> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        println!("skipped: mounting a tmpfs needs root");
        return None;
    }
    let dir = spool_dir(name);
    std::fs::create_dir_all(&dir).unwrap();
    let opts = format!("size={size}{}", if read_only { ",ro" } else { "" });
    let ok = Command::new("mount").args(["-t", "tmpfs", "-o", &opts, "tmpfs"]).arg(&dir).status().unwrap();
    assert!(ok.success(), "mount -t tmpfs as root");
    Some(Mount(dir))
}

struct Mount(PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_directory_is_reported_counted_and_the_daemon_keeps_serving() {
    let Some(mount) = tmpfs("readonly", "4m", true) else { return };
    let fake = fake();
    fake.stop().await;
    let mut d = with_spool(&fake, &mount.0).spawn().await;
    assert!(
        d.logs().iter().any(|l| l.contains("cannot be used") && l.contains("Read-only file system")),
        "{}",
        d.log_text()
    );
    send_paced(&d, 0..500, segment).await;
    let name = "xray_daemon_spool_dropped_total{signal=\"segments\",reason=\"io_error\"}";
    let dropped = wait_metric(&d, name, 1.0, Duration::from_secs(10)).await;
    assert!(dropped > 0.0, "{}", d.metrics().await);
    assert!(d.logs().iter().any(|l| l.contains("Could not write") && l.contains("to the spool")), "{}", d.log_text());
    let (status, _, _) = http(d.tcp(), "GET", "/health", &[], "").await;
    assert_eq!(status, 200);
    fake.restart().unwrap();
    d.send_doc(&segment(9999));
    let deadline = Instant::now() + Duration::from_secs(15);
    while !fake.accepted_documents().contains(&segment(9999)) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(fake.accepted_documents().contains(&segment(9999)), "new segments still go out");
    d.terminate(Duration::from_secs(10)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_drops_the_oldest_counts_them_and_delivers_the_rest() {
    let Some(mount) = tmpfs("full", "1m", false) else { return };
    let fake = fake();
    fake.stop().await;
    let mut d = with_spool(&fake, &mount.0).arg("-m").arg("3").spawn().await;
    let n = 3000;
    send_paced(&d, 0..n, |i| padded_segment(i, 1000)).await;
    wait_metric(&d, "xray_daemon_segments_received_total", n as f64, Duration::from_secs(10)).await;
    let full = "xray_daemon_spool_dropped_total{signal=\"segments\",reason=\"full\"}";
    assert!(wait_metric(&d, full, 1.0, Duration::from_secs(5)).await > 0.0, "3 MB into a 1 MB disk drops the oldest");
    assert!(d.logs().iter().any(|l| l.contains("The spool is full")), "{}", d.log_text());
    fake.restart().unwrap();
    // Delivered and dropped settle once the spool has drained.
    let drained = Instant::now() + Duration::from_secs(30);
    while read_metric(&d, "xray_daemon_spool_bytes{signal=\"segments\"}").await > 0.0 && Instant::now() < drained {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let m = d.metrics().await;
    let dropped = metric(&m, full) as usize;
    let failed = metric(&m, "xray_daemon_spool_dropped_total{signal=\"segments\",reason=\"io_error\"}") as usize;
    let got = accepted(&fake, n - dropped - failed, Duration::from_secs(30)).await;
    let unique: BTreeSet<&String> = got.iter().collect();
    assert_eq!(unique.len() + dropped + failed, n, "delivered + dropped = sent ({dropped} dropped, {failed} failed)");
    assert!(unique.contains(&padded_segment(n - 1, 1000)), "the newest arrived");
    d.terminate(Duration::from_secs(10)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_are_spooled_and_replayed_like_segments() {
    let dir = spool_dir("spans");
    let fake = fake();
    // Port 9 (discard) has no listener on loopback: every span upload is refused.
    let mut d = with_spool(&fake, &dir)
        .env("XRAY_DAEMON_OTLP_ENDPOINT", "http://127.0.0.1:9/v1/traces")
        .env("XRAY_DAEMON_SPAN_UPLOAD", "otlp")
        .spawn()
        .await;
    for k in 0..100 {
        d.send(&t1s_datagram(1 + 10 * k, 10));
    }
    let got =
        wait_metric(&d, "xray_daemon_spans_received_total{source=\"udp\"}", 1000.0, Duration::from_secs(10)).await;
    assert_eq!(got, 1000.0);
    let (status, _) = d.terminate(Duration::from_secs(15)).await;
    assert!(status.success(), "{}", d.log_text());
    assert!(!spool_files(&dir, "spans").is_empty(), "the spans are on disk");

    let otlp = FakeOtlp::start().await;
    let mut d = with_spool(&fake, &dir)
        .env("XRAY_DAEMON_OTLP_ENDPOINT", otlp.url.clone())
        .env("XRAY_DAEMON_SPAN_UPLOAD", "otlp")
        .spawn()
        .await;
    assert!(
        d.logs().iter().any(|l| l.contains("Found 1000 spans from an earlier run in the spool")),
        "{}",
        d.log_text()
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    let ids = || otlp.received().into_iter().flat_map(|r| r.span_ids).collect::<Vec<_>>();
    while ids().len() < 1000 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let ids = ids();
    let unique: BTreeSet<&Vec<u8>> = ids.iter().collect();
    assert_eq!((ids.len(), unique.len()), (1000, 1000), "every span once");
    assert!(read_metric(&d, "xray_daemon_spool_replayed_total{signal=\"spans\"}").await >= 1000.0);
    d.terminate(Duration::from_secs(10)).await;
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_that_hangs_past_the_interval_is_on_disk_before_a_crash() {
    let dir = spool_dir("hang");
    let fake = fake();
    fake.set_mode(Fault::Hang);
    // Each attempt waits up to 10 s for an answer that never comes.
    let mut d = with_spool(&fake, &dir).env("XRAY_DAEMON_UPLOAD_TIMEOUT", "10s").spawn().await;
    send_paced(&d, 0..200, segment).await;
    // The uploads are in flight (hanging), not waiting in the buffer: after the 1 s interval their
    // records are copied to disk while the attempts go on.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(fake.accepted_documents().is_empty());
    let written = read_metric(&d, "xray_daemon_spool_written_total{signal=\"segments\"}").await;
    assert_eq!(written, 200.0, "every segment of the hanging uploads is on disk");
    d.signal(libc::SIGKILL);
    d.wait_exit(Duration::from_secs(5)).await.expect("killed");

    fake.clear_mode();
    let mut d = with_spool(&fake, &dir).spawn().await;
    let got = accepted(&fake, 200, Duration::from_secs(20)).await;
    let unique: BTreeSet<&String> = got.iter().collect();
    assert!((0..200).all(|i| unique.contains(&segment(i))), "{} of 200 arrived", unique.len());
    d.terminate(Duration::from_secs(10)).await;
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_upload_copied_to_disk_and_then_accepted_is_not_sent_again() {
    let dir = spool_dir("slow");
    let fake = fake();
    fake.set_mode(Fault::Delay(Duration::from_millis(2500)));
    let mut d = with_spool(&fake, &dir).env("XRAY_DAEMON_UPLOAD_TIMEOUT", "10s").spawn().await;
    send_paced(&d, 0..100, segment).await;
    assert_eq!(accepted(&fake, 100, Duration::from_secs(15)).await.len(), 100);
    // They went to disk while the uploads ran (over the 1 s interval), then were marked done.
    let written = read_metric(&d, "xray_daemon_spool_written_total{signal=\"segments\"}").await;
    assert_eq!(written, 100.0);
    fake.clear_mode();
    let (status, _) = d.terminate(Duration::from_secs(10)).await;
    assert!(status.success());
    let mut d = with_spool(&fake, &dir).spawn().await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(fake.accepted_documents().len(), 100, "nothing is sent twice");
    assert!(!d.logs().iter().any(|l| l.contains("from an earlier run in the spool")), "{}", d.log_text());
    d.terminate(Duration::from_secs(10)).await;
    let _ = std::fs::remove_dir_all(dir);
}
