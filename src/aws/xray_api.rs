//! The X-Ray API calls the daemon makes on its own (PutTraceSegments, PutTelemetryRecords):
//! a JSON body posted to X-Ray's REST endpoint, signed with `aws-sigv4` and sent on the
//! daemon's own HTTP client ([`Signer::send`]), as the OTLP sink and the TCP proxy send theirs.
//!
//! Why not the SDK's `aws-sdk-xray` client: its orchestrator (interceptors, config layers,
//! retry and identity resolution) cost about 90 µs of CPU per call, most of what an upload
//! costs besides the body itself, and its generated code for X-Ray's forty operations was a
//! quarter of the binary. What users rely on is kept: the credentials, region and endpoint come
//! from `aws-config` and the configuration as before; a refusal for the host clock's time is
//! signed again with X-Ray's time ([`super::clock`]); error answers keep X-Ray's code and
//! message, and the HTTP status that classifies them; upstream's signed `X-Amzn-Xray-Timestamp`
//! header and user-agent go with every call.

use super::errors::{error_type, redact_key_ids};
use super::outbound::{Https, Outbound};
use super::signer::{read_answer, Signer};
use crate::backend::{BackendError, ErrorKind};
use bytes::Bytes;
use http::header::{HeaderValue, CONTENT_LENGTH, CONTENT_TYPE, HOST};
use http::{Request, Uri};
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The most of an answer that is read: X-Ray's answers are a few KB at most (one entry per
/// unprocessed document of a batch).
const MAX_ANSWER: usize = 1024 * 1024;

/// Calls to one X-Ray endpoint.
pub struct XrayApi {
    /// `https://xray.<region>.amazonaws.com`, or the endpoint configured, without a trailing `/`.
    endpoint: String,
    /// Its `host[:port]`, the signed `Host` header.
    authority: String,
    signer: Arc<Signer>,
    http: Client<Https, Full<Bytes>>,
    user_agent: HeaderValue,
    /// How long one call may take, answer included.
    attempt_timeout: Duration,
}

impl XrayApi {
    pub(crate) fn new(
        endpoint: &str,
        signer: Arc<Signer>,
        outbound: &Outbound,
        attempt_timeout: Duration,
    ) -> Result<XrayApi, String> {
        let endpoint = endpoint.trim_end_matches('/').to_owned();
        let uri: Uri = endpoint.parse().map_err(|e| format!("invalid X-Ray endpoint {endpoint:?}: {e}"))?;
        let authority = uri.authority().map(|a| a.as_str().to_owned()).unwrap_or_default();
        let connector = outbound.connector().map_err(|e| format!("cannot set up TLS: {e}"))?;
        let http = Client::builder(TokioExecutor::new()).pool_idle_timeout(Duration::from_secs(30)).build(connector);
        let user_agent = HeaderValue::from_str(&user_agent()).unwrap_or(HeaderValue::from_static("xray-daemon"));
        Ok(XrayApi { endpoint, authority, signer, http, user_agent, attempt_timeout })
    }

    /// An API client with fixed test credentials, for the benches.
    #[doc(hidden)]
    pub fn with_test_credentials(endpoint: &str) -> XrayApi {
        use aws_credential_types::provider::SharedCredentialsProvider;
        let creds = aws_credential_types::Credentials::new("AKIDBENCH", "bench-secret", None, None, "bench");
        let signer = Signer::new(Some(SharedCredentialsProvider::new(creds)), "us-east-1".into(), Default::default());
        let outbound = Outbound { proxy_address: None, no_verify_ssl: false, connect_timeout: None };
        XrayApi::new(endpoint, Arc::new(signer), &outbound, Duration::from_secs(2)).expect("a client")
    }

    /// The request to `path`, signed as [`XrayApi::call`] signs it, for the benches.
    #[doc(hidden)]
    pub async fn signed(&self, path: &str, body: Bytes) -> Request<Full<Bytes>> {
        let mut request = self.request(path, &body).expect("a request");
        self.signer.sign(&mut request, &body).await.expect("signed");
        request
    }

    /// The request to `path`, before it is signed: the stable header set and upstream's
    /// timestamp header, all of which the signature covers.
    fn request(&self, path: &str, body: &Bytes) -> Result<Request<Full<Bytes>>, BackendError> {
        Request::post(format!("{}{path}", self.endpoint))
            .header(HOST, &self.authority)
            .header(CONTENT_TYPE, "application/json")
            .header(CONTENT_LENGTH, body.len())
            .header("x-amzn-xray-timestamp", timestamp(SystemTime::now()))
            .body(Full::new(body.clone()))
            .map_err(|e| BackendError::new(ErrorKind::Other, e.to_string()))
    }

    /// POSTs the JSON `body` to `path` (`/TraceSegments`) and returns the answer's body when
    /// X-Ray accepted the call.
    pub(crate) async fn call(&self, path: &str, body: Bytes) -> Result<Bytes, BackendError> {
        let request = self.request(path, &body)?;
        let response = self.signer.send(&self.http, request, &body, &self.user_agent, self.attempt_timeout).await?;
        let status = response.status();
        let code = error_type(response.headers());
        let answer = read_answer(response, MAX_ANSWER, self.attempt_timeout).await?;
        if status.is_success() {
            return Ok(answer);
        }
        Err(error(status.as_u16(), code, &answer))
    }
}

/// An error answer: X-Ray's code (the `x-amzn-ErrorType` header, else the body's `__type`) and
/// message, as the SDK reported them.
fn error(status: u16, header_code: Option<String>, answer: &[u8]) -> BackendError {
    #[derive(serde::Deserialize, Default)]
    struct Body {
        #[serde(rename = "__type")]
        kind: Option<String>,
        #[serde(alias = "Message")]
        message: Option<String>,
    }
    let body: Body = serde_json::from_slice(answer).unwrap_or_default();
    // `__type` may carry a namespace: `com.amazonaws.xray#ThrottledException`.
    let body_code = body.kind.map(|t| t.rsplit('#').next().unwrap_or(&t).to_owned());
    let code = header_code.or(body_code).filter(|c| !c.is_empty());
    let detail = match (&code, body.message) {
        (Some(code), message) => {
            format!("{code}: {} (HTTP {status})", redact_key_ids(message.as_deref().unwrap_or("")))
        }
        (None, _) => format!("HTTP {status} with a response that is not an X-Ray error"),
    };
    BackendError::new(ErrorKind::Status { status, code }, detail)
}

/// Upstream's `X-Amzn-Xray-Timestamp`: seconds since the epoch, with nanoseconds.
fn timestamp(now: SystemTime) -> String {
    let since = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    format!("{}.{:09}", since.as_secs(), since.subsec_nanos())
}

/// Upstream's user-agent suffix, with the daemon's version and where it runs.
fn user_agent() -> String {
    let exec_env = std::env::var("AWS_EXECUTION_ENV").unwrap_or_else(|_| "UNKNOWN".into());
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    };
    format!(
        "xray-agent/xray-daemon/{} exec-env/{exec_env} OS/{}-{arch}",
        env!("CARGO_PKG_VERSION"),
        std::env::consts::OS
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_answers_keep_x_rays_code_and_message() {
        let e = error(400, Some("InvalidRequestException".into()), br#"{"message":"bad AKIAIOSFODNN7EXAMPLE"}"#);
        assert_eq!(e.kind, ErrorKind::Status { status: 400, code: Some("InvalidRequestException".into()) });
        assert_eq!(e.detail, "InvalidRequestException: bad <redacted> (HTTP 400)");
        let e = error(429, None, br#"{"__type":"com.amazonaws.xray#ThrottledException","Message":"Rate exceeded"}"#);
        assert_eq!(e.error_code(), Some("ThrottledException"));
        assert_eq!(e.detail, "ThrottledException: Rate exceeded (HTTP 429)");
        let e = error(502, None, b"<html>bad gateway</html>");
        assert_eq!(e.kind, ErrorKind::Status { status: 502, code: None });
        assert_eq!(e.detail, "HTTP 502 with a response that is not an X-Ray error");
    }

    #[tokio::test]
    async fn calls_go_to_the_endpoints_path_with_the_signed_stable_headers() {
        for endpoint in ["http://127.0.0.1:9", "http://127.0.0.1:9/", "https://xray.example/base/"] {
            let api = XrayApi::with_test_credentials(endpoint);
            let request = api.signed("/TraceSegments", Bytes::from_static(b"{}")).await;
            let uri = request.uri().to_string();
            assert!(uri.ends_with("/TraceSegments") && !uri.contains("//TraceSegments"), "{uri}");
            let auth = request.headers()["authorization"].to_str().unwrap();
            let signed = auth.split("SignedHeaders=").nth(1).unwrap().split(',').next().unwrap();
            assert_eq!(signed, "content-length;content-type;host;x-amz-date;x-amzn-xray-timestamp", "{auth}");
        }
    }

    #[test]
    fn the_timestamp_has_nanoseconds_as_upstreams() {
        let t = UNIX_EPOCH + Duration::new(1_700_000_000, 5);
        assert_eq!(timestamp(t), "1700000000.000000005");
        assert!(user_agent().starts_with(concat!("xray-agent/xray-daemon/", env!("CARGO_PKG_VERSION"), " exec-env/")));
    }
}
