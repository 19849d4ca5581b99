//! The values settings take and the errors loading them raises: the types every part of the
//! configuration shares, in a module of their own so that none of those parts imports another
//! one back.

use super::file::FileError;

pub(crate) const DEFAULT_UDP_ADDRESS: &str = "127.0.0.1:2000";
pub const DEFAULT_TCP_ADDRESS: &str = "127.0.0.1:2000";
/// Where the Lambda extension takes OTLP/HTTP and OTLP/gRPC unless told otherwise: the
/// OpenTelemetry SDKs' default endpoints, where ADOT's collector layer listens too.
pub(crate) const LAMBDA_OTLP_ADDRESS: &str = "127.0.0.1:4318";
pub(crate) const LAMBDA_OTLP_GRPC_ADDRESS: &str = "127.0.0.1:4317";
pub(crate) use crate::sizing::MIN_BUFFER_MB;

/// A setting that cannot be used. The message names where it came from.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("invalid value {value:?} for {setting}: {reason}")]
    Invalid { setting: String, value: String, reason: String },
    #[error("Not enough Buffers Memory Allocated. Min Buffers Memory required: 3 MB. ({setting} is {value})")]
    BufferTooSmall { setting: String, value: String },
    #[error("Cannot fetch region variable from config file, environment variables, ecs metadata, or ec2 metadata. Set it with -n/--region, XRAY_DAEMON_REGION, the config file's Region, or AWS_REGION; in local mode (-o) AWS_DEFAULT_REGION or the profile's region also work.{0}")]
    NoRegion(String),
    #[error(transparent)]
    File(#[from] FileError),
    /// More than one of the above, found in one load: a line each.
    #[error("{} problems with the configuration:{}", .0.len(), one_a_line(.0))]
    Several(Vec<ConfigError>),
}

fn one_a_line(problems: &[ConfigError]) -> String {
    problems.iter().map(|p| format!("\n  {p}")).collect()
}

impl ConfigError {
    /// `Ok` when nothing is wrong; one problem as itself (its message unchanged); more as
    /// [`ConfigError::Several`].
    pub(crate) fn from_problems(mut problems: Vec<ConfigError>) -> Result<(), ConfigError> {
        match problems.len() {
            0 => Ok(()),
            1 => Err(problems.remove(0)),
            _ => Err(ConfigError::Several(problems)),
        }
    }

    /// Each problem on its own: the list of [`ConfigError::Several`], else this one.
    pub fn problems(&self) -> &[ConfigError] {
        match self {
            ConfigError::Several(problems) => problems,
            one => std::slice::from_ref(one),
        }
    }

    /// The flag, variable or key the problem names, when it names one.
    pub fn setting(&self) -> Option<&str> {
        match self {
            ConfigError::Invalid { setting, .. } | ConfigError::BufferTooSmall { setting, .. } => Some(setting),
            _ => None,
        }
    }
}

/// How spans go to X-Ray (`XRAY_DAEMON_SPAN_UPLOAD`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum SpanUpload {
    /// Converted to segment documents and sent with PutTraceSegments, as the OpenTelemetry
    /// Collector's X-Ray exporter does: works on every account.
    #[default]
    Segments,
    /// Forwarded to X-Ray's OTLP endpoint (`/v1/traces`): needs CloudWatch Transaction Search.
    Otlp,
}

/// Log verbosity, upstream's names.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum LogLevel {
    Dev,
    Debug,
    #[default]
    Info,
    Warn,
    Error,
}

/// Where the daemon runs: a long-lived sidecar/host daemon, or a Lambda extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Sidecar,
    Lambda,
}

/// When the Lambda extension uploads what an invocation sent (`XRAY_DAEMON_LAMBDA_FLUSH`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum LambdaFlush {
    /// After the runtime is done with each invocation, before asking for the next event.
    #[default]
    End,
    /// When the next invocation starts, and at shutdown.
    NextInvoke,
    /// After the runtime is done, in the background while the next invocation runs.
    Background,
}

/// The Lambda extension's own settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LambdaConfig {
    /// `AWS_LAMBDA_RUNTIME_API`: host:port of the Extensions and Telemetry APIs.
    pub runtime_api: String,
    pub flush: LambdaFlush,
    /// Run the TCP sampling proxy too (off by default in Lambda: SDKs there do not sample).
    pub proxy: bool,
    /// `AWS_LAMBDA_INITIALIZATION_TYPE=lambda-managed-instances`: the environment never freezes
    /// and external extensions may only register SHUTDOWN.
    pub managed_instances: bool,
}

/// Text lines as upstream writes them, or one JSON object per line.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}
