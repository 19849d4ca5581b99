//! OTLP/gRPC `TraceService/Export` on a listener of its own: every answer the OTLP specification
//! names, with and without gzip, push-back with a `RetryInfo` when the buffer is full, and each
//! span delivered once.
//!
//! The client is raw HTTP/2 (the `h2` crate) with gRPC's message prefix written here, so that
//! tests control every byte, the ones no real client sends too. The real clients (Python's and
//! Node's exporters) are in the end-to-end tests (`tests/e2e/test_otlp_grpc_e2e.py`).

use crate::daemon::{against, Daemon};
use crate::daemon::{ACCESS_KEY, SECRET_KEY};
use crate::fake_otlp::{spans_request, FakeOtlp};
use crate::fake_xray::{Credentials, FakeXray};
use crate::proxy::metric;
use bytes::Bytes;
use http::HeaderMap;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse;
use prost::Message;
use std::io::Write;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use xray_daemon::signal::spans::Status;

/// The one method of OTLP's trace service.
pub const EXPORT: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";
const WAIT: Duration = Duration::from_secs(15);

/// gRPC codes the tests meet.
pub const OK: i32 = 0;
pub const DEADLINE_EXCEEDED: i32 = 4;
pub const INVALID_ARGUMENT: i32 = 3;
pub const RESOURCE_EXHAUSTED: i32 = 8;
pub const UNIMPLEMENTED: i32 = 12;
pub const UNAVAILABLE: i32 = 14;

/// A message in gRPC's framing: the compressed flag, the length (big-endian u32), the bytes.
pub fn framed(message: &[u8], compressed: bool) -> Vec<u8> {
    let mut out = vec![u8::from(compressed)];
    out.extend_from_slice(&(message.len() as u32).to_be_bytes());
    out.extend_from_slice(message);
    out
}

pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

/// What came back for one call.
#[derive(Debug, Default)]
pub struct Answer {
    /// The HTTP status; 0 when the stream was reset or the connection lost before it.
    pub http: u16,
    /// `grpc-status`, from the trailers or a trailers-only answer.
    pub status: Option<i32>,
    pub message: String,
    pub headers: HeaderMap,
    /// The response message's bytes, without their prefix.
    pub body: Vec<u8>,
    /// Why there is no answer, when there is none.
    pub error: Option<String>,
}

impl Answer {
    pub fn response(&self) -> ExportTraceServiceResponse {
        ExportTraceServiceResponse::decode(&self.body[..]).expect("an ExportTraceServiceResponse")
    }

    /// `grpc-status-details-bin`: a `google.rpc.Status`.
    pub fn details(&self) -> Option<Status> {
        use base64::Engine;
        let text = self.headers.get("grpc-status-details-bin")?.to_str().ok()?;
        let raw = base64::engine::general_purpose::STANDARD_NO_PAD.decode(text.trim_end_matches('=')).ok()?;
        Status::decode(&raw[..]).ok()
    }
}

/// One HTTP/2 connection to the gRPC listener; clones share it.
#[derive(Clone)]
pub struct Client {
    send: h2::client::SendRequest<Bytes>,
    addr: SocketAddr,
}

impl Client {
    pub async fn connect(addr: SocketAddr) -> Client {
        let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect to the gRPC listener");
        let (send, connection) = h2::client::handshake(tcp).await.expect("HTTP/2 handshake");
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Client { send, addr }
    }

    /// Exports `message` (an encoded `ExportTraceServiceRequest`, or anything), gzipped if
    /// `gzip`.
    pub async fn export(&mut self, message: &[u8], gzip_it: bool) -> Answer {
        match gzip_it {
            true => self.call(EXPORT, framed(&gzip(message), true), &[("grpc-encoding", "gzip")], true).await,
            false => self.call(EXPORT, framed(message, false), &[], true).await,
        }
    }

    /// Calls `path` with `body` as the whole request body (ended when `end` says so), and the
    /// headers a gRPC client sends plus `extra`.
    pub async fn call(&mut self, path: &str, body: Vec<u8>, extra: &[(&str, &str)], end: bool) -> Answer {
        let (response, mut stream) = match self.start(path, extra).await {
            Ok(started) => started,
            Err(e) => return Answer { error: Some(e), ..Default::default() },
        };
        // A refused request is answered and reset before all of it is sent: not an error here.
        let _ = stream.send_data(Bytes::from(body), end);
        let answer = read(response).await;
        drop(stream);
        answer
    }

    /// Opens a stream and sends the request head; the body is the caller's.
    pub async fn start(
        &mut self,
        path: &str,
        extra: &[(&str, &str)],
    ) -> Result<(h2::client::ResponseFuture, h2::SendStream<Bytes>), String> {
        let mut request = http::Request::post(format!("http://{}{path}", self.addr))
            .header("content-type", "application/grpc")
            .header("te", "trailers");
        for (k, v) in extra {
            request = request.header(*k, *v);
        }
        let request = request.body(()).unwrap();
        let mut ready = self.send.clone().ready().await.map_err(|e| e.to_string())?;
        ready.send_request(request, false).map_err(|e| e.to_string())
    }
}

/// Reads a call's answer to the end.
pub async fn read(response: h2::client::ResponseFuture) -> Answer {
    let response = match tokio::time::timeout(Duration::from_secs(30), response).await {
        Ok(Ok(response)) => response,
        Ok(Err(e)) => return Answer { error: Some(e.to_string()), ..Default::default() },
        Err(_) => return Answer { error: Some("no answer in 30 s".into()), ..Default::default() },
    };
    let (parts, mut body) = response.into_parts();
    let mut data = Vec::new();
    while let Some(chunk) = body.data().await {
        let Ok(chunk) = chunk else { break };
        let _ = body.flow_control().release_capacity(chunk.len());
        data.extend_from_slice(&chunk);
    }
    let trailers = body.trailers().await.ok().flatten().unwrap_or_default();
    let field = |name: &str| trailers.get(name).or_else(|| parts.headers.get(name)).and_then(|v| v.to_str().ok());
    let status = field("grpc-status").and_then(|s| s.parse().ok());
    let message = percent_decoded(field("grpc-message").unwrap_or_default());
    let mut headers = parts.headers;
    headers.extend(trailers);
    Answer {
        http: parts.status.as_u16(),
        status,
        message,
        headers,
        body: data.get(5..).unwrap_or_default().to_vec(),
        error: None,
    }
}

/// `grpc-message` is percent-encoded.
fn percent_decoded(text: &str) -> String {
    let mut out = Vec::new();
    let mut bytes = text.bytes();
    while let Some(b) = bytes.next() {
        let hex = |b: Option<u8>| b.and_then(|b| (b as char).to_digit(16));
        match b {
            b'%' => match (hex(bytes.next()), hex(bytes.next())) {
                (Some(hi), Some(lo)) => out.push((hi * 16 + lo) as u8),
                _ => out.push(b'?'),
            },
            b => out.push(b),
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A daemon taking OTLP/gRPC on a port of its own, sending spans to `otlp_url`, with `args`.
pub async fn daemon(xray: &FakeXray, otlp_url: &str, args: &[&str], env: &[(&str, &str)]) -> Daemon {
    let mut b = against(xray).spans_to(otlp_url).env("XRAY_DAEMON_OTLP_GRPC_ADDRESS", "127.0.0.1:0");
    for a in args {
        b = b.arg(*a);
    }
    for (k, v) in env {
        b = b.env(k, *v);
    }
    b.spawn().await
}

pub fn xray() -> FakeXray {
    FakeXray::start(Credentials::new(ACCESS_KEY, SECRET_KEY))
}

/// Spans the fake OTLP endpoint has received, by id, sorted.
pub fn span_ids(otlp: &FakeOtlp) -> Vec<Vec<u8>> {
    let mut ids: Vec<Vec<u8>> = otlp.received().into_iter().flat_map(|r| r.span_ids).collect();
    ids.sort();
    ids
}

pub async fn wait_for_spans(otlp: &FakeOtlp, n: usize, d: &Daemon) {
    let deadline = Instant::now() + WAIT;
    while span_ids(otlp).len() < n {
        assert!(Instant::now() < deadline, "{} of {n} spans arrived:\n{}", span_ids(otlp).len(), d.log_text());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

// Two threads: the fake OTLP endpoint answers while the test waits on the daemon.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_answers_as_the_otlp_specification_says() {
    // Built first: compressing 50 MB takes a while.
    let bomb = gzip(&vec![0u8; 50_000_000]);
    let xray = xray();
    let otlp = FakeOtlp::start().await;
    let d = daemon(&xray, &otlp.url, &[], &[]).await;
    let mut c = Client::connect(d.server("OTLP/gRPC")).await;

    // Identity and gzip: OK with an empty ExportTraceServiceResponse.
    let a = c.export(&spans_request(1, 5, 0).encode_to_vec(), false).await;
    assert_eq!((a.http, a.status), (200, Some(OK)), "{a:?}");
    assert_eq!(a.headers.get("content-type").unwrap(), "application/grpc");
    assert_eq!(a.response(), ExportTraceServiceResponse::default());
    let a = c.export(&spans_request(6, 5, 0).encode_to_vec(), true).await;
    assert_eq!(a.status, Some(OK), "{a:?}");

    // One span over 200 KB: OK, with partial_success counting it.
    let mut big = spans_request(11, 3, 0);
    big.resource_spans[0].scope_spans[0].spans[1].name = "y".repeat(210_000);
    let a = c.export(&big.encode_to_vec(), true).await;
    assert_eq!(a.status, Some(OK), "{a:?}");
    let partial = a.response().partial_success.expect("partial_success");
    assert_eq!(partial.rejected_spans, 1);
    assert!(partial.error_message.contains("over 200000 bytes"), "{}", partial.error_message);

    // A request held open after its message is answered at once, not when the client ends it.
    let t0 = Instant::now();
    let a = c.call(EXPORT, framed(&spans_request(14, 1, 0).encode_to_vec(), false), &[], false).await;
    assert_eq!(a.status, Some(OK), "{a:?}");
    assert!(t0.elapsed() < Duration::from_secs(2), "answered after {:?}", t0.elapsed());

    // What does not decode: INVALID_ARGUMENT (tonic's INTERNAL, restated), not retried by clients.
    let not_protobuf = c.export(b"\xff\xff\xff not protobuf", false).await;
    let flag_without_encoding = c.call(EXPORT, framed(b"\x0a\x00", true), &[], true).await;
    let not_gzip = c.call(EXPORT, framed(b"not gzip", true), &[("grpc-encoding", "gzip")], true).await;
    for a in [&not_protobuf, &flag_without_encoding, &not_gzip] {
        assert_eq!(a.status, Some(INVALID_ARGUMENT), "{a:?}");
    }
    assert!(not_protobuf.message.contains("ExportTraceServiceRequest"), "{not_protobuf:?}");
    // An encoding other than gzip, and another method: UNIMPLEMENTED.
    let brotli = c.call(EXPORT, framed(b"x", true), &[("grpc-encoding", "br")], true).await;
    assert_eq!(brotli.status, Some(UNIMPLEMENTED), "{brotli:?}");
    let other = "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export";
    assert_eq!(c.call(other, framed(b"", false), &[], true).await.status, Some(UNIMPLEMENTED));

    // Over 5 MB on the wire, or once inflated (a 50 MB bomb): RESOURCE_EXHAUSTED, quickly.
    let t0 = Instant::now();
    let a = c.export(&vec![0u8; 5_000_001], false).await;
    assert_eq!(a.status, Some(RESOURCE_EXHAUSTED), "{a:?}");
    assert!(a.message.contains("5000001 bytes"), "{a:?}");
    assert!(bomb.len() < 100_000);
    let a = c.call(EXPORT, framed(&bomb, true), &[("grpc-encoding", "gzip")], true).await;
    assert_eq!(a.status, Some(RESOURCE_EXHAUSTED), "{a:?}");
    assert!(t0.elapsed() < Duration::from_secs(5), "took {:?}", t0.elapsed());

    // The connection still works, and everything taken arrives once: 5 + 5 + 2 + 1 spans.
    assert_eq!(c.export(&spans_request(15, 1, 0).encode_to_vec(), false).await.status, Some(OK));
    wait_for_spans(&otlp, 14, &d).await;
    let mut expected: Vec<Vec<u8>> = (1..=15u64).filter(|&i| i != 12).map(|i| i.to_be_bytes().to_vec()).collect();
    expected.sort();
    assert_eq!(span_ids(&otlp), expected);
    let m = d.metrics().await;
    // Received counts every span of the requests taken: the 14 stored and the one too large.
    assert_eq!(metric(&m, "xray_daemon_spans_received_total{source=\"grpc\"}"), 15.0);
    assert_eq!(metric(&m, "xray_daemon_spans_received_total{source=\"http\"}"), 0.0);
    assert_eq!(metric(&m, "xray_daemon_spans_rejected_total{reason=\"too_large\"}"), 1.0);
    assert_eq!(metric(&m, "xray_daemon_spans_rejected_total{reason=\"malformed\"}"), 3.0);
    assert_eq!(metric(&m, "xray_daemon_otlp_grpc_refused_total"), 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_buffer_answers_unavailable_with_a_retry_info_and_drops_nothing() {
    let xray = xray();
    // Nothing listens there: spans cannot leave, and the 3 MB buffer fills.
    let d = daemon(&xray, "http://127.0.0.1:9/v1/traces", &["-m", "3"], &[]).await;
    let mut c = Client::connect(d.server("OTLP/gRPC")).await;
    assert!(spans_request(1, 10, 100_000).encoded_len() > 1_000_000);
    let mut answers = Vec::new();
    for i in 0..6u64 {
        answers.push(c.export(&spans_request(1 + 10 * i, 10, 100_000).encode_to_vec(), i % 2 == 1).await);
    }
    assert_eq!(answers[0].status, Some(OK), "{:?}", answers[0]);
    let refused: Vec<&Answer> = answers.iter().filter(|a| a.status == Some(UNAVAILABLE)).collect();
    assert!(refused.len() >= 3, "{answers:?}");
    assert!(answers.iter().all(|a| a.status == Some(OK) || a.status == Some(UNAVAILABLE)), "{answers:?}");
    for a in &refused {
        assert!(a.message.contains("buffer is full"), "{a:?}");
        // The RetryInfo, where the Go and Collector clients look (google.rpc.Status details) and
        // where Python's looks (its own metadata key): one second.
        let details = a.details().expect("grpc-status-details-bin");
        assert_eq!(details.code, UNAVAILABLE);
        assert_eq!(details.details[0].type_url, "type.googleapis.com/google.rpc.RetryInfo");
        // RetryInfo { retry_delay: Duration { seconds: 1 } }
        assert_eq!(details.details[0].value, [0x0a, 0x02, 0x08, 0x01]);
        assert_eq!(a.headers.get("google.rpc.retryinfo-bin").unwrap(), "CgIIAQ");
    }
    let m = d.metrics().await;
    assert_eq!(metric(&m, "xray_daemon_otlp_grpc_refused_total"), refused.len() as f64);
    assert_eq!(metric(&m, "xray_daemon_spans_spillover_total"), 0.0, "nothing was dropped to make room");
    assert!(metric(&m, "xray_daemon_buffer_bytes") <= metric(&m, "xray_daemon_buffer_limit_bytes"));
    assert_eq!(crate::daemon::http(d.tcp(), "GET", "/health", &[], "").await.0, 200);
}

/// A message that trickles in is cut off once it is late at 1 MB a second (a second for this
/// one), and its share of what the daemon reads at once is free again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_that_does_not_arrive_in_time_gets_deadline_exceeded() {
    let xray = xray();
    let otlp = FakeOtlp::start().await;
    let d = daemon(&xray, &otlp.url, &[], &[]).await;
    let mut c = Client::connect(d.server("OTLP/gRPC")).await;
    let message = framed(&spans_request(1, 100, 1000).encode_to_vec(), false);
    let (response, mut stream) = c.start(EXPORT, &[]).await.unwrap();
    // The prefix and a few bytes, then nothing.
    stream.send_data(Bytes::copy_from_slice(&message[..100]), false).unwrap();
    let t0 = Instant::now();
    let a = read(response).await;
    assert_eq!(a.status, Some(DEADLINE_EXCEEDED), "{a:?}");
    assert!(a.message.contains("did not arrive at 1024 KB a second"), "{a:?}");
    let took = t0.elapsed();
    assert!(took > Duration::from_millis(900) && took < Duration::from_secs(3), "cut off after {took:?}");
    drop(stream);
    // Its share is free again: three messages of nearly 5 MB at once still fit.
    let big = spans_request(1000, 25, 190_000).encode_to_vec();
    assert!(big.len() > 4_700_000 && big.len() < 5_000_000);
    let calls = (0..3).map(|_| {
        let (mut c, big) = (c.clone(), big.clone());
        tokio::spawn(async move { c.export(&big, false).await })
    });
    for call in calls.collect::<Vec<_>>() {
        let a = call.await.unwrap();
        assert_eq!(a.status, Some(OK), "{a:?}");
        assert_eq!(a.response().partial_success, None);
    }
}

/// A connection in use is never closed as idle, however long it is used: requests one after the
/// other for three times the idle timeout, each answered OK on the one connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_in_use_is_not_closed_as_idle() {
    let xray = xray();
    let otlp = FakeOtlp::start().await;
    let d = daemon(&xray, &otlp.url, &[], &[("XRAY_DAEMON_PROXY_CLIENT_TIMEOUT", "1s")]).await;
    let mut c = Client::connect(d.server("OTLP/gRPC")).await;
    let start = Instant::now();
    let mut id = 1;
    while start.elapsed() < Duration::from_secs(3) {
        let a = c.export(&spans_request(id, 1, 0).encode_to_vec(), false).await;
        assert_eq!(a.status, Some(OK), "at {:?}: {a:?}", start.elapsed());
        id += 1;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Left alone, it is closed once idle: the next call on it fails.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let a = c.export(&spans_request(id, 1, 0).encode_to_vec(), false).await;
    assert!(a.status.is_none() && a.error.is_some(), "{a:?}");
}
