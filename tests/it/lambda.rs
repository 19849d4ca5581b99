//! Lambda extension mode, against the fake Runtime API (`fake_lambda.rs`) and the fake X-Ray.
//!
//! The fake freezes the daemon (SIGSTOP) whenever it asks for the next event, as Lambda freezes
//! the sandbox, so "uploaded before `/next`" is checked strictly: a frozen process cannot
//! upload anything afterwards.
//!
//! It is over 500 lines: each test drives a whole lifecycle (register, invocations, SHUTDOWN)
//! for one flush strategy, span mode or failure, and they share the helpers above them.

use crate::daemon::{against, segment, Builder, Daemon};
use crate::daemon::{ACCESS_KEY, SECRET_KEY};
use crate::fake_lambda::{FakeLambda, TelemetryMode, EXTENSION_NAME};
use crate::fake_otlp::{t1s_datagram, FakeOtlp};
use crate::fake_xray::{Credentials, FakeXray, Fault, Op, RecordedRequest};
use std::time::{Duration, Instant};

const NEXT: &str = "/extension/event/next";
const LONG: Duration = Duration::from_secs(20);

pub fn fakes() -> FakeXray {
    FakeXray::start(Credentials::new(ACCESS_KEY, SECRET_KEY))
}

/// An extension whose OTLP listeners take ports of their own: the defaults (4317, 4318) are
/// one machine's, and only `lambda_otlp::the_otlp_listeners_are_on_by_default_at_the_sdks_endpoints`
/// may take them.
pub fn extension(xray: &FakeXray, lambda: &FakeLambda) -> Builder {
    at_default_ports(xray, lambda)
        .env("XRAY_DAEMON_OTLP_GRPC_ADDRESS", "127.0.0.1:0")
        .env("XRAY_DAEMON_OTLP_ADDRESS", "127.0.0.1:0")
}

pub fn at_default_ports(xray: &FakeXray, lambda: &FakeLambda) -> Builder {
    against(xray)
        .env("AWS_LAMBDA_RUNTIME_API", lambda.runtime_api())
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
        .env("AWS_LAMBDA_INITIALIZATION_TYPE", "on-demand")
}

/// Starts the extension and waits until it asks for its first event (and is frozen).
pub async fn booted(b: Builder, lambda: &FakeLambda) -> Daemon {
    let d = b.spawn().await;
    lambda.freeze_on_next(d.pid());
    let nexts = lambda.wait_for_calls(NEXT, 1, LONG).await;
    assert_eq!(nexts.len(), 1, "no first /next; log:\n{}", d.log_text());
    d
}

/// Sends `n` segments numbered from `from`, returns their documents.
pub fn send(d: &Daemon, from: usize, n: usize) -> Vec<String> {
    (from..from + n)
        .map(|i| {
            let doc = segment(i);
            d.send_doc(&doc);
            doc
        })
        .collect()
}

/// Documents of the PutTraceSegments calls answered 200 before `t`.
pub fn delivered_before(xray: &FakeXray, t: Instant) -> Vec<String> {
    xray.requests()
        .iter()
        .filter(|r| r.op() == Some(Op::PutTraceSegments) && r.status == 200 && r.at < t)
        .flat_map(|r: &RecordedRequest| r.documents().unwrap_or_default())
        .collect()
}

pub fn sorted<T: Ord>(mut v: Vec<T>) -> Vec<T> {
    v.sort();
    v
}

/// Waits for `/next` call number `n`, which must come.
pub async fn nth_next(lambda: &FakeLambda, n: usize, d: &Daemon) -> Instant {
    let nexts = lambda.wait_for_calls(NEXT, n, LONG).await;
    assert!(nexts.len() >= n, "no /next #{n}; log:\n{}", d.log_text());
    nexts[n - 1].at
}

#[tokio::test]
async fn registers_by_file_name_subscribes_and_makes_no_aws_call_while_booting() {
    let xray = fakes();
    let lambda = FakeLambda::start().await;
    let mut d = booted(extension(&xray, &lambda), &lambda).await;

    let register = &lambda.calls_to("/extension/register")[0];
    assert_eq!(register.method, "POST");
    assert_eq!(register.header("Lambda-Extension-Name"), Some(EXTENSION_NAME));
    assert_eq!(register.header("Lambda-Extension-Accept-Feature"), Some("accountId"));
    assert_eq!(register.header("Content-Type"), Some("application/json"));
    assert_eq!(register.json(), serde_json::json!({"events": ["INVOKE", "SHUTDOWN"]}));
    assert_eq!(register.status, 200);

    let subscribe = &lambda.calls_to("/2022-07-01/telemetry")[0];
    assert_eq!(subscribe.method, "PUT");
    assert_eq!(subscribe.status, 200);
    let body = subscribe.json();
    assert_eq!(body["schemaVersion"], "2022-12-13");
    assert_eq!(body["types"], serde_json::json!(["platform"]));
    assert_eq!(body["buffering"]["timeoutMs"], 25);
    assert_eq!(body["destination"]["protocol"], "HTTP");
    let uri = body["destination"]["URI"].as_str().unwrap();
    assert!(uri.starts_with("http://sandbox.localdomain:") && uri.ends_with('/'), "{uri}");
    // Register, then subscribe, then /next; every later call carries the identifier.
    let calls = lambda.calls();
    let order: Vec<&str> = calls.iter().map(|c| c.path.as_str()).collect();
    assert_eq!(order, ["/2020-01-01/extension/register", "/2022-07-01/telemetry", "/2020-01-01/extension/event/next"]);
    assert!(calls[1..].iter().all(|c| c.header("Lambda-Extension-Identifier").is_some_and(|v| v.len() == 36)));
    // Nothing went to AWS while booting (no credentials check, no IMDS, no telemetry).
    assert!(xray.requests().is_empty(), "{:?}", xray.requests());
    assert!(
        d.log_text().contains("Using buffer memory limit of 16 MB (16 MB, more than 3% of the function's 128 MB)"),
        "{}",
        d.log_text()
    );

    // The listener answers 200 to anything, even what it cannot parse.
    lambda.stop_freezing();
    d.signal(libc::SIGCONT);
    for body in [&b"not json"[..], b"{}", b"[]", b"[1, \"x\", {\"type\": 5}]", &[0xff, 0xfe][..]] {
        assert_eq!(lambda.deliver(body).await, 200);
    }
    lambda.shutdown("spindown", Duration::from_millis(1700));
    let status = d.wait_exit(Duration::from_secs(3)).await.expect("exit after SHUTDOWN");
    assert_eq!(status.code(), Some(0), "{}", d.log_text());
}

#[tokio::test]
async fn end_mode_uploads_every_segment_of_an_invocation_before_asking_for_the_next_event() {
    let xray = fakes();
    let lambda = FakeLambda::start().await;
    let mut d = booted(extension(&xray, &lambda), &lambda).await;

    let mut sent = Vec::new();
    for (n, request) in ["req-1", "req-2"].into_iter().enumerate() {
        lambda.invoke(request, Duration::from_secs(10));
        sent.extend(send(&d, n * 1000, 120));
        // Without runtimeDone the invocation is not over: no /next yet.
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert_eq!(lambda.calls_to(NEXT).len(), n + 1, "asked for the next event before runtimeDone");
        let done_at = Instant::now();
        assert_eq!(lambda.runtime_done(request).await, 200);
        let next_at = nth_next(&lambda, n + 2, &d).await;
        assert!(next_at > done_at);
        assert_eq!(
            sorted(delivered_before(&xray, next_at)),
            sorted(sent.clone()),
            "not everything was uploaded before /next"
        );
    }
    lambda.shutdown("spindown", Duration::from_millis(1700));
    assert_eq!(d.wait_exit(Duration::from_secs(3)).await.and_then(|s| s.code()), Some(0), "{}", d.log_text());
    let s = d.summary();
    assert_eq!((s.received, s.sent, s.undelivered), (240, 240, 0));
    assert_eq!(sorted(xray.accepted_documents()), sorted(sent), "each document exactly once");
    // At the default level: no line per invocation, one summary at SHUTDOWN.
    let log = d.log_text();
    assert!(!log.contains("Successfully sent batch") && !log.contains("Flushed in"), "{log}");
    let summary: Vec<&str> = log.lines().filter(|l| l.contains("SHUTDOWN")).collect();
    assert_eq!(summary.len(), 1, "{log}");
    let want = "[Info] Got SHUTDOWN (spindown) after 2 invocations. Shutdown finished in ";
    assert!(summary[0].contains(want), "{log}");
    assert!(summary[0].contains(" seconds. Segments received: 240, sent: 240, rejected: 0, spilled over: 0"), "{log}");
    assert!(summary[0].ends_with("; spans received: 0, sent: 0, rejected: 0, dropped: 0, not delivered: 0"), "{log}");
}

/// Lambda's advanced logging controls: `AWS_LAMBDA_LOG_FORMAT=JSON` and `AWS_LAMBDA_LOG_LEVEL`
/// apply unless the daemon's own variables say otherwise.
#[tokio::test]
async fn lambdas_log_format_and_level_are_honoured() {
    let xray = fakes();
    let lambda = FakeLambda::start().await;
    let json = extension(&xray, &lambda).env("AWS_LAMBDA_LOG_FORMAT", "JSON").env("AWS_LAMBDA_LOG_LEVEL", "DEBUG");
    let mut d = booted(json, &lambda).await;
    lambda.invoke("req-1", Duration::from_secs(10));
    let sent = send(&d, 0, 3);
    assert_eq!(lambda.runtime_done("req-1").await, 200);
    nth_next(&lambda, 2, &d).await;
    lambda.shutdown("spindown", Duration::from_millis(1700));
    assert_eq!(d.wait_exit(Duration::from_secs(3)).await.and_then(|s| s.code()), Some(0), "{}", d.log_text());
    assert_eq!(xray.accepted_documents().len(), sent.len());
    let lines = crate::logs::json_lines(&d.log_text());
    let message = |l: &serde_json::Value| l["message"].as_str().unwrap().to_owned();
    let batch = lines.iter().find(|l| message(l).starts_with("Successfully sent batch of 3 segments"));
    let batch = batch.unwrap_or_else(|| panic!("DEBUG shows the batches: {}", d.log_text()));
    assert_eq!((batch["level"].as_str(), batch["count"].as_u64()), (Some("INFO"), Some(3)));
    let summary = lines.iter().find(|l| message(l).starts_with("Got SHUTDOWN (spindown)")).unwrap();
    assert_eq!((summary["invocations"].as_u64(), summary["segments_sent"].as_u64()), (Some(1), Some(3)), "{summary}");
    assert_eq!((summary["spans_sent"].as_u64(), summary["dropped"].as_u64()), (Some(0), Some(0)), "{summary}");
    assert_eq!(summary["reason"], "spindown");

    // The daemon's own variables win: text, and ERROR hides even the summary.
    let lambda = FakeLambda::start().await;
    let own = extension(&xray, &lambda)
        .env("AWS_LAMBDA_LOG_FORMAT", "JSON")
        .env("AWS_LAMBDA_LOG_LEVEL", "DEBUG")
        .env("XRAY_DAEMON_LOG_FORMAT", "text")
        .env("XRAY_DAEMON_LOG_LEVEL", "error")
        .env("XRAY_DAEMON_LAMBDA_FLUSH", "never");
    let mut d = own.start();
    let status = d.wait_exit(Duration::from_secs(10)).await.expect("a bad setting exits");
    assert_eq!(status.code(), Some(1));
    let log = d.log_text();
    assert_eq!(log.lines().count(), 1, "{log}");
    assert!(log.contains("[Error] invalid value \"never\" for XRAY_DAEMON_LAMBDA_FLUSH"), "{log}");
}

#[tokio::test]
async fn end_mode_uploads_an_invocations_spans_with_its_segments_before_the_next_event() {
    let xray = fakes();
    let otlp = FakeOtlp::start().await;
    let lambda = FakeLambda::start().await;
    let mut d = booted(
        extension(&xray, &lambda)
            .env("XRAY_DAEMON_OTLP_ENDPOINT", otlp.url.clone())
            .env("XRAY_DAEMON_SPAN_UPLOAD", "otlp"),
        &lambda,
    )
    .await;
    let mut spans = Vec::new();
    for (n, request) in ["req-1", "req-2"].into_iter().enumerate() {
        lambda.invoke(request, Duration::from_secs(10));
        let first = 1 + 100 * n as u64;
        // ADOT in Lambda sends 10 spans a datagram.
        for k in 0..3 {
            d.send(&t1s_datagram(first + 10 * k, 10));
        }
        spans.extend((first..first + 30).map(|i| i.to_be_bytes().to_vec()));
        let sent = send(&d, n * 1000, 5);
        assert_eq!(lambda.runtime_done(request).await, 200);
        let next_at = nth_next(&lambda, n + 2, &d).await;
        assert_eq!(sorted(otlp.spans_before(next_at)), sorted(spans.clone()), "spans not all uploaded before /next");
        assert!(delivered_before(&xray, next_at).iter().filter(|doc| sent.contains(doc)).count() == 5);
    }
    lambda.shutdown("spindown", Duration::from_millis(1700));
    assert_eq!(d.wait_exit(Duration::from_secs(3)).await.and_then(|s| s.code()), Some(0), "{}", d.log_text());
    assert_eq!(sorted(otlp.received().into_iter().flat_map(|r| r.span_ids).collect()), sorted(spans), "each span once");
}

#[tokio::test]
async fn in_segments_mode_an_invocations_spans_arrive_as_documents_before_the_next_event() {
    let xray = fakes();
    let lambda = FakeLambda::start().await;
    let mut d = booted(extension(&xray, &lambda), &lambda).await;
    // The documents' ids: the spans' (`t1s_datagram` names them `s<id>`), in hex.
    let ids = |docs: Vec<String>| -> Vec<String> {
        let parsed = docs.iter().filter_map(|d| serde_json::from_str::<serde_json::Value>(d).ok());
        sorted(
            parsed
                .filter(|d| d["name"].as_str().is_some_and(|n| n.starts_with('s')))
                .map(|d| d["id"].to_string())
                .collect(),
        )
    };
    let mut expected = Vec::new();
    for (n, request) in ["req-1", "req-2"].into_iter().enumerate() {
        lambda.invoke(request, Duration::from_secs(10));
        let first = 1 + 100 * n as u64;
        (0..3).for_each(|k| d.send(&t1s_datagram(first + 10 * k, 10)));
        expected.extend((first..first + 30).map(|i| format!("\"{i:016x}\"")));
        assert_eq!(lambda.runtime_done(request).await, 200);
        let next_at = nth_next(&lambda, n + 2, &d).await;
        assert_eq!(ids(delivered_before(&xray, next_at)), sorted(expected.clone()), "not all before /next");
    }
    lambda.shutdown("spindown", Duration::from_millis(1700));
    assert_eq!(d.wait_exit(Duration::from_secs(3)).await.and_then(|s| s.code()), Some(0), "{}", d.log_text());
    assert_eq!(ids(xray.accepted_documents()), sorted(expected), "each span once");
}

#[tokio::test]
async fn without_the_telemetry_api_segments_go_at_the_next_invoke_and_at_shutdown() {
    let xray = fakes();
    let lambda = FakeLambda::start().await;
    lambda.set_telemetry_mode(TelemetryMode::NotSupported);
    let mut d = booted(extension(&xray, &lambda), &lambda).await;
    let fallback = "The Telemetry API is not available (Telemetry.NotSupported: Telemetry API is not supported)";
    assert!(d.log_text().contains(fallback), "{}", d.log_text());

    lambda.invoke("req-1", Duration::from_secs(10));
    nth_next(&lambda, 2, &d).await; // at once: nothing to wait for
                                    // The function's segments arrive while the sandbox is frozen: nothing can be sent.
    let mut sent = send(&d, 0, 50);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(lambda.is_frozen());
    assert_eq!(xray.accepted_documents().len(), 0);
    // The next invocation thaws it and sends them before the extension asks again.
    lambda.invoke("req-2", Duration::from_secs(10));
    let next_at = nth_next(&lambda, 3, &d).await;
    assert_eq!(sorted(delivered_before(&xray, next_at)), sorted(sent.clone()));
    // And SHUTDOWN sends the rest.
    sent.extend(send(&d, 100, 20));
    lambda.shutdown("spindown", Duration::from_millis(1700));
    assert_eq!(d.wait_exit(Duration::from_secs(3)).await.and_then(|s| s.code()), Some(0), "{}", d.log_text());
    assert_eq!(sorted(xray.accepted_documents()), sorted(sent));
    assert_eq!(d.log_text().matches("The Telemetry API is not available").count(), 1, "logged once");
}

#[tokio::test]
async fn shutdown_with_any_reason_sends_everything_and_exits_0_before_the_deadline() {
    let xray = fakes();
    for (i, reason) in
        ["spindown", "timeout", "failure", "SandboxTerminated", "SPINDOWN", "Timeout"].into_iter().enumerate()
    {
        xray.clear_recordings();
        let lambda = FakeLambda::start().await;
        let mut d = booted(extension(&xray, &lambda), &lambda).await;
        lambda.invoke("req-1", Duration::from_secs(10));
        let mut sent = send(&d, i * 1000, 40);
        lambda.runtime_done("req-1").await;
        nth_next(&lambda, 2, &d).await;
        // Sent while frozen (a timed-out handler's subsegments): only SHUTDOWN can send them.
        sent.extend(send(&d, i * 1000 + 500, 60));
        let budget = Duration::from_millis(1700);
        let t0 = Instant::now();
        lambda.shutdown(reason, budget);
        let status = d.wait_exit(Duration::from_secs(5)).await.expect("exit");
        let took = t0.elapsed();
        assert_eq!(status.code(), Some(0), "{reason}: {}", d.log_text());
        // wait_exit polls every 10 ms, then waits for the log pipes to close.
        assert!(took < budget + Duration::from_millis(100), "{reason}: took {took:?}");
        assert_eq!(sorted(xray.accepted_documents()), sorted(sent), "{reason}");
        assert!(
            d.log_text().contains(&format!("Got SHUTDOWN ({})", reason.to_ascii_lowercase()))
                || d.log_text().contains(&format!("Got SHUTDOWN ({reason})")),
            "{}",
            d.log_text()
        );
    }
}

#[tokio::test]
async fn a_timed_out_invocation_without_runtime_done_is_sent_at_shutdown() {
    let xray = fakes();
    let lambda = FakeLambda::start().await;
    let mut d = booted(extension(&xray, &lambda), &lambda).await;
    // The handler times out: no runtimeDone ever comes; the extension waits for the deadline.
    let t0 = Instant::now();
    lambda.invoke("req-1", Duration::from_millis(800));
    let sent = send(&d, 0, 30);
    let next_at = nth_next(&lambda, 2, &d).await;
    assert!(next_at - t0 >= Duration::from_millis(700), "asked for the next event before the deadline");
    // Logged before that /next; the log pipe may deliver it a moment after the fake saw the call.
    let warned = d.wait_for_log(
        |l| l.contains("No platform.runtimeDone arrived for request req-1 before its deadline"),
        Duration::from_secs(2),
    );
    assert!(warned.await.is_some(), "{}", d.log_text());
    lambda.shutdown("timeout", Duration::from_millis(1700));
    assert_eq!(d.wait_exit(Duration::from_secs(3)).await.and_then(|s| s.code()), Some(0), "{}", d.log_text());
    assert_eq!(sorted(xray.accepted_documents()), sorted(sent));
}

#[tokio::test]
async fn next_failing_with_500_exits_promptly_after_an_exit_error_report() {
    let xray = fakes();
    let lambda = FakeLambda::start().await;
    let mut d = booted(extension(&xray, &lambda), &lambda).await;
    lambda.invoke("req-1", Duration::from_secs(10));
    lambda.runtime_done("req-1").await;
    nth_next(&lambda, 2, &d).await;
    let t0 = Instant::now();
    lambda.fail_next(500, "Runtime.Unknown");
    let status = d.wait_exit(Duration::from_secs(5)).await.expect("exit");
    assert!(t0.elapsed() < Duration::from_secs(2), "took {:?}", t0.elapsed());
    assert_eq!(status.code(), Some(1));
    let reports = lambda.calls_to("/extension/exit/error");
    assert_eq!(reports.len(), 1, "{:?}", lambda.calls());
    assert_eq!(reports[0].header("Lambda-Extension-Function-Error-Type"), Some("Extension.RuntimeApiFailed"));
    assert_eq!(reports[0].status, 202);
    assert!(reports[0].json()["errorMessage"].as_str().unwrap().contains("next: HTTP 500"), "{:?}", reports[0].json());
    assert!(lambda.calls_to("/extension/init/error").is_empty());
}

#[tokio::test]
async fn next_failing_during_init_is_reported_as_an_init_error() {
    let xray = fakes();
    let lambda = FakeLambda::start().await;
    lambda.fail_next(500, "Runtime.Unknown");
    let mut d = extension(&xray, &lambda).start();
    assert_eq!(d.wait_exit(Duration::from_secs(10)).await.and_then(|s| s.code()), Some(1), "{}", d.log_text());
    let reports = lambda.calls_to("/extension/init/error");
    assert_eq!(reports.len(), 1, "{:?}", lambda.calls());
    assert_eq!(reports[0].header("Lambda-Extension-Function-Error-Type"), Some("Extension.RuntimeApiFailed"));
}

#[tokio::test]
async fn a_bad_identifier_gets_403_and_the_extension_exits() {
    let xray = fakes();
    let lambda = FakeLambda::start().await;
    lambda.set_identifier("not-a-uuid");
    let mut d = extension(&xray, &lambda).start();
    let status = d.wait_exit(Duration::from_secs(10)).await.expect("exit");
    assert_eq!(status.code(), Some(1), "{}", d.log_text());
    let next = lambda.calls_to(NEXT);
    assert_eq!(next.len(), 1);
    assert_eq!(next[0].status, 403);
    assert!(d.log_text().contains("next: HTTP 403 Forbidden Extension.InvalidExtensionIdentifier"), "{}", d.log_text());
    // The subscribe was refused the same way; the daemon fell back and said so.
    assert!(
        d.log_text().contains(
            "Cannot subscribe to the Telemetry API (subscribe: HTTP 403 Forbidden Extension.InvalidExtensionIdentifier"
        ),
        "{}",
        d.log_text()
    );
}

#[tokio::test]
async fn a_bad_setting_is_reported_through_init_error_and_names_the_variable() {
    let xray = fakes();
    let lambda = FakeLambda::start().await;
    let mut d = extension(&xray, &lambda).env("XRAY_DAEMON_LAMBDA_FLUSH", "sometimes").start();
    assert_eq!(d.wait_exit(Duration::from_secs(10)).await.and_then(|s| s.code()), Some(1), "{}", d.log_text());
    let reports = lambda.calls_to("/extension/init/error");
    assert_eq!(reports.len(), 1, "{:?}", lambda.calls());
    assert_eq!(reports[0].header("Lambda-Extension-Function-Error-Type"), Some("Extension.ConfigInvalid"));
    let message = reports[0].json()["errorMessage"].as_str().unwrap().to_owned();
    assert!(message.contains("XRAY_DAEMON_LAMBDA_FLUSH") && message.contains("sometimes"), "{message}");
    assert!(lambda.calls_to(NEXT).is_empty());
}

#[tokio::test]
async fn registering_under_another_file_name_is_refused_and_the_extension_exits() {
    let xray = fakes();
    let lambda = FakeLambda::start().await;
    let dir = std::env::temp_dir().join(format!("xray-ext-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let link = dir.join("other-extension");
    let _ = std::fs::remove_file(&link);
    std::os::unix::fs::symlink(crate::daemon::binary(), &link).unwrap();
    let mut d = extension(&xray, &lambda).start_as(link.to_str().unwrap());
    assert_eq!(d.wait_exit(Duration::from_secs(10)).await.and_then(|s| s.code()), Some(1), "{}", d.log_text());
    let register = &lambda.calls_to("/extension/register")[0];
    assert_eq!(register.header("Lambda-Extension-Name"), Some("other-extension"));
    assert_eq!(register.status, 403);
    assert!(d.log_text().contains("Extension.InvalidEventType"), "{}", d.log_text());
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn background_mode_asks_for_the_next_event_while_the_upload_runs() {
    let xray = fakes();
    xray.set_mode_for(Op::PutTraceSegments, Some(Fault::Delay(Duration::from_millis(800))));
    let lambda = FakeLambda::start().await;
    let mut d = booted(extension(&xray, &lambda).env("XRAY_DAEMON_LAMBDA_FLUSH", "background"), &lambda).await;

    lambda.invoke("req-1", Duration::from_secs(10));
    let first = send(&d, 0, 30);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let done_at = Instant::now();
    lambda.runtime_done("req-1").await;
    let next_at = nth_next(&lambda, 2, &d).await;
    // /next came before the (800 ms) upload could finish: the upload overlaps what follows.
    assert!(next_at - done_at < Duration::from_millis(700), "/next only after {:?}", next_at - done_at);
    assert!(delivered_before(&xray, next_at).is_empty());

    // The next invocation thaws the sandbox; the upload completes before the next /next.
    lambda.invoke("req-2", Duration::from_secs(10));
    let second = send(&d, 100, 30);
    tokio::time::sleep(Duration::from_millis(100)).await;
    lambda.runtime_done("req-2").await;
    let next_at = nth_next(&lambda, 3, &d).await;
    let early = sorted(delivered_before(&xray, next_at));
    assert!(first.iter().all(|doc| early.binary_search(doc).is_ok()), "req-1's segments were not awaited");

    lambda.shutdown("spindown", Duration::from_millis(1900));
    assert_eq!(d.wait_exit(Duration::from_secs(4)).await.and_then(|s| s.code()), Some(0), "{}", d.log_text());
    assert_eq!(sorted(xray.accepted_documents()), sorted([first, second].concat()));
}

#[tokio::test]
async fn sidecar_mode_can_be_forced_inside_lambda() {
    let xray = fakes();
    let lambda = FakeLambda::start().await;
    let mut d = extension(&xray, &lambda).env("XRAY_DAEMON_MODE", "sidecar").spawn().await;
    assert!(lambda.calls().is_empty());
    let (status, _) = d.terminate(Duration::from_secs(10)).await;
    assert_eq!(status.code(), Some(0));
}

#[tokio::test]
async fn the_tcp_port_is_off_in_lambda_unless_asked_for() {
    let xray = fakes();
    let lambda = FakeLambda::start().await;
    let d = booted(extension(&xray, &lambda), &lambda).await;
    assert!(d.tcp.is_none() && !d.log_text().contains("Starting proxy http server"), "{}", d.log_text());
    drop(d);

    let lambda = FakeLambda::start().await;
    let mut d = extension(&xray, &lambda).env("XRAY_DAEMON_LAMBDA_PROXY", "true").spawn().await;
    let (status, _, body) = crate::daemon::http(d.tcp(), "GET", "/health", &[], "").await;
    assert_eq!((status, body.trim()), (200, "ok"), "{}", d.log_text());
    lambda.shutdown("spindown", Duration::from_millis(1700));
    assert_eq!(d.wait_exit(Duration::from_secs(3)).await.and_then(|s| s.code()), Some(0), "{}", d.log_text());
}

#[tokio::test]
async fn a_connection_broken_across_a_freeze_is_retried_after_the_thaw() {
    let xray = fakes();
    let lambda = FakeLambda::start().await;
    let mut d = booted(extension(&xray, &lambda).env("XRAY_DAEMON_LAMBDA_FLUSH", "background"), &lambda).await;
    // The first upload's connection dies (as a pooled connection does across a freeze).
    xray.push_fault_for(Op::PutTraceSegments, Fault::Disconnect);
    lambda.invoke("req-1", Duration::from_secs(10));
    let first = send(&d, 0, 20);
    tokio::time::sleep(Duration::from_millis(100)).await;
    lambda.runtime_done("req-1").await;
    nth_next(&lambda, 2, &d).await;
    lambda.invoke("req-2", Duration::from_secs(10));
    lambda.runtime_done("req-2").await;
    let next_at = nth_next(&lambda, 3, &d).await;
    assert_eq!(sorted(delivered_before(&xray, next_at)), sorted(first.clone()), "{}", d.log_text());
    let puts = xray.requests_to("/TraceSegments");
    assert!(puts.len() >= 2 && puts[0].status == 0, "the first attempt was cut off, a retry delivered: {puts:?}");
    lambda.shutdown("spindown", Duration::from_millis(1700));
    assert_eq!(d.wait_exit(Duration::from_secs(3)).await.and_then(|s| s.code()), Some(0), "{}", d.log_text());
    assert_eq!(sorted(xray.accepted_documents()), sorted(first), "exactly once");
}
