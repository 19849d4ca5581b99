//! The port between the pipeline and the services it sends to.
//!
//! The pipeline and telemetry need three things from a backend: send a batch of one signal, send
//! telemetry records, and say what went wrong in terms they can act on. This module owns those
//! traits and the neutral [`BackendError`], so that the retry rules (in `pipeline::flush`) and the
//! counters never see an SDK type, and the AWS code (`aws/`) is the only code that knows the SDK.

use crate::observe::stats::{ErrorClass, Snapshot};
use crate::signal::Signal;
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
    /// Anything else: a broken connection, no credentials yet, a request that could not be built.
    Other,
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

    /// Upstream's telemetry class for this error.
    pub(crate) fn class(&self) -> ErrorClass {
        match &self.kind {
            ErrorKind::Status { status: 400..=499, .. } => ErrorClass::Http4xx,
            ErrorKind::Status { status: 500..=599, .. } => ErrorClass::Http5xx,
            ErrorKind::Status { .. } | ErrorKind::Other => ErrorClass::Other,
            ErrorKind::Timeout => ErrorClass::Timeout,
            ErrorKind::Refused => ErrorClass::ConnectionRefused,
            ErrorKind::Dns => ErrorClass::UnknownHost,
        }
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

    #[test]
    fn errors_map_to_upstreams_telemetry_classes() {
        let status = |s| BackendError::new(ErrorKind::Status { status: s, code: None }, "").class();
        assert_eq!(
            (status(403), status(429), status(503), status(302)),
            (ErrorClass::Http4xx, ErrorClass::Http4xx, ErrorClass::Http5xx, ErrorClass::Other)
        );
        assert_eq!(BackendError::new(ErrorKind::Refused, "").class(), ErrorClass::ConnectionRefused);
        assert_eq!(BackendError::new(ErrorKind::Dns, "").class(), ErrorClass::UnknownHost);
        assert_eq!(BackendError::new(ErrorKind::Timeout, "").class(), ErrorClass::Timeout);
    }
}
