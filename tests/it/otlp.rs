//! OTLP/HTTP `POST /v1/traces` on the TCP port: every answer the OTLP/HTTP specification names,
//! and push-back when the buffer is full.

use crate::daemon::{against, http, http_raw, Daemon};
use crate::daemon::{ACCESS_KEY, SECRET_KEY};
use crate::fake_otlp::{spans_request, t1s_datagram, FakeOtlp};
use crate::fake_xray::{Credentials, FakeXray};
use crate::proxy::metric;
use opentelemetry_proto::tonic::collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse};
use prost::Message;
use std::io::Write;
use std::time::{Duration, Instant};
use xray_daemon::signal::spans::Status;

const WAIT: Duration = Duration::from_secs(15);

fn request(first: u64, n: u64, pad: usize) -> ExportTraceServiceRequest {
    spans_request(first, n, pad)
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

/// POSTs `body` to `/v1/traces`; returns the status, headers and raw body.
async fn post(
    d: &Daemon,
    content_type: &str,
    encoding: Option<&str>,
    body: &[u8],
) -> (u16, Vec<(String, String)>, Vec<u8>) {
    let addr = d.tcp();
    let mut req = format!(
        "POST /v1/traces HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n",
        body.len()
    )
    .into_bytes();
    if let Some(e) = encoding {
        req.extend_from_slice(format!("Content-Encoding: {e}\r\n").as_bytes());
    }
    req.extend_from_slice(b"\r\n");
    req.extend_from_slice(body);
    let (status, headers, text) = http_raw(addr, &req).await;
    (status, headers, text.into_bytes())
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

async fn daemon(xray: &FakeXray, otlp_url: &str, extra: &[&str]) -> Daemon {
    let mut b = against(xray).env("XRAY_DAEMON_OTLP_ENDPOINT", otlp_url).env("XRAY_DAEMON_SPAN_UPLOAD", "otlp");
    for a in extra {
        b = b.arg(*a);
    }
    b.spawn().await
}

// Two threads: the fake OTLP endpoint answers while the test waits on the daemon. A fake that
// cannot answer within the daemon's attempt timeout gets the batch again, as X-Ray would.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v1_traces_answers_as_the_otlp_http_specification_says() {
    // Built first: compressing 50 MB takes a while.
    let bomb = gzip(&vec![0u8; 50_000_000]);
    let xray = FakeXray::start(Credentials::new(ACCESS_KEY, SECRET_KEY));
    let otlp = FakeOtlp::start().await;
    let d = daemon(&xray, &otlp.url, &[]).await;

    // Protobuf, identity and gzip: 200 with an ExportTraceServiceResponse in protobuf.
    let (status, headers, body) = post(&d, "application/x-protobuf", None, &request(1, 5, 0).encode_to_vec()).await;
    assert_eq!(status, 200);
    assert_eq!(header(&headers, "content-type"), Some("application/x-protobuf"));
    assert_eq!(ExportTraceServiceResponse::decode(&body[..]).unwrap(), ExportTraceServiceResponse::default());
    let gz = gzip(&request(6, 5, 0).encode_to_vec());
    assert_eq!(post(&d, "application/x-protobuf", Some("gzip"), &gz).await.0, 200);

    // JSON, with one span over 200 KB: accepted in part, answered in JSON.
    let mut big = request(11, 3, 0);
    big.resource_spans[0].scope_spans[0].spans[1].name = "y".repeat(210_000);
    let json = serde_json::to_vec(&big).unwrap();
    let (status, headers, body) = post(&d, "application/json; charset=utf-8", None, &json).await;
    assert_eq!(status, 200);
    assert_eq!(header(&headers, "content-type"), Some("application/json"));
    let answer: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let rejected = &answer["partialSuccess"]["rejectedSpans"];
    assert!(rejected == 1 || rejected == "1", "{answer}");

    // Not a request: 400 with a google.rpc.Status, in the request's content type.
    let (status, _, body) = post(&d, "application/x-protobuf", None, b"\xff\xff\xff not protobuf").await;
    assert_eq!(status, 400);
    let why = Status::decode(&body[..]).unwrap();
    assert_eq!(why.code, 3);
    assert!(why.message.contains("ExportTraceServiceRequest"), "{why:?}");
    // Other content types and encodings: 415; other methods: 405.
    assert_eq!(post(&d, "text/plain", None, b"hello").await.0, 415);
    assert_eq!(post(&d, "application/x-protobuf", Some("br"), b"x").await.0, 415);
    assert_eq!(http(d.tcp(), "GET", "/v1/traces", &[], "").await.0, 405);
    // Over 5 MB on the wire, or once inflated (a small gzip bomb): 413, quickly.
    assert_eq!(post(&d, "application/x-protobuf", None, &vec![0u8; 5_000_001]).await.0, 413);
    assert!(bomb.len() < 100_000);
    let t0 = Instant::now();
    assert_eq!(post(&d, "application/x-protobuf", Some("gzip"), &bomb).await.0, 413);
    assert!(t0.elapsed() < Duration::from_secs(5), "the bomb took {:?}", t0.elapsed());

    // Everything accepted arrives, once: 5 + 5 + 2 spans.
    let deadline = Instant::now() + WAIT;
    while otlp.received().iter().map(|r| r.span_ids.len()).sum::<usize>() < 12 {
        assert!(Instant::now() < deadline, "spans did not arrive:\n{}", d.log_text());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut ids: Vec<Vec<u8>> = otlp.received().into_iter().flat_map(|r| r.span_ids).collect();
    ids.sort();
    let mut expected: Vec<Vec<u8>> = (1..=13u64).filter(|&i| i != 12).map(|i| i.to_be_bytes().to_vec()).collect();
    expected.sort();
    assert_eq!(ids, expected);
    let m = d.metrics().await;
    // Received counts every span of the requests taken: the 12 stored and the one too large.
    assert_eq!(metric(&m, "xray_daemon_spans_received_total{source=\"http\"}"), 13.0);
    assert_eq!(metric(&m, "xray_daemon_spans_rejected_total{reason=\"too_large\"}"), 1.0);
    assert_eq!(metric(&m, "xray_daemon_spans_rejected_total{reason=\"malformed\"}"), 1.0);
    assert_eq!(metric(&m, "xray_daemon_proxy_requests_total{outcome=\"otlp\"}"), 9.0);
}

#[tokio::test]
async fn a_full_buffer_pushes_http_clients_back_with_503_and_retry_after() {
    let xray = FakeXray::start(Credentials::new(ACCESS_KEY, SECRET_KEY));
    // Nothing listens there: spans cannot leave, and the 3 MB buffer fills.
    let d = daemon(&xray, "http://127.0.0.1:9/v1/traces", &["-m", "3"]).await;
    assert!(request(1, 10, 100_000).encoded_len() > 1_000_000);
    let mut answers = Vec::new();
    for i in 0..6u64 {
        let body = request(1 + 10 * i, 10, 100_000).encode_to_vec();
        let (status, headers, _) = post(&d, "application/x-protobuf", None, &body).await;
        answers.push((status, header(&headers, "retry-after").map(str::to_owned)));
    }
    assert_eq!(answers[0], (200, None));
    let refused = answers.iter().filter(|(s, _)| *s == 503).count();
    assert!(refused >= 3, "{answers:?}");
    assert!(answers.iter().all(|(s, r)| *s != 503 || r.as_deref() == Some("1")), "{answers:?}");
    // The daemon still answers; the buffer stays within its limit.
    assert_eq!(http(d.tcp(), "GET", "/health", &[], "").await.0, 200);
    let m = d.metrics().await;
    assert_eq!(metric(&m, "xray_daemon_otlp_http_refused_total"), refused as f64);
    assert!(metric(&m, "xray_daemon_buffer_bytes") <= metric(&m, "xray_daemon_buffer_limit_bytes"));
}

#[tokio::test]
async fn sigterm_sends_the_spans_still_buffered_before_exiting() {
    let xray = FakeXray::start(Credentials::new(ACCESS_KEY, SECRET_KEY));
    let otlp = FakeOtlp::start().await;
    let mut d = daemon(&xray, &otlp.url, &[]).await;
    for k in 0..5 {
        d.send(&t1s_datagram(1 + 10 * k, 10));
    }
    // At once: the partial batch would otherwise wait up to a second.
    let (status, took) = d.terminate(Duration::from_secs(10)).await;
    assert!(status.success(), "{status:?}");
    assert!(took < Duration::from_secs(5), "{took:?}");
    let ids: usize = otlp.received().iter().map(|r| r.span_ids.len()).sum();
    assert_eq!(ids, 50, "{}", d.log_text());
    let line = d.logs().into_iter().find(|l| l.contains("Spans received:")).expect("a spans line");
    assert!(line.contains("Spans received: 50, sent: 50, rejected: 0, dropped: 0, not delivered: 0"), "{line}");
}

#[tokio::test]
async fn a_listener_of_its_own_takes_v1_traces_and_nothing_else() {
    let xray = FakeXray::start(Credentials::new(ACCESS_KEY, SECRET_KEY));
    let otlp = FakeOtlp::start().await;
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let address = format!("127.0.0.1:{port}");
    let d = against(&xray)
        .env("XRAY_DAEMON_OTLP_ENDPOINT", otlp.url.clone())
        .env("XRAY_DAEMON_SPAN_UPLOAD", "otlp")
        .env("XRAY_DAEMON_OTLP_ADDRESS", address.clone())
        .spawn()
        .await;
    d.wait_for_log(|l| l.contains(&format!("Starting OTLP/HTTP server on {address}")), WAIT)
        .await
        .expect("no listener line");
    let addr: std::net::SocketAddr = address.parse().unwrap();
    let body = request(1, 4, 0).encode_to_vec();
    let mut req = format!(
        "POST /v1/traces HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: application/x-protobuf\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    req.extend_from_slice(&body);
    assert_eq!(http_raw(addr, &req).await.0, 200);
    let (status, _, text) = http(addr, "GET", "/health", &[], "").await;
    assert_eq!(status, 404, "{text}");
    assert!(text.contains("/v1/traces"), "{text}");
    let deadline = Instant::now() + WAIT;
    while otlp.received().iter().map(|r| r.span_ids.len()).sum::<usize>() < 4 {
        assert!(Instant::now() < deadline, "spans did not arrive:\n{}", d.log_text());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
