//! OTLP/HTTP: `POST /v1/traces`, on the TCP port and, with `XRAY_DAEMON_OTLP_ADDRESS`, on a
//! listener of its own. Answered as the OTLP/HTTP specification says:
//! - 200 with an `ExportTraceServiceResponse` in the request's content type (protobuf or JSON);
//!   its `partial_success` counts the spans taken out for being over X-Ray's size limit;
//! - 400 with a `google.rpc.Status` for a body that does not decode;
//! - 413 for a body over 5 MB, before or after inflating it (gzip and deflate are inflated at
//!   most that far, so a small bomb cannot take more);
//! - 415 for a content type other than protobuf or JSON, or an unknown content encoding;
//! - 503 with `Retry-After` when the buffer cannot take the spans without dropping others. HTTP
//!   clients retry, so they are pushed back rather than having their data dropped.

use super::partial_success;
use crate::pipeline::intake::{Intake, WhenFull};
use crate::signal::spans::{self, Status};
use crate::signal::{Signal, Spans};
use crate::stats::{SpanSource, Stats};
use bytes::Bytes;
use http::header::{HeaderMap, HeaderValue, CONTENT_ENCODING, CONTENT_TYPE, RETRY_AFTER};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse;
use prost::Message;
use std::io::Read;
use std::sync::Arc;
use std::time::Duration;
use tracing::debug;

/// The path OTLP/HTTP exporters post spans to.
pub(crate) const PATH: &str = "/v1/traces";
/// The largest body taken, on the wire and once inflated: X-Ray's limit for one request.
const MAX_BODY: usize = Spans::MAX_BYTES;
/// What a client that is pushed back is told to wait, in seconds.
const RETRY_AFTER_SECS: u64 = 1;

/// How a body is encoded, and how the answer must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Protobuf,
    Json,
}

impl Format {
    fn content_type(self) -> &'static str {
        match self {
            Format::Protobuf => "application/x-protobuf",
            Format::Json => "application/json",
        }
    }
}

/// Takes OTLP/HTTP trace requests into the pipeline.
pub(crate) struct OtlpHttp {
    intake: Intake,
    stats: Arc<Stats>,
    /// How long a client may take to send its body.
    read_timeout: Duration,
}

impl OtlpHttp {
    pub(crate) fn new(intake: Intake, read_timeout: Duration) -> Self {
        let stats = intake.stats().clone();
        OtlpHttp { intake, stats, read_timeout }
    }

    /// Answers one `POST /v1/traces`.
    pub(crate) async fn handle(&self, request: Request<Incoming>) -> Response<Full<Bytes>> {
        if request.method() != Method::POST {
            return answer(StatusCode::METHOD_NOT_ALLOWED, Format::Json, status(3, "use POST"));
        }
        let Some(format) = format(request.headers()) else {
            let message = "send application/x-protobuf or application/json";
            return answer(StatusCode::UNSUPPORTED_MEDIA_TYPE, Format::Json, status(3, message));
        };
        let encoding = request.headers().get(CONTENT_ENCODING).and_then(|v| v.to_str().ok()).map(str::to_owned);
        let read = Limited::new(request.into_body(), MAX_BODY).collect();
        let wire = match tokio::time::timeout(self.read_timeout, read).await {
            Ok(Ok(body)) => body.to_bytes(),
            Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => return too_large(format),
            Ok(Err(e)) => {
                return answer(StatusCode::BAD_REQUEST, format, status(3, &format!("cannot read the body: {e}")))
            }
            Err(_) => return answer(StatusCode::REQUEST_TIMEOUT, format, status(3, "the body did not arrive in time")),
        };
        let body = match inflate(wire, encoding.as_deref()) {
            Ok(body) => body,
            Err(Inflate::TooLarge) => return too_large(format),
            Err(Inflate::Unsupported(e)) => {
                let message = format!("unsupported content encoding {e:?}: send gzip, deflate or none");
                return answer(StatusCode::UNSUPPORTED_MEDIA_TYPE, format, status(3, &message));
            }
            Err(Inflate::Corrupt(e)) => return answer(StatusCode::BAD_REQUEST, format, status(3, &e)),
        };
        let decoded = match format {
            Format::Protobuf => spans::from_protobuf(body),
            Format::Json => spans::from_json(&body),
        };
        let received = match decoded {
            Ok(received) => received,
            Err(e) => {
                Stats::add(&self.stats.spans_malformed, 1);
                debug!("OTLP/HTTP request refused: {e}");
                return answer(StatusCode::BAD_REQUEST, format, status(3, &e.to_string()));
            }
        };
        let Ok(taken) = self.intake.spans(received, SpanSource::Http, WhenFull::Refuse) else {
            let mut response =
                answer(StatusCode::SERVICE_UNAVAILABLE, format, status(14, "the buffer is full; retry later"));
            response.headers_mut().insert(RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS));
            return response;
        };
        let response = ExportTraceServiceResponse { partial_success: partial_success(&taken) };
        let body = match format {
            Format::Protobuf => response.encode_to_vec(),
            Format::Json => serde_json::to_vec(&response).unwrap_or_else(|_| b"{}".to_vec()),
        };
        with_type(Response::new(Full::new(Bytes::from(body))), format)
    }
}

/// A listener of its own for OTLP/HTTP (`XRAY_DAEMON_OTLP_ADDRESS`): `/v1/traces` and nothing
/// else.
pub(crate) struct OtlpListener {
    pub(crate) otlp: OtlpHttp,
    pub(crate) max_connections: usize,
}

impl crate::serve::Handler for OtlpListener {
    type Body = Full<Bytes>;
    const NAME: &'static str = "otlp http server";

    async fn handle(&self, request: Request<Incoming>) -> Response<Full<Bytes>> {
        if request.uri().path() == PATH {
            self.otlp.handle(request).await
        } else {
            let message = format!("this port takes OTLP/HTTP spans at POST {PATH} only");
            answer(StatusCode::NOT_FOUND, Format::Json, status(5, &message))
        }
    }

    fn header_timeout(&self) -> Option<Duration> {
        Some(self.otlp.read_timeout)
    }

    fn max_connections(&self) -> usize {
        self.max_connections
    }

    fn limited(&self, what: crate::serve::Limited) {
        self.otlp.stats.connection_limited(what);
    }
}

/// The format a content type names (parameters such as `charset` aside).
fn format(headers: &HeaderMap) -> Option<Format> {
    let value = headers.get(CONTENT_TYPE)?.to_str().ok()?;
    match value.split(';').next().unwrap_or("").trim().to_ascii_lowercase().as_str() {
        "application/x-protobuf" | "application/protobuf" => Some(Format::Protobuf),
        "application/json" => Some(Format::Json),
        _ => None,
    }
}

/// Why a body could not be inflated.
#[derive(Debug, PartialEq, Eq)]
enum Inflate {
    TooLarge,
    Unsupported(String),
    Corrupt(String),
}

/// The body, inflated if it is gzip or deflate, never past [`MAX_BODY`].
fn inflate(wire: Bytes, encoding: Option<&str>) -> Result<Bytes, Inflate> {
    let encoding = encoding.map(|e| e.trim().to_ascii_lowercase());
    let reader: Box<dyn Read + '_> = match encoding.as_deref() {
        None | Some("" | "identity") => return Ok(wire),
        Some("gzip") => Box::new(flate2::read::MultiGzDecoder::new(&wire[..])),
        Some("deflate") => Box::new(flate2::read::ZlibDecoder::new(&wire[..])),
        Some(other) => return Err(Inflate::Unsupported(other.to_owned())),
    };
    let mut out = Vec::with_capacity((wire.len() * 4).min(MAX_BODY));
    match reader.take(MAX_BODY as u64 + 1).read_to_end(&mut out) {
        Ok(_) if out.len() > MAX_BODY => Err(Inflate::TooLarge),
        Ok(_) => Ok(Bytes::from(out)),
        Err(e) => Err(Inflate::Corrupt(format!("the body does not inflate: {e}"))),
    }
}

fn status(code: i32, message: &str) -> Status {
    Status { code, message: message.to_owned(), details: vec![] }
}

fn too_large(format: Format) -> Response<Full<Bytes>> {
    let message = format!("the body is over {MAX_BODY} bytes, the most X-Ray takes in one request");
    answer(StatusCode::PAYLOAD_TOO_LARGE, format, status(8, &message))
}

/// An error answer: a `google.rpc.Status` in the request's format.
fn answer(code: StatusCode, format: Format, status: Status) -> Response<Full<Bytes>> {
    let body = match format {
        Format::Protobuf => status.encode_to_vec(),
        Format::Json => serde_json::json!({ "code": status.code, "message": status.message }).to_string().into_bytes(),
    };
    let mut response = with_type(Response::new(Full::new(Bytes::from(body))), format);
    *response.status_mut() = code;
    response
}

fn with_type(mut response: Response<Full<Bytes>>, format: Format) -> Response<Full<Bytes>> {
    response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static(format.content_type()));
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn gzip(data: &[u8]) -> Bytes {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(data).unwrap();
        Bytes::from(e.finish().unwrap())
    }

    #[test]
    fn bodies_are_inflated_but_never_past_the_limit() {
        let data = b"span data ".repeat(100);
        assert_eq!(inflate(gzip(&data), Some("gzip")).unwrap(), data);
        assert_eq!(inflate(Bytes::from(data.clone()), Some("identity")).unwrap(), data);
        assert_eq!(inflate(Bytes::from(data.clone()), None).unwrap(), data);
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
        z.write_all(&data).unwrap();
        assert_eq!(inflate(Bytes::from(z.finish().unwrap()), Some("deflate")).unwrap(), data);
        // A bomb: 5 MB of zeros gzip to a few KB; inflating stops one byte past the limit.
        let bomb = gzip(&vec![0u8; MAX_BODY + 1]);
        assert_eq!(inflate(bomb, Some("gzip")), Err(Inflate::TooLarge));
        assert!(matches!(inflate(Bytes::from_static(b"not gzip"), Some("gzip")), Err(Inflate::Corrupt(_))));
        assert_eq!(inflate(Bytes::new(), Some("br")), Err(Inflate::Unsupported("br".into())));
    }

    #[test]
    fn content_types_name_a_format() {
        let mut h = HeaderMap::new();
        assert_eq!(format(&h), None);
        h.insert(CONTENT_TYPE, HeaderValue::from_static("application/x-protobuf"));
        assert_eq!(format(&h), Some(Format::Protobuf));
        h.insert(CONTENT_TYPE, HeaderValue::from_static("Application/JSON; charset=utf-8"));
        assert_eq!(format(&h), Some(Format::Json));
        h.insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        assert_eq!(format(&h), None);
    }
}
