//! xray-daemon: a drop-in replacement for the AWS X-Ray daemon.
//!
//! # The path of a datagram
//! A segment travels from the UDP socket to an HTTP request through five files, in one
//! direction:
//! 1. [`ingest::udp`]: reads datagrams and never waits on an upload;
//! 2. [`signal::segments`]: the wire format: what is a segment, what is rejected, and why;
//! 3. [`pipeline::buffer`]: the byte-bounded queue between ingest and the uploads;
//! 4. [`pipeline::flush`]: *when* a batch leaves, and *how* it is sent, retried and settled;
//! 5. [`aws::put_trace_segments`]: the request body written from the received bytes, the
//!    PutTraceSegments call, and its answer read. The body's escaping is its own small file,
//!    [`aws::trace_segments_body`], so that `make test-simd` can compile it alone for arm64.
//!
//! An OpenTelemetry span takes the same path, with [`signal::spans`] at step 2 and
//! [`aws::otlp_traces`] at step 5; it arrives in a `T1S` datagram, or in an OTLP/HTTP request
//! through [`ingest::otlp_http`]. `docs/architecture.md` walks both paths with the reasons behind
//! each step.
//!
//! # Around it
//! - [`pipeline`] wires the core and hands it out as a handle with `flush` and `shutdown`;
//!   [`signal`] says what differs between the kinds of telemetry it carries;
//! - [`backend`] is the port the pipeline sends through, with a neutral error; [`aws`] is the
//!   only code that knows the AWS SDK;
//! - [`runner`] holds the two ways the daemon runs, the sidecar and the Lambda extension, and
//!   their one shutdown path;
//! - [`proxy`] answers the TCP port: it signs and forwards the SDKs' sampling calls and serves
//!   `/health`, `/ready` and `/metrics`; [`serve`] runs the accept loops;
//! - [`stats`] holds the counters every module writes, at the bottom of the crate; [`report`]
//!   reads them for `/metrics`, the logs, health and the telemetry records, near the top;
//! - [`translate`] turns OTLP spans into X-Ray segment documents, as the Collector's `awsxray`
//!   exporter does, without I/O (`docs/span-translation.md`);
//! - [`config`] reads the settings from flags, environment variables and the config file, from
//!   one table of settings; [`sizing`] sizes the buffer from the memory the daemon may use.
//!
//! What is `pub` is what the binary, the integration tests or the benches use; the rest is
//! `pub(crate)`, and `unreachable_pub` keeps it so.

#![warn(unreachable_pub)]

pub mod aws;
pub mod backend;
pub mod config;
pub mod ingest;
pub mod pipeline;
pub(crate) mod proxy;
pub mod report;
pub mod runner;
pub(crate) mod serve;
pub mod signal;
pub mod sizing;
pub mod stats;
pub mod translate;
