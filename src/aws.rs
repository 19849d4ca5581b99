//! Everything that touches the AWS SDK: building the one X-Ray client, the daemon's extra
//! headers, and turning SDK results into the uploader's plain types.
//!
//! The SDK's own retries are switched off: the uploader owns retrying, so that backoff is shared
//! across uploads and a batch can go back to the buffer instead of being dropped. Each attempt
//! has its own timeout. Errors are classified by what happened on the wire (HTTP status,
//! timeout, refused connection, failed DNS lookup), not by error code, so they are right even
//! against endpoints that answer with non-X-Ray error bodies.

use crate::stats::BackendError;
use std::sync::Arc;
use crate::telemetry::TelemetryBatch;
use crate::trace_segments_body;
use crate::uploader::{ApiError, Unprocessed, XrayApi};
use aws_sdk_xray::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_xray::types::{BackendConnectionErrors, TelemetryRecord};
use aws_smithy_http_client::tls;
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::context::BeforeTransmitInterceptorContextMut;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::body::SdkBody;
use aws_smithy_types::config_bag::ConfigBag;
use bytes::Bytes;
use aws_smithy_types::error::display::DisplayErrorContext;
use aws_smithy_types::retry::RetryConfig;
use aws_smithy_types::timeout::TimeoutConfig;
use std::error::Error as StdError;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// What the client needs to know.
#[derive(Debug, Clone)]
pub struct ClientSettings {
    pub region: String,
    /// Overrides the endpoint (`XRAY_DAEMON_ENDPOINT` / config `Endpoint`). The SDK's own
    /// `AWS_ENDPOINT_URL_XRAY` and `AWS_ENDPOINT_URL` work without this.
    pub endpoint: Option<String>,
    /// Timeout for one PutTraceSegments attempt.
    pub attempt_timeout: Duration,
    pub connect_timeout: Duration,
    /// Assume this role (session name `xray-daemon`) for every call.
    pub role_arn: Option<String>,
    /// Send all outbound AWS traffic through this HTTP CONNECT proxy (`NO_PROXY` applies).
    /// Without it, `HTTPS_PROXY`/`https_proxy`/`HTTP_PROXY` and `NO_PROXY` are honoured.
    pub proxy_address: Option<String>,
    /// Skip TLS certificate checks (upstream's `NoVerifySSL`).
    pub no_verify_ssl: bool,
}

/// The outbound proxy for AWS calls.
pub fn proxy_config(proxy_address: Option<&str>) -> Result<aws_smithy_http_client::proxy::ProxyConfig, String> {
    use aws_smithy_http_client::proxy::ProxyConfig;
    match proxy_address {
        Some(url) => {
            let config = ProxyConfig::all(url).map_err(|e| format!("Bad proxy URL {url:?}: {e}"))?;
            let no_proxy = std::env::var("NO_PROXY").or_else(|_| std::env::var("no_proxy")).unwrap_or_default();
            Ok(if no_proxy.is_empty() { config } else { config.no_proxy(no_proxy) })
        }
        None => Ok(ProxyConfig::from_env()),
    }
}

/// The X-Ray endpoint for a region when nothing overrides it (the TCP proxy needs the URL
/// itself; the SDK resolves the same one for uploads).
pub fn default_endpoint(region: &str) -> String {
    let suffix = if region.starts_with("cn-") {
        "amazonaws.com.cn"
    } else if region.starts_with("us-isob-") {
        "sc2s.sgov.gov"
    } else if region.starts_with("us-iso-") {
        "c2s.ic.gov"
    } else {
        "amazonaws.com"
    };
    format!("https://xray.{region}.{suffix}")
}

/// The SDK pieces the daemon shares: the X-Ray client for uploads and telemetry, and a signer
/// with the same credentials for the TCP proxy.
pub struct Aws {
    pub client: aws_sdk_xray::Client,
    pub signer: Arc<Signer>,
}

/// Loads the shared AWS configuration once.
pub async fn load(settings: &ClientSettings) -> Result<Aws, String> {
    let mut shared = shared_config(settings).await?;
    if let Some(role) = &settings.role_arn {
        let provider = aws_config::sts::AssumeRoleProvider::builder(role.clone())
            .session_name("xray-daemon")
            .configure(&shared)
            .build()
            .await;
        shared = shared
            .to_builder()
            .credentials_provider(aws_credential_types::provider::SharedCredentialsProvider::new(provider))
            .build();
    }
    let client = xray_client(&shared, settings);
    Ok(Aws { client, signer: Arc::new(Signer::new(shared.credentials_provider(), settings.region.clone())) })
}

/// The AWS clients, built in the background: for a cold start that must not wait on the
/// credentials chain and the TLS roots. Uploads wait for the build.
pub struct Deferred {
    /// The settings until the build starts.
    settings: std::sync::Mutex<Option<ClientSettings>>,
    task: std::sync::Mutex<Option<tokio::task::JoinHandle<Result<Aws, String>>>>,
    built: tokio::sync::OnceCell<Result<Aws, String>>,
}

impl Deferred {
    /// Clients built when [`Deferred::start`] is called, or else on first use.
    pub fn new(settings: ClientSettings) -> Deferred {
        Deferred {
            settings: std::sync::Mutex::new(Some(settings)),
            task: std::sync::Mutex::new(None),
            built: tokio::sync::OnceCell::new(),
        }
    }

    /// Starts building the clients in a task of their own, unless that has started already.
    pub fn start(&self) {
        let settings = self.settings.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(settings) = settings {
            let task = tokio::spawn(async move { load(&settings).await });
            *self.task.lock().unwrap_or_else(|e| e.into_inner()) = Some(task);
        }
    }

    /// The clients, once built (starting the build if nothing has yet).
    pub async fn get(&self) -> Result<&Aws, String> {
        self.start();
        let built = self
            .built
            .get_or_init(|| async {
                let task = self.task.lock().unwrap_or_else(|e| e.into_inner()).take();
                match task {
                    Some(task) => task.await.unwrap_or_else(|e| Err(format!("building the AWS clients failed: {e}"))),
                    None => Err("the AWS clients were not built".to_owned()),
                }
            })
            .await;
        built.as_ref().map_err(Clone::clone)
    }
}

impl XrayApi for Deferred {
    async fn put_trace_segments(&self, docs: &[Bytes]) -> Result<Vec<Unprocessed>, ApiError> {
        let aws = self.get().await.map_err(|detail| ApiError { class: BackendError::Other, retryable: true, detail })?;
        XrayApi::put_trace_segments(&aws.client, docs).await
    }

    async fn put_telemetry_records(&self, batch: TelemetryBatch) -> Result<(), ApiError> {
        let aws = self.get().await.map_err(|detail| ApiError { class: BackendError::Other, retryable: true, detail })?;
        XrayApi::put_telemetry_records(&aws.client, batch).await
    }
}

/// The request could not be signed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignError {
    #[error("Unable to retrieve credentials: {0}")]
    Credentials(String),
    #[error("Unable to sign request: {0}")]
    Sign(String),
}

/// Signs requests for X-Ray with SigV4 (service `xray`), using the daemon's credentials.
pub struct Signer {
    provider: Option<aws_credential_types::provider::SharedCredentialsProvider>,
    region: String,
    cached: tokio::sync::Mutex<Option<aws_credential_types::Credentials>>,
}

impl Signer {
    pub fn new(provider: Option<aws_credential_types::provider::SharedCredentialsProvider>, region: String) -> Self {
        Signer { provider, region, cached: tokio::sync::Mutex::new(None) }
    }

    /// The current credentials, resolved once and again when they are within five minutes of
    /// expiring.
    pub async fn credentials(&self) -> Result<aws_credential_types::Credentials, SignError> {
        use aws_credential_types::provider::ProvideCredentials;
        let mut cached = self.cached.lock().await;
        if let Some(c) = cached.as_ref() {
            let fresh = c.expiry().is_none_or(|e| e > SystemTime::now() + Duration::from_secs(300));
            if fresh {
                return Ok(c.clone());
            }
        }
        let provider = self
            .provider
            .as_ref()
            .ok_or_else(|| SignError::Credentials("no credentials provider is configured".into()))?;
        let creds = provider
            .provide_credentials()
            .await
            .map_err(|e| SignError::Credentials(DisplayErrorContext(&e).to_string()))?;
        *cached = Some(creds.clone());
        Ok(creds)
    }

    /// Signs `request` in place. Every header present is signed, so the caller builds the
    /// request with only the stable set (host, content-type, content-length); signing adds
    /// `x-amz-date`, `x-amz-security-token` and `authorization`.
    pub async fn sign<B>(&self, request: &mut http::Request<B>, body: &[u8]) -> Result<(), SignError> {
        use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SigningSettings};
        let identity: aws_smithy_runtime_api::client::identity::Identity = self.credentials().await?.into();
        let params = aws_sigv4::sign::v4::SigningParams::builder()
            .identity(&identity)
            .region(&self.region)
            .name("xray")
            .time(SystemTime::now())
            .settings(SigningSettings::default())
            .build()
            .map_err(|e| SignError::Sign(e.to_string()))?
            .into();
        let instructions = {
            let headers = request.headers().iter().filter_map(|(k, v)| v.to_str().ok().map(|v| (k.as_str(), v)));
            let uri = request.uri().to_string();
            let signable = SignableRequest::new(request.method().as_str(), uri, headers, SignableBody::Bytes(body))
                .map_err(|e| SignError::Sign(e.to_string()))?;
            sign(signable, &params).map_err(|e| SignError::Sign(e.to_string()))?.into_parts().0
        };
        instructions.apply_to_request_http1x(request);
        Ok(())
    }
}

/// aws-config's default chains (credentials: environment, profile, web identity, container,
/// instance metadata), with our region, HTTP client, timeouts and no SDK retries.
async fn shared_config(settings: &ClientSettings) -> Result<aws_config::SdkConfig, String> {
    let proxy = proxy_config(settings.proxy_address.as_deref())?;
    let http = if settings.no_verify_ssl {
        // aws-smithy-http-client cannot skip certificate checks; our outbound stack can.
        let outbound = crate::outbound::Outbound {
            proxy_address: settings.proxy_address.clone(),
            no_verify_ssl: true,
            connect_timeout: Some(settings.connect_timeout),
        };
        outbound.sdk_client().map_err(|e| format!("cannot set up TLS: {e}"))?
    } else {
        aws_smithy_http_client::Builder::new().build_with_connector_fn(move |connector_settings, components| {
        let mut b = aws_smithy_http_client::Connector::builder().proxy_config(proxy.clone());
        if let Some(s) = connector_settings {
            b = b.connector_settings(s.clone());
        }
        if let Some(sleep) = components.and_then(|c| c.sleep_impl()) {
            b = b.sleep_impl(sleep);
        }
        b.tls_provider(tls::Provider::Rustls(tls::rustls_provider::CryptoMode::Ring)).build()
        })
    };
    let timeouts = TimeoutConfig::builder()
        .operation_attempt_timeout(settings.attempt_timeout)
        .connect_timeout(settings.connect_timeout)
        .build();
    let shared = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new(settings.region.clone()))
        .http_client(http)
        .retry_config(RetryConfig::disabled())
        .timeout_config(timeouts)
        .load()
        .await;
    Ok(shared)
}

/// The X-Ray client for uploads and telemetry.
fn xray_client(shared: &aws_config::SdkConfig, settings: &ClientSettings) -> aws_sdk_xray::Client {
    let mut config = aws_sdk_xray::config::Builder::from(shared).interceptor(DaemonHeaders::new());
    if let Some(endpoint) = &settings.endpoint {
        config = config.endpoint_url(endpoint);
    }
    aws_sdk_xray::Client::from_conf(config.build())
}

/// Adds upstream's `X-Amzn-Xray-Timestamp` header (signed) and user-agent suffix.
#[derive(Debug)]
struct DaemonHeaders {
    user_agent_suffix: String,
}

impl DaemonHeaders {
    fn new() -> Self {
        let exec_env = std::env::var("AWS_EXECUTION_ENV").unwrap_or_else(|_| "UNKNOWN".into());
        let arch = match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "aarch64" => "arm64",
            other => other,
        };
        DaemonHeaders {
            user_agent_suffix: format!(
                "xray-agent/xray-daemon/{} exec-env/{exec_env} OS/{}-{arch}",
                env!("CARGO_PKG_VERSION"),
                std::env::consts::OS
            ),
        }
    }
}

impl Intercept for DaemonHeaders {
    fn name(&self) -> &'static str {
        "XrayDaemonHeaders"
    }

    fn modify_before_signing(
        &self,
        context: &mut BeforeTransmitInterceptorContextMut<'_>,
        _: &RuntimeComponents,
        _: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        let stamp = format!("{}.{:09}", now.as_secs(), now.subsec_nanos());
        context.request_mut().headers_mut().insert("X-Amzn-Xray-Timestamp", stamp);
        Ok(())
    }

    fn modify_before_transmit(
        &self,
        context: &mut BeforeTransmitInterceptorContextMut<'_>,
        _: &RuntimeComponents,
        _: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        // After signing: the user agent is not a signed header, so appending is safe here,
        // and it runs after the SDK has set its own.
        let headers = context.request_mut().headers_mut();
        let ua = match headers.get("user-agent") {
            Some(ua) => format!("{ua} {}", self.user_agent_suffix),
            None => self.user_agent_suffix.clone(),
        };
        headers.insert("user-agent", ua);
        Ok(())
    }
}

impl XrayApi for aws_sdk_xray::Client {
    async fn put_trace_segments(&self, docs: &[Bytes]) -> Result<Vec<Unprocessed>, ApiError> {
        let body = trace_segments_body::encode(docs);
        let out = self
            .put_trace_segments()
            // The SDK serializes an empty list, and the body written from the received bytes
            // replaces it before the request is signed (and before each retry is signed again).
            .set_trace_segment_documents(Some(Vec::new()))
            .customize()
            .mutate_request(move |request| {
                request.headers_mut().insert("content-length", body.len().to_string());
                *request.body_mut() = SdkBody::from(body.clone());
            })
            .send()
            .await
            .map_err(classify)?;
        Ok(out
            .unprocessed_trace_segments()
            .iter()
            .map(|u| Unprocessed {
                id: u.id().map(str::to_owned),
                error_code: u.error_code().map(str::to_owned),
                message: u.message().map(redact_key_ids),
            })
            .collect())
    }

    async fn put_telemetry_records(&self, batch: TelemetryBatch) -> Result<(), ApiError> {
        let records = batch.records.iter().map(to_sdk_record).collect::<Result<Vec<_>, _>>()?;
        self.put_telemetry_records()
            .set_telemetry_records(Some(records))
            .ec2_instance_id(batch.reporter.ec2_instance_id)
            .hostname(batch.reporter.hostname)
            .resource_arn(batch.reporter.resource_arn)
            .send()
            .await
            .map_err(classify)?;
        Ok(())
    }
}

fn clamp(n: u64) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

fn to_sdk_record(r: &crate::telemetry::Record) -> Result<TelemetryRecord, ApiError> {
    let e = |c| clamp(r.backend_error(c));
    let errors = BackendConnectionErrors::builder()
        .timeout_count(e(BackendError::Timeout))
        .connection_refused_count(e(BackendError::ConnectionRefused))
        .http_code4_xx_count(e(BackendError::Http4xx))
        .http_code5_xx_count(e(BackendError::Http5xx))
        .unknown_host_count(e(BackendError::UnknownHost))
        .other_count(e(BackendError::Other))
        .build();
    TelemetryRecord::builder()
        .timestamp(aws_smithy_types::DateTime::from_secs_f64(r.timestamp))
        .segments_received_count(clamp(r.received()))
        .segments_sent_count(clamp(r.sent()))
        .segments_spillover_count(clamp(r.spillover()))
        .segments_rejected_count(clamp(r.rejected()))
        .backend_connection_errors(errors)
        .build()
        .map_err(|e| ApiError { class: BackendError::Other, retryable: false, detail: e.to_string() })
}

/// Classifies an SDK error for telemetry and for the retry decision.
pub fn classify<E, R>(err: SdkError<E, R>) -> ApiError
where
    E: ProvideErrorMetadata + StdError + Send + Sync + 'static,
    R: std::fmt::Debug + HasStatus + 'static,
{
    match &err {
        SdkError::TimeoutError(_) => {
            ApiError { class: BackendError::Timeout, retryable: true, detail: "the attempt timed out".into() }
        }
        SdkError::DispatchFailure(d) => {
            let class = if d.is_timeout() { BackendError::Timeout } else { transport_class(&err) };
            let detail = match d.as_connector_error() {
                Some(c) => DisplayErrorContext(c).to_string(),
                None => DisplayErrorContext(&err).to_string(),
            };
            ApiError { class, retryable: true, detail }
        }
        SdkError::ResponseError(r) => {
            let status = r.raw().status_code();
            status_error(status, None, format!("HTTP {status} with a response that is not an X-Ray error"))
        }
        SdkError::ServiceError(s) => {
            let status = s.raw().status_code();
            let code = s.err().code().unwrap_or("unknown error");
            let message = redact_key_ids(s.err().message().unwrap_or(""));
            status_error(status, s.err().code(), format!("{code}: {message} (HTTP {status})"))
        }
        // Building the request failed: in practice no credentials could be loaded. They may
        // appear later (a refreshed role, a mounted file), so keep the data and retry.
        _ => ApiError { class: BackendError::Other, retryable: true, detail: DisplayErrorContext(&err).to_string() },
    }
}

/// Replaces AWS access key ids (`AKIA…` long-term, `ASIA…` temporary) in a message from X-Ray
/// with `<redacted>` before it is logged: an error about a signature or an unknown key may
/// echo the caller's key id, and the daemon's logs never carry its credentials.
pub fn redact_key_ids(message: &str) -> String {
    let bytes = message.as_bytes();
    let mut out = String::with_capacity(message.len());
    let mut i = 0;
    while i < bytes.len() {
        let prefix = bytes[i..].starts_with(b"AKIA") || bytes[i..].starts_with(b"ASIA");
        let tail = bytes[i..].iter().skip(4).take_while(|b| b.is_ascii_uppercase() || b.is_ascii_digit()).count();
        if prefix && tail >= 12 {
            out.push_str("<redacted>");
            i += 4 + tail;
        } else {
            // Advance by one whole character, so the output stays valid UTF-8.
            let len = message[i..].chars().next().map_or(1, char::len_utf8);
            out.push_str(&message[i..i + len]);
            i += len;
        }
    }
    out
}

/// The HTTP status of a raw response.
pub trait HasStatus {
    fn status_code(&self) -> u16;
}

impl HasStatus for aws_smithy_runtime_api::http::Response {
    fn status_code(&self) -> u16 {
        self.status().as_u16()
    }
}

fn status_error(status: u16, code: Option<&str>, detail: String) -> ApiError {
    let class = match status {
        400..=499 => BackendError::Http4xx,
        500..=599 => BackendError::Http5xx,
        _ => BackendError::Other,
    };
    let throttled = status == 429 || code.is_some_and(|c| c.contains("Throttl"));
    // Authentication and authorisation failures are retried: credentials rotate, roles get
    // fixed, clocks get corrected, and meanwhile the segments wait in the buffer.
    let auth = matches!(status, 401 | 403)
        || code.is_some_and(|c| {
            matches!(
                c,
                "ExpiredToken"
                    | "ExpiredTokenException"
                    | "InvalidSignatureException"
                    | "SignatureDoesNotMatch"
                    | "UnrecognizedClientException"
                    | "InvalidClientTokenId"
                    | "AccessDeniedException"
                    | "RequestExpired"
            )
        });
    let retryable = class != BackendError::Http4xx || throttled || auth || status == 408;
    ApiError { class, retryable, detail }
}

/// Walks the error's sources to tell a refused connection and a failed name lookup apart
/// from other transport errors.
fn transport_class(err: &(dyn StdError + 'static)) -> BackendError {
    let mut source: Option<&(dyn StdError + 'static)> = Some(err);
    while let Some(e) = source {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            match io.kind() {
                std::io::ErrorKind::ConnectionRefused => return BackendError::ConnectionRefused,
                std::io::ErrorKind::TimedOut => return BackendError::Timeout,
                _ => {}
            }
        }
        let text = e.to_string();
        if text.contains("dns error") || text.contains("failed to lookup address") || text.contains("Name or service not known") {
            return BackendError::UnknownHost;
        }
        if text.contains("Connection refused") {
            return BackendError::ConnectionRefused;
        }
        source = e.source();
    }
    BackendError::Other
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_ids_in_xray_messages_are_redacted() {
        assert_eq!(
            redact_key_ids(r#"unknown access key "ASIAROTATEDKEY00001" (é)"#),
            r#"unknown access key "<redacted>" (é)"#
        );
        assert_eq!(redact_key_ids("AKIAIOSFODNN7EXAMPLE, and AKIA alone"), "<redacted>, and AKIA alone");
        assert_eq!(redact_key_ids("Rate exceeded"), "Rate exceeded");
    }

    #[test]
    fn status_classes_and_retry_decisions() {
        let e = |s, c: Option<&str>| {
            let a = status_error(s, c, String::new());
            (a.class, a.retryable)
        };
        assert_eq!(e(500, Some("InternalFailure")), (BackendError::Http5xx, true));
        assert_eq!(e(503, None), (BackendError::Http5xx, true));
        assert_eq!(e(429, Some("ThrottlingException")), (BackendError::Http4xx, true));
        assert_eq!(e(400, Some("ThrottlingException")), (BackendError::Http4xx, true));
        assert_eq!(e(403, None), (BackendError::Http4xx, true));
        assert_eq!(e(400, Some("ExpiredTokenException")), (BackendError::Http4xx, true));
        assert_eq!(e(400, Some("InvalidRequestException")), (BackendError::Http4xx, false));
        assert_eq!(e(404, None), (BackendError::Http4xx, false));
        assert_eq!(e(302, None), (BackendError::Other, true));
    }

    #[test]
    fn default_endpoints_by_partition() {
        assert_eq!(default_endpoint("us-east-1"), "https://xray.us-east-1.amazonaws.com");
        assert_eq!(default_endpoint("cn-northwest-1"), "https://xray.cn-northwest-1.amazonaws.com.cn");
        assert_eq!(default_endpoint("us-gov-west-1"), "https://xray.us-gov-west-1.amazonaws.com");
        assert_eq!(default_endpoint("us-iso-east-1"), "https://xray.us-iso-east-1.c2s.ic.gov");
        assert_eq!(default_endpoint("us-isob-east-1"), "https://xray.us-isob-east-1.sc2s.sgov.gov");
    }

    #[test]
    fn transport_errors_are_told_apart_by_their_sources() {
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert_eq!(transport_class(&refused), BackendError::ConnectionRefused);
        let dns = std::io::Error::other("dns error: failed to lookup address information");
        assert_eq!(transport_class(&dns), BackendError::UnknownHost);
        let other = std::io::Error::other("connection reset");
        assert_eq!(transport_class(&other), BackendError::Other);
    }
}
