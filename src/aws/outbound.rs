//! Outbound HTTP(S) that the SDK's own client cannot do: requests through an HTTP proxy for the
//! TCP proxy's upstream calls, and TLS without certificate checks when `NoVerifySSL` is set.
//!
//! The TCP proxy always uses this stack, so it honours `-p` / `HTTPS_PROXY` and `NO_PROXY` like
//! the uploads do. The AWS SDK uses it only with `NoVerifySSL` (its own client has no switch to
//! skip verification); otherwise the SDK keeps aws-smithy-http-client with the same proxy
//! settings. Proxying uses hyper-util's proxy matcher and CONNECT tunnel.

use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::HttpRequest;
use aws_smithy_runtime_api::client::result::ConnectorError;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::body::SdkBody;
use http::Uri;
use hyper_util::client::legacy::connect::proxy::Tunnel;
use hyper_util::client::legacy::connect::HttpConnector as TcpConnector;
use hyper_util::client::proxy::matcher::Matcher;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::net::TcpStream;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Points `SSL_CERT_FILE` at the system's CA bundle when neither it nor `SSL_CERT_DIR` is set.
///
/// Without them rustls-native-certs (under both the SDK's client and ours) reads the bundle
/// *and* every file of the certificate directory, which holds the same certificates again:
/// PEM-decoding them twice was most of a Lambda cold start's CPU. With the variable it reads
/// the bundle alone. Where no bundle file exists the directory is still used. Call it before
/// any thread starts: it changes the process environment.
pub fn prefer_ca_bundle() {
    if std::env::var_os("SSL_CERT_FILE").is_some() || std::env::var_os("SSL_CERT_DIR").is_some() {
        return;
    }
    if let Some(bundle) = openssl_probe::probe().cert_file {
        std::env::set_var("SSL_CERT_FILE", bundle);
    }
}

/// Settings for the outbound stack.
#[derive(Debug, Clone, Default)]
pub(crate) struct Outbound {
    /// `-p` / `XRAY_DAEMON_PROXY_ADDRESS`; without it `HTTPS_PROXY`, `https_proxy`, `HTTP_PROXY`.
    pub(crate) proxy_address: Option<String>,
    /// Skip certificate checks.
    pub(crate) no_verify_ssl: bool,
    pub(crate) connect_timeout: Option<Duration>,
}

/// The connector type: TCP (possibly tunnelled) wrapped in TLS.
pub(crate) type Https = hyper_rustls::HttpsConnector<Connect>;

impl Outbound {
    fn matcher(&self) -> Matcher {
        match &self.proxy_address {
            Some(url) => {
                let no_proxy = std::env::var("NO_PROXY").or_else(|_| std::env::var("no_proxy")).unwrap_or_default();
                Matcher::builder().all(url.clone()).no(no_proxy).build()
            }
            None => Matcher::from_env(),
        }
    }

    /// The HTTPS connector.
    pub(crate) fn connector(&self) -> Result<Https, std::io::Error> {
        let mut tcp = TcpConnector::new();
        tcp.enforce_http(false);
        tcp.set_connect_timeout(self.connect_timeout);
        tcp.set_nodelay(true);
        let connect = Connect { tcp, matcher: Arc::new(self.matcher()) };
        let provider = rustls::crypto::ring::default_provider();
        let builder = if self.no_verify_ssl {
            let config = rustls::ClientConfig::builder_with_provider(Arc::new(provider.clone()))
                .with_safe_default_protocol_versions()
                .map_err(std::io::Error::other)?
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(NoVerify(provider)))
                .with_no_client_auth();
            hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(config)
        } else {
            hyper_rustls::HttpsConnectorBuilder::new().with_provider_and_native_roots(provider)?
        };
        Ok(builder.https_or_http().enable_http1().wrap_connector(connect))
    }

    /// An HTTP client for the AWS SDK on this stack (used when `NoVerifySSL` is set).
    pub(crate) fn sdk_client(&self) -> Result<aws_smithy_runtime_api::client::http::SharedHttpClient, std::io::Error> {
        let client = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(self.connector()?);
        Ok(aws_smithy_runtime_api::client::http::SharedHttpClient::new(SdkClient(client)))
    }
}

/// TCP connections, tunnelled through the proxy (HTTP CONNECT) for destinations it applies to.
#[derive(Clone)]
pub(crate) struct Connect {
    tcp: TcpConnector,
    matcher: Arc<Matcher>,
}

impl tower_service::Service<Uri> for Connect {
    type Response = TokioIo<TcpStream>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.tcp.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, dst: Uri) -> Self::Future {
        match self.matcher.intercept(&dst) {
            Some(intercept) => {
                let mut tunnel = Tunnel::new(intercept.uri().clone(), self.tcp.clone());
                if let Some(auth) = intercept.basic_auth() {
                    tunnel = tunnel.with_auth(auth.clone());
                }
                Box::pin(async move { tunnel.call(dst).await.map_err(Into::into) })
            }
            None => {
                let mut tcp = self.tcp.clone();
                Box::pin(async move { tcp.call(dst).await.map_err(Into::into) })
            }
        }
    }
}

/// Accepts any server certificate; handshake signatures are still checked.
#[derive(Debug)]
struct NoVerify(rustls::crypto::CryptoProvider);

impl rustls::client::danger::ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &[rustls::pki_types::CertificateDer<'_>],
        _: &rustls::pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// The SDK's HTTP client trait over the hyper client above.
#[derive(Clone)]
struct SdkClient(hyper_util::client::legacy::Client<Https, SdkBody>);

impl std::fmt::Debug for SdkClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SdkClient(outbound)")
    }
}

impl HttpConnector for SdkClient {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        let client = self.0.clone();
        HttpConnectorFuture::new(async move {
            let request = request.try_into_http1x().map_err(|e| ConnectorError::user(e.into()))?;
            let response = client.request(request).await.map_err(|e| {
                if e.is_connect() {
                    ConnectorError::io(e.into())
                } else {
                    ConnectorError::other(e.into(), None)
                }
            })?;
            let response = response.map(SdkBody::from_body_1_x);
            aws_smithy_runtime_api::http::Response::try_from(response)
                .map_err(|e| ConnectorError::other(e.into(), None))
        })
    }
}

impl HttpClient for SdkClient {
    fn http_connector(&self, _: &HttpConnectorSettings, _: &RuntimeComponents) -> SharedHttpConnector {
        SharedHttpConnector::new(self.clone())
    }
}
