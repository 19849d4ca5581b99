//! The daemon's settings: defaults, then environment variables, then flags.
//!
//! Precedence is flag > environment > default (the config file joins between environment and
//! default in the configuration issue). Every option has an `XRAY_DAEMON_*` variable, read with
//! envy from an injectable list of variables so tests never touch the process environment.
//! A bad value fails with one line that names the flag or variable and the value.

pub mod cli;
pub mod file;

use cli::{parse_go_bool, Flags};
use file::{self as config_file, FileConfig, FileError};
use serde::Deserialize;
use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub const DEFAULT_UDP_ADDRESS: &str = "127.0.0.1:2000";
pub const DEFAULT_TCP_ADDRESS: &str = "127.0.0.1:2000";
pub(crate) use crate::sizing::MIN_BUFFER_MB;
use crate::sizing::{self, MB};

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
    #[error("environment: {0}")]
    Env(String),
}

/// Log verbosity, upstream's names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogLevel {
    Dev,
    Debug,
    Info,
    Warn,
    Error,
}

impl LogLevel {
    fn parse(s: &str) -> Option<LogLevel> {
        Some(match s.to_ascii_lowercase().as_str() {
            "dev" | "trace" => LogLevel::Dev,
            "debug" => LogLevel::Debug,
            "info" | "prod" => LogLevel::Info,
            "warn" | "warning" => LogLevel::Warn,
            "error" => LogLevel::Error,
            _ => return None,
        })
    }
}

/// Where the daemon runs: a long-lived sidecar/host daemon, or a Lambda extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Sidecar,
    Lambda,
}

/// When the Lambda extension uploads what an invocation sent (`XRAY_DAEMON_LAMBDA_FLUSH`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LambdaFlush {
    /// After the runtime is done with each invocation, before asking for the next event.
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
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// Everything the daemon runs with.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub mode: Mode,
    /// Set in Lambda mode.
    pub lambda: Option<LambdaConfig>,
    pub udp_address: String,
    pub tcp_address: String,
    /// The region and where it came from, when set explicitly (flag, variable, file,
    /// `AWS_REGION`). Otherwise it is looked up at start (see `region.rs`).
    pub region: Option<(String, String)>,
    pub local_mode: bool,
    /// The buffer's byte limit.
    pub buffer_memory: u64,
    /// Where the buffer limit came from, for the startup line.
    pub buffer_memory_source: String,
    /// SO_RCVBUF to ask the kernel for.
    pub receive_buffer: usize,
    pub concurrency: usize,
    pub endpoint: Option<String>,
    pub telemetry: bool,
    pub shutdown_timeout: Duration,
    pub upload_timeout: Duration,
    pub log_level: LogLevel,
    pub log_format: LogFormat,
    pub resource_arn: String,
    pub hostname: String,
    pub instance_id: String,
    /// The SDK's own endpoint variables (`AWS_ENDPOINT_URL_XRAY`, `AWS_ENDPOINT_URL`); the SDK
    /// applies them to uploads itself, the TCP proxy needs the URL.
    pub sdk_endpoint: Option<String>,
    /// `-f` / `XRAY_DAEMON_LOG_FILE` / `Logging.LogPath`; stdout when `None`.
    pub log_file: Option<PathBuf>,
    /// Rotate the log file at 50 MB, keeping one old file.
    pub log_rotation: bool,
    pub role_arn: Option<String>,
    /// An HTTP CONNECT proxy for all outbound AWS traffic.
    pub proxy_address: Option<String>,
    pub no_verify_ssl: bool,
    /// The config file read, if any.
    pub config_file: Option<PathBuf>,
    /// `ECS_CONTAINER_METADATA_FILE`, when `ECS_ENABLE_CONTAINER_METADATA=true`.
    pub ecs_metadata_file: Option<PathBuf>,
    /// `AWS_DEFAULT_REGION`, the last resort for the region.
    pub default_region: Option<String>,
    pub imds_endpoint: String,
    pub imds_disabled: bool,
    pub proxy_allow_all: bool,
    pub proxy_max_body: usize,
    pub proxy_timeout: Duration,
    pub proxy_client_timeout: Duration,
}

/// The `XRAY_DAEMON_*` variables. Read as strings and parsed here so each error names its
/// variable and value.
#[derive(Debug, Default, Deserialize)]
struct EnvVars {
    mode: Option<String>,
    lambda_flush: Option<String>,
    lambda_proxy: Option<String>,
    udp_address: Option<String>,
    tcp_address: Option<String>,
    region: Option<String>,
    local_mode: Option<String>,
    buffer_memory_mb: Option<String>,
    receive_buffer_kb: Option<String>,
    concurrency: Option<String>,
    endpoint: Option<String>,
    config_file: Option<String>,
    log_file: Option<String>,
    log_rotation: Option<String>,
    role_arn: Option<String>,
    proxy_address: Option<String>,
    no_verify_ssl: Option<String>,
    telemetry: Option<String>,
    shutdown_timeout: Option<String>,
    upload_timeout: Option<String>,
    log_level: Option<String>,
    log_format: Option<String>,
    resource_arn: Option<String>,
    proxy_allow_all: Option<String>,
    proxy_max_body_kb: Option<String>,
    proxy_timeout: Option<String>,
    proxy_client_timeout: Option<String>,
}

/// Picks the first value present, remembering its name for error messages.
fn pick<'a>(candidates: &[(&'a str, Option<&'a String>)]) -> Option<(&'a str, &'a String)> {
    candidates.iter().find_map(|(name, v)| v.filter(|v| !v.is_empty()).map(|v| (*name, v)))
}

fn invalid(source: &str, value: &str, reason: impl fmt::Display) -> ConfigError {
    ConfigError::Invalid { setting: source.to_owned(), value: value.to_owned(), reason: reason.to_string() }
}

fn parse_number<T: std::str::FromStr>(source: &str, value: &str, what: &str) -> Result<T, ConfigError> {
    value.trim().parse().map_err(|_| invalid(source, value, format!("expected {what}")))
}

/// Durations: `5`, `5s`, `500ms`, `1m`.
fn parse_duration(source: &str, value: &str) -> Result<Duration, ConfigError> {
    let v = value.trim();
    if let Ok(secs) = v.parse::<f64>() {
        if secs.is_finite() && secs >= 0.0 {
            return Ok(Duration::from_secs_f64(secs));
        }
    }
    humantime::parse_duration(v).map_err(|_| invalid(source, value, "expected a duration such as 5, 5s or 500ms"))
}

fn parse_bool(source: &str, value: &str) -> Result<bool, ConfigError> {
    parse_go_bool(value.trim()).ok_or_else(|| invalid(source, value, "expected true or false"))
}

/// `HOST:PORT`, with a port; IPv6 hosts in brackets.
pub fn check_address(source: &str, value: &str) -> Result<String, ConfigError> {
    let Some((host, port)) = value.rsplit_once(':') else {
        return Err(invalid(source, value, "address has no port (expected HOST:PORT, e.g. 127.0.0.1:2000)"));
    };
    if port.parse::<u16>().is_err() {
        return Err(invalid(source, value, "the port is not a number from 0 to 65535"));
    }
    if host.contains(':') && !(host.starts_with('[') && host.ends_with(']')) {
        return Err(invalid(source, value, "put an IPv6 address in brackets, e.g. [::1]:2000"));
    }
    Ok(value.to_owned())
}

impl Config {
    /// Builds the configuration from flags, environment variables and the config file
    /// (`-c`, `XRAY_DAEMON_CONFIG_FILE`, or upstream's default path when it exists).
    pub fn load(flags: &Flags, env: &HashMap<String, String>) -> Result<Config, ConfigError> {
        Self::load_with(flags, env, Path::new(config_file::DEFAULT_PATH))
    }

    /// As [`Config::load`], with the auto-discovered file's path given (for tests).
    pub fn load_with(flags: &Flags, env: &HashMap<String, String>, default_file: &Path) -> Result<Config, ConfigError> {
        let vars: EnvVars = envy::prefixed("XRAY_DAEMON_")
            .from_iter(env.iter().map(|(k, v)| (k.clone(), v.clone())))
            .map_err(|e| ConfigError::Env(e.to_string()))?;
        let get = |k: &str| env.get(k);
        let lambda = lambda_config(&vars, env)?;
        let mode = if lambda.is_some() { Mode::Lambda } else { Mode::Sidecar };

        // The file: explicit ones are checked strictly (unknown keys fail), as upstream does.
        let (file, config_file) = match pick(&[("-c/--config", flags.config.as_ref()), ("XRAY_DAEMON_CONFIG_FILE", vars.config_file.as_ref())]) {
            Some((_, path)) => (config_file::load(Path::new(path), true)?, Some(PathBuf::from(path))),
            None if default_file.is_file() => (config_file::load(default_file, false)?, Some(default_file.to_owned())),
            None => (FileConfig::default(), None),
        };
        let in_file = |key: &str| match &config_file {
            Some(p) => format!("{key} in {}", p.display()),
            None => key.to_owned(),
        };
        let file_names: Vec<String> = [
            "Socket.UDPAddress", "Socket.TCPAddress", "Region", "TotalBufferSizeMB", "Concurrency", "Endpoint",
            "Logging.LogLevel", "Logging.LogPath", "ResourceARN", "RoleARN", "ProxyAddress",
        ]
        .iter()
        .map(|k| in_file(k))
        .collect();
        let [f_udp, f_tcp, f_region, f_mb, f_conc, f_endpoint, f_level, f_path, f_arn, f_role, f_proxy] =
            <[String; 11]>::try_from(file_names).map_err(|_| ConfigError::Env("internal: file key names".into()))?;
        let file_mb = file.total_buffer_size_mb.map(|n| n.to_string());
        let file_conc = file.concurrency.map(|n| n.to_string());

        let udp_address = match pick(&[
            ("-b/--bind", flags.bind.as_ref()),
            ("XRAY_DAEMON_UDP_ADDRESS", vars.udp_address.as_ref()),
            (&f_udp, file.udp_address.as_ref()),
        ]) {
            Some((src, v)) => check_address(src, v)?,
            None => DEFAULT_UDP_ADDRESS.to_owned(),
        };
        let tcp_address = match pick(&[
            ("-t/--bind-tcp", flags.bind_tcp.as_ref()),
            ("XRAY_DAEMON_TCP_ADDRESS", vars.tcp_address.as_ref()),
            (&f_tcp, file.tcp_address.as_ref()),
        ]) {
            Some((src, v)) => check_address(src, v)?,
            None => DEFAULT_TCP_ADDRESS.to_owned(),
        };
        // Explicit regions only; the ECS metadata file, IMDS and the profile are asked at start.
        let region = pick(&[
            ("-n/--region", flags.region.as_ref()),
            ("XRAY_DAEMON_REGION", vars.region.as_ref()),
            (&f_region, file.region.as_ref()),
            ("AWS_REGION", get("AWS_REGION")),
        ])
        .map(|(src, v)| (v.trim().to_owned(), src.to_owned()));

        let local_mode = match (flags.local_mode, vars.local_mode.as_deref().filter(|v| !v.is_empty())) {
            (Some(b), _) => b,
            (None, Some(v)) => parse_bool("XRAY_DAEMON_LOCAL_MODE", v)?,
            (None, None) => file.local_mode.unwrap_or(false),
        };

        let flag_mb = flags.buffer_memory.map(|m| m.to_string());
        let (buffer_memory, buffer_memory_source) = match pick(&[
            ("-m/--buffer-memory", flag_mb.as_ref()),
            ("XRAY_DAEMON_BUFFER_MEMORY_MB", vars.buffer_memory_mb.as_ref()),
            (&f_mb, file_mb.as_ref()),
        ]) {
            Some((src, v)) => {
                let mb: i64 = parse_number(src, v, "a whole number of megabytes")?;
                if mb < MIN_BUFFER_MB as i64 {
                    return Err(ConfigError::BufferTooSmall { setting: src.to_owned(), value: v.clone() });
                }
                ((mb as u64).saturating_mul(MB), src.to_owned())
            }
            None if lambda.is_some() => sizing::lambda_buffer_memory(
                get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE").and_then(|v| v.trim().parse().ok()),
            ),
            None => sizing::default_buffer_memory(),
        };

        let receive_buffer = match vars.receive_buffer_kb.as_deref().filter(|v| !v.is_empty()) {
            Some(v) => parse_number::<usize>("XRAY_DAEMON_RECEIVE_BUFFER_KB", v, "a whole number of KiB")?.saturating_mul(1024),
            None => 4 * MB as usize,
        };
        let concurrency = match pick(&[("XRAY_DAEMON_CONCURRENCY", vars.concurrency.as_ref()), (&f_conc, file_conc.as_ref())]) {
            Some((src, v)) => match parse_number::<usize>(src, v, "a number from 1 to 64")? {
                n @ 1..=64 => n,
                _ => return Err(invalid(src, v, "expected a number from 1 to 64")),
            },
            None => 8,
        };
        let endpoint = match pick(&[("XRAY_DAEMON_ENDPOINT", vars.endpoint.as_ref()), (&f_endpoint, file.endpoint.as_ref())]) {
            Some((src, v)) => Some(check_url(src, v)?),
            None => None,
        };
        let sdk_endpoint = match pick(&[("AWS_ENDPOINT_URL_XRAY", get("AWS_ENDPOINT_URL_XRAY")), ("AWS_ENDPOINT_URL", get("AWS_ENDPOINT_URL"))]) {
            Some((src, v)) => Some(check_url(src, v)?),
            None => None,
        };
        // Off by default in Lambda: a 60 s timer means nothing in a sandbox that freezes.
        let telemetry = match vars.telemetry.as_deref().filter(|v| !v.is_empty()) {
            Some(v) => parse_bool("XRAY_DAEMON_TELEMETRY", v)?,
            None => lambda.is_none(),
        };
        let shutdown_timeout = match vars.shutdown_timeout.as_deref().filter(|v| !v.is_empty()) {
            Some(v) => parse_duration("XRAY_DAEMON_SHUTDOWN_TIMEOUT", v)?,
            None => Duration::from_secs(5),
        };
        let positive = |name: &str, value: Option<&str>, default: Duration| -> Result<Duration, ConfigError> {
            match value.filter(|v| !v.is_empty()) {
                Some(v) => match parse_duration(name, v)? {
                    d if d.is_zero() => Err(invalid(name, v, "must be more than zero")),
                    d => Ok(d),
                },
                None => Ok(default),
            }
        };
        let upload_timeout = positive("XRAY_DAEMON_UPLOAD_TIMEOUT", vars.upload_timeout.as_deref(), Duration::from_secs(2))?;
        let log_level = match pick(&[
            ("-l/--log-level", flags.log_level.as_ref()),
            ("XRAY_DAEMON_LOG_LEVEL", vars.log_level.as_ref()),
            (&f_level, file.log_level.as_ref()),
        ]) {
            Some((src, v)) => LogLevel::parse(v.trim())
                .ok_or_else(|| invalid(src, v, "expected one of dev, debug, info, warn, error, prod"))?,
            None => LogLevel::Info,
        };
        let log_format = match vars.log_format.as_deref().filter(|v| !v.is_empty()) {
            Some(v) if v.eq_ignore_ascii_case("json") => LogFormat::Json,
            Some(v) if v.eq_ignore_ascii_case("text") => LogFormat::Text,
            Some(v) => return Err(invalid("XRAY_DAEMON_LOG_FORMAT", v, "expected text or json")),
            None => LogFormat::Text,
        };
        let log_file = pick(&[
            ("-f/--log-file", flags.log_file.as_ref()),
            ("XRAY_DAEMON_LOG_FILE", vars.log_file.as_ref()),
            (&f_path, file.log_path.as_ref()),
        ])
        .map(|(_, v)| PathBuf::from(v));
        let log_rotation = match vars.log_rotation.as_deref().filter(|v| !v.is_empty()) {
            Some(v) => parse_bool("XRAY_DAEMON_LOG_ROTATION", v)?,
            None => file.log_rotation.unwrap_or(true),
        };
        let resource_arn = pick(&[
            ("-a/--resource-arn", flags.resource_arn.as_ref()),
            ("XRAY_DAEMON_RESOURCE_ARN", vars.resource_arn.as_ref()),
            (&f_arn, file.resource_arn.as_ref()),
        ])
        .map(|(_, v)| v.clone())
        .unwrap_or_default();
        let role_arn = match pick(&[
            ("-r/--role-arn", flags.role_arn.as_ref()),
            ("XRAY_DAEMON_ROLE_ARN", vars.role_arn.as_ref()),
            (&f_role, file.role_arn.as_ref()),
        ]) {
            Some((src, v)) if !v.starts_with("arn:") => return Err(invalid(src, v, "expected a role ARN such as arn:aws:iam::123456789012:role/xray")),
            Some((_, v)) => Some(v.trim().to_owned()),
            None => None,
        };
        let proxy_address = match pick(&[
            ("-p/--proxy-address", flags.proxy_address.as_ref()),
            ("XRAY_DAEMON_PROXY_ADDRESS", vars.proxy_address.as_ref()),
            (&f_proxy, file.proxy_address.as_ref()),
        ]) {
            Some((src, v)) => Some(check_proxy_url(src, v)?),
            None => None,
        };
        let no_verify_ssl = match vars.no_verify_ssl.as_deref().filter(|v| !v.is_empty()) {
            Some(v) => parse_bool("XRAY_DAEMON_NO_VERIFY_SSL", v)?,
            None => file.no_verify_ssl.unwrap_or(false),
        };
        let proxy_allow_all = match vars.proxy_allow_all.as_deref().filter(|v| !v.is_empty()) {
            Some(v) => parse_bool("XRAY_DAEMON_PROXY_ALLOW_ALL", v)?,
            None => false,
        };
        let proxy_max_body = match vars.proxy_max_body_kb.as_deref().filter(|v| !v.is_empty()) {
            Some(v) => match parse_number::<usize>("XRAY_DAEMON_PROXY_MAX_BODY_KB", v, "a whole number of KiB")? {
                0 => return Err(invalid("XRAY_DAEMON_PROXY_MAX_BODY_KB", v, "must be more than zero")),
                kb => kb.saturating_mul(1024),
            },
            None => 1024 * 1024,
        };
        let proxy_timeout = positive("XRAY_DAEMON_PROXY_TIMEOUT", vars.proxy_timeout.as_deref(), Duration::from_secs(10))?;
        let proxy_client_timeout =
            positive("XRAY_DAEMON_PROXY_CLIENT_TIMEOUT", vars.proxy_client_timeout.as_deref(), Duration::from_secs(10))?;
        let ecs_metadata_file = match get("ECS_ENABLE_CONTAINER_METADATA").map(|v| v.eq_ignore_ascii_case("true")) {
            Some(true) => get("ECS_CONTAINER_METADATA_FILE").filter(|p| !p.is_empty()).map(PathBuf::from),
            _ => None,
        };

        Ok(Config {
            mode,
            lambda,
            udp_address,
            tcp_address,
            region,
            local_mode,
            buffer_memory,
            buffer_memory_source,
            receive_buffer,
            concurrency,
            endpoint,
            sdk_endpoint,
            telemetry,
            shutdown_timeout,
            upload_timeout,
            log_level,
            log_format,
            log_file,
            log_rotation,
            resource_arn,
            role_arn,
            proxy_address,
            no_verify_ssl,
            config_file,
            hostname: get("AWS_HOSTNAME").cloned().unwrap_or_default(),
            instance_id: get("AWS_INSTANCE_ID").cloned().unwrap_or_default(),
            proxy_allow_all,
            proxy_max_body,
            proxy_timeout,
            proxy_client_timeout,
            ecs_metadata_file,
            default_region: get("AWS_DEFAULT_REGION").filter(|v| !v.is_empty()).cloned(),
            imds_endpoint: get("AWS_EC2_METADATA_SERVICE_ENDPOINT")
                .filter(|v| !v.is_empty())
                .map(|v| v.trim_end_matches('/').to_owned())
                .unwrap_or_else(|| "http://169.254.169.254".to_owned()),
            imds_disabled: get("AWS_EC2_METADATA_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true")),
        })
    }

    /// Where X-Ray calls go for `region`: the daemon's endpoint override, else the SDK's
    /// `AWS_ENDPOINT_URL_XRAY` / `AWS_ENDPOINT_URL`, else the region's public endpoint.
    pub fn xray_endpoint(&self, region: &str) -> String {
        self.endpoint.clone().or_else(|| self.sdk_endpoint.clone()).unwrap_or_else(|| crate::aws::default_endpoint(region))
    }
}

fn check_url(source: &str, value: &str) -> Result<String, ConfigError> {
    let v = value.trim().trim_end_matches('/');
    let ok = (v.starts_with("http://") || v.starts_with("https://")) && v.parse::<http::Uri>().is_ok_and(|u| u.authority().is_some());
    if ok {
        Ok(v.to_owned())
    } else {
        Err(invalid(source, value, "expected a URL such as https://xray.us-east-1.amazonaws.com"))
    }
}

/// An outbound proxy URL: `http://host:port` (upstream requires the scheme).
fn check_proxy_url(source: &str, value: &str) -> Result<String, ConfigError> {
    let v = value.trim();
    let uri = v.parse::<http::Uri>().map_err(|e| invalid(source, value, format!("Bad proxy URL: {e}")))?;
    match (uri.scheme_str(), uri.authority()) {
        (Some("http" | "https"), Some(a)) if !a.host().is_empty() && !a.host().contains('%') => Ok(v.to_owned()),
        _ => Err(invalid(source, value, "Bad proxy URL: expected http://HOST:PORT")),
    }
}

/// `AWS_LAMBDA_RUNTIME_API` when the daemon runs as a Lambda extension: Lambda set it and
/// `XRAY_DAEMON_MODE` is not `sidecar`. Decided before the rest of the configuration is read,
/// so that a bad setting can be reported to Lambda.
pub fn lambda_runtime_api(env: &HashMap<String, String>) -> Option<String> {
    let api = env.get("AWS_LAMBDA_RUNTIME_API").map(|v| v.trim()).filter(|v| !v.is_empty())?;
    let sidecar = env.get("XRAY_DAEMON_MODE").is_some_and(|m| m.trim().eq_ignore_ascii_case("sidecar"));
    (!sidecar).then(|| api.to_owned())
}

/// Lambda mode when `XRAY_DAEMON_MODE` says so, or when it is `auto` (the default) and
/// `AWS_LAMBDA_RUNTIME_API` is set.
fn lambda_config(vars: &EnvVars, env: &HashMap<String, String>) -> Result<Option<LambdaConfig>, ConfigError> {
    let runtime_api = env.get("AWS_LAMBDA_RUNTIME_API").filter(|v| !v.trim().is_empty()).map(|v| v.trim().to_owned());
    let mode = vars.mode.as_deref().map(str::trim).filter(|v| !v.is_empty()).unwrap_or("auto");
    let runtime_api = match mode.to_ascii_lowercase().as_str() {
        "sidecar" => return Ok(None),
        "auto" => match runtime_api {
            Some(api) => api,
            None => return Ok(None),
        },
        "lambda" => runtime_api.ok_or_else(|| {
            invalid("XRAY_DAEMON_MODE", mode, "Lambda mode needs AWS_LAMBDA_RUNTIME_API, which Lambda sets; it is not set")
        })?,
        _ => return Err(invalid("XRAY_DAEMON_MODE", mode, "expected lambda, sidecar or auto")),
    };
    let flush = match vars.lambda_flush.as_deref().map(str::trim).filter(|v| !v.is_empty()) {
        None => LambdaFlush::End,
        Some(v) => match v.to_ascii_lowercase().as_str() {
            "end" => LambdaFlush::End,
            "next-invoke" => LambdaFlush::NextInvoke,
            "background" => LambdaFlush::Background,
            _ => return Err(invalid("XRAY_DAEMON_LAMBDA_FLUSH", v, "expected end, next-invoke or background")),
        },
    };
    let proxy = match vars.lambda_proxy.as_deref().filter(|v| !v.is_empty()) {
        Some(v) => parse_bool("XRAY_DAEMON_LAMBDA_PROXY", v)?,
        None => false,
    };
    let managed_instances =
        env.get("AWS_LAMBDA_INITIALIZATION_TYPE").is_some_and(|t| t.eq_ignore_ascii_case("lambda-managed-instances"));
    Ok(Some(LambdaConfig { runtime_api, flush, proxy, managed_instances }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn load(flags: Flags, pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let mut e = env(pairs);
        e.entry("AWS_REGION".into()).or_insert_with(|| "us-east-1".into());
        Config::load(&flags, &e)
    }

    #[test]
    fn defaults() {
        let c = load(Flags::default(), &[]).unwrap();
        assert_eq!(c.udp_address, "127.0.0.1:2000");
        assert_eq!(c.tcp_address, "127.0.0.1:2000");
        assert_eq!(c.region, Some(("us-east-1".to_owned(), "AWS_REGION".to_owned())));
        assert!(!c.local_mode && c.telemetry);
        assert_eq!(c.concurrency, 8);
        assert_eq!(c.receive_buffer, 4 << 20);
        assert_eq!(c.shutdown_timeout, Duration::from_secs(5));
        assert_eq!(c.log_level, LogLevel::Info);
        assert!(c.buffer_memory >= 3 << 20);
    }

    #[test]
    fn lambda_mode_is_detected_and_sized_like_the_built_in_daemon() {
        let api = ("AWS_LAMBDA_RUNTIME_API", "127.0.0.1:9001");
        let c = load(Flags::default(), &[api, ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")]).unwrap();
        assert_eq!(c.mode, Mode::Lambda);
        let lambda = c.lambda.unwrap();
        assert_eq!(
            (lambda.runtime_api.as_str(), lambda.flush, lambda.proxy, lambda.managed_instances),
            ("127.0.0.1:9001", LambdaFlush::End, false, false)
        );
        assert_eq!(c.buffer_memory, 16 << 20);
        assert!(!c.telemetry, "no PutTelemetryRecords timer in a sandbox that freezes");
        let big = load(Flags::default(), &[api, ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "2048")]).unwrap();
        assert_eq!(big.buffer_memory, 2048 * 1024 * 1024 / 100 * 3);
        assert_eq!(big.buffer_memory_source, "3% of the function's 2048 MB");
        let explicit = load(Flags { buffer_memory: Some(5), ..Default::default() }, &[api]).unwrap();
        assert_eq!(explicit.buffer_memory, 5 << 20);
        let forced_telemetry = load(Flags::default(), &[api, ("XRAY_DAEMON_TELEMETRY", "true")]).unwrap();
        assert!(forced_telemetry.telemetry);

        assert_eq!(lambda_runtime_api(&env(&[api])).as_deref(), Some("127.0.0.1:9001"));
        assert_eq!(lambda_runtime_api(&env(&[api, ("XRAY_DAEMON_MODE", "Sidecar")])), None);
        assert_eq!(load(Flags::default(), &[api, ("XRAY_DAEMON_MODE", "sidecar")]).unwrap().mode, Mode::Sidecar);
        assert_eq!(load(Flags::default(), &[]).unwrap().mode, Mode::Sidecar);

        for (v, want) in [("next-invoke", LambdaFlush::NextInvoke), ("BACKGROUND", LambdaFlush::Background), (" end ", LambdaFlush::End)] {
            assert_eq!(load(Flags::default(), &[api, ("XRAY_DAEMON_LAMBDA_FLUSH", v)]).unwrap().lambda.unwrap().flush, want);
        }
        let lmi = [api, ("AWS_LAMBDA_INITIALIZATION_TYPE", "lambda-managed-instances"), ("XRAY_DAEMON_LAMBDA_PROXY", "true")];
        let l = load(Flags::default(), &lmi).unwrap().lambda.unwrap();
        assert!(l.managed_instances && l.proxy);
    }

    #[test]
    fn bad_lambda_settings_name_their_variable() {
        let api = ("AWS_LAMBDA_RUNTIME_API", "127.0.0.1:9001");
        for (pairs, needle) in [
            (vec![("XRAY_DAEMON_MODE", "lambda")], "XRAY_DAEMON_MODE: Lambda mode needs AWS_LAMBDA_RUNTIME_API"),
            (vec![("XRAY_DAEMON_MODE", "serverless")], "XRAY_DAEMON_MODE: expected lambda, sidecar or auto"),
            (vec![api, ("XRAY_DAEMON_LAMBDA_FLUSH", "sometimes")], "invalid value \"sometimes\" for XRAY_DAEMON_LAMBDA_FLUSH: expected end, next-invoke or background"),
            (vec![api, ("XRAY_DAEMON_LAMBDA_PROXY", "maybe")], "XRAY_DAEMON_LAMBDA_PROXY: expected true or false"),
        ] {
            let e = load(Flags::default(), &pairs).unwrap_err().to_string();
            assert!(e.contains(needle), "{e}");
        }
        // A function memory size Lambda would never send falls back to 16 MB, not an error.
        let odd = load(Flags::default(), &[api, ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "lots")]).unwrap();
        assert_eq!((odd.buffer_memory, odd.buffer_memory_source.as_str()), (16 << 20, "16 MB, Lambda's default"));
        let huge = load(Flags::default(), &[api, ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "18446744073709551615")]).unwrap();
        assert_eq!(huge.buffer_memory, u64::MAX / 100 * 3);
    }

    #[test]
    fn flag_beats_environment_beats_default() {
        let flags = Flags { bind: Some("127.0.0.1:3000".into()), buffer_memory: Some(8), log_level: Some("warn".into()), region: Some("eu-west-1".into()), ..Default::default() };
        let vars = [
            ("XRAY_DAEMON_UDP_ADDRESS", "127.0.0.1:4000"),
            ("XRAY_DAEMON_TCP_ADDRESS", "[::1]:4001"),
            ("XRAY_DAEMON_BUFFER_MEMORY_MB", "16"),
            ("XRAY_DAEMON_LOG_LEVEL", "debug"),
            ("XRAY_DAEMON_REGION", "ap-south-1"),
        ];
        let c = load(flags, &vars).unwrap();
        assert_eq!((c.udp_address.as_str(), c.tcp_address.as_str()), ("127.0.0.1:3000", "[::1]:4001"));
        assert_eq!(c.buffer_memory, 8 << 20);
        assert_eq!(c.log_level, LogLevel::Warn);
        assert_eq!(c.region.unwrap().0, "eu-west-1");
        let c = load(Flags::default(), &vars).unwrap();
        assert_eq!((c.udp_address.as_str(), c.buffer_memory, c.log_level), ("127.0.0.1:4000", 16 << 20, LogLevel::Debug));
        assert_eq!(c.region.unwrap().0, "ap-south-1");
    }

    #[test]
    fn region_sources_in_order() {
        let e = env(&[("AWS_DEFAULT_REGION", "us-west-2")]);
        let c = Config::load_with(&Flags::default(), &e, Path::new("/nonexistent")).unwrap();
        assert_eq!((c.region, c.default_region.as_deref()), (None, Some("us-west-2")), "looked up at start, AWS_DEFAULT_REGION last");
        let e = env(&[("AWS_DEFAULT_REGION", "us-west-2"), ("AWS_REGION", "us-east-2")]);
        let c = Config::load_with(&Flags::default(), &e, Path::new("/nonexistent")).unwrap();
        assert_eq!(c.region, Some(("us-east-2".into(), "AWS_REGION".into())));
        let c = Config::load_with(&Flags::default(), &env(&[]), Path::new("/nonexistent")).unwrap();
        assert_eq!(c.region, None);
    }

    #[test]
    fn environment_only_options() {
        let c = load(
            Flags::default(),
            &[
                ("XRAY_DAEMON_TELEMETRY", "false"),
                ("XRAY_DAEMON_SHUTDOWN_TIMEOUT", "2500ms"),
                ("XRAY_DAEMON_UPLOAD_TIMEOUT", "3"),
                ("XRAY_DAEMON_CONCURRENCY", "2"),
                ("XRAY_DAEMON_RECEIVE_BUFFER_KB", "8192"),
                ("XRAY_DAEMON_ENDPOINT", "http://127.0.0.1:9/"),
                ("XRAY_DAEMON_LOG_FORMAT", "json"),
                ("XRAY_DAEMON_LOCAL_MODE", "true"),
                ("XRAY_DAEMON_RESOURCE_ARN", "arn:aws:ec2:x"),
                ("AWS_HOSTNAME", "h"),
                ("AWS_INSTANCE_ID", "i-1"),
            ],
        )
        .unwrap();
        assert!(!c.telemetry && c.local_mode);
        assert_eq!(c.shutdown_timeout, Duration::from_millis(2500));
        assert_eq!(c.upload_timeout, Duration::from_secs(3));
        assert_eq!((c.concurrency, c.receive_buffer), (2, 8 << 20));
        assert_eq!(c.endpoint.as_deref(), Some("http://127.0.0.1:9"));
        assert_eq!(c.log_format, LogFormat::Json);
        assert_eq!((c.resource_arn.as_str(), c.hostname.as_str(), c.instance_id.as_str()), ("arn:aws:ec2:x", "h", "i-1"));
    }

    #[test]
    fn proxy_settings_and_endpoint_resolution() {
        let c = load(Flags::default(), &[]).unwrap();
        assert_eq!(c.xray_endpoint("us-east-1"), "https://xray.us-east-1.amazonaws.com");
        assert_eq!(c.xray_endpoint("cn-north-1"), "https://xray.cn-north-1.amazonaws.com.cn");
        assert!(!c.proxy_allow_all);
        assert_eq!((c.proxy_max_body, c.proxy_timeout, c.proxy_client_timeout), (1 << 20, Duration::from_secs(10), Duration::from_secs(10)));
        let c = load(Flags::default(), &[("AWS_ENDPOINT_URL", "http://127.0.0.1:1/"), ("AWS_ENDPOINT_URL_XRAY", "http://127.0.0.1:2/")]).unwrap();
        assert_eq!(c.xray_endpoint("us-east-1"), "http://127.0.0.1:2");
        let c = load(Flags::default(), &[("AWS_ENDPOINT_URL_XRAY", "http://127.0.0.1:2"), ("XRAY_DAEMON_ENDPOINT", "http://127.0.0.1:3")]).unwrap();
        assert_eq!(c.xray_endpoint("us-east-1"), "http://127.0.0.1:3");
        let c = load(
            Flags::default(),
            &[
                ("XRAY_DAEMON_PROXY_ALLOW_ALL", "true"),
                ("XRAY_DAEMON_PROXY_MAX_BODY_KB", "64"),
                ("XRAY_DAEMON_PROXY_TIMEOUT", "3s"),
                ("XRAY_DAEMON_PROXY_CLIENT_TIMEOUT", "500ms"),
            ],
        )
        .unwrap();
        assert!(c.proxy_allow_all);
        assert_eq!((c.proxy_max_body, c.proxy_timeout, c.proxy_client_timeout), (64 << 10, Duration::from_secs(3), Duration::from_millis(500)));
        for (k, v) in [("XRAY_DAEMON_PROXY_MAX_BODY_KB", "0"), ("XRAY_DAEMON_PROXY_TIMEOUT", "0"), ("XRAY_DAEMON_PROXY_ALLOW_ALL", "sure"), ("AWS_ENDPOINT_URL_XRAY", "not a url")] {
            let e = load(Flags::default(), &[(k, v)]).unwrap_err().to_string();
            assert!(e.contains(v), "{k}: {e}");
        }
    }

    fn write_file(name: &str, text: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("xd-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    const FILE: &str = "Version: 2\nTotalBufferSizeMB: 24\nConcurrency: 4\nRegion: eu-north-1\nEndpoint: http://127.0.0.1:7\nSocket:\n  UDPAddress: 127.0.0.1:3000\n  TCPAddress: 127.0.0.1:3001\nLogging:\n  LogRotation: false\n  LogLevel: warn\n  LogPath: /tmp/xd.log\nLocalMode: true\nResourceARN: arn:file\nRoleARN: arn:aws:iam::1:role/file\nProxyAddress: http://127.0.0.1:3128\nNoVerifySSL: true\n";

    /// For each option: the file beats the default, the environment beats the file, the flag
    /// beats the environment.
    #[test]
    fn precedence_flag_env_file_default_for_every_option() {
        let path = write_file("all.yaml", FILE);
        let with_c = Flags { config: Some(path.display().to_string()), ..Default::default() };
        let c = Config::load_with(&with_c, &env(&[]), Path::new("/nonexistent")).unwrap();
        assert_eq!(c.config_file.as_deref(), Some(path.as_path()));
        assert_eq!((c.buffer_memory, c.concurrency), (24 << 20, 4));
        assert_eq!(c.region.as_ref().unwrap().0, "eu-north-1");
        assert!(c.region.as_ref().unwrap().1.starts_with("Region in "));
        assert_eq!(c.endpoint.as_deref(), Some("http://127.0.0.1:7"));
        assert_eq!((c.udp_address.as_str(), c.tcp_address.as_str()), ("127.0.0.1:3000", "127.0.0.1:3001"));
        assert_eq!((c.log_rotation, c.log_level, c.log_file.as_deref()), (false, LogLevel::Warn, Some(Path::new("/tmp/xd.log"))));
        assert!(c.local_mode && c.no_verify_ssl);
        assert_eq!((c.resource_arn.as_str(), c.role_arn.as_deref(), c.proxy_address.as_deref()), ("arn:file", Some("arn:aws:iam::1:role/file"), Some("http://127.0.0.1:3128")));

        let vars = [
            ("XRAY_DAEMON_BUFFER_MEMORY_MB", "32"),
            ("XRAY_DAEMON_CONCURRENCY", "5"),
            ("XRAY_DAEMON_REGION", "eu-west-3"),
            ("XRAY_DAEMON_ENDPOINT", "http://127.0.0.1:8"),
            ("XRAY_DAEMON_UDP_ADDRESS", "127.0.0.1:4000"),
            ("XRAY_DAEMON_TCP_ADDRESS", "127.0.0.1:4001"),
            ("XRAY_DAEMON_LOG_ROTATION", "true"),
            ("XRAY_DAEMON_LOG_LEVEL", "error"),
            ("XRAY_DAEMON_LOG_FILE", "/tmp/env.log"),
            ("XRAY_DAEMON_LOCAL_MODE", "false"),
            ("XRAY_DAEMON_NO_VERIFY_SSL", "false"),
            ("XRAY_DAEMON_RESOURCE_ARN", "arn:env"),
            ("XRAY_DAEMON_ROLE_ARN", "arn:aws:iam::1:role/env"),
            ("XRAY_DAEMON_PROXY_ADDRESS", "http://127.0.0.1:3129"),
        ];
        let c = Config::load_with(&with_c, &env(&vars), Path::new("/nonexistent")).unwrap();
        assert_eq!((c.buffer_memory, c.concurrency), (32 << 20, 5));
        assert_eq!(c.region.as_ref().unwrap(), &("eu-west-3".to_owned(), "XRAY_DAEMON_REGION".to_owned()));
        assert_eq!(c.endpoint.as_deref(), Some("http://127.0.0.1:8"));
        assert_eq!((c.udp_address.as_str(), c.tcp_address.as_str()), ("127.0.0.1:4000", "127.0.0.1:4001"));
        assert_eq!((c.log_rotation, c.log_level, c.log_file.as_deref()), (true, LogLevel::Error, Some(Path::new("/tmp/env.log"))));
        assert!(!c.local_mode && !c.no_verify_ssl);
        assert_eq!((c.resource_arn.as_str(), c.role_arn.as_deref(), c.proxy_address.as_deref()), ("arn:env", Some("arn:aws:iam::1:role/env"), Some("http://127.0.0.1:3129")));

        let flags = Flags {
            config: Some(path.display().to_string()),
            buffer_memory: Some(48),
            region: Some("sa-east-1".into()),
            bind: Some("127.0.0.1:5000".into()),
            bind_tcp: Some("127.0.0.1:5001".into()),
            log_level: Some("debug".into()),
            log_file: Some("/tmp/flag.log".into()),
            local_mode: Some(true),
            resource_arn: Some("arn:flag".into()),
            role_arn: Some("arn:aws:iam::1:role/flag".into()),
            proxy_address: Some("http://127.0.0.1:3130".into()),
            version: false,
        };
        let c = Config::load_with(&flags, &env(&vars), Path::new("/nonexistent")).unwrap();
        assert_eq!(c.buffer_memory, 48 << 20);
        assert_eq!(c.region.as_ref().unwrap().0, "sa-east-1");
        assert_eq!((c.udp_address.as_str(), c.tcp_address.as_str()), ("127.0.0.1:5000", "127.0.0.1:5001"));
        assert_eq!((c.log_level, c.log_file.as_deref()), (LogLevel::Debug, Some(Path::new("/tmp/flag.log"))));
        assert!(c.local_mode);
        assert_eq!((c.resource_arn.as_str(), c.role_arn.as_deref(), c.proxy_address.as_deref()), ("arn:flag", Some("arn:aws:iam::1:role/flag"), Some("http://127.0.0.1:3130")));
    }

    #[test]
    fn the_default_file_is_found_and_checked_leniently() {
        let path = write_file("discovered.yaml", "Version: 2\nRegion: ap-east-1\nSomethingNew: 1\n");
        let c = Config::load_with(&Flags::default(), &env(&[]), &path).unwrap();
        assert_eq!(c.region.unwrap().0, "ap-east-1");
        // The same file given with -c is checked strictly.
        let flags = Flags { config: Some(path.display().to_string()), ..Default::default() };
        let e = Config::load_with(&flags, &env(&[]), Path::new("/nonexistent")).unwrap_err();
        assert_eq!(e.to_string(), "SomethingNew flag is invalid. Please refer to AWS X-Ray Documentation for more information.");
        // XRAY_DAEMON_CONFIG_FILE works like -c.
        let e = Config::load_with(&Flags::default(), &env(&[("XRAY_DAEMON_CONFIG_FILE", &path.display().to_string())]), Path::new("/nonexistent")).unwrap_err();
        assert!(e.to_string().starts_with("SomethingNew flag is invalid"));
        let bad = write_file("bad.yaml", "Version: 2\nTotalBufferSizeMB: 2\n");
        let flags = Flags { config: Some(bad.display().to_string()), ..Default::default() };
        let e = Config::load_with(&flags, &env(&[]), Path::new("/nonexistent")).unwrap_err().to_string();
        assert!(e.starts_with("Not enough Buffers Memory Allocated") && e.contains("TotalBufferSizeMB in "), "{e}");
    }

    #[test]
    fn bad_proxy_urls_and_role_arns_are_rejected() {
        for url in ["http://[%10::1]", "http://%41:8080/", "http://a b.com/", "proxy:3128"] {
            let e = load(Flags { proxy_address: Some(url.into()), ..Default::default() }, &[]).unwrap_err().to_string();
            assert!(e.contains("-p/--proxy-address") && e.contains("Bad proxy URL"), "{url}: {e}");
        }
        let e = load(Flags::default(), &[("XRAY_DAEMON_ROLE_ARN", "xray-role")]).unwrap_err().to_string();
        assert!(e.contains("XRAY_DAEMON_ROLE_ARN"), "{e}");
    }

    #[test]
    fn bad_values_name_their_source() {
        let err = |flags: Flags, vars: &[(&str, &str)]| load(flags, vars).unwrap_err().to_string();
        let e = err(Flags { bind: Some("127.0.0.1".into()), ..Default::default() }, &[]);
        assert_eq!(e, "invalid value \"127.0.0.1\" for -b/--bind: address has no port (expected HOST:PORT, e.g. 127.0.0.1:2000)");
        assert!(err(Flags::default(), &[("XRAY_DAEMON_UDP_ADDRESS", "::1:2000")]).contains("XRAY_DAEMON_UDP_ADDRESS"));
        assert!(err(Flags::default(), &[("XRAY_DAEMON_TCP_ADDRESS", "localhost:http")]).contains("XRAY_DAEMON_TCP_ADDRESS"));
        assert_eq!(
            err(Flags { buffer_memory: Some(2), ..Default::default() }, &[]),
            "Not enough Buffers Memory Allocated. Min Buffers Memory required: 3 MB. (-m/--buffer-memory is 2)"
        );
        assert!(err(Flags::default(), &[("XRAY_DAEMON_BUFFER_MEMORY_MB", "lots")]).starts_with("invalid value \"lots\" for XRAY_DAEMON_BUFFER_MEMORY_MB"));
        assert!(err(Flags { log_level: Some("loud".into()), ..Default::default() }, &[]).contains("-l/--log-level"));
        assert!(err(Flags::default(), &[("XRAY_DAEMON_TELEMETRY", "nope")]).contains("XRAY_DAEMON_TELEMETRY"));
        assert!(err(Flags::default(), &[("XRAY_DAEMON_SHUTDOWN_TIMEOUT", "soon")]).contains("XRAY_DAEMON_SHUTDOWN_TIMEOUT"));
        assert!(err(Flags::default(), &[("XRAY_DAEMON_CONCURRENCY", "0")]).contains("XRAY_DAEMON_CONCURRENCY"));
        assert!(err(Flags::default(), &[("XRAY_DAEMON_ENDPOINT", "xray.local")]).contains("XRAY_DAEMON_ENDPOINT"));
        assert!(err(Flags::default(), &[("XRAY_DAEMON_LOG_FORMAT", "xml")]).contains("XRAY_DAEMON_LOG_FORMAT"));
    }
}
