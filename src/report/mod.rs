//! What the daemon tells the people who run it, read from the counters every module writes
//! (`stats/`): their Prometheus view ([`metrics`], with the standard [`process`] metrics), the
//! log subscriber and its formats ([`logging`]), liveness and readiness ([`health`]), and the
//! PutTelemetryRecords records X-Ray shows per daemon ([`telemetry`]).
//!
//! It sits near the top of the crate: it reads the pipeline's buffers and sends through the
//! backend port, and nothing below imports it.

pub mod health;
pub mod logging;
pub(crate) mod metrics;
pub(crate) mod process;
pub(crate) mod telemetry;
