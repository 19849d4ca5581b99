//! Fuzz targets for the OTLP paths: the `T1S` payload decoder, the OTLP/JSON converter, and the
//! `/v1/traces` handler of a running daemon. Bad base64, truncated protobuf, a message of another
//! type, arbitrary JSON, gzip bombs and oversized bodies each get a clear answer or a counter,
//! never a crash or unbounded memory. Run like the targets in `fuzz.rs` (`make fuzz` raises the
//! case count).

use crate::daemon::{against, http, Daemon};
use crate::daemon::{ACCESS_KEY, SECRET_KEY};
use crate::fake_otlp::spans_request;
use crate::fake_xray::{Credentials, FakeXray};
use base64::Engine;
use opentelemetry_proto::tonic::collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse};
use proptest::prelude::*;
use prost::Message;
use std::io::Write;
use xray_daemon::signal::spans::{self, Malformed};

fn request(n: usize) -> ExportTraceServiceRequest {
    spans_request(0, n as u64, 0)
}

fn b64(data: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(data)
}

proptest! {
    /// Any bytes after `T1S`: decoded or refused with a reason, never a panic.
    #[test]
    fn fuzz_t1s_payload_arbitrary_bytes(payload in prop::collection::vec(any::<u8>(), 0..2048)) {
        match spans::from_udp(&payload) {
            Ok(received) => prop_assert!(received.wire.is_some_and(|w| w.len() <= payload.len())),
            Err(e) => prop_assert!(!e.to_string().is_empty()),
        }
    }

    /// Valid base64 of anything: a protobuf decode error or a request, whose span count is right.
    #[test]
    fn fuzz_t1s_base64_of_anything(raw in prop::collection::vec(any::<u8>(), 0..2048)) {
        match spans::from_udp(b64(&raw).as_bytes()) {
            Ok(received) => {
                let checked = spans::for_otlp(received);
                let decoded = ExportTraceServiceRequest::decode(checked.body).unwrap();
                let n: usize = decoded.resource_spans.iter().flat_map(|r| &r.scope_spans).map(|s| s.spans.len()).sum();
                prop_assert_eq!(n as u32, checked.spans);
            }
            Err(e) => prop_assert!(matches!(e, Malformed::Protobuf(_)), "{e:?}"),
        }
    }

    /// A real request cut anywhere: refused, or decoded with at most its spans.
    #[test]
    fn fuzz_t1s_truncated_request(n in 0usize..40, cut in any::<prop::sample::Index>()) {
        let full = request(n).encode_to_vec();
        let cut = cut.index(full.len() + 1);
        if let Ok(received) = spans::from_udp(b64(&full[..cut]).as_bytes()) {
            prop_assert!(received.spans() <= n);
        }
    }

    /// A message of another type (an answer instead of a request) is not a crash.
    #[test]
    fn fuzz_t1s_wrong_message(rejected in any::<i64>(), message in ".{0,40}") {
        let partial = opentelemetry_proto::tonic::collector::trace::v1::ExportTracePartialSuccess {
            rejected_spans: rejected,
            error_message: message,
        };
        let wrong = ExportTraceServiceResponse { partial_success: Some(partial) }.encode_to_vec();
        let _ = spans::from_udp(b64(&wrong).as_bytes());
    }

    /// Arbitrary text as OTLP/JSON.
    #[test]
    fn fuzz_otlp_json_arbitrary(text in ".{0,400}") {
        let _ = spans::from_json(text.as_bytes());
    }
}

fn body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..4096),
        (0usize..30).prop_map(|n| request(n).encode_to_vec()),
        (0usize..30).prop_map(|n| serde_json::to_vec(&request(n)).unwrap()),
        (1usize..8).prop_map(|mb| vec![0u8; mb << 20]),
    ]
}

fn encode(body: &[u8], encoding: &str) -> Vec<u8> {
    match encoding {
        "gzip" => {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            e.write_all(body).unwrap();
            e.finish().unwrap()
        }
        "deflate" => {
            let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
            e.write_all(body).unwrap();
            e.finish().unwrap()
        }
        _ => body.to_vec(),
    }
}

/// POSTs `wire`, writing while reading the answer: the daemon may answer (413, 415) and close
/// before it has read a body it refuses. `None` when the connection ended without an answer.
async fn post(d: &Daemon, content_type: &str, encoding: &str, wire: &[u8]) -> Option<u16> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = d.tcp();
    let mut head = format!(
        "POST /v1/traces HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n",
        wire.len()
    );
    if !encoding.is_empty() {
        head.push_str(&format!("Content-Encoding: {encoding}\r\n"));
    }
    head.push_str("\r\n");
    let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let (mut reader, mut writer) = stream.into_split();
    let request = [head.as_bytes(), wire].concat();
    // The write half stays open until the answer is read: a half-closed connection is one that
    // hyper may end before answering, and no exporter half-closes.
    let write = tokio::spawn(async move {
        let _ = writer.write_all(&request).await;
        writer
    });
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(std::time::Duration::from_secs(20), reader.read_to_end(&mut answer)).await;
    drop(write.await);
    let text = String::from_utf8_lossy(&answer);
    text.lines().next().and_then(|l| l.split_whitespace().nth(1)).and_then(|c| c.parse().ok())
}

/// The `/v1/traces` handler on arbitrary bodies, content types and encodings (bombs included:
/// megabytes of zeros, gzipped): every answer is one the specification names, and the daemon
/// keeps answering. One daemon serves every case, and goes when the test does.
#[test]
fn fuzz_v1_traces_handler() {
    use proptest::test_runner::{Config, TestRunner};
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let (d, _xray) = rt.block_on(async {
        let xray = FakeXray::start(Credentials::new(ACCESS_KEY, SECRET_KEY));
        let d = against(&xray)
            .env("XRAY_DAEMON_OTLP_ENDPOINT", "http://127.0.0.1:9/v1/traces")
            .env("XRAY_DAEMON_SPAN_UPLOAD", "otlp")
            .spawn()
            .await;
        (d, xray)
    });
    // Each case is an HTTP exchange: a fifth of the cases the other targets run (51 in
    // `make test`, 1,000 under `make fuzz`).
    let mut runner = TestRunner::new(Config { cases: (Config::default().cases / 5).max(16), ..Config::default() });
    let content_types = vec!["application/x-protobuf", "application/json", "text/plain", "application/protobuf"];
    let encodings = vec!["", "gzip", "deflate", "identity", "br"];
    let cases = (body(), prop::sample::select(content_types), prop::sample::select(encodings));
    let result = runner.run(&cases, |(body, content_type, encoding)| {
        let wire = encode(&body, encoding);
        let status = rt.block_on(post(&d, content_type, encoding, &wire));
        match status {
            Some(status) => prop_assert!([200, 400, 413, 415, 503].contains(&status), "answered {}", status),
            // It may hang up on a body it will not read, once it has answered or while it does.
            None => prop_assert!(
                wire.len() > 5_000_000 || content_type == "text/plain" || encoding == "br",
                "no answer to {} bytes ({content_type}, {encoding:?}); the daemon's log ends:\n{}",
                wire.len(),
                d.logs().iter().rev().take(8).rev().cloned().collect::<Vec<_>>().join("\n")
            ),
        }
        let health = rt.block_on(http(d.tcp(), "GET", "/health", &[], "")).0;
        prop_assert_eq!(health, 200);
        prop_assert!(d.status_kb("VmRSS") < 200_000, "RSS {} kB", d.status_kb("VmRSS"));
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}
