//! A client for the few Lambda Extensions and Telemetry API calls the extension makes:
//! register, subscribe, next, init/error and exit/error. Plain HTTP/1.1 to
//! `AWS_LAMBDA_RUNTIME_API` on the sandbox's loopback, with no proxy and no timeout on `/next`
//! (a long poll that may last as long as the sandbox stays idle).

use super::events::{EventError, NextEvent};
use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use serde::Deserialize;

const EXTENSION: &str = "2020-01-01/extension";
const TELEMETRY: &str = "2022-07-01/telemetry";
const ID_HEADER: &str = "Lambda-Extension-Identifier";
/// Telemetry API schema: 2022-12-13 is what Lambda and its peers use for on-demand functions.
pub(crate) const TELEMETRY_SCHEMA: &str = "2022-12-13";
/// The shortest batching delay Lambda allows: `platform.runtimeDone` reaches us ~25 ms after
/// the runtime is done.
pub(crate) const TELEMETRY_TIMEOUT_MS: u64 = 25;

/// A failed call to the Runtime API.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{call}: cannot reach the Lambda Runtime API at {base}: {source}")]
    Transport { call: &'static str, base: String, source: hyper_util::client::legacy::Error },
    #[error("{call}: reading the response: {source}")]
    Body { call: &'static str, source: hyper::Error },
    #[error("{call}: HTTP {status}{}", describe(.error_type, .message))]
    Status { call: &'static str, status: StatusCode, error_type: Option<String>, message: Option<String> },
    #[error("register: the response has no {ID_HEADER} header")]
    NoIdentifier,
    #[error("next: {0}")]
    Event(#[from] EventError),
}

fn describe(error_type: &Option<String>, message: &Option<String>) -> String {
    match (error_type, message) {
        (Some(t), Some(m)) => format!(" {t}: {m}"),
        (Some(t), None) => format!(" {t}"),
        (None, Some(m)) => format!(": {m}"),
        (None, None) => String::new(),
    }
}

/// What `register` returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Registration {
    pub id: String,
    pub function_name: String,
    pub function_version: String,
    pub account_id: Option<String>,
}

/// Whether the Telemetry API will deliver events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Subscription {
    Active,
    /// 202 `Telemetry.NotSupported` (the Runtime Interface Emulator, SAM local).
    NotSupported(String),
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct RegisterBody {
    #[serde(default)]
    function_name: String,
    #[serde(default)]
    function_version: String,
    #[serde(default)]
    account_id: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct ErrorBody {
    error_type: Option<String>,
    error_message: Option<String>,
}

/// The Extensions API client. `id` is set by `register` and sent on every later call.
pub(crate) struct RuntimeApi {
    base: String,
    client: Client<HttpConnector, Full<Bytes>>,
    id: String,
}

struct Response {
    status: StatusCode,
    headers: http::HeaderMap,
    body: Bytes,
}

impl RuntimeApi {
    /// `runtime_api` is `AWS_LAMBDA_RUNTIME_API`, e.g. `127.0.0.1:9001`.
    pub(crate) fn new(runtime_api: &str) -> RuntimeApi {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new()).build(connector);
        RuntimeApi { base: format!("http://{}", runtime_api.trim_end_matches('/')), client, id: String::new() }
    }

    async fn call(
        &self,
        call: &'static str,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<Vec<u8>>,
    ) -> Result<Response, ApiError> {
        let mut builder = Request::builder().method(method).uri(format!("{}/{path}", self.base));
        if !self.id.is_empty() {
            builder = builder.header(ID_HEADER, &self.id);
        }
        if body.is_some() {
            builder = builder.header(http::header::CONTENT_TYPE, "application/json");
        }
        for (k, v) in headers {
            builder = builder.header(*k, *v);
        }
        let request = builder
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .expect("a request built from a valid URI and header names");
        let response = self.client.request(request).await.map_err(|source| ApiError::Transport {
            call,
            base: self.base.clone(),
            source,
        })?;
        let (parts, body) = response.into_parts();
        let body = body.collect().await.map_err(|source| ApiError::Body { call, source })?.to_bytes();
        if !parts.status.is_success() {
            let e: ErrorBody = serde_json::from_slice(&body).unwrap_or_default();
            let message = e.error_message.or_else(|| {
                let text = String::from_utf8_lossy(&body).trim().chars().take(200).collect::<String>();
                (!text.is_empty()).then_some(text)
            });
            return Err(ApiError::Status { call, status: parts.status, error_type: e.error_type, message });
        }
        Ok(Response { status: parts.status, headers: parts.headers, body })
    }

    /// `POST /extension/register` for `events`, asking for the account id.
    pub(crate) async fn register(&mut self, name: &str, events: &[&str]) -> Result<Registration, ApiError> {
        let body = serde_json::to_vec(&serde_json::json!({ "events": events })).unwrap_or_default();
        let headers = [("Lambda-Extension-Name", name), ("Lambda-Extension-Accept-Feature", "accountId")];
        let r = self.call("register", Method::POST, &format!("{EXTENSION}/register"), &headers, Some(body)).await?;
        let id = r
            .headers
            .get(ID_HEADER)
            .and_then(|v| v.to_str().ok())
            .filter(|v| !v.is_empty())
            .ok_or(ApiError::NoIdentifier)?
            .to_owned();
        let b: RegisterBody = serde_json::from_slice(&r.body).unwrap_or_default();
        self.id = id.clone();
        Ok(Registration {
            id,
            function_name: b.function_name,
            function_version: b.function_version,
            account_id: b.account_id,
        })
    }

    /// `PUT /telemetry`: platform events only, to `http://sandbox.localdomain:<port>/`.
    pub(crate) async fn subscribe(&self, port: u16) -> Result<Subscription, ApiError> {
        let body = serde_json::json!({
            "schemaVersion": TELEMETRY_SCHEMA,
            "types": ["platform"],
            "buffering": { "maxItems": 1000, "maxBytes": 262144, "timeoutMs": TELEMETRY_TIMEOUT_MS },
            "destination": { "protocol": "HTTP", "URI": format!("http://sandbox.localdomain:{port}/") },
        });
        let r = self
            .call("subscribe", Method::PUT, TELEMETRY, &[], Some(serde_json::to_vec(&body).unwrap_or_default()))
            .await?;
        if r.status == StatusCode::ACCEPTED {
            let e: ErrorBody = serde_json::from_slice(&r.body).unwrap_or_default();
            let what = [e.error_type, e.error_message].into_iter().flatten().collect::<Vec<_>>().join(": ");
            return Ok(Subscription::NotSupported(if what.is_empty() { "202 Accepted".to_owned() } else { what }));
        }
        Ok(Subscription::Active)
    }

    /// `GET /event/next`: blocks until Lambda has an event for us.
    pub(crate) async fn next(&self) -> Result<NextEvent, ApiError> {
        let r = self.call("next", Method::GET, &format!("{EXTENSION}/event/next"), &[], None).await?;
        Ok(NextEvent::parse(&r.body)?)
    }

    /// `POST /extension/init/error` (during init) or `/exit/error` (after): tells Lambda why
    /// the extension is about to exit. `reason` becomes `Extension.<reason>`.
    pub(crate) async fn report_error(&self, initialising: bool, reason: &str, message: &str) -> Result<(), ApiError> {
        let (call, path) = if initialising { ("init/error", "init/error") } else { ("exit/error", "exit/error") };
        let error_type = format!("Extension.{reason}");
        let body = serde_json::json!({ "errorMessage": message, "errorType": error_type, "stackTrace": [] });
        let headers = [("Lambda-Extension-Function-Error-Type", error_type.as_str())];
        self.call(
            call,
            Method::POST,
            &format!("{EXTENSION}/{path}"),
            &headers,
            Some(serde_json::to_vec(&body).unwrap_or_default()),
        )
        .await
        .map(|_| ())
    }
}
