//! Spans as segment documents (`XRAY_DAEMON_SPAN_UPLOAD=segments`, the default): spans from
//! OTLP/HTTP and from `T1S` datagrams reach the fake X-Ray through PutTraceSegments, signed and
//! batched as segments are, and nothing goes to `/v1/traces`. Spans X-Ray cannot take are left
//! out, counted by reason and reported in `partial_success`; a full buffer refuses a whole
//! request; SIGTERM sends what is buffered; spans spooled in the other form are sent after the
//! mode changes. The documents' fields are the translator's (its unit tests, and the end-to-end
//! tests against moto with the real SDKs).

use crate::daemon::{against, http_raw, Daemon};
use crate::daemon::{ACCESS_KEY, SECRET_KEY};
use crate::fake_otlp::{spans_request, t1s_datagram, FakeOtlp};
use crate::fake_xray::{Credentials, FakeXray, Fault};
use crate::proxy::metric;
use crate::spool::{spool_dir, with_spool};
use opentelemetry_proto::tonic::collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse};
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use prost::Message;
use serde_json::Value;
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(15);
/// The trace id of `spans_request`'s spans (all bytes 7), as X-Ray writes it.
const TRACE: &str = "1-07070707-070707070707070707070707";

fn fake() -> FakeXray {
    FakeXray::start(Credentials::new(ACCESS_KEY, SECRET_KEY))
}

/// A daemon in the default mode whose OTLP endpoint is `otlp`, so that a span sent there
/// would be seen.
async fn daemon(xray: &FakeXray, otlp: &FakeOtlp, args: &[&str]) -> Daemon {
    let mut b = against(xray).env("XRAY_DAEMON_OTLP_ENDPOINT", otlp.url.clone());
    for a in args {
        b = b.arg(*a);
    }
    b.spawn().await
}

async fn post(d: &Daemon, body: &[u8]) -> (u16, Vec<(String, String)>, String) {
    post_as(d, "application/x-protobuf", body).await
}

async fn post_as(d: &Daemon, content_type: &str, body: &[u8]) -> (u16, Vec<(String, String)>, String) {
    let addr = d.tcp();
    let mut req = format!(
        "POST /v1/traces HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    req.extend_from_slice(body);
    http_raw(addr, &req).await
}

/// The documents X-Ray accepted, parsed, once `n` have arrived.
async fn documents(xray: &FakeXray, n: usize) -> Vec<Value> {
    let docs = xray.wait_for_documents(n, WAIT).await;
    docs.iter().map(|d| serde_json::from_str(d).unwrap_or_else(|e| panic!("{e}: {d}"))).collect()
}

fn ids(docs: &[Value]) -> BTreeSet<String> {
    docs.iter().map(|d| d["id"].as_str().unwrap_or_default().to_owned()).collect()
}

fn hex_ids(range: std::ops::Range<u64>) -> BTreeSet<String> {
    range.map(|i| format!("{i:016x}")).collect()
}

fn string(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(any_value::Value::StringValue(value.into())) }),
        ..Default::default()
    }
}

#[tokio::test]
async fn spans_from_http_and_t1s_reach_put_trace_segments_and_nothing_goes_to_v1_traces() {
    let xray = fake();
    let otlp = FakeOtlp::start().await;
    let d = daemon(&xray, &otlp, &[]).await;
    let (status, _, body) = post(&d, &spans_request(1, 3, 0).encode_to_vec()).await;
    assert_eq!(status, 200);
    let answer = ExportTraceServiceResponse::decode(body.as_bytes()).unwrap();
    assert_eq!(answer.partial_success, None, "nothing was left out");
    d.send(&t1s_datagram(101, 4));
    let docs = documents(&xray, 7).await;
    assert_eq!(ids(&docs), hex_ids(1..4).union(&hex_ids(101..105)).cloned().collect());
    for doc in &docs {
        assert_eq!(doc["trace_id"], TRACE, "{doc}");
        assert!(doc["name"].as_str().is_some_and(|n| n.starts_with('s')), "{doc}");
        assert!(doc["start_time"].is_number() && doc["end_time"].is_number(), "{doc}");
    }
    // Each accepted call was signed and named PutTraceSegments, as for segments.
    assert!(xray.invalid_requests() == 0);
    assert!(otlp.received().is_empty(), "a span went to /v1/traces");
    let m = d.metrics().await;
    assert_eq!(metric(&m, "xray_daemon_spans_received_total{source=\"http\"}"), 3.0);
    assert_eq!(metric(&m, "xray_daemon_spans_received_total{source=\"udp\"}"), 4.0);
    assert_eq!(metric(&m, "xray_daemon_spans_sent_total"), 7.0);
    assert_eq!(metric(&m, "xray_daemon_segments_sent_total"), 0.0, "span documents are counted as spans");
}

#[tokio::test]
async fn spans_x_ray_cannot_take_are_left_out_counted_and_reported() {
    let xray = fake();
    let otlp = FakeOtlp::start().await;
    let d = daemon(&xray, &otlp, &[]).await;
    let mut request: ExportTraceServiceRequest = spans_request(1, 6, 0);
    let spans = &mut request.resource_spans[0].scope_spans[0].spans;
    spans[0].trace_id = vec![0; 16];
    spans[1].trace_id = vec![7; 15];
    spans[2].span_id = vec![0; 8];
    // An attribute that makes the document larger than X-Ray's 64 KB.
    spans[3].attributes.push(string("big", &"x".repeat(70_000)));
    // In OTLP/JSON, so that the answer is JSON too.
    let (status, _, body) = post_as(&d, "application/json", &serde_json::to_vec(&request).unwrap()).await;
    assert_eq!(status, 200, "{body}");
    let answer: Value = serde_json::from_str(&body).unwrap();
    let partial = &answer["partialSuccess"];
    assert!(partial["rejectedSpans"] == 4 || partial["rejectedSpans"] == "4", "{answer}");
    let message = partial["errorMessage"].as_str().unwrap_or_default();
    assert!(message.contains("3 spans with an invalid trace id"), "{message}");
    assert!(message.contains("1 spans too large"), "{message}");
    let docs = documents(&xray, 2).await;
    assert_eq!(ids(&docs), hex_ids(5..7));
    let m = d.metrics().await;
    assert_eq!(metric(&m, "xray_daemon_spans_rejected_total{reason=\"invalid\"}"), 3.0);
    assert_eq!(metric(&m, "xray_daemon_spans_rejected_total{reason=\"too_large\"}"), 1.0);
    assert_eq!(metric(&m, "xray_daemon_spans_received_total{source=\"http\"}"), 6.0);
    // Nothing more arrives: the four were never sent.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(xray.accepted_documents().len(), 2);
}

#[tokio::test]
async fn a_full_buffer_refuses_a_whole_request_and_the_clients_retry_delivers_it() {
    let xray = fake();
    let otlp = FakeOtlp::start().await;
    xray.set_mode(Fault::Status(503, "ServiceUnavailable"));
    let d = daemon(&xray, &otlp, &["-m", "3"]).await;
    // 40 spans of about 30 KB documents each: 1.2 MB a request, so the 3 MB buffer takes two.
    let request = |first: u64| {
        let mut r = spans_request(first, 40, 0);
        for span in &mut r.resource_spans[0].scope_spans[0].spans {
            span.attributes.push(string("payload", &"p".repeat(30_000)));
        }
        r.encode_to_vec()
    };
    let mut refused = Vec::new();
    for i in 0..5u64 {
        let (status, headers, _) = post(&d, &request(1 + 100 * i)).await;
        let retry_after = headers.iter().find(|(k, _)| k == "retry-after").map(|(_, v)| v.clone());
        match status {
            200 => {}
            503 => {
                assert_eq!(retry_after.as_deref(), Some("1"));
                refused.push(1 + 100 * i);
            }
            other => panic!("{other}"),
        }
    }
    assert!(!refused.is_empty() && refused.len() < 5, "{refused:?}");
    let m = d.metrics().await;
    assert_eq!(metric(&m, "xray_daemon_otlp_http_refused_total"), refused.len() as f64);
    assert_eq!(metric(&m, "xray_daemon_spans_spillover_total"), 0.0, "nothing buffered was dropped for it");
    let taken = (5 - refused.len()) * 40;
    assert_eq!(metric(&m, "xray_daemon_spans_received_total{source=\"http\"}"), taken as f64);
    // X-Ray comes back; the client sends the refused requests again, as OTLP exporters do.
    xray.clear_mode();
    let deadline = Instant::now() + WAIT;
    for first in refused {
        loop {
            if post(&d, &request(first)).await.0 == 200 {
                break;
            }
            assert!(Instant::now() < deadline, "still refused:\n{}", d.log_text());
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    let docs = documents(&xray, 200).await;
    assert_eq!(ids(&docs).len(), 200, "every span once");
}

#[tokio::test]
async fn sigterm_sends_the_span_documents_still_buffered() {
    let xray = fake();
    let otlp = FakeOtlp::start().await;
    let mut d = daemon(&xray, &otlp, &[]).await;
    for k in 0..5 {
        d.send(&t1s_datagram(1 + 10 * k, 10));
    }
    let (status, took) = d.terminate(Duration::from_secs(10)).await;
    assert!(status.success() && took < Duration::from_secs(5), "{status:?} {took:?}");
    assert_eq!(ids(&documents(&xray, 50).await), hex_ids(1..51));
    let line = d.logs().into_iter().find(|l| l.contains("Spans received:")).expect("a spans line");
    assert!(line.contains("Spans received: 50, sent: 50, rejected: 0, dropped: 0, not delivered: 0"), "{line}");
}

/// A daemon with a spool in `dir`, spans in `mode`, the OTLP endpoint at `otlp_url`.
async fn spooled(xray: &FakeXray, otlp_url: &str, dir: &std::path::Path, mode: &str) -> Daemon {
    with_spool(xray, dir).env("XRAY_DAEMON_OTLP_ENDPOINT", otlp_url).env("XRAY_DAEMON_SPAN_UPLOAD", mode).spawn().await
}

#[tokio::test]
async fn spans_spooled_for_the_otlp_endpoint_are_sent_as_documents_after_the_mode_changes() {
    let dir = spool_dir("span-mode-change");
    let xray = fake();
    // Nothing listens at the OTLP endpoint: the spans are written to the spool.
    let mut d = spooled(&xray, "http://127.0.0.1:9/v1/traces", &dir, "otlp").await;
    d.send(&t1s_datagram(1, 30));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(d.terminate(Duration::from_secs(10)).await.0.success());
    assert!(dir.join("spans").is_dir());
    // Segments mode: the spooled requests become documents, sent once each.
    let otlp = FakeOtlp::start().await;
    let mut d = spooled(&xray, &otlp.url, &dir, "segments").await;
    assert_eq!(ids(&documents(&xray, 30).await), hex_ids(1..31));
    let moved = d.wait_for_log(|l| l.contains("Moved 30 spans spooled by an earlier run"), WAIT).await;
    assert!(moved.is_some(), "{}", d.log_text());
    assert!(otlp.received().is_empty());
    assert!(d.terminate(Duration::from_secs(10)).await.0.success());
    // Another start sends nothing again.
    let mut d = spooled(&xray, &otlp.url, &dir, "segments").await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(d.terminate(Duration::from_secs(10)).await.0.success());
    assert_eq!(xray.accepted_documents().len(), 30, "nothing twice");
    let _ = std::fs::remove_dir_all(&dir);
}
