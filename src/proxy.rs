//! The TCP port: a SigV4-signing proxy for the SDKs' X-Ray calls, and the daemon's own
//! `/health`, `/ready` and `/metrics`.
//!
//! The SDKs poll `POST /GetSamplingRules` and `POST /SamplingTargets` unsigned on the daemon's
//! TCP address. The proxy forwards them to the configured X-Ray endpoint only: the request's
//! Host header and an absolute-form URI are ignored. The outbound request is built afresh with a
//! small, stable header set (host, content-type, content-length, x-amz-content-sha256 if sent),
//! signed, and nothing else is copied, so headers a service mesh adds (`x-envoy-*`, `x-b3-*`,
//! `x-request-id`) can neither break the signature nor be injected upstream. Only X-Ray API
//! paths are forwarded unless `XRAY_DAEMON_PROXY_ALLOW_ALL` restores upstream's behaviour.
//! Bodies are limited, slow clients are cut off, and an unreachable X-Ray answers 502. A call
//! X-Ray refuses for its signature's time (the host clock off) is signed again with X-Ray's time
//! and sent once more: the body is read whole before the first attempt.

use crate::aws::errors::{error_chain, error_type, transport_kind};
use crate::aws::signer::{SendError, Signer};
use crate::backend::ErrorKind;
use crate::ingest::otlp_http::{self, OtlpHttp};
use crate::pipeline::buffer::Buffer;
use crate::pipeline::Pipeline;
use crate::report::health::Health;
use crate::report::metrics;
use crate::stats::{Api, ErrorClass, ProxyOutcome, Stats};
use bytes::Bytes;
use http::header::{HeaderValue, CONTENT_LENGTH, CONTENT_TYPE, HOST};
use http::{Method, Request, Response, StatusCode, Uri};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use tracing::{debug, error, warn};

/// The X-Ray API paths the SDKs call through the daemon (all `POST`).
pub(crate) const ALLOWED_PATHS: &[&str] =
    &["/GetSamplingRules", "/SamplingTargets", "/SamplingStatisticSummaries", "/TraceSegments", "/TelemetryRecords"];

/// How the proxy behaves.
#[derive(Debug, Clone)]
pub(crate) struct ProxySettings {
    /// Where requests go, e.g. `https://xray.us-east-1.amazonaws.com`.
    pub endpoint: Uri,
    /// Forward every method and path, as upstream does.
    pub allow_all: bool,
    /// The largest request body accepted.
    pub max_body: usize,
    /// How long X-Ray may take to answer.
    pub upstream_timeout: Duration,
    /// How long a client may take to send its request head (and, separately, its body).
    pub client_timeout: Duration,
    /// Connections open at once.
    pub max_connections: usize,
}

type Body = BoxBody<Bytes, hyper::Error>;
type HttpsClient = Client<crate::aws::outbound::Https, Full<Bytes>>;

/// Serves the TCP port.
pub(crate) struct TcpService {
    settings: ProxySettings,
    signer: Arc<Signer>,
    client: HttpsClient,
    stats: Arc<Stats>,
    segments: Arc<Buffer>,
    spans: Arc<Buffer>,
    health: Arc<Health>,
    otlp: OtlpHttp,
    user_agent: HeaderValue,
}

/// The HTTPS client could not be built.
#[derive(Debug, thiserror::Error)]
#[error("cannot set up TLS for the proxy: {0}")]
pub struct TlsError(std::io::Error);

impl TcpService {
    /// `outbound` says how to reach X-Ray: through which HTTP proxy, and whether to check
    /// certificates.
    pub(crate) fn new(
        settings: ProxySettings,
        outbound: &crate::aws::outbound::Outbound,
        signer: Arc<Signer>,
        pipeline: &Pipeline,
        health: Arc<Health>,
    ) -> Result<Self, TlsError> {
        let https = outbound.connector().map_err(TlsError)?;
        let client = Client::builder(TokioExecutor::new()).pool_idle_timeout(Duration::from_secs(30)).build(https);
        let user_agent =
            HeaderValue::from_static(concat!("xray-agent/xray-daemon/", env!("CARGO_PKG_VERSION"), " proxy"));
        let stats = pipeline.stats().clone();
        let (segments, spans) = (pipeline.segment_buffer().clone(), pipeline.span_buffer().clone());
        let otlp = OtlpHttp::new(pipeline.intake().clone(), settings.client_timeout);
        Ok(TcpService { settings, signer, client, stats, segments, spans, health, otlp, user_agent })
    }

    /// Answers one request.
    pub(crate) async fn handle(&self, req: Request<Incoming>) -> Response<Body> {
        let local = matches!(*req.method(), Method::GET | Method::HEAD);
        match req.uri().path() {
            "/health" if local => {
                self.stats.proxy_request(ProxyOutcome::Local);
                match self.health.liveness.problem() {
                    None => text(StatusCode::OK, "ok\n"),
                    Some(problem) => text(StatusCode::SERVICE_UNAVAILABLE, &format!("unhealthy: {problem}\n")),
                }
            }
            "/ready" if local => {
                self.stats.proxy_request(ProxyOutcome::Local);
                match self.health.ready() {
                    Ok(()) => text(StatusCode::OK, "ready\n"),
                    Err(reason) => text(StatusCode::SERVICE_UNAVAILABLE, &format!("not ready: {reason}\n")),
                }
            }
            "/metrics" if local => {
                self.stats.proxy_request(ProxyOutcome::Local);
                let mut r = Response::new(full(metrics::render(&self.stats, &self.segments, &self.spans)));
                r.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static(metrics::CONTENT_TYPE));
                r
            }
            otlp_http::PATH => {
                self.stats.proxy_request(ProxyOutcome::Otlp);
                self.otlp.handle(req).await.map(|b| b.map_err(|never| match never {}).boxed())
            }
            _ => self.forward(req).await,
        }
    }

    async fn forward(&self, req: Request<Incoming>) -> Response<Body> {
        let path_and_query = req.uri().path_and_query().map(|p| p.as_str().to_owned()).unwrap_or_else(|| "/".into());
        debug!("Received request on HTTP Proxy server : {path_and_query}");
        let allowed =
            self.settings.allow_all || (req.method() == Method::POST && ALLOWED_PATHS.contains(&req.uri().path()));
        if !allowed {
            self.stats.proxy_request(ProxyOutcome::NotAllowed);
            return json_error(
                StatusCode::NOT_FOUND,
                &format!(
                    "xray-daemon forwards only POST {} to X-Ray; {} {} is not forwarded (set XRAY_DAEMON_PROXY_ALLOW_ALL=true to forward everything)",
                    ALLOWED_PATHS.join(", "),
                    req.method(),
                    req.uri().path()
                ),
            );
        }
        let declared =
            req.headers().get(CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > self.settings.max_body as u64) {
            self.stats.proxy_request(ProxyOutcome::TooLarge);
            return self.too_large();
        }
        let method = req.method().clone();
        let content_type = req.headers().get(CONTENT_TYPE).cloned();
        let content_sha = req.headers().get("x-amz-content-sha256").cloned();
        let limited = Limited::new(req.into_body(), self.settings.max_body);
        let body = match tokio::time::timeout(self.settings.client_timeout, limited.collect()).await {
            Ok(Ok(collected)) => collected.to_bytes(),
            Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => {
                self.stats.proxy_request(ProxyOutcome::TooLarge);
                return self.too_large();
            }
            Ok(Err(e)) => {
                self.stats.proxy_request(ProxyOutcome::ClientError);
                return json_error(StatusCode::BAD_REQUEST, &format!("cannot read the request body: {e}"));
            }
            Err(_) => {
                self.stats.proxy_request(ProxyOutcome::ClientError);
                return json_error(StatusCode::REQUEST_TIMEOUT, "the request body did not arrive in time");
            }
        };

        let endpoint = &self.settings.endpoint;
        let authority = endpoint.authority().map(|a| a.as_str()).unwrap_or_default();
        let base = endpoint.to_string();
        let uri = format!("{}{}", base.trim_end_matches('/'), path_and_query);
        let mut builder = Request::builder().method(method).uri(uri).header(HOST, authority);
        builder =
            builder.header(CONTENT_TYPE, content_type.unwrap_or_else(|| HeaderValue::from_static("application/json")));
        builder = builder.header(CONTENT_LENGTH, body.len());
        if let Some(sha) = content_sha {
            builder = builder.header("x-amz-content-sha256", sha);
        }
        let outbound = match builder.body(Full::new(body.clone())) {
            Ok(r) => r,
            Err(e) => {
                self.stats.proxy_request(ProxyOutcome::ClientError);
                return json_error(StatusCode::BAD_REQUEST, &format!("cannot build the request: {e}"));
            }
        };
        let timeout = self.settings.upstream_timeout;
        match self.signer.send(&self.client, outbound, &body, &self.user_agent, timeout).await {
            Ok(response) => {
                self.stats.proxy_request(ProxyOutcome::Forwarded);
                let status = response.status().as_u16();
                if status >= 400 {
                    let kind = ErrorKind::Status { status, code: error_type(response.headers()) };
                    self.stats.backend_error(Api::Proxy, kind.class());
                }
                response.map(|b| b.boxed())
            }
            Err(SendError::Sign(e)) => {
                error!("{e}");
                self.stats.proxy_request(ProxyOutcome::SigningFailed);
                self.stats.backend_error(Api::Proxy, ErrorClass::Auth);
                json_error(StatusCode::BAD_GATEWAY, &format!("xray-daemon could not sign the request: {e}"))
            }
            Err(SendError::Transport(e)) => {
                self.stats.proxy_request(ProxyOutcome::UpstreamError);
                self.stats.backend_error(Api::Proxy, transport_kind(&e).class());
                warn!("proxy error: cannot reach X-Ray at {endpoint}: {}", error_chain(&e));
                json_error(StatusCode::BAD_GATEWAY, &format!("xray-daemon cannot reach X-Ray at {endpoint}"))
            }
            Err(SendError::Timeout(_)) => {
                self.stats.proxy_request(ProxyOutcome::UpstreamError);
                self.stats.backend_error(Api::Proxy, ErrorClass::Timeout);
                warn!("proxy error: X-Ray at {endpoint} did not answer within {timeout:?}");
                json_error(StatusCode::BAD_GATEWAY, &format!("xray-daemon: X-Ray at {endpoint} did not answer in time"))
            }
        }
    }

    fn too_large(&self) -> Response<Body> {
        json_error(
            StatusCode::PAYLOAD_TOO_LARGE,
            &format!("request body over the proxy's limit of {} bytes", self.settings.max_body),
        )
    }
}

fn full(text: impl Into<Bytes>) -> Body {
    Full::new(text.into()).map_err(|never: Infallible| match never {}).boxed()
}

fn text(status: StatusCode, body: &str) -> Response<Body> {
    let mut r = Response::new(full(body.to_owned()));
    *r.status_mut() = status;
    r.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    r
}

fn json_error(status: StatusCode, message: &str) -> Response<Body> {
    let body = serde_json::json!({ "message": message }).to_string();
    let mut r = Response::new(full(body));
    *r.status_mut() = status;
    r.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

impl crate::serve::Handler for TcpService {
    type Body = Body;
    const NAME: &'static str = "proxy http server";

    fn handle(&self, request: Request<Incoming>) -> impl std::future::Future<Output = Response<Body>> + Send {
        TcpService::handle(self, request)
    }

    fn header_timeout(&self) -> Option<Duration> {
        Some(self.settings.client_timeout)
    }

    fn max_connections(&self) -> usize {
        self.settings.max_connections
    }

    fn limited(&self, what: crate::serve::Limited) {
        self.stats.connection_limited(what);
    }
}
