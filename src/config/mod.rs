//! The daemon's settings, read from flags, environment variables and upstream's config file.
//!
//! Precedence is flag > environment > config file > default, for every setting. Each setting is
//! one descriptor in `table.rs` (its flag, variable, file key, parser and default); this module
//! reads them all into a [`Config`]. Loading goes on past a bad value, so that every bad value is
//! reported at once, one line each naming its flag, variable or key; a single bad value gets the
//! same one-line message as it always did. Variables come from a map the caller passes, so tests
//! never touch the process environment.
//!
//! It is over 500 lines because of its tests: about 290 lines of code and docs, then the
//! loader's tests, one per rule of precedence and per kind of bad value.

pub mod cli;
pub mod file;
mod flags;
pub mod names;
mod parse;
pub mod running;
mod table;
mod values;

pub use flags::Flags;
pub use values::{ConfigError, LambdaConfig, LambdaFlush, LogFormat, LogLevel, Mode, SpanUpload, DEFAULT_TCP_ADDRESS};

use crate::sizing;
use file::FileConfig;
use parse::ModeChoice;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;
use table::{DefaultValue, Info, Setting};

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
    /// Connections each TCP listener keeps open at once.
    pub max_connections: usize,
    /// Where spans go; `None`: `/v1/traces` at the X-Ray endpoint.
    pub otlp_endpoint: Option<String>,
    /// A listener of its own for OTLP/HTTP.
    pub otlp_address: Option<String>,
    /// Where OTLP/gRPC is taken.
    pub otlp_grpc_address: Option<String>,
    /// gzip the span requests.
    pub otlp_gzip: bool,
    /// How spans go to X-Ray.
    pub span_upload: SpanUpload,
    /// Segments mode: the attributes that become annotations.
    pub indexed_attributes: Vec<String>,
    /// Segments mode: every attribute that can be an annotation becomes one.
    pub index_all_attributes: bool,
    /// The disk spool's directory; `None`: no spool.
    pub spool_dir: Option<PathBuf>,
    /// The spool's cap in bytes.
    pub spool_max_bytes: u64,
    /// How long a record may wait in memory before the spool writes it.
    pub spool_interval: Duration,
    /// Bytes per second read back from the spool.
    pub spool_replay_rate: u64,
}

/// Reads each setting through its descriptor: the first of its flag, variable, file key and
/// further variables that is set (not empty) wins. A bad value is kept as a problem and the
/// setting's default used in its place, so that reading goes on and finds every bad value.
struct Reader<'a> {
    /// A copy, as a flag's value is read through the same accessor that sets it.
    flags: Flags,
    /// The environment, the daemon's own variables by their names in capitals (see [`variables`]).
    env: HashMap<String, &'a String>,
    file: FileConfig,
    file_path: Option<PathBuf>,
    problems: Vec<ConfigError>,
}

impl Reader<'_> {
    /// Where the setting's value comes from, as errors name it, and its text.
    fn raw(&mut self, info: &Info) -> Option<(String, String)> {
        if let Some(flag) = &info.flag {
            if let Some(v) = (flag.slot)(&mut self.flags).text().filter(|v| !v.is_empty()) {
                return Some((flag.name(), v));
            }
        }
        let var = |name: &&str| self.env.get(*name).filter(|v| !v.is_empty()).map(|&v| (name.to_string(), v.clone()));
        if let Some(found) = var(&info.var) {
            return Some(found);
        }
        if let Some(key) = &info.file {
            if let Some(v) = (key.value)(&self.file).filter(|v| !v.is_empty()) {
                let source = match &self.file_path {
                    Some(path) => format!("{} in {}", key.key, path.display()),
                    None => key.key.to_owned(),
                };
                return Some((source, v));
            }
        }
        info.also.iter().find_map(var)
    }

    /// The value set and where it comes from; `None` when it is not set, or is bad (kept).
    fn given<T>(&mut self, setting: &Setting<T>) -> Option<(String, T)> {
        let (source, text) = self.raw(&setting.info)?;
        (setting.parse)(&source, &text).map(|value| (source, value)).map_err(|e| self.problems.push(e)).ok()
    }

    /// The value set, else the default. Not for `Derived` defaults, which the loader works out;
    /// `T::default()` is what `Empty` means (`None`, empty, `false`).
    fn get<T: Default>(&mut self, setting: &Setting<T>) -> T {
        if let Some((_, value)) = self.given(setting) {
            return value;
        }
        match setting.info.default {
            DefaultValue::Is(text) => {
                let source = format!("the default of {}", setting.info.var);
                (setting.parse)(&source, text).unwrap_or_else(|e| {
                    self.problems.push(e);
                    T::default()
                })
            }
            DefaultValue::Empty(_) | DefaultValue::Derived(_) => T::default(),
        }
    }

    /// A listener's address: the one set, else in Lambda mode `lambda_default`. Set to the empty
    /// string, the listener is off, in Lambda mode too.
    fn listener(&mut self, setting: &Setting<Option<String>>, lambda: bool, lambda_default: &str) -> Option<String> {
        if self.env.get(setting.info.var).is_some_and(|v| v.trim().is_empty()) {
            return None;
        }
        match self.given(setting) {
            Some((_, address)) => address,
            None => lambda.then(|| lambda_default.to_owned()),
        }
    }

    /// Lambda mode when `XRAY_DAEMON_MODE` says so, or when it is `auto` and
    /// `AWS_LAMBDA_RUNTIME_API` is set.
    fn lambda(&mut self) -> Option<LambdaConfig> {
        let runtime_api = self.get(&table::LAMBDA_RUNTIME_API);
        let runtime_api = match self.get(&table::MODE) {
            ModeChoice::Sidecar => return None,
            ModeChoice::Auto => runtime_api?,
            ModeChoice::Lambda => match runtime_api {
                Some(api) => api,
                None => {
                    let (source, text) = self.raw(&table::MODE.info)?;
                    let api = table::LAMBDA_RUNTIME_API.info.var;
                    let reason = format!("Lambda mode needs {api}, which Lambda sets; it is not set");
                    self.problems.push(parse::invalid(&source, text.trim(), reason));
                    return None;
                }
            },
        };
        Some(LambdaConfig {
            runtime_api,
            flush: self.get(&table::LAMBDA_FLUSH),
            proxy: self.get(&table::LAMBDA_PROXY),
            managed_instances: self.get(&table::MANAGED_INSTANCES),
        })
    }

    /// The log level and format: the daemon's settings, else in Lambda mode Lambda's
    /// (`AWS_LAMBDA_LOG_LEVEL`, `AWS_LAMBDA_LOG_FORMAT`), else the defaults.
    fn log_choice(&mut self, lambda: bool) -> (LogLevel, LogFormat) {
        let level = match lambda && self.raw(&table::LOG_LEVEL.info).is_none() {
            true => self.get(&table::LAMBDA_LOG_LEVEL).unwrap_or_default(),
            false => self.get(&table::LOG_LEVEL),
        };
        let format = match lambda && self.raw(&table::LOG_FORMAT.info).is_none() {
            true => self.get(&table::LAMBDA_LOG_FORMAT).unwrap_or_default(),
            false => self.get(&table::LOG_FORMAT),
        };
        (level, format)
    }

    /// The file given (`-c`, `XRAY_DAEMON_CONFIG_FILE`), checked strictly as upstream does (unknown
    /// keys fail), else `default_file` when it exists, checked leniently.
    fn read_file(&mut self, default_file: &Path) {
        let (path, strict) = match self.given(&table::CONFIG_FILE) {
            Some((_, path)) => (path, true),
            None if default_file.is_file() => (default_file.to_owned(), false),
            None => return,
        };
        match file::load(&path, strict) {
            Ok(file) => self.file = file,
            Err(e) => self.problems.push(e.into()),
        }
        self.file_path = Some(path);
    }
}

/// The environment with the daemon's variables (`XRAY_DAEMON_*`) named in capitals: the loader
/// has always taken `XRAY_DAEMON_log_level` for `XRAY_DAEMON_LOG_LEVEL` (envy, which it once
/// used, compares the part after the prefix in any case). One variable set under two spellings
/// is a problem.
fn variables<'a>(env: &'a HashMap<String, String>, problems: &mut Vec<ConfigError>) -> HashMap<String, &'a String> {
    let mut names: Vec<&String> = env.keys().collect();
    names.sort();
    let mut seen: HashMap<String, &String> = HashMap::new();
    for name in names {
        let key = match name.strip_prefix(OWN_PREFIX) {
            Some(rest) => format!("{OWN_PREFIX}{}", rest.to_ascii_uppercase()),
            None => name.clone(),
        };
        if let Some(first) = seen.insert(key, name) {
            problems.push(parse::invalid(name, &env[name], format!("{first} is set too; set one of them")));
        }
    }
    seen.into_iter().map(|(key, name)| (key, &env[name])).collect()
}

const OWN_PREFIX: &str = "XRAY_DAEMON_";

impl Config {
    /// Builds the configuration from flags, environment variables and the config file
    /// (`-c`, `XRAY_DAEMON_CONFIG_FILE`, or upstream's default path when it exists).
    pub fn load(flags: &Flags, env: &HashMap<String, String>) -> Result<Config, ConfigError> {
        Self::load_with(flags, env, Path::new(file::DEFAULT_PATH))
    }

    /// As [`Config::load`], with the auto-discovered file's path given (for tests).
    pub fn load_with(flags: &Flags, env: &HashMap<String, String>, default_file: &Path) -> Result<Config, ConfigError> {
        let mut problems = vec![];
        let env = variables(env, &mut problems);
        let mut r = Reader { flags: flags.clone(), env, file: FileConfig::default(), file_path: None, problems };
        let lambda = r.lambda();
        r.read_file(default_file);
        let udp_address = r.get(&table::UDP_ADDRESS);
        let tcp_address = r.get(&table::TCP_ADDRESS);
        // Explicit regions only; the ECS metadata file, IMDS and the profile are asked at start.
        let region = r.given(&table::REGION).map(|(source, region)| (region, source));
        let local_mode = r.get(&table::LOCAL_MODE);
        let (buffer_memory, buffer_memory_source) = match r.given(&table::BUFFER_MEMORY) {
            Some((source, bytes)) => (bytes, source),
            None if lambda.is_some() => sizing::lambda_buffer_memory(r.get(&table::FUNCTION_MEMORY)),
            None => sizing::default_buffer_memory(),
        };
        let receive_buffer = r.get(&table::RECEIVE_BUFFER);
        let concurrency = r.get(&table::CONCURRENCY);
        let endpoint = r.get(&table::ENDPOINT);
        let sdk_endpoint = r.get(&table::SDK_ENDPOINT);
        // Off by default in Lambda: a 60 s timer means nothing in a sandbox that freezes.
        let telemetry = r.given(&table::TELEMETRY).map_or(lambda.is_none(), |(_, on)| on);
        let ecs_metadata_file = if r.get(&table::ECS_METADATA) { r.get(&table::ECS_METADATA_FILE) } else { None };
        let (log_level, log_format) = r.log_choice(lambda.is_some());
        // Both OTLP listeners are on in Lambda, at the SDKs' default endpoints.
        let otlp_address = r.listener(&table::OTLP_ADDRESS, lambda.is_some(), values::LAMBDA_OTLP_ADDRESS);
        let grpc_default = values::LAMBDA_OTLP_GRPC_ADDRESS;
        let otlp_grpc_address = r.listener(&table::OTLP_GRPC_ADDRESS, lambda.is_some(), grpc_default);
        let config = Config {
            mode: if lambda.is_some() { Mode::Lambda } else { Mode::Sidecar },
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
            shutdown_timeout: r.get(&table::SHUTDOWN_TIMEOUT),
            upload_timeout: r.get(&table::UPLOAD_TIMEOUT),
            log_level,
            log_format,
            log_file: r.get(&table::LOG_FILE),
            log_rotation: r.get(&table::LOG_ROTATION),
            resource_arn: r.get(&table::RESOURCE_ARN),
            role_arn: r.get(&table::ROLE_ARN),
            proxy_address: r.get(&table::PROXY_ADDRESS),
            no_verify_ssl: r.get(&table::NO_VERIFY_SSL),
            proxy_allow_all: r.get(&table::PROXY_ALLOW_ALL),
            proxy_max_body: r.get(&table::PROXY_MAX_BODY),
            proxy_timeout: r.get(&table::PROXY_TIMEOUT),
            proxy_client_timeout: r.get(&table::PROXY_CLIENT_TIMEOUT),
            max_connections: r.get(&table::MAX_CONNECTIONS),
            otlp_endpoint: r.get(&table::OTLP_ENDPOINT),
            otlp_address,
            otlp_grpc_address,
            otlp_gzip: r.get(&table::OTLP_GZIP),
            span_upload: r.get(&table::SPAN_UPLOAD),
            indexed_attributes: r.get(&table::INDEXED_ATTRIBUTES),
            index_all_attributes: r.get(&table::INDEX_ALL_ATTRIBUTES),
            spool_dir: r.get(&table::SPOOL_DIR),
            spool_max_bytes: r.get(&table::SPOOL_MAX),
            spool_interval: r.get(&table::SPOOL_INTERVAL),
            spool_replay_rate: r.get(&table::SPOOL_REPLAY_RATE),
            ecs_metadata_file,
            hostname: r.get(&table::HOSTNAME),
            instance_id: r.get(&table::INSTANCE_ID),
            default_region: r.get(&table::DEFAULT_REGION),
            imds_endpoint: r.get(&table::IMDS_ENDPOINT),
            imds_disabled: r.get(&table::IMDS_DISABLED),
            config_file: r.file_path,
        };
        ConfigError::from_problems(r.problems).map(|()| config)
    }
}

/// The log level and format to report with, even when the configuration cannot be used: each
/// from its setting when that setting is good, else its default. So a broken configuration is
/// reported in the format asked for.
pub fn log_choice(flags: &Flags, env: &HashMap<String, String>) -> (LogLevel, LogFormat) {
    let mut problems = vec![];
    let env = variables(env, &mut problems);
    let mut r = Reader { flags: flags.clone(), env, file: FileConfig::default(), file_path: None, problems };
    let lambda = r.lambda().is_some();
    r.read_file(Path::new(file::DEFAULT_PATH));
    r.log_choice(lambda)
}

/// `AWS_LAMBDA_RUNTIME_API` when the daemon runs as a Lambda extension: Lambda set it and
/// `XRAY_DAEMON_MODE` is not `sidecar`. Decided before the rest of the configuration is read,
/// so that a bad setting can be reported to Lambda.
pub fn lambda_runtime_api(env: &HashMap<String, String>) -> Option<String> {
    let api = env.get(table::LAMBDA_RUNTIME_API.info.var).map(|v| v.trim()).filter(|v| !v.is_empty())?;
    let sidecar = env.get(table::MODE.info.var).is_some_and(|m| m.trim().eq_ignore_ascii_case("sidecar"));
    (!sidecar).then(|| api.to_owned())
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

        for (v, want) in [
            ("next-invoke", LambdaFlush::NextInvoke),
            ("BACKGROUND", LambdaFlush::Background),
            (" end ", LambdaFlush::End),
        ] {
            assert_eq!(
                load(Flags::default(), &[api, ("XRAY_DAEMON_LAMBDA_FLUSH", v)]).unwrap().lambda.unwrap().flush,
                want
            );
        }
        let lmi =
            [api, ("AWS_LAMBDA_INITIALIZATION_TYPE", "lambda-managed-instances"), ("XRAY_DAEMON_LAMBDA_PROXY", "true")];
        let l = load(Flags::default(), &lmi).unwrap().lambda.unwrap();
        assert!(l.managed_instances && l.proxy);
    }

    /// Off in the sidecar unless set; in Lambda both at the SDKs' default endpoints, and off when
    /// set to the empty string.
    #[test]
    fn the_otlp_listeners_are_on_in_lambda_unless_set_empty() {
        let api = ("AWS_LAMBDA_RUNTIME_API", "127.0.0.1:9001");
        let listeners = |pairs: &[(&str, &str)]| {
            let c = load(Flags::default(), pairs).unwrap();
            (c.otlp_address, c.otlp_grpc_address)
        };
        assert_eq!(listeners(&[]), (None, None));
        let set = [("XRAY_DAEMON_OTLP_ADDRESS", "0.0.0.0:4318"), ("XRAY_DAEMON_OTLP_GRPC_ADDRESS", "0.0.0.0:4317")];
        assert_eq!(listeners(&set), (Some("0.0.0.0:4318".into()), Some("0.0.0.0:4317".into())));
        assert_eq!(listeners(&[("XRAY_DAEMON_OTLP_GRPC_ADDRESS", "")]), (None, None));

        assert_eq!(listeners(&[api]), (Some("127.0.0.1:4318".into()), Some("127.0.0.1:4317".into())));
        let off = listeners(&[api, ("XRAY_DAEMON_OTLP_GRPC_ADDRESS", ""), ("XRAY_DAEMON_OTLP_ADDRESS", " ")]);
        assert_eq!(off, (None, None));
        let moved = listeners(&[api, ("XRAY_DAEMON_OTLP_GRPC_ADDRESS", "127.0.0.1:14317")]);
        assert_eq!(moved, (Some("127.0.0.1:4318".into()), Some("127.0.0.1:14317".into())));
        // In lower case after the prefix, as every variable of the daemon's.
        assert_eq!(listeners(&[api, ("XRAY_DAEMON_otlp_grpc_address", "")]).1, None);

        let e = load(Flags::default(), &[("XRAY_DAEMON_OTLP_GRPC_ADDRESS", "4317")]).unwrap_err().to_string();
        assert!(e.starts_with("invalid value \"4317\" for XRAY_DAEMON_OTLP_GRPC_ADDRESS"), "{e}");
    }

    #[test]
    fn lambda_mode_takes_lambdas_log_settings_unless_the_daemons_own_say_otherwise() {
        let api = ("AWS_LAMBDA_RUNTIME_API", "127.0.0.1:9001");
        let c = load(Flags::default(), &[api, ("AWS_LAMBDA_LOG_LEVEL", "FATAL"), ("AWS_LAMBDA_LOG_FORMAT", "JSON")]);
        assert_eq!(c.map(|c| (c.log_level, c.log_format)), Ok((LogLevel::Error, LogFormat::Json)));
        for (word, level) in [
            ("TRACE", LogLevel::Dev),
            ("DEBUG", LogLevel::Debug),
            ("INFO", LogLevel::Info),
            ("WARN", LogLevel::Warn),
            ("ERROR", LogLevel::Error),
            ("loud", LogLevel::Info),
        ] {
            let c = load(Flags::default(), &[api, ("AWS_LAMBDA_LOG_LEVEL", word), ("AWS_LAMBDA_LOG_FORMAT", "Text")]);
            assert_eq!(c.map(|c| (c.log_level, c.log_format)), Ok((level, LogFormat::Text)), "{word}");
        }
        let lambda = [api, ("AWS_LAMBDA_LOG_LEVEL", "ERROR"), ("AWS_LAMBDA_LOG_FORMAT", "JSON")];
        let own = Flags { log_level: Some("debug".into()), ..Default::default() };
        let c = load(own, &[lambda[0], lambda[1], lambda[2], ("XRAY_DAEMON_LOG_FORMAT", "text")]).unwrap();
        assert_eq!((c.log_level, c.log_format), (LogLevel::Debug, LogFormat::Text), "the daemon's own settings win");
        let c = load(Flags::default(), &lambda[1..]).unwrap();
        assert_eq!((c.log_level, c.log_format), (LogLevel::Info, LogFormat::Text), "only read in Lambda mode");
    }

    /// A configuration that cannot be used is still reported in the format asked for.
    #[test]
    fn the_log_choice_survives_a_broken_configuration() {
        let broken = Flags { bind: Some("127.0.0.1".into()), log_level: Some("loud".into()), ..Default::default() };
        let vars = env(&[("XRAY_DAEMON_LOG_FORMAT", "json"), ("XRAY_DAEMON_CONCURRENCY", "0")]);
        assert!(Config::load(&broken, &vars).is_err());
        assert_eq!(log_choice(&broken, &vars), (LogLevel::Info, LogFormat::Json));
        let vars = env(&[("XRAY_DAEMON_LOG_FORMAT", "xml"), ("XRAY_DAEMON_LOG_LEVEL", "warn")]);
        assert_eq!(log_choice(&Flags::default(), &vars), (LogLevel::Warn, LogFormat::Text));
        let api = ("AWS_LAMBDA_RUNTIME_API", "127.0.0.1:9001");
        let vars = env(&[api, ("AWS_LAMBDA_LOG_FORMAT", "JSON"), ("XRAY_DAEMON_LAMBDA_FLUSH", "never")]);
        assert_eq!(log_choice(&Flags::default(), &vars), (LogLevel::Info, LogFormat::Json));
    }

    #[test]
    fn bad_lambda_settings_name_their_variable() {
        let api = ("AWS_LAMBDA_RUNTIME_API", "127.0.0.1:9001");
        for (pairs, needle) in [
            (vec![("XRAY_DAEMON_MODE", "lambda")], "XRAY_DAEMON_MODE: Lambda mode needs AWS_LAMBDA_RUNTIME_API"),
            (vec![("XRAY_DAEMON_MODE", "serverless")], "XRAY_DAEMON_MODE: expected lambda, sidecar or auto"),
            (
                vec![api, ("XRAY_DAEMON_LAMBDA_FLUSH", "sometimes")],
                "invalid value \"sometimes\" for XRAY_DAEMON_LAMBDA_FLUSH: expected end, next-invoke or background",
            ),
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
        let flags = Flags {
            bind: Some("127.0.0.1:3000".into()),
            buffer_memory: Some(8),
            log_level: Some("warn".into()),
            region: Some("eu-west-1".into()),
            ..Default::default()
        };
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
        assert_eq!(
            (c.udp_address.as_str(), c.buffer_memory, c.log_level),
            ("127.0.0.1:4000", 16 << 20, LogLevel::Debug)
        );
        assert_eq!(c.region.unwrap().0, "ap-south-1");
    }

    #[test]
    fn region_sources_in_order() {
        let e = env(&[("AWS_DEFAULT_REGION", "us-west-2")]);
        let c = Config::load_with(&Flags::default(), &e, Path::new("/nonexistent")).unwrap();
        assert_eq!(
            (c.region, c.default_region.as_deref()),
            (None, Some("us-west-2")),
            "looked up at start, AWS_DEFAULT_REGION last"
        );
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
        assert_eq!(
            (c.resource_arn.as_str(), c.hostname.as_str(), c.instance_id.as_str()),
            ("arn:aws:ec2:x", "h", "i-1")
        );
    }

    /// As when envy read them: the part after `XRAY_DAEMON_` in any case, but only once.
    #[test]
    fn the_daemons_variable_names_are_read_in_any_case_after_the_prefix() {
        let vars = [("XRAY_DAEMON_log_Level", "debug"), ("xray_daemon_CONCURRENCY", "2")];
        let c = load(Flags::default(), &vars).unwrap();
        assert_eq!((c.log_level, c.concurrency), (LogLevel::Debug, 8), "the prefix itself is in capitals");
        let e = load(Flags::default(), &[("XRAY_DAEMON_log_level", "loud")]).unwrap_err().to_string();
        assert!(e.starts_with("invalid value \"loud\" for XRAY_DAEMON_LOG_LEVEL: "), "{e}");
        let twice = [("XRAY_DAEMON_LOG_LEVEL", "debug"), ("XRAY_DAEMON_log_level", "warn")];
        let e = load(Flags::default(), &twice).unwrap_err().to_string();
        let want = "invalid value \"warn\" for XRAY_DAEMON_log_level: XRAY_DAEMON_LOG_LEVEL is set too; \
            set one of them";
        assert_eq!(e, want);
    }

    #[test]
    fn proxy_settings_and_endpoint_resolution() {
        let c = load(Flags::default(), &[]).unwrap();
        assert_eq!((c.endpoint.as_deref(), c.sdk_endpoint.as_deref()), (None, None));
        assert!(!c.proxy_allow_all);
        assert_eq!(
            (c.proxy_max_body, c.proxy_timeout, c.proxy_client_timeout),
            (1 << 20, Duration::from_secs(10), Duration::from_secs(10))
        );
        assert_eq!(c.max_connections, 512);
        let c = load(
            Flags::default(),
            &[("AWS_ENDPOINT_URL", "http://127.0.0.1:1/"), ("AWS_ENDPOINT_URL_XRAY", "http://127.0.0.1:2/")],
        )
        .unwrap();
        assert_eq!(
            c.sdk_endpoint.as_deref(),
            Some("http://127.0.0.1:2"),
            "AWS_ENDPOINT_URL_XRAY beats AWS_ENDPOINT_URL"
        );
        let c = load(
            Flags::default(),
            &[("AWS_ENDPOINT_URL_XRAY", "http://127.0.0.1:2"), ("XRAY_DAEMON_ENDPOINT", "http://127.0.0.1:3")],
        )
        .unwrap();
        assert_eq!(
            (c.endpoint.as_deref(), c.sdk_endpoint.as_deref()),
            (Some("http://127.0.0.1:3"), Some("http://127.0.0.1:2"))
        );
        let c = load(
            Flags::default(),
            &[
                ("XRAY_DAEMON_PROXY_ALLOW_ALL", "true"),
                ("XRAY_DAEMON_PROXY_MAX_BODY_KB", "64"),
                ("XRAY_DAEMON_PROXY_TIMEOUT", "3s"),
                ("XRAY_DAEMON_PROXY_CLIENT_TIMEOUT", "500ms"),
                ("XRAY_DAEMON_MAX_CONNECTIONS", "64"),
            ],
        )
        .unwrap();
        assert!(c.proxy_allow_all);
        assert_eq!(
            (c.proxy_max_body, c.proxy_timeout, c.proxy_client_timeout),
            (64 << 10, Duration::from_secs(3), Duration::from_millis(500))
        );
        assert_eq!(c.max_connections, 64);
        for (k, v) in [
            ("XRAY_DAEMON_PROXY_MAX_BODY_KB", "0"),
            ("XRAY_DAEMON_PROXY_TIMEOUT", "0"),
            ("XRAY_DAEMON_MAX_CONNECTIONS", "0"),
            ("XRAY_DAEMON_MAX_CONNECTIONS", "many"),
            ("XRAY_DAEMON_PROXY_ALLOW_ALL", "sure"),
            ("AWS_ENDPOINT_URL_XRAY", "not a url"),
        ] {
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
        assert_eq!(
            (c.log_rotation, c.log_level, c.log_file.as_deref()),
            (false, LogLevel::Warn, Some(Path::new("/tmp/xd.log")))
        );
        assert!(c.local_mode && c.no_verify_ssl);
        assert_eq!(
            (c.resource_arn.as_str(), c.role_arn.as_deref(), c.proxy_address.as_deref()),
            ("arn:file", Some("arn:aws:iam::1:role/file"), Some("http://127.0.0.1:3128"))
        );

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
        assert_eq!(
            (c.log_rotation, c.log_level, c.log_file.as_deref()),
            (true, LogLevel::Error, Some(Path::new("/tmp/env.log")))
        );
        assert!(!c.local_mode && !c.no_verify_ssl);
        assert_eq!(
            (c.resource_arn.as_str(), c.role_arn.as_deref(), c.proxy_address.as_deref()),
            ("arn:env", Some("arn:aws:iam::1:role/env"), Some("http://127.0.0.1:3129"))
        );

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
        assert_eq!(
            (c.resource_arn.as_str(), c.role_arn.as_deref(), c.proxy_address.as_deref()),
            ("arn:flag", Some("arn:aws:iam::1:role/flag"), Some("http://127.0.0.1:3130"))
        );
    }

    #[test]
    fn the_default_file_is_found_and_checked_leniently() {
        let path = write_file("discovered.yaml", "Version: 2\nRegion: ap-east-1\nSomethingNew: 1\n");
        let c = Config::load_with(&Flags::default(), &env(&[]), &path).unwrap();
        assert_eq!(c.region.unwrap().0, "ap-east-1");
        // The same file given with -c is checked strictly.
        let flags = Flags { config: Some(path.display().to_string()), ..Default::default() };
        let e = Config::load_with(&flags, &env(&[]), Path::new("/nonexistent")).unwrap_err();
        assert_eq!(
            e.to_string(),
            "SomethingNew flag is invalid. Please refer to AWS X-Ray Documentation for more information."
        );
        // XRAY_DAEMON_CONFIG_FILE works like -c.
        let e = Config::load_with(
            &Flags::default(),
            &env(&[("XRAY_DAEMON_CONFIG_FILE", &path.display().to_string())]),
            Path::new("/nonexistent"),
        )
        .unwrap_err();
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

    /// Every bad value is reported in one error, a line each, in the words it gets alone.
    #[test]
    fn every_bad_value_is_reported_at_once() {
        let flags = Flags { bind: Some("127.0.0.1".into()), log_level: Some("loud".into()), ..Default::default() };
        let vars = [
            ("XRAY_DAEMON_CONCURRENCY", "0"),
            ("XRAY_DAEMON_TELEMETRY", "nope"),
            ("AWS_ENDPOINT_URL_XRAY", "not a url"),
            ("XRAY_DAEMON_LOG_FORMAT", "text"),
        ];
        let e = load(flags, &vars).unwrap_err();
        let ConfigError::Several(problems) = &e else { panic!("{e:?}") };
        let text = e.to_string();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "5 problems with the configuration:", "{text}");
        let named = [
            "-b/--bind",
            "XRAY_DAEMON_CONCURRENCY",
            "AWS_ENDPOINT_URL_XRAY",
            "XRAY_DAEMON_TELEMETRY",
            "-l/--log-level",
        ];
        assert_eq!(lines.len(), 1 + named.len(), "{text}");
        for ((line, problem), source) in lines[1..].iter().zip(problems).zip(named) {
            assert!(line.starts_with("  invalid value ") && line.contains(source), "{source}: {line}");
            assert_eq!(*line, format!("  {problem}"));
        }
        // Each alone gives its one line, as it always did.
        let alone = load(Flags { log_level: Some("loud".into()), ..Default::default() }, &[]).unwrap_err();
        assert_eq!(format!("  {alone}"), lines[5]);
        let alone = load(Flags::default(), &vars[..1]).unwrap_err();
        assert_eq!(format!("  {alone}"), lines[2]);

        // A file that cannot be used is one problem; the flags and variables are still checked.
        let config = Some("/nonexistent/cfg.yaml".to_owned());
        let flags = Flags { config, buffer_memory: Some(2), ..Default::default() };
        let e = load(flags, &[("XRAY_DAEMON_MODE", " Lambda ")]).unwrap_err().to_string();
        let lines: Vec<&str> = e.lines().collect();
        assert_eq!(lines.len(), 4, "{e}");
        assert_eq!(lines[0], "3 problems with the configuration:");
        let mode = "  invalid value \"Lambda\" for XRAY_DAEMON_MODE: Lambda mode needs AWS_LAMBDA_RUNTIME_API, \
            which Lambda sets; it is not set";
        assert_eq!(lines[1], mode);
        assert!(lines[2].starts_with("  Error occur when using config flag: open /nonexistent/cfg.yaml: "), "{e}");
        let buffer = lines[3];
        assert!(buffer.starts_with("  Not enough Buffers Memory Allocated.") && buffer.contains("-m/--buffer-memory"));
    }

    #[test]
    fn bad_values_name_their_source() {
        let err = |flags: Flags, vars: &[(&str, &str)]| load(flags, vars).unwrap_err().to_string();
        let e = err(Flags { bind: Some("127.0.0.1".into()), ..Default::default() }, &[]);
        assert_eq!(
            e,
            "invalid value \"127.0.0.1\" for -b/--bind: address has no port (expected HOST:PORT, e.g. 127.0.0.1:2000)"
        );
        assert!(err(Flags::default(), &[("XRAY_DAEMON_UDP_ADDRESS", "::1:2000")]).contains("XRAY_DAEMON_UDP_ADDRESS"));
        assert!(
            err(Flags::default(), &[("XRAY_DAEMON_TCP_ADDRESS", "localhost:http")]).contains("XRAY_DAEMON_TCP_ADDRESS")
        );
        assert_eq!(
            err(Flags { buffer_memory: Some(2), ..Default::default() }, &[]),
            "Not enough Buffers Memory Allocated. Min Buffers Memory required: 3 MB. (-m/--buffer-memory is 2)"
        );
        assert!(err(Flags::default(), &[("XRAY_DAEMON_BUFFER_MEMORY_MB", "lots")])
            .starts_with("invalid value \"lots\" for XRAY_DAEMON_BUFFER_MEMORY_MB"));
        assert!(err(Flags { log_level: Some("loud".into()), ..Default::default() }, &[]).contains("-l/--log-level"));
        assert!(err(Flags::default(), &[("XRAY_DAEMON_TELEMETRY", "nope")]).contains("XRAY_DAEMON_TELEMETRY"));
        assert!(
            err(Flags::default(), &[("XRAY_DAEMON_SHUTDOWN_TIMEOUT", "soon")]).contains("XRAY_DAEMON_SHUTDOWN_TIMEOUT")
        );
        assert!(err(Flags::default(), &[("XRAY_DAEMON_CONCURRENCY", "0")]).contains("XRAY_DAEMON_CONCURRENCY"));
        assert!(err(Flags::default(), &[("XRAY_DAEMON_ENDPOINT", "xray.local")]).contains("XRAY_DAEMON_ENDPOINT"));
        assert!(err(Flags::default(), &[("XRAY_DAEMON_LOG_FORMAT", "xml")]).contains("XRAY_DAEMON_LOG_FORMAT"));
    }
}
