//! Everything that knows the AWS SDK, and only that: the pipeline and the TCP port reach AWS
//! through the traits of `backend` and through [`signer::Signer`].
//!
//! - [`client`]: the shared SDK configuration, the X-Ray client, and the endpoint;
//! - [`signer`]: SigV4 for requests the daemon builds itself (the proxy, the OTLP sink);
//! - [`clock`]: X-Ray's time, learned from its refusals of signatures the host clock made;
//! - [`put_trace_segments`]: the segments' sink, with [`trace_segments_body`], its request body
//!   written from the received bytes;
//! - [`otlp_traces`]: the spans' sink, X-Ray's OTLP endpoint;
//! - [`put_telemetry_records`]: the telemetry records;
//! - [`errors`]: SDK errors turned into the neutral `backend::BackendError`;
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
