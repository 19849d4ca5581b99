//! The AWS SDK's shared configuration and the X-Ray client: credentials chain, region, HTTP
//! client (outbound proxy, TLS), timeouts, the daemon's headers, and the endpoint.
//!
//! The SDK's own retries are switched off: the uploader owns retrying, so that backoff is shared
//! across uploads and a batch can go back to the buffer instead of being dropped. Each attempt
//! has its own timeout. The SDK corrects its signatures for a host clock that is off; what its
//! answers say of X-Ray's clock is shared with the daemon's own signer ([`super::clock`]).

use super::clock::{Answer, Offset, ServiceClock};
use super::signer::Signer;
use crate::backend::{BackendError, ErrorKind};
use crate::config::Config;
use aws_smithy_http_client::tls;
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::context::{
    BeforeDeserializationInterceptorContextRef, BeforeTransmitInterceptorContextMut,
    BeforeTransmitInterceptorContextRef,
};
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::{ConfigBag, Storable, StoreReplace};
use aws_smithy_types::retry::RetryConfig;
use aws_smithy_types::timeout::TimeoutConfig;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// What the client needs to know.
#[derive(Debug, Clone)]
pub(crate) struct ClientSettings {
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
pub(crate) fn proxy_config(proxy_address: Option<&str>) -> Result<aws_smithy_http_client::proxy::ProxyConfig, String> {
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
fn default_endpoint(region: &str) -> String {
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

/// Where X-Ray calls go for `region`: the daemon's endpoint override (`XRAY_DAEMON_ENDPOINT`, the
/// config file's `Endpoint`), else the SDK's `AWS_ENDPOINT_URL_XRAY` / `AWS_ENDPOINT_URL`, else
/// the region's public endpoint. The SDK resolves the same for uploads; the proxy needs the URL.
pub(crate) fn xray_endpoint(config: &Config, region: &str) -> String {
    config.endpoint.clone().or_else(|| config.sdk_endpoint.clone()).unwrap_or_else(|| default_endpoint(region))
}

/// The SDK pieces the daemon shares: the X-Ray client for uploads and telemetry, and a signer
/// with the same credentials for the TCP proxy.
pub(crate) struct Aws {
    pub client: aws_sdk_xray::Client,
    pub signer: Arc<Signer>,
}

/// Loads the shared AWS configuration once.
pub(crate) async fn load(settings: &ClientSettings) -> Result<Aws, String> {
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
    let clock = Arc::new(ServiceClock::default());
    let client = xray_client(&shared, settings, clock.clone());
    let signer = Arc::new(Signer::new(shared.credentials_provider(), settings.region.clone(), clock));
    Ok(Aws { client, signer })
}

/// The AWS clients, built in the background: for a cold start that must not wait on the
/// credentials chain and the TLS roots. Uploads wait for the build.
pub(crate) struct Deferred {
    /// The settings until the build starts.
    settings: std::sync::Mutex<Option<ClientSettings>>,
    task: std::sync::Mutex<Option<tokio::task::JoinHandle<Result<Aws, String>>>>,
    built: tokio::sync::OnceCell<Result<Aws, String>>,
}

impl Deferred {
    /// Clients built when [`Deferred::start`] is called, or else on first use.
    pub(crate) fn new(settings: ClientSettings) -> Deferred {
        Deferred {
            settings: std::sync::Mutex::new(Some(settings)),
            task: std::sync::Mutex::new(None),
            built: tokio::sync::OnceCell::new(),
        }
    }

    /// Starts building the clients in a task of their own, unless that has started already.
    pub(crate) fn start(&self) {
        let settings = self.settings.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(settings) = settings {
            let task = tokio::spawn(async move { load(&settings).await });
            *self.task.lock().unwrap_or_else(|e| e.into_inner()) = Some(task);
        }
    }

    /// The clients, once built (starting the build if nothing has yet).
    pub(crate) async fn get(&self) -> Result<&Aws, String> {
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

    /// The clients, once built, or why there are none yet (no credentials chain could be built:
    /// the call is retried later). Starts the build if nothing has yet.
    pub(crate) async fn built(&self) -> Result<&Aws, BackendError> {
        self.get().await.map_err(|detail| BackendError::new(ErrorKind::Credentials, detail))
    }
}

/// aws-config's default chains (credentials: environment, profile, web identity, container,
/// instance metadata), with our region, HTTP client, timeouts and no SDK retries.
async fn shared_config(settings: &ClientSettings) -> Result<aws_config::SdkConfig, String> {
    let proxy = proxy_config(settings.proxy_address.as_deref())?;
    let http = if settings.no_verify_ssl {
        // aws-smithy-http-client cannot skip certificate checks; our outbound stack can.
        let outbound = super::outbound::Outbound {
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

/// The X-Ray client for uploads and telemetry. It corrects its own signing time for the host
/// clock's offset (the SDK's `ServiceClockSkewInterceptor`); [`ClockWatch`] shares what its
/// answers say with the daemon's own signer.
fn xray_client(
    shared: &aws_config::SdkConfig,
    settings: &ClientSettings,
    clock: Arc<ServiceClock>,
) -> aws_sdk_xray::Client {
    let mut config =
        aws_sdk_xray::config::Builder::from(shared).interceptor(DaemonHeaders::new()).interceptor(ClockWatch(clock));
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

/// Reads the SDK's answers for a refusal of the signature's time, into the shared clock: the
/// daemon's own signer then starts from X-Ray's time, and the warning is logged once.
#[derive(Debug)]
struct ClockWatch(Arc<ServiceClock>);

/// When the attempt left, by the host clock, and the shared clock's offset then.
#[derive(Debug, Clone, Copy)]
struct Sent(SystemTime, Offset);

impl Storable for Sent {
    type Storer = StoreReplace<Self>;
}

impl Intercept for ClockWatch {
    fn name(&self) -> &'static str {
        "XrayDaemonClockWatch"
    }

    fn read_before_transmit(
        &self,
        _: &BeforeTransmitInterceptorContextRef<'_>,
        _: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        cfg.interceptor_state().store_put(Sent(SystemTime::now(), self.0.offset()));
        Ok(())
    }

    fn read_after_transmit(
        &self,
        context: &BeforeDeserializationInterceptorContextRef<'_>,
        _: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let Some(&Sent(sent, offset)) = cfg.load::<Sent>() else {
            return Ok(());
        };
        let response = context.response();
        let headers = response.headers();
        let answer = Answer {
            status: response.status().as_u16(),
            error_type: headers.get("x-amzn-errortype"),
            date: headers.get("date"),
        };
        self.0.correct(&answer, offset, sent, SystemTime::now());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(env: &[(&str, &str)]) -> Config {
        let env = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Config::load_with(&Default::default(), &env, std::path::Path::new("/nonexistent")).expect("config")
    }

    #[test]
    fn the_endpoint_is_the_override_then_the_sdks_variables_then_the_regions() {
        assert_eq!(xray_endpoint(&config(&[]), "us-east-1"), "https://xray.us-east-1.amazonaws.com");
        assert_eq!(xray_endpoint(&config(&[]), "cn-north-1"), "https://xray.cn-north-1.amazonaws.com.cn");
        let sdk = [("AWS_ENDPOINT_URL", "http://127.0.0.1:1/"), ("AWS_ENDPOINT_URL_XRAY", "http://127.0.0.1:2/")];
        assert_eq!(xray_endpoint(&config(&sdk), "us-east-1"), "http://127.0.0.1:2");
        let both = [("AWS_ENDPOINT_URL_XRAY", "http://127.0.0.1:2"), ("XRAY_DAEMON_ENDPOINT", "http://127.0.0.1:3")];
        assert_eq!(xray_endpoint(&config(&both), "us-east-1"), "http://127.0.0.1:3");
    }

    #[test]
    fn default_endpoints_by_partition() {
        assert_eq!(default_endpoint("us-east-1"), "https://xray.us-east-1.amazonaws.com");
        assert_eq!(default_endpoint("cn-northwest-1"), "https://xray.cn-northwest-1.amazonaws.com.cn");
        assert_eq!(default_endpoint("us-gov-west-1"), "https://xray.us-gov-west-1.amazonaws.com");
        assert_eq!(default_endpoint("us-iso-east-1"), "https://xray.us-iso-east-1.c2s.ic.gov");
        assert_eq!(default_endpoint("us-isob-east-1"), "https://xray.us-isob-east-1.sc2s.sgov.gov");
    }
}
