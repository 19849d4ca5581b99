//! The sources: where telemetry enters the daemon. Each knows its wire format and its clients,
//! and hands what it takes to the pipeline's `Intake` (`pipeline::intake`); none knows the
//! buffers or the uploads behind it.
//!
//! [`udp`] reads the UDP port (segments, and the spans of `T1S` datagrams); it never waits on an
//! upload. [`otlp_http`] takes OTLP/HTTP `POST /v1/traces` requests, on the TCP port and on a
//! listener of their own. The runner wires them to the pipeline.

pub(crate) mod otlp_http;
pub mod udp;
