//! The daemon's AWS clients: the credentials chain (`aws-config`), the signer that uses it,
//! and the X-Ray API calls ([`XrayApi`]) at the endpoint for the region.
//!
//! Credentials and the region's defaults stay with `aws-config`'s chains (environment, profile,
//! web identity, container, instance metadata, an assumed role); its own HTTP client (outbound
//! proxy, TLS) serves those. X-Ray itself is called with the daemon's signer on its own HTTP
//! client ([`super::xray_api`]). Retrying is the uploader's, so that backoff is shared across
//! uploads and a batch can go back to the buffer instead of being dropped.

use super::clock::ServiceClock;
use super::outbound::Outbound;
use super::signer::Signer;
use super::xray_api::XrayApi;
use crate::backend::{BackendError, ErrorKind};
use crate::config::Config;
use aws_smithy_http_client::tls;
use aws_smithy_types::retry::RetryConfig;
use aws_smithy_types::timeout::TimeoutConfig;
use std::sync::Arc;
use std::time::Duration;

/// What the client needs to know.
#[derive(Debug, Clone)]
pub(crate) struct ClientSettings {
    pub region: String,
    /// X-Ray's endpoint URL ([`xray_endpoint`]).
    pub endpoint: String,
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

/// The X-Ray endpoint for a region when nothing overrides it.
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
/// the region's public endpoint: for uploads, telemetry and the proxy alike.
pub(crate) fn xray_endpoint(config: &Config, region: &str) -> String {
    config.endpoint.clone().or_else(|| config.sdk_endpoint.clone()).unwrap_or_else(|| default_endpoint(region))
}

/// What the daemon calls AWS with: X-Ray's API for uploads and telemetry, and the signer,
/// with the same credentials and clock, for the TCP proxy and the OTLP sink.
pub(crate) struct Aws {
    pub(crate) xray: XrayApi,
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
    let signer = Arc::new(Signer::new(shared.credentials_provider(), settings.region.clone(), clock));
    let outbound = Outbound {
        proxy_address: settings.proxy_address.clone(),
        no_verify_ssl: settings.no_verify_ssl,
        connect_timeout: Some(settings.connect_timeout),
    };
    let xray = XrayApi::new(&settings.endpoint, signer.clone(), &outbound, settings.attempt_timeout)?;
    Ok(Aws { xray, signer })
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
/// instance metadata), with our region, HTTP client (for the credentials providers' calls),
/// timeouts and no SDK retries.
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
