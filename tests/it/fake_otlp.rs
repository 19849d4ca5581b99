//! A small stand-in for X-Ray's OTLP traces endpoint, for tests that need to know *when* spans
//! arrive (Lambda's "before `/next`"). It records each `POST /v1/traces` with its arrival time and
//! the span ids it carried, and answers an empty `ExportTraceServiceResponse`. Started with
//! [`FakeOtlp::start_signed`] it also checks SigV4 (the fake X-Ray's verifier) against a clock of
//! its own, which a test may set minutes off the host's: a signature more than 5 minutes from
//! that clock gets X-Ray's 403 `InvalidSignatureException` with the fake's `Date`. The endpoint's
//! other limits are checked by the Python fake in the end-to-end tests (`tests/peers/fake_otlp.py`),
//! against the same sink code.

use crate::fake_xray::{shifted, sigv4, Credentials, DEFAULT_MAX_CLOCK_SKEW};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use opentelemetry_proto::tonic::collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse};
use prost::Message;
use std::io::Read;
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime};

/// One request received.
#[derive(Debug, Clone)]
pub struct Received {
    pub at: Instant,
    pub span_ids: Vec<Vec<u8>>,
}

pub struct FakeOtlp {
    pub url: String,
    received: Arc<Mutex<Vec<Received>>>,
    rejected: Arc<Mutex<Vec<String>>>,
}

/// What the fake checks of a request's signature.
#[derive(Clone)]
struct Check {
    creds: Credentials,
    /// Seconds the fake's clock is ahead of the host's.
    clock_offset: i64,
}

impl Check {
    /// The signature's verdict, and the fake's clock.
    fn verify(&self, parts: &http::request::Parts, body: &[u8]) -> (Result<(), String>, SystemTime) {
        let now = shifted(SystemTime::now(), self.clock_offset);
        let headers: Vec<(String, String)> = parts
            .headers
            .iter()
            .map(|(k, v)| (k.as_str().to_owned(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
            .collect();
        let creds = std::slice::from_ref(&self.creds);
        let (path, query) = (parts.uri.path(), parts.uri.query());
        let verdict = sigv4::verify(
            parts.method.as_str(),
            path,
            query,
            &headers,
            body,
            creds,
            "xray",
            Some((now, DEFAULT_MAX_CLOCK_SKEW)),
        );
        (verdict, now)
    }
}

impl FakeOtlp {
    /// Accepts every request, signed or not.
    pub async fn start() -> FakeOtlp {
        Self::serve(None).await
    }

    /// Accepts requests signed with `creds` within 5 minutes of its clock, which is
    /// `clock_offset` seconds ahead of the host's (negative: behind).
    pub async fn start_signed(creds: Credentials, clock_offset: i64) -> FakeOtlp {
        Self::serve(Some(Check { creds, clock_offset })).await
    }

    async fn serve(check: Option<Check>) -> FakeOtlp {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}/v1/traces", listener.local_addr().expect("addr"));
        let received = Arc::new(Mutex::new(Vec::new()));
        let rejected = Arc::new(Mutex::new(Vec::new()));
        let (store, refused) = (received.clone(), rejected.clone());
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (store, refused, check) = (store.clone(), refused.clone(), check.clone());
                let service = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
                    let (store, refused, check) = (store.clone(), refused.clone(), check.clone());
                    async move {
                        let at = Instant::now();
                        let (parts, body) = req.into_parts();
                        let gzip = parts.headers.get("content-encoding").is_some_and(|v| v == "gzip");
                        let body = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
                        if let Some((Err(reason), now)) = check.map(|c| c.verify(&parts, &body)) {
                            refused.lock().unwrap().push(reason.clone());
                            let answer = serde_json::json!({ "message": reason }).to_string();
                            let response = hyper::Response::builder()
                                .status(403)
                                .header("content-type", "application/json")
                                .header("x-amzn-errortype", "InvalidSignatureException")
                                .header("date", httpdate::fmt_http_date(now))
                                .body(Full::new(Bytes::from(answer)))
                                .expect("valid response");
                            return Ok::<_, std::convert::Infallible>(response);
                        }
                        let body = if gzip { gunzip(&body) } else { body.to_vec() };
                        let request = ExportTraceServiceRequest::decode(&body[..]).unwrap_or_default();
                        let span_ids = request
                            .resource_spans
                            .iter()
                            .flat_map(|r| &r.scope_spans)
                            .flat_map(|s| &s.spans)
                            .map(|s| s.span_id.clone())
                            .collect();
                        store.lock().unwrap().push(Received { at, span_ids });
                        let answer = ExportTraceServiceResponse::default().encode_to_vec();
                        Ok(hyper::Response::new(Full::new(Bytes::from(answer))))
                    }
                });
                tokio::spawn(
                    hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service),
                );
            }
        });
        FakeOtlp { url, received, rejected }
    }

    /// Why each refused request was refused (its signature), in arrival order.
    pub fn rejected(&self) -> Vec<String> {
        self.rejected.lock().unwrap().clone()
    }

    pub fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    /// The span ids of the requests that arrived before `t`.
    pub fn spans_before(&self, t: Instant) -> Vec<Vec<u8>> {
        self.received().into_iter().filter(|r| r.at < t).flat_map(|r| r.span_ids).collect()
    }
}

fn gunzip(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(data).read_to_end(&mut out).expect("gzip");
    out
}

/// A request of `n` spans with span ids `first..first + n`, each name padded with `pad` bytes.
pub fn spans_request(first: u64, n: u64, pad: usize) -> ExportTraceServiceRequest {
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
    let spans = (first..first + n)
        .map(|i| Span {
            trace_id: vec![7; 16],
            span_id: i.to_be_bytes().to_vec(),
            name: format!("s{i}{}", "x".repeat(pad)),
            ..Default::default()
        })
        .collect();
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            scope_spans: vec![ScopeSpans { spans, ..Default::default() }],
            ..Default::default()
        }],
    }
}

/// A `T1S` datagram, as AWS's OpenTelemetry distribution sends it, of `n` spans with span ids
/// `first..first + n`.
pub fn t1s_datagram(first: u64, n: u64) -> Vec<u8> {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(spans_request(first, n, 0).encode_to_vec());
    format!("{{\"format\":\"json\",\"version\":1}}\nT1S{b64}").into_bytes()
}
