//! The datagram wire format: `<header>\n<body>`.
//!
//! This module exists so that every rule about what the daemon accepts on its UDP port lives in
//! one pure function, [`classify`], with no I/O. The header rules reproduce the upstream daemon,
//! which decodes the header with Go's `encoding/json` into `{format string; version int}` and
//! ignores decoding errors:
//! - the header is everything before the first `\n`; the body is everything after it, verbatim;
//! - the header must be one JSON value with nothing but whitespace around it;
//! - keys match case-insensitively, in any order, extra keys are ignored, the last duplicate wins;
//! - `format` must be a string equal to `json` ignoring ASCII case, `version` the integer 1;
//! - a value of the wrong type leaves the field as it was (Go's decoder does the same).
//!
//! Beyond upstream, bodies that are AWS's OTLP-over-UDP payloads (`T1S`, `T1U`, `M1` followed by
//! base64) are recognised as their own kind (the spans of a `T1S` one are decoded in
//! `signal::spans`), and bodies that are not UTF-8 are rejected: a
//! PutTraceSegments request carries documents as JSON strings, so they could not be sent
//! byte for byte.

use serde::de::{Deserializer, IgnoredAny, MapAccess, Visitor};
use std::fmt;

/// The largest UDP payload over IPv4; the SDKs cannot send more.
pub const MAX_DATAGRAM: usize = 65_507;

/// What one datagram turned out to be.
#[derive(Debug, PartialEq, Eq)]
pub enum Datagram<'a> {
    /// An X-Ray segment document (or subsegment, or array of them) to upload unchanged.
    Segment(&'a [u8]),
    /// An OTLP payload from AWS's OpenTelemetry distribution: its kind and what follows the
    /// kind's prefix (base64 of a protobuf message).
    Otlp(OtlpKind, &'a [u8]),
    /// Not acceptable; the reason says why.
    Rejected(Reject),
}

/// The OTLP-over-UDP payload kinds (see the Lambda reference, section 3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OtlpKind {
    /// `T1S`: sampled spans.
    SampledSpans,
    /// `T1U`: unsampled spans.
    UnsampledSpans,
    /// `M1`: metrics.
    Metrics,
}

/// Why a datagram was rejected. The `Display` text is the upstream log message where one exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reject {
    /// No `\n` anywhere in the datagram.
    MissingNewline,
    /// A header line and nothing after it.
    EmptyBody,
    /// The header is not `{"format":"json","version":1}` by upstream's rules.
    InvalidHeader,
    /// The body is not valid UTF-8.
    InvalidUtf8,
}

impl Reject {
    /// Every reason, in declaration order (`reason as usize` indexes it).
    pub const ALL: [Reject; 4] =
        [Reject::MissingNewline, Reject::EmptyBody, Reject::InvalidHeader, Reject::InvalidUtf8];

    /// A short, stable name for counters and structured logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Reject::MissingNewline => "missing_newline",
            Reject::EmptyBody => "empty_body",
            Reject::InvalidHeader => "invalid_header",
            Reject::InvalidUtf8 => "invalid_utf8",
        }
    }
}

impl fmt::Display for Reject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Reject::MissingNewline => "Missing header or segment",
            Reject::EmptyBody => "Missing header or segment",
            Reject::InvalidHeader => "Invalid header",
            Reject::InvalidUtf8 => "Segment body is not valid UTF-8",
        })
    }
}

/// Splits and checks one datagram. Never panics, whatever the input.
pub fn classify(datagram: &[u8]) -> Datagram<'_> {
    let Some(newline) = memchr(b'\n', datagram) else {
        return Datagram::Rejected(Reject::MissingNewline);
    };
    let (header, body) = (&datagram[..newline], &datagram[newline + 1..]);
    if body.is_empty() {
        return Datagram::Rejected(Reject::EmptyBody);
    }
    if !header_is_valid(header) {
        return Datagram::Rejected(Reject::InvalidHeader);
    }
    if let Some(kind) = otlp_kind(body) {
        return Datagram::Otlp(kind, &body[kind.prefix().len()..]);
    }
    if std::str::from_utf8(body).is_err() {
        return Datagram::Rejected(Reject::InvalidUtf8);
    }
    Datagram::Segment(body)
}

fn memchr(needle: u8, haystack: &[u8]) -> Option<usize> {
    haystack.iter().position(|&b| b == needle)
}

fn otlp_kind(body: &[u8]) -> Option<OtlpKind> {
    [OtlpKind::SampledSpans, OtlpKind::UnsampledSpans, OtlpKind::Metrics]
        .into_iter()
        .find(|kind| body.starts_with(kind.prefix().as_bytes()))
}

impl OtlpKind {
    /// What the body starts with.
    pub fn prefix(self) -> &'static str {
        match self {
            OtlpKind::SampledSpans => "T1S",
            OtlpKind::UnsampledSpans => "T1U",
            OtlpKind::Metrics => "M1",
        }
    }
}

/// The two spellings the SDKs actually send; everything else takes the full JSON path.
const COMMON_HEADERS: [&[u8]; 2] = [br#"{"format":"json","version":1}"#, br#"{"format": "json", "version": 1}"#];

/// True when the header line is accepted by upstream's rules (see the module docs).
pub fn header_is_valid(header: &[u8]) -> bool {
    if COMMON_HEADERS.contains(&header) {
        return true;
    }
    let mut de = serde_json::Deserializer::from_slice(header);
    let mut fields = HeaderFields::default();
    if de.deserialize_any(HeaderVisitor(&mut fields)).is_err() || de.end().is_err() {
        return false;
    }
    fields.format.is_some_and(|f| f.eq_ignore_ascii_case("json")) && fields.version == Some(1)
}

#[derive(Default)]
struct HeaderFields {
    format: Option<String>,
    version: Option<i64>,
}

/// Visits any JSON value; only an object's `format` and `version` keys are kept, the rest is
/// validated and skipped, so the header must still be well-formed JSON as a whole.
struct HeaderVisitor<'f>(&'f mut HeaderFields);

impl<'de> Visitor<'de> for HeaderVisitor<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            if key.eq_ignore_ascii_case("format") {
                if let serde_json::Value::String(s) = map.next_value::<serde_json::Value>()? {
                    self.0.format = Some(s);
                }
            } else if key.eq_ignore_ascii_case("version") {
                if let serde_json::Value::Number(n) = map.next_value::<serde_json::Value>()? {
                    if let Some(v) = n.as_i64() {
                        self.0.version = Some(v);
                    }
                }
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(())
    }

    // Any other top-level value is well-formed JSON that sets no field.
    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(())
    }
}

/// The first `max` bytes of a payload, escaped for a log line. Used only at debug level.
pub fn preview(payload: &[u8], max: usize) -> String {
    let cut = &payload[..payload.len().min(max)];
    let mut out = cut.escape_ascii().to_string();
    if payload.len() > max {
        out.push_str(&format!("… ({} bytes)", payload.len()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dg(header: &str, body: &str) -> Vec<u8> {
        format!("{header}\n{body}").into_bytes()
    }

    const DOC: &str = r#"{"name":"a","id":"1","trace_id":"1-2-3"}"#;

    /// Every header case of the behaviour reference, section 1, with upstream's verdict.
    #[test]
    fn header_rules_match_upstream() {
        let cases: &[(&str, bool)] = &[
            (r#"{"format":"json","version":1}"#, true),
            (r#"{"format": "json", "version": 1}"#, true),
            (r#"{"format":"JSON","version":1}"#, true),
            (r#"{"format":"jSoN","version":1}"#, true),
            (r#"{"version":1,"format":"json","x":true}"#, true),
            (r#"  {"format":"json","version":1}  "#, true),
            (r#"{"FORMAT":"json","Version":1}"#, true),
            (r#"{"format":"json","version":1,"extra":{"deep":[1,2,{"x":null}]}}"#, true),
            (r#"{"format":"json","version":2}"#, false),
            (r#"{"format":"json","version":"1"}"#, false),
            (r#"{"format":"xml","version":1}"#, false),
            (r#"{"format":"xml","version":2}"#, false),
            ("", false),
            ("garbage", false),
            (r#"{"format":"json","version":1.0}"#, false),
            (r#"{"format":"json","version":1e0}"#, false),
            (r#"{"format":"json","version":1,"version":2}"#, false),
            (r#"{"format":"json","version":2,"version":1}"#, true),
            // A wrong-typed duplicate leaves the earlier value, as Go's decoder does.
            (r#"{"format":"json","version":1,"version":"x"}"#, true),
            (r#"{"format":"json","version":1} x"#, false),
            ("\u{feff}{\"format\":\"json\",\"version\":1}", false),
            (r#"{"format":"json"}"#, false),
            (r#"{"version":1}"#, false),
            (r#"{"format":null,"version":1}"#, false),
            (r#"[{"format":"json","version":1}]"#, false),
            ("null", false),
            (r#"{"format":"json","version":1"#, false),
            ("{\"format\":\"json\",\"version\":1}\r", true),
            (r#"{"format":"json","version":99999999999999999999}"#, false),
            (r#"{"format":"json\u0000","version":1}"#, false),
        ];
        for (header, ok) in cases {
            assert_eq!(header_is_valid(header.as_bytes()), *ok, "header {header:?}");
        }
    }

    #[test]
    fn nul_byte_in_header_is_rejected() {
        assert!(!header_is_valid(b"{\"format\":\"json\",\0\"version\":1}"));
    }

    #[test]
    fn body_is_everything_after_the_first_newline() {
        let d = dg(r#"{"format":"json","version":1}"#, "{\"a\":1}\n{\"b\":2}");
        assert_eq!(classify(&d), Datagram::Segment(b"{\"a\":1}\n{\"b\":2}"));
        let d = dg(r#"{"format":"json","version":1}"#, "\n{}");
        assert_eq!(classify(&d), Datagram::Segment(b"\n{}"));
        let d = b"{\"format\":\"json\",\"version\":1}\r\n{}".to_vec();
        assert_eq!(classify(&d), Datagram::Segment(b"{}"));
    }

    #[test]
    fn bodies_are_not_validated_as_json() {
        let d = dg(r#"{"format":"json","version":1}"#, "not json at all");
        assert_eq!(classify(&d), Datagram::Segment(b"not json at all"));
    }

    #[test]
    fn reject_paths() {
        assert_eq!(classify(DOC.as_bytes()), Datagram::Rejected(Reject::MissingNewline));
        assert_eq!(classify(b""), Datagram::Rejected(Reject::MissingNewline));
        assert_eq!(classify(b"{\"format\":\"json\",\"version\":1}\n"), Datagram::Rejected(Reject::EmptyBody));
        assert_eq!(classify(&dg("garbage", DOC)), Datagram::Rejected(Reject::InvalidHeader));
        assert_eq!(classify(&dg("", DOC)), Datagram::Rejected(Reject::InvalidHeader));
        let mut truncated = dg(r#"{"format":"json","version":1}"#, "{\"name\":\"caf");
        truncated.push(0xC3); // first byte of a two-byte sequence, cut off
        assert_eq!(classify(&truncated), Datagram::Rejected(Reject::InvalidUtf8));
    }

    #[test]
    fn otlp_bodies_are_their_own_kind() {
        let h = r#"{"format":"json","version":1}"#;
        assert_eq!(classify(&dg(h, "T1SCgYKBAoC")), Datagram::Otlp(OtlpKind::SampledSpans, b"CgYKBAoC"));
        assert_eq!(classify(&dg(h, "T1UCgYKBAoC")), Datagram::Otlp(OtlpKind::UnsampledSpans, b"CgYKBAoC"));
        assert_eq!(classify(&dg(h, "M1CgYKBAoC")), Datagram::Otlp(OtlpKind::Metrics, b"CgYKBAoC"));
        assert_eq!(classify(&dg("bad", "T1SCgYK")), Datagram::Rejected(Reject::InvalidHeader));
    }

    #[test]
    fn largest_datagram_is_forwarded_whole() {
        let h = r#"{"format":"json","version":1}"#;
        let body = "x".repeat(MAX_DATAGRAM - h.len() - 1);
        let d = dg(h, &body);
        assert_eq!(d.len(), MAX_DATAGRAM);
        assert_eq!(classify(&d), Datagram::Segment(body.as_bytes()));
    }

    #[test]
    fn preview_truncates_and_escapes() {
        assert_eq!(preview(b"ab\ncd", 10), "ab\\ncd");
        assert_eq!(preview(b"abcdef", 3), "abc… (6 bytes)");
    }
}
