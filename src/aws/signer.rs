//! SigV4 signing with the daemon's credentials, for requests the daemon builds itself (the
//! TCP port's proxy) rather than through the SDK's client.

use aws_smithy_types::error::display::DisplayErrorContext;
use std::time::{Duration, SystemTime};

/// The request could not be signed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum SignError {
    #[error("Unable to retrieve credentials: {0}")]
    Credentials(String),
    #[error("Unable to sign request: {0}")]
    Sign(String),
}

/// Signs requests for X-Ray with SigV4 (service `xray`), using the daemon's credentials.
pub(crate) struct Signer {
    provider: Option<aws_credential_types::provider::SharedCredentialsProvider>,
    region: String,
    cached: tokio::sync::Mutex<Option<aws_credential_types::Credentials>>,
}

impl Signer {
    pub(crate) fn new(
        provider: Option<aws_credential_types::provider::SharedCredentialsProvider>,
        region: String,
    ) -> Self {
        Signer { provider, region, cached: tokio::sync::Mutex::new(None) }
    }

    /// The current credentials, resolved once and again when they are within five minutes of
    /// expiring.
    pub(crate) async fn credentials(&self) -> Result<aws_credential_types::Credentials, SignError> {
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
    pub(crate) async fn sign<B>(&self, request: &mut http::Request<B>, body: &[u8]) -> Result<(), SignError> {
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
