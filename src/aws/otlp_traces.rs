//! The spans' sink: `POST /v1/traces` at X-Ray's OTLP endpoint, signed with SigV4 for `xray`.
//!
//! A batch's records are protobuf `ExportTraceServiceRequest`s as received, and joined they are
//! one request: the body is their concatenation, gzipped unless `XRAY_DAEMON_OTLP_GZIP=false`.
//! The request carries the same small header set as the proxy's (host, content type and
//! length, content encoding), so that nothing a mesh adds can break the signature; one refused
//! for its signature's time is signed again with X-Ray's time (`signer::Signer::send`). X-Ray answers
//! with an `ExportTraceServiceResponse`, whose `partial_success` counts the spans it refused;
//! an error status keeps its `Retry-After` for the uploader.

use super::client::Deferred;
use super::errors::{error_type, redact_key_ids};
use super::outbound::{Https, Outbound};
use super::signer::read_answer;
use crate::backend::{BackendError, ErrorKind, Receipt, Sink};
use crate::signal::spans::Status;
use crate::signal::Spans;
use crate::stats::log_limit::{suppressed_note, RateLimitedWarn};
use bytes::Bytes;
use http::header::{HeaderMap, HeaderValue, CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_TYPE, HOST, RETRY_AFTER};
use http::{Request, Uri};
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse;
use prost::Message;
use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tracing::warn;

/// The most of an answer that is read.
const MAX_ANSWER: usize = 64 * 1024;

/// Sends span batches to an OTLP traces URL.
pub(crate) struct OtlpTraces {
    endpoint: Uri,
    clients: Arc<Deferred>,
    /// How to reach the endpoint, until the HTTPS client is built.
    outbound: Outbound,
    /// Built on first use: loading the TLS roots is most of a Lambda cold start's CPU, and the
    /// extension must ask for its first event before spending it (see `runner::lambda`).
    http: tokio::sync::OnceCell<Client<Https, Full<Bytes>>>,
    gzip: bool,
    attempt_timeout: Duration,
    user_agent: HeaderValue,
    partial_warn: RateLimitedWarn,
}

impl OtlpTraces {
    /// `endpoint` is the full URL, `…/v1/traces`; the signer comes from `clients` once built.
    pub(crate) fn new(
        endpoint: Uri,
        clients: Arc<Deferred>,
        outbound: Outbound,
        gzip: bool,
        attempt_timeout: Duration,
    ) -> OtlpTraces {
        let user_agent =
            HeaderValue::from_static(concat!("xray-agent/xray-daemon/", env!("CARGO_PKG_VERSION"), " otlp"));
        let http = tokio::sync::OnceCell::new();
        let partial_warn = RateLimitedWarn::new(10);
        OtlpTraces { endpoint, clients, outbound, http, gzip, attempt_timeout, user_agent, partial_warn }
    }

    /// The HTTPS client, built now if it was not yet: the sidecar calls this at start, so that
    /// a TLS set-up error stops it there.
    pub(crate) async fn client(&self) -> std::io::Result<&Client<Https, Full<Bytes>>> {
        self.http
            .get_or_try_init(|| async {
                let connector = self.outbound.connector()?;
                Ok(Client::builder(TokioExecutor::new()).pool_idle_timeout(Duration::from_secs(30)).build(connector))
            })
            .await
    }

    /// The request, unsigned, and its body.
    fn request(&self, records: &[Bytes]) -> Result<(Request<Full<Bytes>>, Bytes), BackendError> {
        let joined = records.concat();
        let body = if self.gzip { gzip(&joined)? } else { Bytes::from(joined) };
        let authority = self.endpoint.authority().map(|a| a.as_str()).unwrap_or_default();
        let mut builder = Request::post(self.endpoint.clone())
            .header(HOST, authority)
            .header(CONTENT_TYPE, "application/x-protobuf")
            .header(CONTENT_LENGTH, body.len());
        if self.gzip {
            builder = builder.header(CONTENT_ENCODING, "gzip");
        }
        let request = builder.body(Full::new(body.clone())).map_err(|e| other(e.to_string()))?;
        Ok((request, body))
    }
}

impl Sink<Spans> for OtlpTraces {
    async fn send(&self, records: &[Bytes]) -> Result<Receipt, BackendError> {
        let (request, body) = self.request(records)?;
        let signer = &self.clients.built().await?.signer;
        let http = self.client().await.map_err(|e| other(format!("cannot set up TLS: {e}")))?;
        let response = signer.send(http, request, &body, &self.user_agent, self.attempt_timeout).await?;
        let status = response.status();
        let retry_after = retry_after(response.headers(), SystemTime::now());
        let error_type = error_type(response.headers());
        let answer = read_answer(response, MAX_ANSWER, self.attempt_timeout).await?;
        if !status.is_success() {
            let kind = ErrorKind::Status { status: status.as_u16(), code: error_type };
            let detail = format!("HTTP {}: {}", status.as_u16(), status_message(&answer));
            return Err(BackendError::new(kind, detail).retry_after(retry_after));
        }
        let partial = ExportTraceServiceResponse::decode(answer).ok().and_then(|r| r.partial_success);
        let rejected = partial.as_ref().map_or(0, |p| u64::try_from(p.rejected_spans).unwrap_or(0));
        let message = partial.map(|p| p.error_message).unwrap_or_default();
        if !message.is_empty() {
            if let Some(suppressed) = self.partial_warn.check() {
                let message = redact_key_ids(&message);
                warn!(
                    reason = "partial_success",
                    count = rejected,
                    "X-Ray refused {rejected} spans of a batch: {message}{}",
                    suppressed_note(suppressed)
                );
            }
        }
        Ok(Receipt { retry: Vec::new(), rejected, unprocessed: rejected })
    }
}

fn other(detail: String) -> BackendError {
    BackendError::new(ErrorKind::Other, detail)
}

/// gzip at the fastest level: span data compresses well even there, and the CPU is the user's.
fn gzip(data: &[u8]) -> Result<Bytes, BackendError> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::with_capacity(data.len() / 4), flate2::Compression::fast());
    encoder.write_all(data).and_then(|()| encoder.finish()).map(Bytes::from).map_err(|e| other(format!("gzip: {e}")))
}

/// `Retry-After`: seconds, or an HTTP date.
fn retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    match value.parse::<u64>() {
        Ok(secs) => Some(Duration::from_secs(secs)),
        Err(_) => httpdate::parse_http_date(value).ok().map(|at| at.duration_since(now).unwrap_or_default()),
    }
}

/// What an error answer says: a `google.rpc.Status`'s message, else its text, cut short.
fn status_message(answer: &[u8]) -> String {
    let text = match Status::decode(answer) {
        Ok(status) if !status.message.is_empty() => status.message,
        _ => String::from_utf8_lossy(answer).into_owned(),
    };
    let text = text.trim();
    let cut: String = text.chars().take(300).collect();
    redact_key_ids(if cut.is_empty() { "(no message)" } else { &cut })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_in_seconds_or_as_a_date() {
        let mut h = HeaderMap::new();
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(retry_after(&h, now), None);
        h.insert(RETRY_AFTER, HeaderValue::from_static("7"));
        assert_eq!(retry_after(&h, now), Some(Duration::from_secs(7)));
        let later = httpdate::fmt_http_date(now + Duration::from_secs(30));
        h.insert(RETRY_AFTER, HeaderValue::from_str(&later).unwrap());
        assert_eq!(retry_after(&h, now), Some(Duration::from_secs(30)));
        h.insert(RETRY_AFTER, HeaderValue::from_static("soon"));
        assert_eq!(retry_after(&h, now), None);
    }

    #[test]
    fn error_answers_are_read_as_status_or_text() {
        let status = Status { code: 8, message: "Rate exceeded".into(), details: vec![] }.encode_to_vec();
        assert_eq!(status_message(&status), "Rate exceeded");
        assert_eq!(status_message(b"  denied for AKIAIOSFODNN7EXAMPLE \n"), "denied for <redacted>");
        assert_eq!(status_message(b""), "(no message)");
    }

    #[test]
    fn gzip_round_trips() {
        let data = b"spans ".repeat(1000);
        let packed = gzip(&data).unwrap();
        assert!(packed.len() < data.len() / 10);
        let mut out = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&packed[..]), &mut out).unwrap();
        assert_eq!(out, data);
    }
}
