//! The port between the pipeline and the services it sends to.
//!
//! The pipeline and telemetry need three things from a backend: send a batch of one signal, send
//! telemetry records, and say what went wrong in terms they can act on. This module owns those
//! traits and the neutral [`BackendError`], so that the retry rules (in `pipeline::flush`) and the
//! counters never see an SDK type, and the AWS code (`aws/`) is the only code that knows the SDK.

use crate::signal::Signal;
use crate::stats::{Api, ErrorClass, Snapshot, Stats, UpstreamClass};
use bytes::Bytes;
use std::fmt;
use std::future::Future;
use std::time::Duration;

/// What went wrong with a call, as the wire showed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ErrorKind {
    /// The service answered with an HTTP error status, and maybe an error code.
    Status { status: u16, code: Option<String> },
    /// No answer in time (connecting, or waiting for the response).
    Timeout,
    /// The connection was refused.
    Refused,
    /// The host name did not resolve.
    Dns,
    /// No credentials to sign the request with (yet): none found, or the chain could not be built.
    Credentials,
    /// Anything else: a broken connection, a request that could not be built.
    Other,
}

/// Error codes that mean the caller's credentials or signature were not accepted.
pub(crate) const AUTH_CODES: &[&str] = &[
    "ExpiredToken",
    "ExpiredTokenException",
    "InvalidSignatureException",
    "SignatureDoesNotMatch",
    "UnrecognizedClientException",
    "InvalidClientTokenId",
    "AccessDeniedException",
    "RequestExpired",
];

impl ErrorKind {
    /// The class of this failure in `/metrics`.
    pub(crate) fn class(&self) -> ErrorClass {
        match self {
            ErrorKind::Status { status, code } => {
                let code = code.as_deref().unwrap_or("");
                if *status == 429 || code.contains("Throttl") {
                    ErrorClass::Throttled
                } else if matches!(status, 401 | 403) || AUTH_CODES.contains(&code) {
                    ErrorClass::Auth
                } else if (400..=499).contains(status) {
                    ErrorClass::Client
                } else {
                    ErrorClass::Server
                }
            }
            ErrorKind::Timeout => ErrorClass::Timeout,
            ErrorKind::Credentials => ErrorClass::Auth,
            ErrorKind::Refused | ErrorKind::Dns | ErrorKind::Other => ErrorClass::Connection,
        }
    }
}

/// A failed call: what kind of failure, and what to say about it in a log line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendError {
    pub kind: ErrorKind,
    /// The error code and message, or the transport error, for the log.
    pub detail: String,
    /// How long the service asked us to wait before trying again (`Retry-After`).
    pub retry_after: Option<Duration>,
}

impl BackendError {
    pub fn new(kind: ErrorKind, detail: impl Into<String>) -> Self {
        BackendError { kind, detail: detail.into(), retry_after: None }
    }

    /// The same error, with the service's `Retry-After`.
    pub(crate) fn retry_after(mut self, wait: Option<Duration>) -> Self {
        self.retry_after = wait;
        self
    }

    /// The HTTP status the service answered with, when it answered.
    pub fn status(&self) -> Option<u16> {
        match self.kind {
            ErrorKind::Status { status, .. } => Some(status),
            _ => None,
        }
    }

    /// The service's error code (`ThrottlingException`), when it gave one.
    pub fn error_code(&self) -> Option<&str> {
        match &self.kind {
            ErrorKind::Status { code, .. } => code.as_deref(),
            _ => None,
        }
    }

    /// The class of this error in `/metrics`.
    pub(crate) fn class(&self) -> ErrorClass {
        self.kind.class()
    }

    /// Upstream's telemetry class for this error.
    pub(crate) fn upstream_class(&self) -> UpstreamClass {
        match &self.kind {
            ErrorKind::Status { status: 400..=499, .. } => UpstreamClass::Http4xx,
            ErrorKind::Status { status: 500..=599, .. } => UpstreamClass::Http5xx,
            ErrorKind::Status { .. } | ErrorKind::Credentials | ErrorKind::Other => UpstreamClass::Other,
            ErrorKind::Timeout => UpstreamClass::Timeout,
            ErrorKind::Refused => UpstreamClass::ConnectionRefused,
            ErrorKind::Dns => UpstreamClass::UnknownHost,
        }
    }

    /// Counts this failure of a call to `api`: in `/metrics`, and in the telemetry records.
    pub(crate) fn count(&self, api: Api, stats: &Stats) {
        stats.backend_error(api, self.class());
        stats.upstream_error(self.upstream_class());
    }
}

impl fmt::Display for BackendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.detail)
    }
}

/// What the service did with a request it accepted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Receipt {
    /// Records to send again, by their index in the batch (X-Ray was throttled on them, say).
    pub retry: Vec<usize>,
    /// Items refused for good.
    pub rejected: u64,
    /// Items the service reported as not processed, whether retried or refused.
    pub unprocessed: u64,
}

/// Where the batches of one signal go.
pub trait Sink<S: Signal>: Send + Sync + 'static {
    /// Sends one batch of records, at most `S::MAX_ITEMS` items and `S::MAX_BYTES` bytes
    /// (a single larger record goes alone), and reads the answer.
    fn send(&self, records: &[Bytes]) -> impl Future<Output = Result<Receipt, BackendError>> + Send;
}

/// Who is reporting telemetry: the top-level strings of the request, empty when unknown.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Reporter {
    pub(crate) ec2_instance_id: String,
    pub hostname: String,
    pub(crate) resource_arn: String,
}

/// One interval's counters.
#[derive(Debug, Clone, PartialEq)]
pub struct TelemetryRecord {
    /// Epoch seconds.
    pub timestamp: f64,
    pub counts: Snapshot,
}

/// One PutTelemetryRecords request.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct TelemetryBatch {
    pub(crate) reporter: Reporter,
    pub records: Vec<TelemetryRecord>,
}

/// Where telemetry records go.
pub(crate) trait TelemetryApi: Send + Sync + 'static {
    fn put_telemetry_records(&self, batch: TelemetryBatch) -> impl Future<Output = Result<(), BackendError>> + Send;
}

impl<S: Signal, T: Sink<S>> Sink<S> for std::sync::Arc<T> {
    fn send(&self, records: &[Bytes]) -> impl Future<Output = Result<Receipt, BackendError>> + Send {
        T::send(self, records)
    }
}

impl<T: TelemetryApi> TelemetryApi for std::sync::Arc<T> {
    fn put_telemetry_records(&self, batch: TelemetryBatch) -> impl Future<Output = Result<(), BackendError>> + Send {
        T::put_telemetry_records(self, batch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(status: u16, code: Option<&str>) -> BackendError {
        BackendError::new(ErrorKind::Status { status, code: code.map(str::to_owned) }, "")
    }

    #[test]
    fn errors_map_to_upstreams_telemetry_classes() {
        let class = |s| status(s, None).upstream_class();
        assert_eq!(
            (class(403), class(429), class(503), class(302)),
            (UpstreamClass::Http4xx, UpstreamClass::Http4xx, UpstreamClass::Http5xx, UpstreamClass::Other)
        );
        assert_eq!(BackendError::new(ErrorKind::Refused, "").upstream_class(), UpstreamClass::ConnectionRefused);
        assert_eq!(BackendError::new(ErrorKind::Dns, "").upstream_class(), UpstreamClass::UnknownHost);
        assert_eq!(BackendError::new(ErrorKind::Timeout, "").upstream_class(), UpstreamClass::Timeout);
        assert_eq!(BackendError::new(ErrorKind::Credentials, "").upstream_class(), UpstreamClass::Other);
    }

    #[test]
    fn errors_map_to_the_classes_an_sre_acts_on() {
        use ErrorClass::*;
        let cases = [
            (status(429, None), Throttled),
            (status(400, Some("ThrottlingException")), Throttled),
            (status(403, None), Auth),
            (status(401, None), Auth),
            (status(400, Some("ExpiredTokenException")), Auth),
            (status(400, Some("InvalidRequestException")), Client),
            (status(404, None), Client),
            (status(500, Some("InternalFailure")), Server),
            (status(503, None), Server),
            (status(302, None), Server),
            (BackendError::new(ErrorKind::Timeout, ""), Timeout),
            (BackendError::new(ErrorKind::Credentials, ""), Auth),
            (BackendError::new(ErrorKind::Refused, ""), Connection),
            (BackendError::new(ErrorKind::Dns, ""), Connection),
            (BackendError::new(ErrorKind::Other, ""), Connection),
        ];
        for (error, class) in cases {
            assert_eq!(error.class(), class, "{error:?}");
        }
    }

    #[test]
    fn counting_an_error_moves_its_api_and_class_and_the_upstream_class() {
        let stats = Stats::default();
        status(403, None).count(Api::PutTraceSegments, &stats);
        assert_eq!(stats.backend_errors(Api::PutTraceSegments, ErrorClass::Auth), 1);
        assert_eq!(stats.backend_errors(Api::Otlp, ErrorClass::Auth), 0);
        assert_eq!(stats.snapshot().backend_error(UpstreamClass::Http4xx), 1);
    }
}
