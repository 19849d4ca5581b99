//! Every setting, one descriptor each: its flag, environment variable and config file key, its
//! parser, its default and a one-line description.
//!
//! The one place that names a setting. The loader (`mod.rs`) reads each setting through its
//! descriptor; the command line's flags and the `-h` screen (`cli.rs`) are the descriptors'
//! flags in this order, which is upstream's; the tests below hold the README's configuration
//! table equal to this one. It is over 500 lines because it is a table (41 rows of about ten lines)
//! and the README test.

use super::file::{FileConfig, FileKey};
use super::flags::{Flag, Flags, Slot};
use super::parse::{self, ModeChoice};
use super::values::{
    ConfigError, LambdaFlush, LogFormat, LogLevel, SpanUpload, DEFAULT_TCP_ADDRESS, DEFAULT_UDP_ADDRESS,
};
use std::path::PathBuf;
use std::time::Duration;
use DefaultValue::{Derived, Empty, Is};

/// Where a setting is read from and what it is for: the part of a descriptor that does not
/// depend on the setting's type.
pub(crate) struct Info {
    pub(crate) flag: Option<Flag>,
    /// The daemon's `XRAY_DAEMON_*` variable; for what only the SDK or the platform sets, theirs.
    pub(crate) var: &'static str,
    pub(crate) file: Option<FileKey>,
    /// The SDK's or the platform's variables, read after the file (`AWS_REGION`).
    pub(crate) also: &'static [&'static str],
    pub(crate) default: DefaultValue,
    /// One line of Markdown, for the README and the `-h` screen.
    pub(crate) about: &'static str,
}

/// What a setting is when nothing sets it.
pub(crate) enum DefaultValue {
    /// This text, read by the setting's parser like any value.
    Is(&'static str),
    /// Not set (`None`, empty, `false`); the text says what that means.
    Empty(&'static str),
    /// Worked out by the loader from other settings or the machine; the text says how.
    Derived(&'static str),
}

/// A setting's descriptor: where it is read from, and how its text becomes a `T`. The parser
/// gets the source (`-b/--bind`, `XRAY_DAEMON_UDP_ADDRESS`, `Socket.UDPAddress in FILE`) for
/// its error message, and the text.
pub(crate) struct Setting<T> {
    pub(crate) info: Info,
    pub(crate) parse: fn(&str, &str) -> Result<T, ConfigError>,
}

/// Defines each setting as a constant and [`ALL`] as the list of them, so that none can be
/// left out of the list.
macro_rules! settings {
    ($($(#[doc = $doc:literal])* $name:ident: $ty:ty { parse: $parse:expr, $($field:ident: $value:expr,)* })*) => {
        $(
            $(#[doc = $doc])*
            pub(crate) const $name: Setting<$ty> = Setting { info: Info { $($field: $value),* }, parse: $parse };
        )*
        /// Every setting, in the order of the `-h` screen and of the README's table.
        pub(crate) const ALL: &[&Info] = &[$(&$name.info),*];
    };
}

type SlotOf = fn(&mut Flags) -> Slot<'_>;

/// A flag of upstream's.
const fn flag(short: &'static str, long: &'static str, usage: &'static str, slot: SlotOf) -> Option<Flag> {
    Some(Flag { short, long, usage, slot })
}

/// A key of the config file.
const fn key(key: &'static str, value: fn(&FileConfig) -> Option<String>) -> Option<FileKey> {
    Some(FileKey { key, value })
}

settings! {
    // Upstream's flags first, in upstream's order (the `-h` screen's).
    RESOURCE_ARN: String {
        parse: |_, v| Ok(v.to_owned()),
        flag: flag("a", "resource-arn", "Amazon Resource Name (ARN) of the AWS resource running the daemon.",
            |f| Slot::Text(&mut f.resource_arn)),
        var: "XRAY_DAEMON_RESOURCE_ARN",
        file: key("ResourceARN", |f| f.resource_arn.clone()),
        also: &[],
        default: Empty("empty"),
        about: "ARN of the resource running the daemon, reported in telemetry",
    }
    LOCAL_MODE: bool {
        parse: parse::go_bool,
        flag: flag("o", "local-mode", "Don't check for EC2 instance metadata.", |f| Slot::Bool(&mut f.local_mode)),
        var: "XRAY_DAEMON_LOCAL_MODE",
        file: key("LocalMode", |f| f.local_mode.map(|b| b.to_string())),
        also: &[],
        default: Is("false"),
        about: "don't use the ECS metadata file or EC2 instance metadata",
    }
    /// In bytes.
    BUFFER_MEMORY: u64 {
        parse: parse::buffer_mb,
        flag: flag("m", "buffer-memory", "Change the amount of memory in MB that buffers can use (minimum 3).",
            |f| Slot::Int(&mut f.buffer_memory)),
        var: "XRAY_DAEMON_BUFFER_MEMORY_MB",
        file: key("TotalBufferSizeMB", |f| f.total_buffer_size_mb.map(|n| n.to_string())),
        also: &[],
        default: Derived("1 % of the container limit or host RAM, at least 3; in Lambda 3 % of the function's \
            memory, at least 16"),
        about: "MB of segments the buffer may hold (minimum 3)",
    }
    REGION: String {
        parse: |_, v| Ok(v.trim().to_owned()),
        flag: flag("n", "region", "Send segments to X-Ray service in a specific region.",
            |f| Slot::Text(&mut f.region)),
        var: "XRAY_DAEMON_REGION",
        file: key("Region", |f| f.region.clone()),
        also: &["AWS_REGION"],
        default: Derived("looked up (below)"),
        about: "region to send segments to",
    }
    UDP_ADDRESS: String {
        parse: parse::address,
        flag: flag("b", "bind", "Overrides default UDP address (127.0.0.1:2000).", |f| Slot::Text(&mut f.bind)),
        var: "XRAY_DAEMON_UDP_ADDRESS",
        file: key("Socket.UDPAddress", |f| f.udp_address.clone()),
        also: &[],
        default: Is(DEFAULT_UDP_ADDRESS),
        about: "UDP address to receive segments on; IPv6 as `[::1]:2000`",
    }
    TCP_ADDRESS: String {
        parse: parse::address,
        flag: flag("t", "bind-tcp", "Overrides default TCP address (127.0.0.1:2000).", |f| Slot::Text(&mut f.bind_tcp)),
        var: "XRAY_DAEMON_TCP_ADDRESS",
        file: key("Socket.TCPAddress", |f| f.tcp_address.clone()),
        also: &[],
        default: Is(DEFAULT_TCP_ADDRESS),
        about: "TCP address of the sampling proxy and of `/health`, `/ready`, `/metrics` (Version 1 files \
            cannot set it)",
    }
    ROLE_ARN: Option<String> {
        parse: parse::role_arn,
        flag: flag("r", "role-arn", "Assume the specified IAM role to upload segments to a different account.",
            |f| Slot::Text(&mut f.role_arn)),
        var: "XRAY_DAEMON_ROLE_ARN",
        file: key("RoleARN", |f| f.role_arn.clone()),
        also: &[],
        default: Empty("none"),
        about: "assume this role (session name `xray-daemon`) for uploads, telemetry and the proxy",
    }
    CONFIG_FILE: PathBuf {
        parse: |_, v| Ok(PathBuf::from(v)),
        flag: flag("c", "config", "Load a configuration file from the specified path.", |f| Slot::Text(&mut f.config)),
        var: "XRAY_DAEMON_CONFIG_FILE",
        file: None,
        also: &[],
        default: Derived("`/etc/amazon/xray/cfg.yaml` if present"),
        about: "the config file (above)",
    }
    LOG_FILE: Option<PathBuf> {
        parse: |_, v| Ok(Some(PathBuf::from(v))),
        flag: flag("f", "log-file", "Output logs to the specified file path.", |f| Slot::Text(&mut f.log_file)),
        var: "XRAY_DAEMON_LOG_FILE",
        file: key("Logging.LogPath", |f| f.log_path.clone()),
        also: &[],
        default: Empty("stdout"),
        about: "log to this file",
    }
    LOG_LEVEL: LogLevel {
        parse: parse::log_level,
        flag: flag("l", "log-level", "Log level, from most verbose to least: dev, debug, info, warn, error, prod \
            (default).", |f| Slot::Text(&mut f.log_level)),
        var: "XRAY_DAEMON_LOG_LEVEL",
        file: key("Logging.LogLevel", |f| f.log_level.clone()),
        also: &[],
        default: Is("prod"),
        about: "`dev`, `debug`, `info`, `warn`, `error`, `prod` (= `info`)",
    }
    PROXY_ADDRESS: Option<String> {
        parse: parse::proxy_url,
        flag: flag("p", "proxy-address", "Proxy address through which to upload segments.",
            |f| Slot::Text(&mut f.proxy_address)),
        var: "XRAY_DAEMON_PROXY_ADDRESS",
        file: key("ProxyAddress", |f| f.proxy_address.clone()),
        also: &[],
        default: Empty("none"),
        about: "HTTP (CONNECT) proxy for every outbound AWS call: uploads, telemetry, STS and the sampling \
            proxy's; without it `HTTPS_PROXY`/`https_proxy` apply; `NO_PROXY` is honoured",
    }

    // Upstream's file keys without a flag.
    LOG_ROTATION: bool {
        parse: parse::go_bool,
        flag: None,
        var: "XRAY_DAEMON_LOG_ROTATION",
        file: key("Logging.LogRotation", |f| f.log_rotation.map(|b| b.to_string())),
        also: &[],
        default: Is("true"),
        about: "rotate the log file at 50 MB, keeping one old file (`.1`)",
    }
    CONCURRENCY: usize {
        parse: parse::concurrency,
        flag: None,
        var: "XRAY_DAEMON_CONCURRENCY",
        file: key("Concurrency", |f| f.concurrency.map(|n| n.to_string())),
        also: &[],
        default: Is("8"),
        about: "PutTraceSegments calls in flight at once (1–64)",
    }
    ENDPOINT: Option<String> {
        parse: parse::url,
        flag: None,
        var: "XRAY_DAEMON_ENDPOINT",
        file: key("Endpoint", |f| f.endpoint.clone()),
        also: &[],
        default: Empty("the region's X-Ray endpoint"),
        about: "X-Ray endpoint URL for uploads, telemetry and the proxy",
    }
    NO_VERIFY_SSL: bool {
        parse: parse::go_bool,
        flag: None,
        var: "XRAY_DAEMON_NO_VERIFY_SSL",
        file: key("NoVerifySSL", |f| f.no_verify_ssl.map(|b| b.to_string())),
        also: &[],
        default: Is("false"),
        about: "skip TLS certificate checks for X-Ray, STS and the sampling proxy's calls (a warning says so \
            at start)",
    }

    // The daemon's own settings, environment variables only.
    UPLOAD_TIMEOUT: Duration {
        parse: parse::positive_duration,
        flag: None,
        var: "XRAY_DAEMON_UPLOAD_TIMEOUT",
        file: None,
        also: &[],
        default: Is("2s"),
        about: "timeout of one PutTraceSegments attempt (`5`, `5s`, `500ms`)",
    }
    SHUTDOWN_TIMEOUT: Duration {
        parse: parse::duration,
        flag: None,
        var: "XRAY_DAEMON_SHUTDOWN_TIMEOUT",
        file: None,
        also: &[],
        default: Is("5s"),
        about: "how long SIGTERM/SIGINT may take to send what is buffered",
    }
    /// In bytes.
    RECEIVE_BUFFER: usize {
        parse: parse::kib,
        flag: None,
        var: "XRAY_DAEMON_RECEIVE_BUFFER_KB",
        file: None,
        also: &[],
        default: Is("4096"),
        about: "`SO_RCVBUF` to ask the kernel for, in KiB (Linux caps it at `net.core.rmem_max` unless the \
            daemon may override it)",
    }
    TELEMETRY: bool {
        parse: parse::go_bool,
        flag: None,
        var: "XRAY_DAEMON_TELEMETRY",
        file: None,
        also: &[],
        default: Derived("`true`; `false` in Lambda"),
        about: "send `PutTelemetryRecords` every 60 s",
    }
    LOG_FORMAT: LogFormat {
        parse: parse::log_format,
        flag: None,
        var: "XRAY_DAEMON_LOG_FORMAT",
        file: None,
        also: &[],
        default: Is("text"),
        about: "`text` (upstream's lines) or `json` (one object per line)",
    }
    PROXY_ALLOW_ALL: bool {
        parse: parse::go_bool,
        flag: None,
        var: "XRAY_DAEMON_PROXY_ALLOW_ALL",
        file: None,
        also: &[],
        default: Is("false"),
        about: "let the TCP proxy sign and forward any method and path, as upstream does",
    }
    /// In bytes.
    PROXY_MAX_BODY: usize {
        parse: parse::nonzero_kib,
        flag: None,
        var: "XRAY_DAEMON_PROXY_MAX_BODY_KB",
        file: None,
        also: &[],
        default: Is("1024"),
        about: "largest request body the proxy accepts, in KiB (413 above it)",
    }
    PROXY_TIMEOUT: Duration {
        parse: parse::positive_duration,
        flag: None,
        var: "XRAY_DAEMON_PROXY_TIMEOUT",
        file: None,
        also: &[],
        default: Is("10s"),
        about: "how long X-Ray may take to answer a proxied call (502 after it)",
    }
    PROXY_CLIENT_TIMEOUT: Duration {
        parse: parse::positive_duration,
        flag: None,
        var: "XRAY_DAEMON_PROXY_CLIENT_TIMEOUT",
        file: None,
        also: &[],
        default: Is("10s"),
        about: "how long a client may take to send a request head or body, and how long an idle connection \
            stays open",
    }
    MAX_CONNECTIONS: usize {
        parse: parse::positive_count,
        flag: None,
        var: "XRAY_DAEMON_MAX_CONNECTIONS",
        file: None,
        also: &[],
        default: Is("512"),
        about: "connections the TCP port (and each OTLP listener) keeps open at once; at the limit the oldest \
            one waiting for a request is closed to make room",
    }
    OTLP_ENDPOINT: Option<String> {
        parse: parse::url,
        flag: None,
        var: "XRAY_DAEMON_OTLP_ENDPOINT",
        file: None,
        also: &[],
        default: Empty("`/v1/traces` at the X-Ray endpoint"),
        about: "the OTLP traces URL that spans are sent to",
    }
    OTLP_ADDRESS: Option<String> {
        parse: |source, value| parse::address(source, value).map(Some),
        flag: None,
        var: "XRAY_DAEMON_OTLP_ADDRESS",
        file: None,
        also: &[],
        default: Derived("off; in Lambda `127.0.0.1:4318`"),
        about: "a listener of its own for OTLP/HTTP `POST /v1/traces`, e.g. `0.0.0.0:4318` (the TCP port serves it \
            too); set empty, off",
    }
    OTLP_GRPC_ADDRESS: Option<String> {
        parse: |source, value| parse::address(source, value).map(Some),
        flag: None,
        var: "XRAY_DAEMON_OTLP_GRPC_ADDRESS",
        file: None,
        also: &[],
        default: Derived("off; in Lambda `127.0.0.1:4317`"),
        about: "where to take OTLP/gRPC (`TraceService/Export`), e.g. `0.0.0.0:4317`; set empty, off",
    }
    OTLP_GZIP: bool {
        parse: parse::go_bool,
        flag: None,
        var: "XRAY_DAEMON_OTLP_GZIP",
        file: None,
        also: &[],
        default: Is("true"),
        about: "gzip the span requests sent to X-Ray",
    }
    SPAN_UPLOAD: SpanUpload {
        parse: parse::span_upload,
        flag: None,
        var: "XRAY_DAEMON_SPAN_UPLOAD",
        file: None,
        also: &[],
        default: Is("segments"),
        about: "how spans go to X-Ray: `segments` (converted to segment documents, sent with PutTraceSegments: \
            every account) or `otlp` (to X-Ray's OTLP endpoint: accounts with Transaction Search on)",
    }
    INDEXED_ATTRIBUTES: Vec<String> {
        parse: |_, v| Ok(parse::list(v)),
        flag: None,
        var: "XRAY_DAEMON_INDEXED_ATTRIBUTES",
        file: None,
        also: &[],
        default: Empty("none"),
        about: "segments mode: span and resource attributes (resource ones as `otel.resource.KEY`) that become \
            annotations, which X-Ray indexes for search, comma-separated; the rest go to metadata",
    }
    INDEX_ALL_ATTRIBUTES: bool {
        parse: parse::go_bool,
        flag: None,
        var: "XRAY_DAEMON_INDEX_ALL_ATTRIBUTES",
        file: None,
        also: &[],
        default: Is("false"),
        about: "segments mode: every attribute that can be an annotation becomes one",
    }
    SPOOL_DIR: Option<PathBuf> {
        parse: |_, v| Ok(Some(PathBuf::from(v))),
        flag: None,
        var: "XRAY_DAEMON_SPOOL_DIR",
        file: key("Spool.Directory", |f| f.spool_directory.clone()),
        also: &[],
        default: Empty("off"),
        about: "a directory for the disk spool: what waits is written there and sent after a restart or an \
            outage (not in Lambda)",
    }
    /// In bytes.
    SPOOL_MAX: u64 {
        parse: parse::spool_mb,
        flag: None,
        var: "XRAY_DAEMON_SPOOL_MAX_MB",
        file: key("Spool.MaxSizeMB", |f| f.spool_max_size_mb.map(|n| n.to_string())),
        also: &[],
        default: Is("512"),
        about: "MB the spool may hold on disk; at the cap the oldest is dropped",
    }
    SPOOL_INTERVAL: Duration {
        parse: parse::positive_duration,
        flag: None,
        var: "XRAY_DAEMON_SPOOL_INTERVAL",
        file: None,
        also: &[],
        default: Is("1s"),
        about: "how long a record may wait in memory before the spool writes it (what a crash can lose)",
    }
    /// In bytes per second.
    SPOOL_REPLAY_RATE: u64 {
        parse: |source, value| Ok(parse::nonzero_kib(source, value)? as u64),
        flag: None,
        var: "XRAY_DAEMON_SPOOL_REPLAY_RATE_KB",
        file: None,
        also: &[],
        default: Is("1024"),
        about: "KB per second read back from the spool and sent",
    }
    MODE: ModeChoice {
        parse: parse::mode,
        flag: None,
        var: "XRAY_DAEMON_MODE",
        file: None,
        also: &[],
        default: Is("auto"),
        about: "`lambda`, `sidecar` or `auto` (Lambda mode when `AWS_LAMBDA_RUNTIME_API` is set)",
    }
    LAMBDA_FLUSH: LambdaFlush {
        parse: parse::lambda_flush,
        flag: None,
        var: "XRAY_DAEMON_LAMBDA_FLUSH",
        file: None,
        also: &[],
        default: Is("end"),
        about: "Lambda: when to send an invocation's segments: `end`, `next-invoke` or `background` (see \
            [Lambda](#lambda))",
    }
    LAMBDA_PROXY: bool {
        parse: parse::go_bool,
        flag: None,
        var: "XRAY_DAEMON_LAMBDA_PROXY",
        file: None,
        also: &[],
        default: Is("false"),
        about: "Lambda: also serve the TCP port (sampling proxy, `/health`, `/metrics`)",
    }

    // What the SDK, ECS, EC2 or Lambda set, read as upstream and the SDK read them.
    SDK_ENDPOINT: Option<String> {
        parse: parse::url,
        flag: None,
        var: "AWS_ENDPOINT_URL_XRAY",
        file: None,
        also: &["AWS_ENDPOINT_URL"],
        default: Empty("none"),
        about: "the SDK's endpoint variables: X-Ray's endpoint when neither `XRAY_DAEMON_ENDPOINT` nor \
            `Endpoint` is set",
    }
    DEFAULT_REGION: Option<String> {
        parse: |_, v| Ok(Some(v.to_owned())),
        flag: None,
        var: "AWS_DEFAULT_REGION",
        file: None,
        also: &[],
        default: Empty("none"),
        about: "the region when nothing else gives one (below)",
    }
    HOSTNAME: String {
        parse: |_, v| Ok(v.to_owned()),
        flag: None,
        var: "AWS_HOSTNAME",
        file: None,
        also: &[],
        default: Empty("empty"),
        about: "reported in telemetry, as upstream",
    }
    INSTANCE_ID: String {
        parse: |_, v| Ok(v.to_owned()),
        flag: None,
        var: "AWS_INSTANCE_ID",
        file: None,
        also: &[],
        default: Empty("empty"),
        about: "reported in telemetry, as upstream",
    }
    ECS_METADATA: bool {
        parse: |_, v| Ok(v.eq_ignore_ascii_case("true")),
        flag: None,
        var: "ECS_ENABLE_CONTAINER_METADATA",
        file: None,
        also: &[],
        default: Is("false"),
        about: "`true`: the region may come from the ECS container metadata file",
    }
    ECS_METADATA_FILE: Option<PathBuf> {
        parse: |_, v| Ok(Some(PathBuf::from(v))),
        flag: None,
        var: "ECS_CONTAINER_METADATA_FILE",
        file: None,
        also: &[],
        default: Empty("none"),
        about: "the ECS container metadata file (the ECS agent sets it)",
    }
    IMDS_ENDPOINT: String {
        parse: |_, v| Ok(v.trim_end_matches('/').to_owned()),
        flag: None,
        var: "AWS_EC2_METADATA_SERVICE_ENDPOINT",
        file: None,
        also: &[],
        default: Is("http://169.254.169.254"),
        about: "EC2 instance metadata, which the region may come from",
    }
    IMDS_DISABLED: bool {
        parse: |_, v| Ok(v.eq_ignore_ascii_case("true")),
        flag: None,
        var: "AWS_EC2_METADATA_DISABLED",
        file: None,
        also: &[],
        default: Is("false"),
        about: "`true`: don't ask EC2 instance metadata",
    }
    LAMBDA_RUNTIME_API: Option<String> {
        parse: |_, v| Ok(Some(v.trim().to_owned()).filter(|v| !v.is_empty())),
        flag: None,
        var: "AWS_LAMBDA_RUNTIME_API",
        file: None,
        also: &[],
        default: Empty("none; Lambda sets it"),
        about: "host:port of Lambda's Extensions and Telemetry APIs; when it is set, `auto` mode is Lambda \
            mode",
    }
    /// In MB; `None` when Lambda sent nothing usable.
    FUNCTION_MEMORY: Option<u64> {
        parse: |_, v| Ok(v.trim().parse().ok()),
        flag: None,
        var: "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
        file: None,
        also: &[],
        default: Empty("none; Lambda sets it"),
        about: "the function's memory in MB, which Lambda's default buffer size follows",
    }
    /// In Lambda mode, when the daemon's own settings give no level.
    LAMBDA_LOG_LEVEL: Option<LogLevel> {
        parse: parse::lambda_log_level,
        flag: None,
        var: "AWS_LAMBDA_LOG_LEVEL",
        file: None,
        also: &[],
        default: Empty("none; Lambda sets it (advanced logging controls)"),
        about: "Lambda mode: the log level when neither `-l`, `XRAY_DAEMON_LOG_LEVEL` nor `Logging.LogLevel` \
            is set: `TRACE` (= `dev`), `DEBUG`, `INFO`, `WARN`, `ERROR`, `FATAL` (= `error`)",
    }
    /// In Lambda mode, when `XRAY_DAEMON_LOG_FORMAT` is not set.
    LAMBDA_LOG_FORMAT: Option<LogFormat> {
        parse: parse::lambda_log_format,
        flag: None,
        var: "AWS_LAMBDA_LOG_FORMAT",
        file: None,
        also: &[],
        default: Empty("none; Lambda sets it (advanced logging controls)"),
        about: "Lambda mode: `JSON` or `Text`, the log format when `XRAY_DAEMON_LOG_FORMAT` is not set",
    }
    /// Lambda Managed Instances.
    MANAGED_INSTANCES: bool {
        parse: |_, v| Ok(v.eq_ignore_ascii_case("lambda-managed-instances")),
        flag: None,
        var: "AWS_LAMBDA_INITIALIZATION_TYPE",
        file: None,
        also: &[],
        default: Empty("none; Lambda sets it"),
        about: "`lambda-managed-instances`: the sandbox never freezes; register for SHUTDOWN only and send \
            continuously",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::file::{DEFAULT_PATH, KNOWN_KEYS};
    use std::collections::HashSet;

    /// The README's two tables: the daemon's settings, then the SDK's and the platform's variables.
    const SETTINGS: [&str; 5] = ["flag", "environment variable", "config key", "default", "meaning"];
    const PLATFORM: [&str; 3] = ["environment variable", "default", "meaning"];

    /// A setting's row of the README's tables, cell by cell.
    fn row(s: &Info) -> Vec<String> {
        let code = |t: &str| format!("`{t}`");
        let flag = s.flag.as_ref().map(|f| format!("`-{}`, `--{}`", f.short, f.long)).unwrap_or_default();
        let vars: Vec<String> = std::iter::once(&s.var).chain(s.also).map(|v| code(v)).collect();
        let default = match s.default {
            Is(text) => code(text),
            Empty(text) | Derived(text) => text.to_owned(),
        };
        let key = s.file.as_ref().map(|k| code(k.key)).unwrap_or_default();
        if s.var.starts_with("XRAY_DAEMON_") {
            vec![flag, vars.join(", then "), key, default, s.about.to_owned()]
        } else {
            vec![vars.join(", then "), default, s.about.to_owned()]
        }
    }

    /// The table's rows: the daemon's settings, then the others.
    fn table_rows() -> [Vec<Vec<String>>; 2] {
        let (own, platform) = ALL.iter().map(|s| row(s)).partition(|r| r.len() == SETTINGS.len());
        [own, platform]
    }

    fn markdown(cells: &[String]) -> String {
        format!("| {} |", cells.join(" | ")).replace("|  |", "| |")
    }

    /// The rows of each table in the README's `## Configuration` section, below the headings.
    fn readme_tables(readme: &str) -> Vec<Vec<Vec<String>>> {
        let section = readme.split("\n## Configuration\n").nth(1).expect("a ## Configuration section");
        let section = section.split("\n## ").next().unwrap_or(section);
        let mut tables: Vec<Vec<Vec<String>>> = vec![];
        let mut in_table = false;
        for line in section.lines() {
            if !line.starts_with('|') {
                in_table = false;
                continue;
            }
            if !in_table {
                tables.push(vec![]);
                in_table = true;
            }
            let cells = line.trim().trim_matches('|').split('|').map(|c| c.trim().to_owned()).collect();
            tables.last_mut().unwrap().push(cells);
        }
        for (table, headings) in tables.iter_mut().zip([&SETTINGS[..], &PLATFORM[..]]) {
            assert_eq!(table[0], headings, "the README's column headings");
            table.drain(..2);
        }
        tables
    }

    /// What differs between the README's rows and the table's, one line each.
    fn differences(readme: &[Vec<String>], table: &[Vec<String>], columns: &[&str]) -> Vec<String> {
        let var = columns.iter().position(|&c| c == "environment variable").unwrap();
        let same_setting = |a: &Vec<String>, b: &Vec<String>| a.get(var) == b.get(var);
        let mut out = Vec::new();
        for want in table {
            match readme.iter().find(|r| same_setting(r, want)) {
                None => out.push(format!("missing from the README: {}", markdown(want))),
                Some(got) => {
                    for (i, column) in columns.iter().enumerate() {
                        if got.get(i) != Some(&want[i]) {
                            let got = got.get(i).map_or("nothing", String::as_str);
                            let (name, want) = (&want[var], &want[i]);
                            out.push(format!("{name}: the README's {column} is {got:?}, the table's {want:?}"));
                        }
                    }
                }
            }
        }
        for got in readme.iter().filter(|r| !table.iter().any(|t| same_setting(r, t))) {
            out.push(format!("in the README but not in the table: {}", markdown(got)));
        }
        if out.is_empty() && readme != table {
            out.push("the README lists the settings in another order than the table".to_owned());
        }
        out
    }

    /// The README's configuration tables are this table: the same settings in the same order, each
    /// with the same flag, variables, file key, default and meaning.
    #[test]
    fn the_readme_tables_are_this_table() {
        let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
        let mut tables = readme_tables(&readme);
        let mut problems = Vec::new();
        if tables.len() != 2 {
            problems.push(format!("the README's configuration section has {} tables, not 2", tables.len()));
        }
        tables.resize(2, vec![]);
        let mut as_markdown = String::new();
        for ((got, want), columns) in tables.iter().zip(table_rows()).zip([&SETTINGS[..], &PLATFORM[..]]) {
            problems.extend(differences(got, &want, columns));
            let headings: Vec<String> = columns.iter().map(|c| c.to_string()).collect();
            as_markdown += &format!("\n{}\n|{}\n", markdown(&headings), " --- |".repeat(columns.len()));
            as_markdown += &want.iter().map(|r| markdown(r) + "\n").collect::<String>();
        }
        assert!(problems.is_empty(), "{}\n\nThe tables, as Markdown:\n{as_markdown}", problems.join("\n"));
    }

    #[test]
    fn a_changed_missing_or_extra_readme_row_is_reported() {
        let [table, _] = table_rows();
        let mut readme = table.clone();
        readme[0][3] = "`other`".into();
        readme.remove(1);
        readme.push(vec!["".into(), "`XRAY_DAEMON_GONE`".into(), "".into(), "".into(), "".into()]);
        let found = differences(&readme, &table, &SETTINGS);
        assert_eq!(found.len(), 3, "{found:#?}");
        let changed = "`XRAY_DAEMON_RESOURCE_ARN`: the README's default is \"`other`\", the table's \"empty\"";
        assert_eq!(found[0], changed);
        assert!(found[1].starts_with("missing from the README: | `-o`, `--local-mode` |"), "{}", found[1]);
        assert!(found[2].starts_with("in the README but not in the table: | | `XRAY_DAEMON_GONE` |"), "{}", found[2]);
        readme = table.clone();
        readme.swap(0, 1);
        let order = differences(&readme, &table, &SETTINGS);
        assert_eq!(order, ["the README lists the settings in another order than the table"]);
    }

    #[test]
    fn every_setting_is_named_once_and_as_upstream_names_it() {
        let mut names = HashSet::new();
        for s in ALL {
            for name in std::iter::once(&s.var).chain(s.also) {
                assert!(names.insert(*name), "{name} is read by two settings");
            }
            if let Some(flag) = &s.flag {
                assert!(names.insert(flag.short) && names.insert(flag.long), "-{} is two settings' flag", flag.short);
            }
            if let Some(key) = &s.file {
                assert!(KNOWN_KEYS.contains(&key.key), "{} is not one of upstream's file keys", key.key);
                assert!(names.insert(key.key), "{} is two settings' key", key.key);
            }
            // Each of the daemon's own settings has its variable; the SDK's and the platform's
            // (`AWS_*`, `ECS_*`) have neither a flag nor a key.
            let own = s.var.starts_with("XRAY_DAEMON_");
            assert!(own || s.flag.is_none() && s.file.is_none(), "{} has a flag or key but no daemon variable", s.var);
            assert!(own || s.var.starts_with("AWS_") || s.var.starts_with("ECS_"), "{}", s.var);
            assert!(!row(s).concat().contains('|'), "{}: a | would split the README's cell", s.var);
        }
        assert!(matches!(CONFIG_FILE.info.default, Derived(text) if text.contains(DEFAULT_PATH)));
    }
}
