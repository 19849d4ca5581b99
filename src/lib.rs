//! xray-daemon: a drop-in replacement for the AWS X-Ray daemon.
//!
//! # Layout
//! The data path, in order:
//! - [`ingest`]: the UDP port; reads datagrams and never waits on the uploader.
//! - [`segment`]: the wire format; what is a segment, what is rejected, and why.
//! - [`buffer`]: the byte-bounded queue between the reader and the uploads.
//! - [`batcher`]: *when* to send a batch.
//! - [`uploader`]: *how* a batch is sent: PutTraceSegments, retries, unprocessed entries.
//!
//! Around it: [`pipeline`] wires the core and owns the one shutdown path, [`sidecar`] is the
//! long-lived runner, [`lambda`] the Lambda extension's runner, [`aws`] is the only module that
//! knows the AWS SDK, [`code_pages`] unmaps the start-up code once the daemon is ready,
//! [`telemetry`] sends PutTelemetryRecords, [`stats`] holds the counters, [`config`] and [`cli`]
//! read the settings, and [`logging`] writes upstream-compatible log lines.
//!
//! The TCP port: [`proxy`] signs and forwards the SDKs' sampling calls and serves `/health`,
//! `/ready` and `/metrics`, with [`health`] and [`metrics`] behind the last three.

pub mod aws;
pub mod batcher;
pub mod buffer;
pub mod code_pages;
pub mod config;
pub mod health;
pub mod ingest;
pub mod lambda;
pub mod logging;
pub mod metrics;
pub mod outbound;
pub mod pipeline;
pub mod proxy;
pub mod region;
pub mod segment;
pub mod sidecar;
pub mod sizing;
pub mod stats;
pub mod telemetry;
pub mod trace_segments_body;
pub mod uploader;
