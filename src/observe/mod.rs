//! What the daemon tells the people who run it: counters ([`stats`]) and their Prometheus view
//! ([`metrics`], with the standard [`process`] metrics), log lines ([`logging`]), liveness and readiness ([`health`]), and the
//! PutTelemetryRecords records X-Ray shows per daemon ([`telemetry`]).

pub mod health;
pub mod logging;
pub(crate) mod metrics;
pub(crate) mod process;
pub mod stats;
pub(crate) mod telemetry;
