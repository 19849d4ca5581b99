//! The data path end to end: datagrams into the real binary, documents out at the fake X-Ray
//! endpoint, which checks every signature.

use crate::daemon::{self, padded_segment, segment, HEADER};
use crate::fake_xray::{Credentials, FakeXray, Fault};
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

fn fake() -> FakeXray {
    FakeXray::start(Credentials::new(daemon::ACCESS_KEY, daemon::SECRET_KEY))
}

const WAIT: Duration = Duration::from_secs(10);

fn sorted(v: Vec<String>) -> Vec<String> {
    let mut v = v;
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_valid_document_arrives_byte_for_byte_and_bad_datagrams_are_counted() {
    let fake = fake();
    let mut d = daemon::against(&fake).spawn().await;
    let docs = vec![
        segment(1),
        padded_segment(2, 1000),
        r#"{"id":"0000000000000003","name":"h\u00e9llo ✓ \"quoted\" back\\slash","trace_id":"1-6b070b35-000000000000000000000003","start_time":1,"end_time":2}"#.to_owned(),
        "{\n  \"id\" : \"0000000000000004\",\n  \"name\": \"pretty\"\n}".to_owned(),
        "{\"a\":1}\n{\"b\":2}".to_owned(),
        "\n{\"leading\":\"newline\"}".to_owned(),
        "not json at all".to_owned(),
        padded_segment(8, 65_000),
    ];
    for doc in &docs {
        d.send_doc(doc);
    }
    // Other header spellings upstream accepts.
    let extra = [
        (r#"{"format": "json", "version": 1}"#, segment(9)),
        (r#"{"version":1,"format":"JSON","x":true}"#, segment(10)),
        ("{\"format\":\"json\",\"version\":1}\r", segment(11)),
    ];
    for (h, doc) in &extra {
        d.send(format!("{h}\n{doc}").as_bytes());
    }
    // Rejected: no newline, header only, bad header, version 2, version "1", not UTF-8.
    let bad: Vec<Vec<u8>> = vec![
        segment(20).into_bytes(),
        format!("{HEADER}\n").into_bytes(),
        format!("garbage\n{}", segment(21)).into_bytes(),
        format!("{{\"format\":\"json\",\"version\":2}}\n{}", segment(22)).into_bytes(),
        format!("{{\"format\":\"json\",\"version\":\"1\"}}\n{}", segment(23)).into_bytes(),
        [format!("{HEADER}\n{{\"name\":\"caf").into_bytes(), vec![0xC3]].concat(),
    ];
    for b in &bad {
        d.send(b);
    }
    d.send(format!("{HEADER}\nT1SCgYKBAoCEgA=").as_bytes());

    let mut expected: Vec<String> = docs.clone();
    expected.extend(extra.iter().map(|(_, doc)| doc.clone()));
    let got = fake.wait_for_documents(expected.len(), WAIT).await;
    assert_eq!(sorted(got), sorted(expected.clone()));

    // Every call was signed (the fake verifies) and carries upstream's extra headers.
    for r in fake.requests_to("/TraceSegments") {
        assert_eq!(r.status, 200, "{:?}", r.signature);
        let auth = r.header("authorization").unwrap();
        assert!(auth.contains("x-amzn-xray-timestamp"), "timestamp header must be signed: {auth}");
        assert!(r.header("user-agent").unwrap().contains("xray-agent/xray-daemon/"), "{:?}", r.header("user-agent"));
    }

    let (status, _) = d.terminate(Duration::from_secs(10)).await;
    assert!(status.success(), "{status:?}");
    let s = d.summary();
    let total = (docs.len() + extra.len() + bad.len() + 1) as u64;
    assert_eq!(
        (s.received, s.sent, s.rejected, s.otlp, s.spillover, s.undelivered),
        (total, expected.len() as u64, 6, 1, 0, 0)
    );
    // No rejected payload appears in the log at the default level.
    assert!(!d.log_text().contains("svc-21"), "payloads must not be logged at info level");
    assert!(d.logs().iter().any(|l| l.contains("[Warn] Missing header or segment: rejected a datagram")));
    assert_eq!(fake.accepted_documents().len(), expected.len(), "nothing is sent twice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partial_batch_leaves_within_one_second_and_batches_hold_at_most_fifty() {
    let fake = fake();
    let d = daemon::against(&fake).spawn().await;
    // The first call also sets up the HTTP client; measure the batch timer on the second.
    d.send_doc(&segment(0));
    assert_eq!(fake.wait_for_documents(1, WAIT).await.len(), 1);
    let t0 = Instant::now();
    d.send_doc(&segment(1));
    let got = fake.wait_for_documents(2, Duration::from_secs(4)).await;
    assert_eq!(got.len(), 2);
    // When the request left the daemon (its arrival at the fake), not when the upload ended.
    let sent_at = fake.requests_to("/TraceSegments").last().unwrap().at;
    let waited = sent_at.duration_since(t0);
    assert!(waited <= Duration::from_millis(1800), "partial batch took {waited:?}");
    assert!(waited >= Duration::from_millis(900), "a partial batch waits for more segments first: {waited:?}");

    for i in 0..230 {
        d.send_doc(&segment(100 + i));
    }
    let got = fake.wait_for_documents(232, WAIT).await;
    assert_eq!(got.len(), 232);
    let sizes: Vec<usize> = fake.requests_to("/TraceSegments").iter().map(|r| r.documents().unwrap().len()).collect();
    assert!(sizes.iter().all(|&n| n <= 50), "{sizes:?}");
    assert!(sizes.contains(&50), "full batches go out whole: {sizes:?}");
    let line = d.wait_for_log(|l| l.contains("Successfully sent batch of 50 segments"), WAIT).await.unwrap();
    let re_ok = line.len() > 21
        && line.as_bytes()[19] == b'Z'
        && line[20..].starts_with(" [Info] Successfully sent batch of 50 segments (")
        && line.ends_with(" seconds)");
    assert!(re_ok, "{line}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transient_faults_are_retried_with_backoff_and_nothing_is_lost_or_doubled() {
    let fake = fake();
    fake.push_faults([
        Fault::Status(503, "ServiceUnavailableException"),
        Fault::Throttle,
        Fault::Status(500, "InternalFailure"),
        Fault::Hang,
        Fault::Disconnect,
    ]);
    let mut d = daemon::against(&fake).spawn().await;
    let docs: Vec<String> = (0..40).map(segment).collect();
    for doc in &docs {
        d.send_doc(doc);
    }
    let got = fake.wait_for_documents(docs.len(), Duration::from_secs(20)).await;
    assert_eq!(sorted(got), sorted(docs.clone()));
    assert_eq!(fake.pending_faults(), 0);
    let retries = d
        .logs()
        .iter()
        .filter(|l| l.contains("[Warn] Sending segment batch failed with:") && l.contains("Retrying 40 segments in"))
        .count();
    assert!(retries >= 4, "each fault is logged with its backoff:\n{}", d.log_text());
    let (status, _) = d.terminate(Duration::from_secs(10)).await;
    assert!(status.success());
    assert_eq!(d.summary().sent, 40);
    assert_eq!(fake.accepted_documents().len(), 40, "exactly once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unprocessed_segments_are_resent_or_rejected_by_error_code() {
    let fake = fake();
    let docs: Vec<String> = (0..5).map(segment).collect();
    let bad_id = format!("{:016x}", 0x1000_0000_0000_0000u64 + 4);
    fake.push_faults([Fault::Unprocessed { count: 2, code: "ThrottledException" }]);
    let mut d = daemon::against(&fake).spawn().await;
    for doc in &docs[..4] {
        d.send_doc(doc);
    }
    let got = fake.wait_for_documents(4, WAIT).await;
    assert_eq!(sorted(got), sorted(docs[..4].to_vec()));
    // A permanent error is not retried: counted and logged once with its trace id.
    fake.push_faults([Fault::UnprocessedIds { ids: vec![bad_id.clone()], code: "InvalidTraceId" }]);
    d.send_doc(&docs[4]);
    let line = d.wait_for_log(|l| l.contains("[Error] Unprocessed trace"), WAIT).await.expect("unprocessed error line");
    assert!(
        line.contains("1-6b070b35-000000000000000000000004")
            && line.contains(&bad_id)
            && line.contains("InvalidTraceId"),
        "{line}"
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (status, _) = d.terminate(Duration::from_secs(10)).await;
    assert!(status.success());
    assert_eq!(fake.accepted_documents().len(), 4);
    assert_eq!(fake.put_calls(), 3, "two calls for the throttled batch, one for the rejected doc");
    let s = d.summary();
    assert_eq!((s.sent, s.rejected), (4, 1));
    assert_eq!(d.logs().iter().filter(|l| l.contains("[Error] Unprocessed trace")).count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_flushes_everything_before_the_deadline() {
    let fake = fake();
    let mut d = daemon::against(&fake).spawn().await;
    let docs: Vec<String> = (0..120).map(segment).collect();
    for doc in &docs {
        d.send_doc(doc);
    }
    // No waiting for the batch timer: the shutdown path must send the partial batch itself.
    let (status, took) = d.terminate(Duration::from_secs(6)).await;
    assert_eq!(status.code(), Some(0));
    assert!(took < Duration::from_secs(5), "{took:?}");
    assert_eq!(sorted(fake.accepted_documents()), sorted(docs));
    assert!(d.logs().iter().any(|l| l.contains("[Info] Got shutdown signal: terminated")));
    assert_eq!(d.summary().undelivered, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_an_outage_exits_by_the_deadline_and_counts_what_was_lost() {
    let fake = fake();
    fake.set_mode(Fault::Hang);
    let mut d = daemon::against(&fake).env("XRAY_DAEMON_SHUTDOWN_TIMEOUT", "2s").spawn().await;
    for i in 0..20 {
        d.send_doc(&segment(i));
    }
    fake.wait_for_requests("/TraceSegments", 1, WAIT).await;
    let (status, took) = d.terminate(Duration::from_secs(5)).await;
    assert_eq!(status.code(), Some(0));
    assert!(took < Duration::from_millis(2900), "deadline is 2 s, took {took:?}");
    assert!(
        d.logs()
            .iter()
            .any(|l| l.contains("[Error] Shutdown deadline of 2.000 seconds passed: 20 segments were not delivered")),
        "{}",
        d.log_text()
    );
    assert_eq!(d.summary().undelivered, 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_buffer_drops_the_oldest_and_counts_them() {
    let fake = fake();
    fake.set_mode(Fault::Status(503, "ServiceUnavailableException"));
    let mut d = daemon::against(&fake).arg("-m").arg("3").spawn().await;
    let n = 4000;
    for i in 0..n {
        d.send_doc(&padded_segment(i, 1000));
        if i % 25 == 24 {
            tokio::time::sleep(Duration::from_millis(3)).await;
        }
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    fake.clear_mode();
    let newest: BTreeSet<String> = (n - 1000..n).map(|i| padded_segment(i, 1000)).collect();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let got: BTreeSet<String> = fake.accepted_documents().into_iter().collect();
        if newest.is_subset(&got) || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (status, _) = d.terminate(Duration::from_secs(10)).await;
    assert!(status.success());
    let got: BTreeSet<String> = fake.accepted_documents().into_iter().collect();
    let s = d.summary();
    let missing = newest.difference(&got).count();
    assert_eq!(missing, 0, "the newest 1000 segments survive; got {} in all; {s:?}", got.len());
    assert!(s.spillover > 0, "{s:?}");
    assert_eq!(s.received, n as u64, "no kernel drops expected at this pace");
    assert_eq!(s.sent + s.spillover + s.rejected + s.undelivered, s.received, "{s:?}");
    assert_eq!(s.sent, got.len() as u64);
    assert!(d
        .logs()
        .iter()
        .any(|l| l.contains("[Warn] Segment buffer is full") && l.contains("Dropping oldest segment document")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipv6_loopback_works() {
    let fake = fake();
    let d = daemon::against(&fake).arg("-b").arg("[::1]:0").spawn().await;
    assert!(d.udp.is_ipv6());
    d.send_doc(&segment(6));
    assert_eq!(fake.wait_for_documents(1, WAIT).await, vec![segment(6)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn telemetry_reports_correct_counts_and_waits_for_the_first_datagram() {
    let fake = fake();
    // No datagram: no telemetry, even at shutdown.
    let mut idle = daemon::against(&fake).env("XRAY_DAEMON_TELEMETRY", "true").spawn().await;
    idle.terminate(Duration::from_secs(10)).await;
    assert!(fake.telemetry().is_empty());

    fake.push_faults([Fault::Status(500, "InternalFailure")]);
    let mut d = daemon::against(&fake)
        .env("XRAY_DAEMON_TELEMETRY", "true")
        .env("AWS_HOSTNAME", "node-7")
        .arg("-a")
        .arg("arn:aws:ecs:us-east-1:123456789012:task/abc")
        .spawn()
        .await;
    for i in 0..3 {
        d.send_doc(&segment(i));
    }
    d.send(b"no header here");
    fake.wait_for_documents(3, WAIT).await;
    d.terminate(Duration::from_secs(10)).await;
    let t = fake.telemetry();
    assert_eq!(t.len(), 1, "{t:?}");
    assert_eq!(t[0]["Hostname"], "node-7");
    assert_eq!(t[0]["EC2InstanceId"], "");
    assert_eq!(t[0]["ResourceARN"], "arn:aws:ecs:us-east-1:123456789012:task/abc");
    let r = &t[0]["TelemetryRecords"][0];
    assert_eq!(r["SegmentsReceivedCount"], 4);
    assert_eq!(r["SegmentsSentCount"], 3);
    assert_eq!(r["SegmentsRejectedCount"], 1);
    assert_eq!(r["SegmentsSpilloverCount"], 0);
    assert_eq!(r["BackendConnectionErrors"]["HTTPCode5XXCount"], 1);
    assert_eq!(r["BackendConnectionErrors"]["TimeoutCount"], 0);
    assert!(r["Timestamp"].as_f64().unwrap() > 1.7e9);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_signal_exits_at_once() {
    let fake = fake();
    fake.set_mode(Fault::Hang);
    let mut d = daemon::against(&fake).env("XRAY_DAEMON_SHUTDOWN_TIMEOUT", "20s").spawn().await;
    d.send_doc(&segment(1));
    fake.wait_for_requests("/TraceSegments", 1, WAIT).await;
    d.signal(libc::SIGTERM);
    d.wait_for_log(|l| l.contains("Got shutdown signal"), WAIT).await.expect("first signal seen");
    let t0 = Instant::now();
    d.signal(libc::SIGINT);
    let status = d.wait_exit(Duration::from_secs(3)).await.expect("exits at once on the second signal");
    assert!(t0.elapsed() < Duration::from_secs(2));
    assert_eq!(status.code(), Some(1));
    assert!(d.logs().iter().any(|l| l.contains("[Warn] Got a second shutdown signal")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_log_format_writes_one_object_per_line() {
    let fake = fake();
    let mut d = daemon::against(&fake).env("XRAY_DAEMON_LOG_FORMAT", "json").spawn().await;
    d.send_doc(&segment(1));
    fake.wait_for_documents(1, WAIT).await;
    d.wait_for_log(|l| l.contains("Successfully sent batch"), WAIT).await.expect("upload logged");
    d.terminate(Duration::from_secs(10)).await;
    let lines: Vec<serde_json::Value> =
        d.logs().iter().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"))).collect();
    assert!(lines.iter().all(|v| v["level"].is_string() && v["timestamp"].is_string()));
    assert!(lines.iter().any(|v| v["level"] == "INFO"
        && v["message"].as_str().is_some_and(|m| m.starts_with("Successfully sent batch of 1 segments ("))));
}
