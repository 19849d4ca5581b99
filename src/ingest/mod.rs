//! The sources: where telemetry enters the daemon. Each knows its wire format and its clients,
//! and hands what it takes to the pipeline's `Intake` (`pipeline::intake`); none knows the
//! buffers or the uploads behind it.
//!
//! [`udp`] reads the UDP port (segments, and the spans of `T1S` datagrams); it never waits on an
//! upload. [`otlp_http`] takes OTLP/HTTP `POST /v1/traces` requests, on the TCP port and on a
//! listener of their own; [`otlp_grpc`] takes OTLP/gRPC `TraceService/Export` calls on theirs.
//! The runner wires them to the pipeline.

pub(crate) mod otlp_grpc;
pub(crate) mod otlp_http;
pub mod udp;

use crate::pipeline::intake::SpansTaken;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTracePartialSuccess;

/// OTLP's `partial_success` for the spans of a request that were taken out, if any were: the
/// same in the OTLP/HTTP and the OTLP/gRPC answer.
pub(crate) fn partial_success(taken: &SpansTaken) -> Option<ExportTracePartialSuccess> {
    (taken.rejected() > 0).then(|| ExportTracePartialSuccess {
        rejected_spans: i64::from(taken.rejected()),
        error_message: taken.message(),
    })
}
