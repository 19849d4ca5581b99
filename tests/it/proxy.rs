//! The TCP port: the signing proxy for sampling calls, `/health`, `/ready`, `/metrics`, and the
//! `health-check` subcommand, through the real binary and the signature-checking fake X-Ray.

use crate::daemon::{self, http, http_raw, run_to_exit, segment};
use crate::fake_xray::{Credentials, FakeXray};
use std::time::{Duration, Instant};

const TOKEN: &str = "FwoGZXIvYXdzEassumed-role-session-token";
const WAIT: Duration = Duration::from_secs(10);

fn fake() -> FakeXray {
    FakeXray::start(Credentials::new(daemon::ACCESS_KEY, daemon::SECRET_KEY))
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sampling_calls_are_signed_and_forwarded_even_with_mesh_headers() {
    // Session credentials, as an assumed role or a task role gives them: the token must be
    // sent and signed.
    let fake = FakeXray::start(Credentials::new(daemon::ACCESS_KEY, daemon::SECRET_KEY).with_session_token(TOKEN));
    let d = daemon::against(&fake).env("AWS_SESSION_TOKEN", TOKEN).spawn().await;
    let mesh = [
        ("Host", "evil.example.invalid"),
        ("Content-Type", "application/json"),
        ("x-envoy-attempt-count", "1"),
        ("x-envoy-expected-rq-timeout-ms", "15000"),
        ("x-b3-traceid", "80f198ee56343ba864fe8b2a57d3eff7"),
        ("x-b3-spanid", "e457b5a2e4d86bd1"),
        ("x-request-id", "2ce7a9d4-7f4c-9e4a-a1b0-4d1b9f6c2a11"),
        ("x-forwarded-for", "10.1.2.3"),
        ("Authorization", "AWS4-HMAC-SHA256 Credential=forged"),
        ("X-Amz-Target", "AWSXRay.DeleteGroup"),
        ("amz-sdk-invocation-id", "1b2c"),
    ];
    let (status, _, body) = http(d.tcp(), "POST", "/GetSamplingRules", &mesh, "{}").await;
    assert_eq!(status, 200, "{body}");
    let rules: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(rules["SamplingRuleRecords"][0]["SamplingRule"]["RuleName"], "Default");

    let stats = r#"{"SamplingStatisticsDocuments":[{"RuleName":"Default","ClientID":"b2c85186e5a39bc96d6f52ac","Timestamp":1795623744,"RequestCount":50,"SampledCount":40,"BorrowCount":10}]}"#;
    let (status, _, body) = http(d.tcp(), "POST", "/SamplingTargets", &mesh, stats).await;
    assert_eq!(status, 200, "{body}");
    let targets: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(targets["SamplingTargetDocuments"][0]["RuleName"], "Default");

    let seen = fake.sampling_requests();
    assert_eq!(seen.len(), 2);
    for r in &seen {
        assert_eq!(r.signature, Ok(()), "the fake verified the signature");
        assert_eq!(
            r.header("host"),
            Some(fake.addr().to_string().as_str()),
            "signed for the endpoint, not the client's Host"
        );
        assert_eq!(r.header("x-amz-security-token"), Some(TOKEN));
        for dropped in [
            "x-envoy-attempt-count",
            "x-b3-traceid",
            "x-request-id",
            "x-forwarded-for",
            "x-amz-target",
            "amz-sdk-invocation-id",
        ] {
            assert_eq!(r.header(dropped), None, "{dropped} must not be forwarded");
        }
        let auth = r.header("authorization").unwrap();
        assert!(!auth.contains("forged"));
        let signed = auth.split("SignedHeaders=").nth(1).unwrap().split(',').next().unwrap();
        assert_eq!(signed, "content-length;content-type;host;x-amz-date;x-amz-security-token");
    }
    assert_eq!(seen[0].body, b"{}");
    assert_eq!(seen[1].body, stats.as_bytes());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_xray_api_paths_are_forwarded_to_the_configured_endpoint() {
    let fake = fake();
    let d = daemon::against(&fake).spawn().await;
    for (method, path) in [
        ("GET", "/some/random/path?x=1"),
        ("PUT", "/GetSamplingRules"),
        ("POST", "/latest/meta-data/iam"),
        ("GET", "/"),
    ] {
        let (status, _, body) = http(d.tcp(), method, path, &[], "").await;
        assert_eq!(status, 404, "{method} {path}");
        assert!(body.contains("XRAY_DAEMON_PROXY_ALLOW_ALL"), "{body}");
    }
    // An absolute-form URI names another host; the request still goes to the X-Ray endpoint.
    let raw = "POST http://metadata.example.invalid/GetSamplingRules HTTP/1.1\r\nHost: metadata.example.invalid\r\nConnection: close\r\nContent-Length: 2\r\n\r\n{}";
    let (status, _, _) = http_raw(d.tcp(), raw.as_bytes()).await;
    assert_eq!(status, 200);
    let seen = fake.requests();
    assert_eq!(seen.len(), 1, "only the allowed call reached X-Ray: {seen:?}");
    assert_eq!(seen[0].path, "/GetSamplingRules");

    // Upstream's forward-everything behaviour, on request.
    let open = daemon::against(&fake).env("XRAY_DAEMON_PROXY_ALLOW_ALL", "true").spawn().await;
    let (status, _, _) = http(open.tcp(), "GET", "/some/random/path?x=1", &[], "").await;
    assert_eq!(status, 404, "the fake's own 404 for an unknown operation");
    let last = fake.requests().pop().unwrap();
    assert_eq!(
        (last.method.as_str(), last.path.as_str(), last.query.as_deref()),
        ("GET", "/some/random/path", Some("x=1"))
    );
    assert_eq!(last.signature, Ok(()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_bodies_get_413_and_are_not_forwarded() {
    let fake = fake();
    let d = daemon::against(&fake).env("XRAY_DAEMON_PROXY_MAX_BODY_KB", "4").spawn().await;
    let big = "x".repeat(5 * 1024);
    let (status, _, body) = http(d.tcp(), "POST", "/SamplingTargets", &[], &big).await;
    assert_eq!(status, 413, "{body}");
    // Without a Content-Length (chunked), the limit applies while reading.
    let chunked = format!(
        "POST /SamplingTargets HTTP/1.1\r\nHost: x\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{big}\r\n0\r\n\r\n",
        big.len()
    );
    let (status, _, _) = http_raw(d.tcp(), chunked.as_bytes()).await;
    assert_eq!(status, 413);
    let (status, _, _) = http(d.tcp(), "POST", "/SamplingTargets", &[], &"x".repeat(4 * 1024)).await;
    assert_eq!(status, 400, "a body at the limit is forwarded (and the fake rejects it as not JSON)");
    assert_eq!(fake.requests().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_client_is_cut_off() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let fake = fake();
    let d = daemon::against(&fake).env("XRAY_DAEMON_PROXY_CLIENT_TIMEOUT", "500ms").spawn().await;
    // Slowloris: half a request head, then nothing.
    let mut stream = tokio::net::TcpStream::connect(d.tcp()).await.unwrap();
    stream.write_all(b"POST /GetSamplingRules HTTP/1.1\r\nHost: x\r\n").await.unwrap();
    let t0 = Instant::now();
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut buf)).await;
    assert!(read.is_ok(), "the daemon must close the connection");
    assert!(t0.elapsed() < Duration::from_secs(3), "{:?}", t0.elapsed());
    // A complete head with a body that never comes.
    let mut stream = tokio::net::TcpStream::connect(d.tcp()).await.unwrap();
    stream.write_all(b"POST /GetSamplingRules HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{").await.unwrap();
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut buf)).await.expect("closed in time").unwrap();
    assert!(String::from_utf8_lossy(&buf).starts_with("HTTP/1.1 408"), "{}", String::from_utf8_lossy(&buf));
    assert!(fake.requests().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_xray_gives_502_and_is_counted() {
    let fake = fake();
    let d = daemon::against(&fake).spawn().await;
    fake.stop().await;
    let (status, _, body) = http(d.tcp(), "POST", "/GetSamplingRules", &[], "{}").await;
    assert_eq!(status, 502);
    assert!(body.len() < 300 && body.contains("cannot reach X-Ray"), "{body}");
    let metrics = d.metrics().await;
    assert!(
        metrics.lines().any(|l| l == "xray_daemon_proxy_requests_total{outcome=\"upstream_error\"} 1"),
        "{metrics}"
    );
    assert_eq!(metric(&metrics, "xray_daemon_backend_errors_total{api=\"proxy\",class=\"connection\"}"), 1.0);
    assert!(d.logs().iter().any(|l| l.contains("[Warn] proxy error: cannot reach X-Ray")));
}

/// A metric's value from `/metrics` text.
pub fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|rest| rest.strip_prefix(' ')))
        .unwrap_or_else(|| panic!("{name} missing in\n{text}"))
        .parse()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_ready_and_metrics_report_what_happened() {
    let fake = fake();
    let d = daemon::against(&fake).arg("-l").arg("debug").spawn().await;
    let (status, _, body) = http(d.tcp(), "GET", "/health", &[], "").await;
    assert_eq!((status, body.as_str()), (200, "ok\n"));
    // Credentials resolve in the background; ready soon after start.
    let deadline = Instant::now() + WAIT;
    loop {
        let (status, _, body) = http(d.tcp(), "GET", "/ready", &[], "").await;
        if status == 200 {
            assert_eq!(body, "ready\n");
            break;
        }
        assert!(Instant::now() < deadline, "never ready: {body}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for i in 0..7 {
        d.send_doc(&segment(i));
    }
    d.send(b"no newline");
    d.send(format!("{}\nT1UCgYKBAoC", daemon::HEADER).as_bytes());
    fake.wait_for_documents(7, WAIT).await;
    d.wait_for_log(|l| l.contains("Successfully sent batch of 7 segments"), WAIT).await.unwrap();
    let (status, headers, m) = http(d.tcp(), "GET", "/metrics", &[], "").await;
    assert_eq!(status, 200);
    assert!(header(&headers, "content-type").unwrap().starts_with("text/plain; version=0.0.4"));
    assert_eq!(metric(&m, "xray_daemon_udp_datagrams_received_total"), 9.0);
    assert_eq!(metric(&m, "xray_daemon_udp_kernel_drops_total"), 0.0);
    assert_eq!(metric(&m, "xray_daemon_segments_received_total"), 7.0);
    assert_eq!(metric(&m, "xray_daemon_segments_sent_total"), 7.0);
    assert_eq!(metric(&m, "xray_daemon_segments_rejected_total{reason=\"missing_newline\"}"), 1.0);
    assert_eq!(metric(&m, "xray_daemon_segments_rejected_total{reason=\"xray\"}"), 0.0);
    assert_eq!(metric(&m, "xray_daemon_otlp_datagrams_total{kind=\"unsampled_spans\"}"), 1.0);
    assert_eq!(metric(&m, "xray_daemon_segments_spillover_total"), 0.0);
    let calls = "xray_daemon_backend_request_duration_seconds_count{api=\"put_trace_segments\"}";
    assert_eq!(metric(&m, calls), 1.0);
    assert_eq!(metric(&m, "xray_daemon_buffer_bytes"), 0.0);
    assert_eq!(metric(&m, "xray_daemon_buffer_segments{state=\"queued\"}"), 0.0);
    // Two /health or /ready probes at least, and this /metrics.
    assert!(metric(&m, "xray_daemon_proxy_requests_total{outcome=\"local\"}") >= 3.0);
    assert_eq!(metric(&m, "xray_daemon_proxy_requests_total{outcome=\"forwarded\"}"), 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_credentials_the_daemon_is_alive_but_not_ready() {
    let fake = fake();
    let mut cmd = daemon::against(&fake).env("AWS_ACCESS_KEY_ID", "").env("AWS_SECRET_ACCESS_KEY", "");
    cmd = cmd.env("AWS_CONTAINER_CREDENTIALS_FULL_URI", "");
    let d = cmd.spawn().await;
    let (status, _, _) = http(d.tcp(), "GET", "/health", &[], "").await;
    assert_eq!(status, 200);
    let deadline = Instant::now() + WAIT;
    let body = loop {
        let (status, _, body) = http(d.tcp(), "GET", "/ready", &[], "").await;
        assert_eq!(status, 503, "{body}");
        if body.contains("credentials") || Instant::now() > deadline {
            break body;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(body.starts_with("not ready: Unable to retrieve credentials"), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_health_check_subcommand_exits_0_or_1() {
    let fake = fake();
    let d = daemon::against(&fake).spawn().await;
    let tcp = d.tcp().to_string();
    let (code, out, err) = run_to_exit(&["health-check", &tcp], &[]);
    assert_eq!((code, out.trim()), (0, "healthy"), "{err}");
    // The address may also come from the environment, with 0.0.0.0 probed on loopback.
    let any = format!("0.0.0.0:{}", d.tcp().port());
    let (code, _, err) = run_to_exit(&["health-check"], &[("XRAY_DAEMON_TCP_ADDRESS", &any)]);
    assert_eq!(code, 0, "{err}");
    // Or from the daemon's own flags and config file, given to the health check, which beat the variable.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().to_string();
    let wrong = [("XRAY_DAEMON_TCP_ADDRESS", closed.as_str())];
    assert_eq!(run_to_exit(&["health-check", "-t", &any], &wrong).0, 0);
    let cfg = std::env::temp_dir().join(format!("xray-daemon-health-check-{}.yaml", std::process::id()));
    std::fs::write(&cfg, format!("Version: 2\nSocket:\n  TCPAddress: {tcp}\n")).unwrap();
    assert_eq!(run_to_exit(&["health-check", "-c", cfg.to_str().unwrap()], &[]).0, 0);
    std::fs::remove_file(&cfg).unwrap();
    let (code, _, err) = run_to_exit(&["health-check", "--tcp-address", &tcp], &[]);
    assert_eq!((code, err.trim()), (1, "unhealthy: flag provided but not defined: -tcp-address"));
    let (code, _, err) = run_to_exit(&["health-check", &closed], &[]);
    assert_eq!(code, 1);
    assert!(err.starts_with("unhealthy: cannot connect"), "{err}");
    assert!(err.contains(&format!("(the TCP address {closed} from the command line)")), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_are_closed() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let fake = fake();
    let d = daemon::against(&fake).env("XRAY_DAEMON_PROXY_CLIENT_TIMEOUT", "500ms").spawn().await;
    // A connection that never sends a byte.
    let mut silent = tokio::net::TcpStream::connect(d.tcp()).await.unwrap();
    let mut buf = Vec::new();
    let t0 = Instant::now();
    tokio::time::timeout(Duration::from_secs(5), silent.read_to_end(&mut buf))
        .await
        .expect("silent connection closed")
        .unwrap();
    assert!(t0.elapsed() < Duration::from_secs(3), "{:?}", t0.elapsed());
    // A keep-alive connection after its first answer.
    let mut kept = tokio::net::TcpStream::connect(d.tcp()).await.unwrap();
    kept.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    let t0 = Instant::now();
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), kept.read_to_end(&mut buf))
        .await
        .expect("idle keep-alive connection closed")
        .unwrap();
    assert!(String::from_utf8_lossy(&buf).starts_with("HTTP/1.1 200"));
    assert!(t0.elapsed() < Duration::from_secs(3), "{:?}", t0.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_xray_that_does_not_answer_in_time_gives_502() {
    use crate::fake_xray::{Fault, Op};
    let fake = fake();
    fake.set_mode_for(Op::GetSamplingRules, Some(Fault::Hang));
    let d = daemon::against(&fake).env("XRAY_DAEMON_PROXY_TIMEOUT", "1s").spawn().await;
    let t0 = Instant::now();
    let (status, _, body) = http(d.tcp(), "POST", "/GetSamplingRules", &[], "{}").await;
    let took = t0.elapsed();
    assert_eq!(status, 502, "{body}");
    assert!(body.contains("did not answer in time"), "{body}");
    assert!(took >= Duration::from_millis(900) && took < Duration::from_secs(3), "{took:?}");
}
