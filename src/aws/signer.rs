//! SigV4 signing with the daemon's credentials, for requests the daemon builds itself (the
//! TCP port's proxy, the OTLP sink) rather than through the SDK's client, and sending them: a
//! request X-Ray refuses for its signature's time is signed again with X-Ray's time (see
//! [`super::clock`]) and sent once more, as the AWS SDKs do. A failed send becomes the
//! pipeline's [`BackendError`], and an answer's body is read within bounds ([`read_answer`]).

use super::clock::{Offset, ServiceClock};
use super::errors::{error_chain, transport_kind};
use super::outbound::Https;
use crate::backend::{BackendError, ErrorKind};
use aws_smithy_types::error::display::DisplayErrorContext;
use bytes::Bytes;
use http::header::USER_AGENT;
use http::{HeaderValue, Request, Response};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// The request could not be signed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum SignError {
    #[error("Unable to retrieve credentials: {0}")]
    Credentials(String),
    #[error("Unable to sign request: {0}")]
    Sign(String),
}

/// A signed request could not be sent, or got no answer.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SendError {
    #[error(transparent)]
    Sign(#[from] SignError),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("{}", error_chain(.0))]
    Transport(hyper_util::client::legacy::Error),
}

impl From<SendError> for BackendError {
    /// A call that got no answer: its signing, its transport or its timeout failed.
    fn from(e: SendError) -> BackendError {
        match e {
            SendError::Timeout(_) => BackendError::new(ErrorKind::Timeout, "the attempt timed out"),
            SendError::Transport(e) => BackendError::new(transport_kind(&e), error_chain(&e)),
            e @ SendError::Sign(_) => BackendError::new(ErrorKind::Credentials, e.to_string()),
        }
    }
}

/// The body of an answer, read whole: at most `limit` bytes, within `timeout`.
pub(crate) async fn read_answer(
    response: Response<Incoming>,
    limit: usize,
    timeout: Duration,
) -> Result<Bytes, BackendError> {
    let read = Limited::new(response.into_body(), limit).collect();
    match tokio::time::timeout(timeout, read).await {
        Ok(Ok(body)) => Ok(body.to_bytes()),
        Ok(Err(e)) => Err(BackendError::new(ErrorKind::Other, format!("cannot read the answer: {e}"))),
        Err(_) => Err(BackendError::new(ErrorKind::Timeout, "the answer did not arrive in time")),
    }
}

/// Signs requests for X-Ray with SigV4 (service `xray`), using the daemon's credentials and
/// X-Ray's time.
pub(crate) struct Signer {
    provider: Option<aws_credential_types::provider::SharedCredentialsProvider>,
    region: String,
    cached: tokio::sync::Mutex<Option<aws_credential_types::Credentials>>,
    clock: Arc<ServiceClock>,
}

impl Signer {
    pub(crate) fn new(
        provider: Option<aws_credential_types::provider::SharedCredentialsProvider>,
        region: String,
        clock: Arc<ServiceClock>,
    ) -> Self {
        Signer { provider, region, cached: tokio::sync::Mutex::new(None), clock }
    }

    /// Signs `request` (built with only the stable header set, as for [`Signer::sign`]), adds
    /// `user_agent` and sends it with `http`, each attempt within `timeout`. When X-Ray refuses
    /// it for the signature's time, it is signed again with X-Ray's time and sent once more.
    pub(crate) async fn send(
        &self,
        http: &Client<Https, Full<Bytes>>,
        request: Request<Full<Bytes>>,
        body: &Bytes,
        user_agent: &HeaderValue,
        timeout: Duration,
    ) -> Result<Response<Incoming>, SendError> {
        let (parts, _) = request.into_parts();
        let mut retried = false;
        loop {
            let mut request = Request::new(Full::new(body.clone()));
            *request.method_mut() = parts.method.clone();
            *request.uri_mut() = parts.uri.clone();
            *request.headers_mut() = parts.headers.clone();
            let signed = self.sign(&mut request, body).await?;
            // Not signed, so it cannot break the signature.
            request.headers_mut().insert(USER_AGENT, user_agent.clone());
            let sent = SystemTime::now();
            let response = match tokio::time::timeout(timeout, http.request(request)).await {
                Err(_) => return Err(SendError::Timeout(timeout)),
                Ok(Err(e)) => return Err(SendError::Transport(e)),
                Ok(Ok(response)) => response,
            };
            let status = response.status().as_u16();
            if retried || !self.clock.correct_from(status, response.headers(), signed, sent, SystemTime::now()) {
                return Ok(response);
            }
            retried = true;
        }
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

    /// Signs `request` in place with X-Ray's time, and says which offset from the host clock
    /// that was. Every header present is signed, so the caller builds the request with only the
    /// stable set (host, content-type, content-length); signing adds `x-amz-date`,
    /// `x-amz-security-token` and `authorization`.
    pub(crate) async fn sign<B>(&self, request: &mut http::Request<B>, body: &[u8]) -> Result<Offset, SignError> {
        use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SigningSettings};
        let identity: aws_smithy_runtime_api::client::identity::Identity = self.credentials().await?.into();
        let (now, offset) = self.clock.now();
        let params = aws_sigv4::sign::v4::SigningParams::builder()
            .identity(&identity)
            .region(&self.region)
            .name("xray")
            .time(now)
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
        Ok(offset)
    }
}
