//! `fault`, `error`, `throttle` and `cause` (mapping §8): what went wrong with the call.
//!
//! The flags come from the HTTP status code when there is one, else from the span status.
//! The cause comes from `exception` events (and, on `aws-api` spans, `HTTP request failure`
//! events), or failing those, on an errored span, from its status message or its
//! `http.status_text`. Exception ids are fresh random ids, drawn in the exporter's order: the
//! event's own exception first, then its chained causes, event by event.

use super::attributes::{get, get_str, int_of, str_of, val, Attrs};
use super::json;
use super::names::Kind;
use super::stack::{self, Exception, Lang};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::trace::v1::{span::Event, status::StatusCode, Span};
use std::borrow::Cow;

/// Which of the three exclusive cases applies.
pub(crate) enum Cause<'a> {
    /// No `cause`.
    None,
    /// Built from the span's exception events.
    Events,
    /// One exception with this (non-empty) message.
    Status(&'a str),
}

fn is_error(span: &Span) -> bool {
    span.status.as_ref().is_some_and(|s| s.code == StatusCode::Error as i32)
}

fn is_exception_event(e: &Event, aws_sdk: bool) -> bool {
    e.name == "exception" || (aws_sdk && e.name == "HTTP request failure")
}

/// Picks the case; on the status path it consumes `http.status_text`.
pub(crate) fn decide<'a>(attrs: &mut Attrs<'a>, span: &'a Span, aws_sdk: bool) -> Cause<'a> {
    if span.events.iter().any(|e| is_exception_event(e, aws_sdk)) {
        return Cause::Events;
    }
    if !is_error(span) {
        return Cause::None;
    }
    let mut message = span.status.as_ref().map_or("", |s| s.message.as_str());
    if message.is_empty() {
        message = attrs.remaining("http.status_text").map_or("", |kv| str_of(val(kv)));
    }
    attrs.consume_where(|k| k == "http.status_text");
    if message.is_empty() {
        Cause::None
    } else {
        Cause::Status(message)
    }
}

/// `(fault, error, throttle)`.
pub(crate) fn flags(attrs: &Attrs<'_>, span: &Span) -> (bool, bool, bool) {
    let code =
        attrs.get("http.status_code").or_else(|| attrs.get("http.response.status_code")).map(|kv| int_of(val(kv)));
    match code {
        Some(code @ 400..=499) => (false, true, code == 429),
        Some(500..=599) => (true, false, false),
        _ => (is_error(span), false, false),
    }
}

/// pdata's `Value.AsString()`, for the status of an `HTTP request failure` event.
fn as_string(v: Option<&Value>) -> Cow<'_, str> {
    match v {
        None => Cow::Borrowed(""),
        Some(Value::StringValue(s)) => Cow::Borrowed(s),
        Some(Value::BoolValue(b)) => Cow::Borrowed(if *b { "true" } else { "false" }),
        Some(Value::IntValue(i)) => Cow::Owned(i.to_string()),
        Some(Value::DoubleValue(d)) if d.is_nan() => Cow::Borrowed("json: unsupported value: NaN"),
        Some(Value::DoubleValue(d)) if d.is_infinite() => {
            Cow::Borrowed(if *d > 0.0 { "json: unsupported value: +Inf" } else { "json: unsupported value: -Inf" })
        }
        Some(other) => {
            let mut buf = Vec::new();
            json::raw(&mut buf, Some(other));
            if matches!(other, Value::StringValueStrindex(_)) {
                buf.clear();
            }
            // A raw string value is a JSON string; `AsString` of bytes is their base64 alone.
            if matches!(other, Value::BytesValue(_)) {
                buf.retain(|&b| b != b'"');
                if buf == b"null" {
                    buf.clear();
                }
            }
            Cow::Owned(String::from_utf8_lossy(&buf).into_owned())
        }
    }
}

/// The exception of an `HTTP request failure` event, if it has both its attributes.
fn http_failure<'a>(e: &'a Event, next_id: &mut dyn FnMut() -> u64) -> Option<Exception<'a>> {
    let status = get(&e.attributes, "http.response.status_code")?;
    let message = get(&e.attributes, "aws.http.error_message")?;
    // Event time in whole microseconds (Go's UnixMicro of a signed nanosecond count).
    let micros = (e.time_unix_nano as i64).div_euclid(1000);
    let text = format!("{}@{:.6}@{}", as_string(val(status)), micros as f64 / 1e6, str_of(val(message)));
    Some(Exception {
        id: next_id(),
        kind: Cow::Borrowed(b"aws.http.error.event"),
        message: Cow::Owned(text.into_bytes()),
        remote: true,
        cause: None,
        stack: Vec::new(),
    })
}

/// The exceptions of one `exception` event: its own, with its parsed stack, then any chained.
fn exception_event<'a>(e: &'a Event, remote: bool, lang: Lang, next_id: &mut dyn FnMut() -> u64) -> Vec<Exception<'a>> {
    let a = &e.attributes;
    let mut excs = vec![Exception {
        id: next_id(),
        kind: Cow::Borrowed(get_str(a, "exception.type").as_bytes()),
        message: Cow::Borrowed(get_str(a, "exception.message").as_bytes()),
        remote,
        cause: None,
        stack: Vec::new(),
    }];
    let trace = get_str(a, "exception.stacktrace");
    if !trace.is_empty() {
        stack::parse(lang, trace, &mut excs, next_id);
    }
    excs
}

fn write_exception(buf: &mut Vec<u8>, e: &Exception<'_>, with_remote: bool) {
    json::sep(buf);
    buf.extend_from_slice(b"{\"id\":\"");
    json::hex_u64(buf, e.id);
    buf.push(b'"');
    json::str_field(buf, "message", &e.message);
    json::str_field(buf, "type", &e.kind);
    if with_remote {
        json::bool_field(buf, "remote", e.remote);
    }
    if let Some(cause) = e.cause {
        buf.extend_from_slice(b",\"cause\":\"");
        json::hex_u64(buf, cause);
        buf.push(b'"');
    }
    if !e.stack.is_empty() {
        buf.extend_from_slice(b",\"stack\":[");
        for f in &e.stack {
            json::sep(buf);
            buf.push(b'{');
            json::str_field(buf, "path", f.path);
            json::int_field(buf, "line", f.line);
            json::str_field(buf, "label", f.label);
            buf.push(b'}');
        }
        buf.push(b']');
    }
    buf.push(b'}');
}

/// Writes `"cause":{…}` for the chosen case; `language` is the resource's
/// `telemetry.sdk.language`.
pub(crate) fn write(
    buf: &mut Vec<u8>,
    cause: &Cause<'_>,
    span: &Span,
    kind: Kind,
    language: &str,
    aws_sdk: bool,
    next_id: &mut dyn FnMut() -> u64,
) {
    match cause {
        Cause::None => {}
        Cause::Status(message) => {
            json::key(buf, "cause");
            buf.extend_from_slice(b"{\"exceptions\":[");
            let e = Exception {
                id: next_id(),
                kind: Cow::Borrowed(b""),
                message: Cow::Borrowed(message.as_bytes()),
                remote: false,
                cause: None,
                stack: Vec::new(),
            };
            write_exception(buf, &e, false);
            buf.extend_from_slice(b"]}");
        }
        Cause::Events => {
            json::key(buf, "cause");
            buf.push(b'{');
            let start = buf.len();
            buf.extend_from_slice(b"\"exceptions\":[");
            let mut any = false;
            let remote = matches!(kind, Kind::Client | Kind::Producer);
            let lang = Lang::of(language);
            for e in &span.events {
                let excs = if e.name == "exception" {
                    exception_event(e, remote, lang, next_id)
                } else if aws_sdk && e.name == "HTTP request failure" {
                    http_failure(e, next_id).into_iter().collect()
                } else {
                    continue;
                };
                for x in &excs {
                    write_exception(buf, x, true);
                    any = true;
                }
            }
            if any {
                buf.push(b']');
            } else {
                buf.truncate(start);
            }
            buf.push(b'}');
        }
    }
}

#[cfg(test)]
#[path = "cause_tests.rs"]
mod tests;
