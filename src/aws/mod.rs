//! Everything that knows AWS, and only that: the pipeline and the TCP port reach AWS through the
//! traits of `backend` and through [`signer::Signer`].
//!
//! - [`client`]: the credentials chain (`aws-config`), the signer, and the endpoint;
//! - [`xray_api`]: X-Ray's API calls, signed and sent on the daemon's own HTTP client;
//! - [`signer`]: SigV4 for every request the daemon sends (uploads, telemetry, the proxy, the
//!   OTLP sink);
//! - [`clock`]: X-Ray's time, learned from its refusals of signatures the host clock made;
//! - [`put_trace_segments`]: the segments' sink, with [`trace_segments_body`], its request body
//!   written from the received bytes;
//! - [`otlp_traces`]: the spans' sink, X-Ray's OTLP endpoint;
//! - [`put_telemetry_records`]: the telemetry records;
//! - [`errors`]: failures told apart for the neutral `backend::BackendError`;
//! - [`region`]: where the region comes from when nothing sets it;
//! - [`outbound`]: the HTTPS connector behind the proxy (outbound proxy, TLS checks).

pub(crate) mod client;
pub(crate) mod clock;
pub(crate) mod errors;
pub(crate) mod otlp_traces;
pub mod outbound;
pub(crate) mod put_telemetry_records;
pub(crate) mod put_trace_segments;
pub(crate) mod region;
pub(crate) mod signer;
pub mod trace_segments_body;
pub mod xray_api;
