//! How a setting's text becomes its value: the parsers the table (`table.rs`) names.
//!
//! Each takes the source (a flag such as `-b/--bind`, a variable, or `Key in FILE`) and the text,
//! so that its error names both. The rules are upstream's where upstream has the setting (Go's
//! booleans, `HOST:PORT` addresses, proxy URLs with a scheme).

use super::flags::parse_go_bool;
use super::values::{ConfigError, LambdaFlush, LogFormat, LogLevel, SpanUpload, MIN_BUFFER_MB};
use crate::sizing::MB;
use std::time::Duration;

/// What `XRAY_DAEMON_MODE` asks for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) enum ModeChoice {
    /// Lambda mode when `AWS_LAMBDA_RUNTIME_API` is set.
    #[default]
    Auto,
    Lambda,
    Sidecar,
}

pub(crate) fn invalid(source: &str, value: &str, reason: impl std::fmt::Display) -> ConfigError {
    ConfigError::Invalid { setting: source.to_owned(), value: value.to_owned(), reason: reason.to_string() }
}

pub(crate) fn number<T: std::str::FromStr>(source: &str, value: &str, what: &str) -> Result<T, ConfigError> {
    value.trim().parse().map_err(|_| invalid(source, value, format!("expected {what}")))
}

/// A size in KiB, in bytes.
pub(crate) fn kib(source: &str, value: &str) -> Result<usize, ConfigError> {
    Ok(number::<usize>(source, value, "a whole number of KiB")?.saturating_mul(1024))
}

/// A size in KiB other than zero, in bytes.
pub(crate) fn nonzero_kib(source: &str, value: &str) -> Result<usize, ConfigError> {
    match kib(source, value)? {
        0 => Err(invalid(source, value, "must be more than zero")),
        bytes => Ok(bytes),
    }
}

/// The buffer's size in MB (at least 3), in bytes.
pub(crate) fn buffer_mb(source: &str, value: &str) -> Result<u64, ConfigError> {
    let mb: i64 = number(source, value, "a whole number of megabytes")?;
    if mb < MIN_BUFFER_MB as i64 {
        return Err(ConfigError::BufferTooSmall { setting: source.to_owned(), value: value.to_owned() });
    }
    Ok((mb as u64).saturating_mul(MB))
}

/// The spool's cap in MB (at least 1), in bytes.
pub(crate) fn spool_mb(source: &str, value: &str) -> Result<u64, ConfigError> {
    match number::<u64>(source, value, "a whole number of megabytes")? {
        0 => Err(invalid(source, value, "must be at least 1")),
        mb => Ok(mb.saturating_mul(MB)),
    }
}

pub(crate) fn concurrency(source: &str, value: &str) -> Result<usize, ConfigError> {
    match number(source, value, "a number from 1 to 64")? {
        n @ 1..=64 => Ok(n),
        _ => Err(invalid(source, value, "expected a number from 1 to 64")),
    }
}

/// A count of at least one.
pub(crate) fn positive_count(source: &str, value: &str) -> Result<usize, ConfigError> {
    match number(source, value, "a whole number")? {
        0 => Err(invalid(source, value, "must be more than zero")),
        n => Ok(n),
    }
}

/// Durations: `5`, `5s`, `500ms`, `1m`.
pub(crate) fn duration(source: &str, value: &str) -> Result<Duration, ConfigError> {
    let v = value.trim();
    if let Ok(secs) = v.parse::<f64>() {
        if secs.is_finite() && secs >= 0.0 {
            return Ok(Duration::from_secs_f64(secs));
        }
    }
    humantime::parse_duration(v).map_err(|_| invalid(source, value, "expected a duration such as 5, 5s or 500ms"))
}

/// A duration other than zero.
pub(crate) fn positive_duration(source: &str, value: &str) -> Result<Duration, ConfigError> {
    match duration(source, value)? {
        d if d.is_zero() => Err(invalid(source, value, "must be more than zero")),
        d => Ok(d),
    }
}

/// Go's booleans: `true`, `1`, `t`, `false`, `0`, `f` and their capitalised forms.
pub(crate) fn go_bool(source: &str, value: &str) -> Result<bool, ConfigError> {
    parse_go_bool(value.trim()).ok_or_else(|| invalid(source, value, "expected true or false"))
}

/// `HOST:PORT`, with a port; IPv6 hosts in brackets.
pub(crate) fn address(source: &str, value: &str) -> Result<String, ConfigError> {
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

/// An `http://` or `https://` URL with a host; a trailing `/` is dropped.
pub(crate) fn url(source: &str, value: &str) -> Result<Option<String>, ConfigError> {
    let v = value.trim().trim_end_matches('/');
    let ok = (v.starts_with("http://") || v.starts_with("https://"))
        && v.parse::<http::Uri>().is_ok_and(|u| u.authority().is_some());
    if ok {
        Ok(Some(v.to_owned()))
    } else {
        Err(invalid(source, value, "expected a URL such as https://xray.us-east-1.amazonaws.com"))
    }
}

/// An outbound proxy URL: `http://host:port` (upstream requires the scheme).
pub(crate) fn proxy_url(source: &str, value: &str) -> Result<Option<String>, ConfigError> {
    let v = value.trim();
    let uri = v.parse::<http::Uri>().map_err(|e| invalid(source, value, format!("Bad proxy URL: {e}")))?;
    match (uri.scheme_str(), uri.authority()) {
        (Some("http" | "https"), Some(a)) if !a.host().is_empty() && !a.host().contains('%') => Ok(Some(v.to_owned())),
        _ => Err(invalid(source, value, "Bad proxy URL: expected http://HOST:PORT")),
    }
}

pub(crate) fn role_arn(source: &str, value: &str) -> Result<Option<String>, ConfigError> {
    if !value.starts_with("arn:") {
        return Err(invalid(source, value, "expected a role ARN such as arn:aws:iam::123456789012:role/xray"));
    }
    Ok(Some(value.trim().to_owned()))
}

pub(crate) fn log_level(source: &str, value: &str) -> Result<LogLevel, ConfigError> {
    Ok(match value.trim().to_ascii_lowercase().as_str() {
        "dev" | "trace" => LogLevel::Dev,
        "debug" => LogLevel::Debug,
        "info" | "prod" => LogLevel::Info,
        "warn" | "warning" => LogLevel::Warn,
        "error" => LogLevel::Error,
        _ => return Err(invalid(source, value, "expected one of dev, debug, info, warn, error, prod")),
    })
}

/// `AWS_LAMBDA_LOG_LEVEL`, which Lambda sets from the function's advanced logging controls:
/// `TRACE`, `DEBUG`, `INFO`, `WARN`, `ERROR` or `FATAL` (the daemon's `error`). Lambda checks the
/// value itself, so anything else is taken as not set rather than stopping the extension.
pub(crate) fn lambda_log_level(source: &str, value: &str) -> Result<Option<LogLevel>, ConfigError> {
    match value.trim() {
        v if v.eq_ignore_ascii_case("fatal") => Ok(Some(LogLevel::Error)),
        v => Ok(log_level(source, v).ok()),
    }
}

/// `AWS_LAMBDA_LOG_FORMAT`: `JSON` or `Text`; anything else is taken as not set.
pub(crate) fn lambda_log_format(source: &str, value: &str) -> Result<Option<LogFormat>, ConfigError> {
    Ok(log_format(source, value.trim()).ok())
}

pub(crate) fn log_format(source: &str, value: &str) -> Result<LogFormat, ConfigError> {
    match value {
        v if v.eq_ignore_ascii_case("json") => Ok(LogFormat::Json),
        v if v.eq_ignore_ascii_case("text") => Ok(LogFormat::Text),
        v => Err(invalid(source, v, "expected text or json")),
    }
}

/// One of `words`, in any case; blank is the first. The error lists `expected`.
fn word<T: Copy>(source: &str, value: &str, words: &[(&str, T)], expected: &str) -> Result<T, ConfigError> {
    let v = match value.trim() {
        "" => words[0].0,
        v => v,
    };
    let found = words.iter().find(|(word, _)| word.eq_ignore_ascii_case(v)).map(|&(_, t)| t);
    found.ok_or_else(|| invalid(source, v, format!("expected {expected}")))
}

/// `lambda`, `sidecar` or `auto`, in any case; blank is `auto`.
pub(crate) fn mode(source: &str, value: &str) -> Result<ModeChoice, ConfigError> {
    let words = [("auto", ModeChoice::Auto), ("lambda", ModeChoice::Lambda), ("sidecar", ModeChoice::Sidecar)];
    word(source, value, &words, "lambda, sidecar or auto")
}

/// `end`, `next-invoke` or `background`, in any case; blank is `end`.
pub(crate) fn lambda_flush(source: &str, value: &str) -> Result<LambdaFlush, ConfigError> {
    use LambdaFlush::{Background, End, NextInvoke};
    let words = [("end", End), ("next-invoke", NextInvoke), ("background", Background)];
    word(source, value, &words, "end, next-invoke or background")
}

/// `segments` or `otlp`, in any case; blank is `segments`.
pub(crate) fn span_upload(source: &str, value: &str) -> Result<SpanUpload, ConfigError> {
    word(source, value, &[("segments", SpanUpload::Segments), ("otlp", SpanUpload::Otlp)], "segments or otlp")
}

/// A comma-separated list: each item trimmed, empty items left out.
pub(crate) fn list(value: &str) -> Vec<String> {
    value.split(',').map(str::trim).filter(|v| !v.is_empty()).map(str::to_owned).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_sizes_and_durations() {
        assert_eq!(kib("V", " 64 "), Ok(64 << 10));
        let e = kib("V", "-1").unwrap_err().to_string();
        assert_eq!(e, "invalid value \"-1\" for V: expected a whole number of KiB");
        assert_eq!(buffer_mb("V", "3"), Ok(3 << 20));
        assert_eq!(buffer_mb("V", "17592186044416"), Ok(u64::MAX), "saturates instead of wrapping");
        assert!(matches!(buffer_mb("V", "-4"), Err(ConfigError::BufferTooSmall { .. })));
        assert_eq!(concurrency("V", "64"), Ok(64));
        let e = concurrency("V", "65").unwrap_err().to_string();
        assert_eq!(e, "invalid value \"65\" for V: expected a number from 1 to 64");
        assert_eq!(duration("V", "1.5"), Ok(Duration::from_millis(1500)));
        assert_eq!(duration("V", "1m"), Ok(Duration::from_secs(60)));
        assert_eq!(duration("V", "0"), Ok(Duration::ZERO));
        assert!(positive_duration("V", "0").is_err() && duration("V", "-1s").is_err());
    }

    #[test]
    fn words_and_urls() {
        assert_eq!(go_bool("V", " T "), Ok(true));
        assert!(go_bool("V", "yes").is_err());
        assert_eq!(mode("V", "  "), Ok(ModeChoice::Auto));
        let e = mode("V", " x ").unwrap_err().to_string();
        assert_eq!(e, "invalid value \"x\" for V: expected lambda, sidecar or auto", "the value is trimmed");
        assert_eq!(lambda_flush("V", "Next-Invoke"), Ok(LambdaFlush::NextInvoke));
        assert_eq!(span_upload("V", " OTLP "), Ok(SpanUpload::Otlp));
        assert_eq!(span_upload("V", ""), Ok(SpanUpload::Segments));
        let e = span_upload("V", "xray").unwrap_err().to_string();
        assert_eq!(e, "invalid value \"xray\" for V: expected segments or otlp");
        assert_eq!(list(" http.method, ,otel.resource.service.name ,"), ["http.method", "otel.resource.service.name"]);
        assert_eq!(log_level("V", "PROD"), Ok(LogLevel::Info));
        assert_eq!(log_format("V", "JSON"), Ok(LogFormat::Json));
        assert_eq!(url("V", "https://x.example/"), Ok(Some("https://x.example".into())));
        assert!(url("V", "ftp://x.example").is_err() && url("V", "https://").is_err());
        assert_eq!(proxy_url("V", " http://p:3128 "), Ok(Some("http://p:3128".into())));
        assert_eq!(role_arn("V", "arn:aws:iam::1:role/x "), Ok(Some("arn:aws:iam::1:role/x".into())));
        assert_eq!(address("V", "[::1]:0"), Ok("[::1]:0".into()));
    }
}
