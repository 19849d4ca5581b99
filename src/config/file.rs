//! Upstream's YAML configuration file (`-c FILE`, or `/etc/amazon/xray/cfg.yaml` when found).
//!
//! Users migrating from the upstream daemon mount their `cfg.yaml` unchanged, so the rules and
//! the error messages are upstream's: `Version` must be 1 or 2 (a Version 1 file's
//! `Socket.TCPAddress` is ignored); a file given with `-c` may only use known keys (compared
//! case-insensitively), and retired keys get upstream's migration messages; a value of the wrong
//! type fails with the key and the line. Empty values (`""`, `0`) mean "not set", as upstream's
//! merge does. Errors exit 1.

use serde::Deserialize;
use serde_yaml_ng::Value;
use std::path::Path;

/// Where upstream looks for a file when `-c` is not given.
pub(crate) const DEFAULT_PATH: &str = "/etc/amazon/xray/cfg.yaml";

const DOCS: &str = "Please refer to AWS X-Ray Documentation for more information.";
const MIGRATE: &str = "Use X-Ray Daemon Config Migration Script to update the config file.";

/// The keys upstream knows, flattened as `Parent.Key`.
pub(crate) const KNOWN_KEYS: [&str; 20] = [
    "TotalBufferSizeMB",
    "Concurrency",
    "Endpoint",
    "Region",
    "Socket.UDPAddress",
    "Socket.TCPAddress",
    "ProxyServer.IdleConnTimeout",
    "ProxyServer.MaxIdleConnsPerHost",
    "ProxyServer.MaxIdleConns",
    "Logging.LogRotation",
    "Logging.LogLevel",
    "Logging.LogPath",
    "LocalMode",
    "ResourceARN",
    "RoleARN",
    "NoVerifySSL",
    "ProxyAddress",
    "Version",
    // The daemon's own: the disk spool.
    "Spool.Directory",
    "Spool.MaxSizeMB",
];

/// Keys from the Version 0 era with nothing to replace them.
const RETIRED: [&str; 5] =
    ["Profile.CPU", "Profile.Memory", "Socket.BufferSizeKB", "Logging.LogFormat", "Processor.BatchProcessorQueueSize"];
/// Keys the migration script rewrites.
const MIGRATED: [&str; 5] =
    ["LogRotation", "Processor.Region", "Processor.Endpoint", "Processor.Routine", "MemoryLimit"];

/// A file that cannot be used, worded as upstream words it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FileError {
    #[error("Error occur when using config flag: {0}")]
    Unusable(String),
    #[error("Config Version is missing. {MIGRATE} {DOCS}")]
    VersionMissing,
    #[error("Config Version Setting is not correct. {MIGRATE} {DOCS}")]
    VersionInvalid,
    #[error("{0} flag is not supported any more. {DOCS}")]
    Retired(String),
    #[error("{0} flag is not supported. {MIGRATE} {DOCS}")]
    Migrate(String),
    #[error("{0} flag is invalid. {DOCS}")]
    Unknown(String),
}

/// What the file sets. `None`: not set (absent, empty or zero).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FileConfig {
    pub(crate) total_buffer_size_mb: Option<i64>,
    pub(crate) concurrency: Option<i64>,
    pub(crate) region: Option<String>,
    pub(crate) endpoint: Option<String>,
    pub(crate) udp_address: Option<String>,
    pub(crate) tcp_address: Option<String>,
    pub(crate) log_rotation: Option<bool>,
    pub(crate) log_level: Option<String>,
    pub(crate) log_path: Option<String>,
    pub(crate) local_mode: Option<bool>,
    pub(crate) resource_arn: Option<String>,
    pub(crate) role_arn: Option<String>,
    pub(crate) no_verify_ssl: Option<bool>,
    pub(crate) proxy_address: Option<String>,
    pub(crate) version: i64,
    pub(crate) spool_directory: Option<String>,
    pub(crate) spool_max_size_mb: Option<i64>,
}

/// A key of the file as the settings table names it, and how to read its value from a
/// [`FileConfig`] as text.
pub(crate) struct FileKey {
    /// `Key` or `Parent.Key`, spelled as upstream's documentation spells it.
    pub(crate) key: &'static str,
    pub(crate) value: fn(&FileConfig) -> Option<String>,
}

/// Reads and checks a file. `strict`: reject unknown keys (upstream does so only for `-c`).
pub(crate) fn load(path: &Path, strict: bool) -> Result<FileConfig, FileError> {
    let text =
        std::fs::read_to_string(path).map_err(|e| FileError::Unusable(format!("open {}: {e}", path.display())))?;
    parse(&text, strict)
}

/// Checks file contents.
pub fn parse(text: &str, strict: bool) -> Result<FileConfig, FileError> {
    let value: Value = serde_yaml_ng::from_str(text).map_err(|e| FileError::Unusable(e.to_string()))?;
    let keys = flatten(&value).map_err(FileError::Unusable)?;
    if strict {
        for key in &keys {
            check_key(key)?;
        }
    }
    let typed: Typed = serde_yaml_ng::from_str(text).map_err(|e| FileError::Unusable(e.to_string()))?;
    let version = match typed.version {
        None => return Err(FileError::VersionMissing),
        Some(v @ (1 | 2)) => v,
        Some(_) => return Err(FileError::VersionInvalid),
    };
    let text = |s: Option<String>| s.map(|s| s.trim().to_owned()).filter(|s| !s.is_empty());
    let number = |n: Option<i64>| n.filter(|&n| n != 0);
    let socket = typed.socket.unwrap_or_default();
    let logging = typed.logging.unwrap_or_default();
    let spool = typed.spool.unwrap_or_default();
    Ok(FileConfig {
        total_buffer_size_mb: number(typed.total_buffer_size_mb),
        concurrency: number(typed.concurrency),
        region: text(typed.region),
        endpoint: text(typed.endpoint),
        udp_address: text(socket.udp_address),
        // Version 1 files cannot set the TCP address; upstream uses the default.
        tcp_address: if version >= 2 { text(socket.tcp_address) } else { None },
        log_rotation: logging.log_rotation,
        log_level: text(logging.log_level),
        log_path: text(logging.log_path),
        local_mode: typed.local_mode,
        resource_arn: text(typed.resource_arn),
        role_arn: text(typed.role_arn),
        no_verify_ssl: typed.no_verify_ssl,
        proxy_address: text(typed.proxy_address),
        version,
        spool_directory: text(spool.directory),
        spool_max_size_mb: number(spool.max_size_mb),
    })
}

fn check_key(key: &str) -> Result<(), FileError> {
    let is = |list: &[&str]| list.iter().any(|k| k.eq_ignore_ascii_case(key));
    if is(&KNOWN_KEYS) {
        Ok(())
    } else if is(&RETIRED) {
        Err(FileError::Retired(key.to_owned()))
    } else if is(&MIGRATED) {
        Err(FileError::Migrate(key.to_owned()))
    } else {
        Err(FileError::Unknown(key.to_owned()))
    }
}

/// `Key` and `Parent.Key` names, in file order. An empty file has none.
fn flatten(value: &Value) -> Result<Vec<String>, String> {
    let map = match value {
        Value::Null => return Ok(vec![]),
        Value::Mapping(m) => m,
        _ => return Err("the file is not a YAML mapping of keys to values".into()),
    };
    let mut keys = Vec::new();
    for (k, v) in map {
        let k = key_name(k)?;
        match v {
            Value::Mapping(inner) => {
                for (ik, _) in inner {
                    keys.push(format!("{k}.{}", key_name(ik)?));
                }
            }
            _ => keys.push(k),
        }
    }
    Ok(keys)
}

fn key_name(k: &Value) -> Result<String, String> {
    match k {
        Value::String(s) => Ok(s.clone()),
        Value::Number(n) => Ok(n.to_string()),
        Value::Bool(b) => Ok(b.to_string()),
        other => Err(format!("unsupported key {other:?}")),
    }
}

#[derive(Debug, Default, Deserialize)]
struct Typed {
    #[serde(rename = "TotalBufferSizeMB")]
    total_buffer_size_mb: Option<i64>,
    #[serde(rename = "Concurrency")]
    concurrency: Option<i64>,
    #[serde(rename = "Region")]
    region: Option<String>,
    #[serde(rename = "Endpoint")]
    endpoint: Option<String>,
    #[serde(rename = "Socket")]
    socket: Option<Socket>,
    #[serde(rename = "Logging")]
    logging: Option<Logging>,
    #[serde(rename = "LocalMode")]
    local_mode: Option<bool>,
    #[serde(rename = "ResourceARN")]
    resource_arn: Option<String>,
    #[serde(rename = "RoleARN")]
    role_arn: Option<String>,
    #[serde(rename = "NoVerifySSL")]
    no_verify_ssl: Option<bool>,
    #[serde(rename = "ProxyAddress")]
    proxy_address: Option<String>,
    #[serde(rename = "Version")]
    version: Option<i64>,
    #[serde(rename = "Spool")]
    spool: Option<SpoolSection>,
}

#[derive(Debug, Default, Deserialize)]
struct SpoolSection {
    #[serde(rename = "Directory")]
    directory: Option<String>,
    #[serde(rename = "MaxSizeMB")]
    max_size_mb: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
struct Socket {
    #[serde(rename = "UDPAddress")]
    udp_address: Option<String>,
    #[serde(rename = "TCPAddress")]
    tcp_address: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct Logging {
    #[serde(rename = "LogRotation")]
    log_rotation: Option<bool>,
    #[serde(rename = "LogLevel")]
    log_level: Option<String>,
    #[serde(rename = "LogPath")]
    log_path: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Upstream's sample file (pkg/cfg.yaml), every key set.
    const FULL: &str = r#"
TotalBufferSizeMB: 24
Concurrency: 16
Region: "us-west-2"
Endpoint: "https://xray.us-west-2.amazonaws.com"
Socket:
  UDPAddress: "127.0.0.1:3000"
  TCPAddress: "127.0.0.1:3001"
ProxyServer:
  IdleConnTimeout: 30
  MaxIdleConnsPerHost: 2
  MaxIdleConns: 0
Logging:
  LogRotation: false
  LogLevel: "debug"
  LogPath: "/var/log/xray/xray.log"
LocalMode: true
ResourceARN: "arn:aws:ec2:us-west-2:123456789012:instance/i-1"
RoleARN: "arn:aws:iam::123456789012:role/xray"
NoVerifySSL: true
ProxyAddress: "http://proxy.internal:3128"
Version: 2
"#;

    #[test]
    fn every_key_is_read() {
        let c = parse(FULL, true).unwrap();
        assert_eq!(
            c,
            FileConfig {
                total_buffer_size_mb: Some(24),
                concurrency: Some(16),
                region: Some("us-west-2".into()),
                endpoint: Some("https://xray.us-west-2.amazonaws.com".into()),
                udp_address: Some("127.0.0.1:3000".into()),
                tcp_address: Some("127.0.0.1:3001".into()),
                log_rotation: Some(false),
                log_level: Some("debug".into()),
                log_path: Some("/var/log/xray/xray.log".into()),
                local_mode: Some(true),
                resource_arn: Some("arn:aws:ec2:us-west-2:123456789012:instance/i-1".into()),
                role_arn: Some("arn:aws:iam::123456789012:role/xray".into()),
                no_verify_ssl: Some(true),
                proxy_address: Some("http://proxy.internal:3128".into()),
                version: 2,
                spool_directory: None,
                spool_max_size_mb: None,
            }
        );
    }

    #[test]
    fn the_spool_keys_are_read() {
        let c = parse("Version: 2\nSpool:\n  Directory: /var/lib/xray/spool\n  MaxSizeMB: 64\n", true).unwrap();
        assert_eq!(c.spool_directory.as_deref(), Some("/var/lib/xray/spool"));
        assert_eq!(c.spool_max_size_mb, Some(64));
        assert_eq!(parse("Version: 2\nSpool:\n  Dir: /x\n", true), Err(FileError::Unknown("Spool.Dir".into())));
    }

    #[test]
    fn version_1_ignores_the_tcp_address_and_zero_values_mean_unset() {
        let c = parse("Version: 1\nSocket:\n  UDPAddress: \"127.0.0.1:3000\"\n  TCPAddress: \"0.0.0.0:9\"\nConcurrency: 0\nRegion: \"\"\n", true).unwrap();
        assert_eq!(
            (c.version, c.udp_address.as_deref(), c.tcp_address, c.concurrency, c.region),
            (1, Some("127.0.0.1:3000"), None, None, None)
        );
    }

    #[test]
    fn version_rules_with_upstream_messages() {
        let missing = parse("Logging:\n  LogLevel: debug\n", false).unwrap_err();
        assert_eq!(missing, FileError::VersionMissing);
        assert_eq!(missing.to_string(), "Config Version is missing. Use X-Ray Daemon Config Migration Script to update the config file. Please refer to AWS X-Ray Documentation for more information.");
        assert_eq!(parse("Version: 3\n", false).unwrap_err(), FileError::VersionInvalid);
        assert!(parse("Version: 3\n", false)
            .unwrap_err()
            .to_string()
            .starts_with("Config Version Setting is not correct."));
        assert_eq!(parse("", false).unwrap_err(), FileError::VersionMissing);
    }

    #[test]
    fn unknown_and_retired_keys_are_rejected_only_in_strict_mode() {
        let cases = [
            ("MemoryLimit: 3\nVersion: 2\n", "MemoryLimit flag is not supported. Use X-Ray Daemon Config Migration Script to update the config file. Please refer to AWS X-Ray Documentation for more information."),
            ("Socket:\n  BufferSizeKB: 64\nVersion: 2\n", "Socket.BufferSizeKB flag is not supported any more. Please refer to AWS X-Ray Documentation for more information."),
            ("ABCDE: 1\nVersion: 2\n", "ABCDE flag is invalid. Please refer to AWS X-Ray Documentation for more information."),
            ("Processor:\n  Region: x\nVersion: 2\n", "Processor.Region flag is not supported. Use X-Ray Daemon Config Migration Script to update the config file. Please refer to AWS X-Ray Documentation for more information."),
        ];
        for (text, message) in cases {
            assert_eq!(parse(text, true).unwrap_err().to_string(), message);
            assert!(parse(text, false).is_ok(), "{text}");
        }
        // Known keys compare case-insensitively.
        assert!(parse("totalbuffersizemb: 3\nsocket:\n  udpaddress: x\nVersion: 2\n", true).is_ok());
    }

    #[test]
    fn wrong_types_name_the_key_and_line() {
        let e = parse("Version: 2\nTotalBufferSizeMB: abc\n", true).unwrap_err().to_string();
        assert!(
            e.starts_with(
                "Error occur when using config flag: TotalBufferSizeMB: invalid type: string \"abc\", expected i64"
            ),
            "{e}"
        );
        assert!(e.contains("line 2"), "{e}");
        let e = parse("Version: 2\nLocalMode: maybe\n", true).unwrap_err().to_string();
        assert!(e.contains("LocalMode") && e.contains("line 2"), "{e}");
        let e = parse("Version: 2\n  bad: [indent\n", true).unwrap_err().to_string();
        assert!(e.starts_with("Error occur when using config flag: "), "{e}");
        assert!(parse("- a\n- b\n", true).unwrap_err().to_string().contains("not a YAML mapping"));
    }

    #[test]
    fn missing_file_is_reported_with_its_path() {
        let e = load(Path::new("/nonexistent.yaml"), true).unwrap_err().to_string();
        assert!(e.starts_with("Error occur when using config flag: open /nonexistent.yaml: "), "{e}");
    }
}
