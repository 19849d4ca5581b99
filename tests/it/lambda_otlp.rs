//! The OTLP listeners of the Lambda extension: on by default at the SDKs' endpoints (gRPC
//! 127.0.0.1:4317, HTTP 127.0.0.1:4318), covered by the flush points like every other way in,
//! and never a reason to fail: a port another extension holds is one warning.

use crate::fake_lambda::FakeLambda;
use crate::fake_otlp::{spans_request, FakeOtlp};
use crate::grpc::Client;
use crate::lambda::{at_default_ports, booted, delivered_before, extension, fakes, nth_next, send, sorted};
use prost::Message;
use std::net::SocketAddr;
use std::time::Duration;

/// Exports spans the ways an OpenTelemetry SDK in the function would: `n` spans from `first`
/// over OTLP/gRPC to `grpc`, and as many again over OTLP/HTTP to `http`; returns their ids.
async fn export_both_ways(grpc: SocketAddr, http: SocketAddr, first: u64, n: u64) -> Vec<Vec<u8>> {
    let mut c = Client::connect(grpc).await;
    let a = c.export(&spans_request(first, n, 0).encode_to_vec(), true).await;
    assert_eq!(a.status, Some(crate::grpc::OK), "{a:?}");
    post_spans(http, first + n, n).await;
    (first..first + 2 * n).map(|i| i.to_be_bytes().to_vec()).collect()
}

/// POSTs `n` spans from `first` to OTLP/HTTP at `http`, which takes them.
async fn post_spans(http: SocketAddr, first: u64, n: u64) {
    let body = spans_request(first, n, 0).encode_to_vec();
    let mut req = format!(
        "POST /v1/traces HTTP/1.1\r\nHost: {http}\r\nConnection: close\r\nContent-Type: application/x-protobuf\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    req.extend_from_slice(&body);
    assert_eq!(crate::daemon::http_raw(http, &req).await.0, 200);
}

/// With nothing set, the extension takes OTLP/gRPC on 127.0.0.1:4317 and OTLP/HTTP on
/// 127.0.0.1:4318, the SDKs' default endpoints, and what the function exports there before
/// it returns is uploaded before the next `/next`. (When another process on this machine holds
/// either port, the test says so and checks nothing.)
#[tokio::test]
async fn the_otlp_listeners_are_on_by_default_at_the_sdks_endpoints() {
    let (grpc, http): (SocketAddr, SocketAddr) = ("127.0.0.1:4317".parse().unwrap(), "127.0.0.1:4318".parse().unwrap());
    if let Some(taken) = [grpc, http].into_iter().find(|a| std::net::TcpListener::bind(a).is_err()) {
        eprintln!("skipped: {taken} is taken by another process on this machine");
        return;
    }
    let xray = fakes();
    let otlp = FakeOtlp::start().await;
    let lambda = FakeLambda::start().await;
    let mut d = booted(at_default_ports(&xray, &lambda).spans_to(&otlp.url), &lambda).await;
    assert_eq!((d.server("OTLP/gRPC"), d.server("OTLP/HTTP")), (grpc, http));
    lambda.invoke("req-1", Duration::from_secs(10));
    let spans = export_both_ways(grpc, http, 1, 5).await;
    assert_eq!(lambda.runtime_done("req-1").await, 200);
    let next_at = nth_next(&lambda, 2, &d).await;
    assert_eq!(sorted(otlp.spans_before(next_at)), sorted(spans), "spans not all uploaded before /next");
    lambda.shutdown("spindown", Duration::from_millis(1700));
    assert_eq!(d.wait_exit(Duration::from_secs(3)).await.and_then(|s| s.code()), Some(0), "{}", d.log_text());
    assert!(!d.log_text().contains("[Warn]"), "{}", d.log_text());
}

/// Another extension holds the gRPC port: one warning, and the extension registers, serves
/// OTLP/HTTP and uploads as ever. Set empty, a listener is off without a word.
#[tokio::test]
async fn a_taken_otlp_port_is_one_warning_and_the_extension_still_registers_and_uploads() {
    let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = held.local_addr().unwrap();
    let xray = fakes();
    let otlp = FakeOtlp::start().await;
    let lambda = FakeLambda::start().await;
    let b = extension(&xray, &lambda).spans_to(&otlp.url).env("XRAY_DAEMON_OTLP_GRPC_ADDRESS", taken.to_string());
    let mut d = booted(b, &lambda).await;
    let warnings: Vec<String> = d.logs().into_iter().filter(|l| l.contains("[Warn]")).collect();
    assert_eq!(warnings.len(), 1, "{}", d.log_text());
    let want = format!("Cannot listen for OTLP/gRPC on {taken} (");
    assert!(warnings[0].contains(&want) && warnings[0].contains("XRAY_DAEMON_OTLP_GRPC_ADDRESS"), "{}", warnings[0]);
    assert!(!d.log_text().contains("Starting OTLP/gRPC server"), "{}", d.log_text());
    assert_eq!(lambda.calls_to("/extension/register").len(), 1);

    lambda.invoke("req-1", Duration::from_secs(10));
    let sent = send(&d, 0, 3);
    post_spans(d.server("OTLP/HTTP"), 1, 4).await;
    assert_eq!(lambda.runtime_done("req-1").await, 200);
    let next_at = nth_next(&lambda, 2, &d).await;
    assert_eq!(sorted(delivered_before(&xray, next_at)), sorted(sent));
    assert_eq!(otlp.spans_before(next_at).len(), 4);
    lambda.shutdown("spindown", Duration::from_millis(1700));
    assert_eq!(d.wait_exit(Duration::from_secs(3)).await.and_then(|s| s.code()), Some(0), "{}", d.log_text());
    drop(held);

    let lambda = FakeLambda::start().await;
    let off = extension(&xray, &lambda).env("XRAY_DAEMON_OTLP_GRPC_ADDRESS", "").env("XRAY_DAEMON_OTLP_ADDRESS", "");
    let d = booted(off, &lambda).await;
    assert!(!d.log_text().contains("OTLP/gRPC") && !d.log_text().contains("OTLP/HTTP"), "{}", d.log_text());
    assert!(!d.log_text().contains("[Warn]"), "{}", d.log_text());
}
