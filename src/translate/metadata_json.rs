//! The JSON text of an `aws.xray.metadata.<namespace>` attribute, read as Go's
//! `json.Unmarshal` into a `map[string]any` reads it, and written back as Go's encoder would.
//!
//! The exporter parses such a string into a map and re-encodes it, so the document holds a
//! normalised copy: object keys sorted by bytes and deduplicated (the last wins), every number
//! a float64 (`12345678901234567890` becomes `12345678901234567000`), strings re-escaped the Go
//! way. serde_json reads it (its map is sorted by key, and a repeated key keeps the last value);
//! numbers become float64 as they are written. Anything but an object or `null` at the top, bad
//! syntax, or a number beyond float64's range is a failure, and the exporter keeps the raw
//! string. Two differences from Go, both in input no SDK writes: a lone surrogate escape
//! (`"\ud800"`) is a failure here where Go reads U+FFFD, and nesting past serde_json's 128
//! levels fails where Go allows 10,000.

use super::json;
use serde_json::{Map, Value};

/// A parsed metadata object.
pub(crate) type Object = Map<String, Value>;

/// `Some(None)` for a top-level `null`, `Some(Some(object))` for an object, `None` otherwise.
pub(crate) fn parse_object(text: &str) -> Option<Option<Object>> {
    match serde_json::from_str::<Value>(text).ok()? {
        Value::Null => Some(None),
        Value::Object(object) => Some(Some(object)),
        _ => None,
    }
}

/// Writes a parsed value as Go's encoder writes the `any` it became.
pub(crate) fn write(buf: &mut Vec<u8>, v: &Value) {
    match v {
        Value::Null => buf.extend_from_slice(b"null"),
        Value::Bool(b) => buf.extend_from_slice(if *b { b"true" } else { b"false" }),
        // Go reads every JSON number as a float64.
        Value::Number(n) => json::float(buf, n.as_f64().unwrap_or(0.0)),
        Value::String(s) => json::string(buf, s.as_bytes()),
        Value::Array(items) => {
            buf.push(b'[');
            for item in items {
                json::sep(buf);
                write(buf, item);
            }
            buf.push(b']');
        }
        Value::Object(object) => write_object(buf, object, |_| true),
    }
}

/// An object, keeping only the keys `keep` accepts.
pub(crate) fn write_object(buf: &mut Vec<u8>, object: &Object, keep: impl Fn(&str) -> bool) {
    buf.push(b'{');
    for (k, v) in object.iter().filter(|(k, _)| keep(k)) {
        json::sep(buf);
        json::string(buf, k.as_bytes());
        buf.push(b':');
        write(buf, v);
    }
    buf.push(b'}');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round(text: &str) -> Option<String> {
        let parsed = parse_object(text)?;
        let mut buf = Vec::new();
        match parsed {
            None => buf.extend_from_slice(b"null"),
            Some(object) => write_object(&mut buf, &object, |_| true),
        }
        Some(String::from_utf8(buf).unwrap())
    }

    #[test]
    fn objects_are_normalised_like_go() {
        assert_eq!(
            round(r#" {"b":1,"a":[true,null,"x<"],"b":2.50} "#).as_deref(),
            Some(r#"{"a":[true,null,"x\u003c"],"b":2.5}"#)
        );
        assert_eq!(
            round(r#"{"n":12345678901234567890,"e":1e21,"m":-0.0,"s":1E-7}"#).as_deref(),
            Some(r#"{"e":1e+21,"m":-0,"n":12345678901234567000,"s":1e-7}"#)
        );
        assert_eq!(round("null").as_deref(), Some("null"));
        assert_eq!(round("{}").as_deref(), Some("{}"));
        assert_eq!(
            round(r#"{"u":"\u00e9\ud83d\ude00x","w":"\/\b\f\n\r\t"}"#).as_deref(),
            Some("{\"u\":\"é😀x\",\"w\":\"/\\b\\f\\n\\r\\t\"}")
        );
        assert_eq!(round(r#"{"a":{"z":1,"y":{}}}"#).as_deref(), Some(r#"{"a":{"y":{},"z":1}}"#));
    }

    #[test]
    fn failures_keep_the_raw_string() {
        for bad in [
            "",
            "[1]",
            "\"x\"",
            "1",
            "true",
            "{",
            "{\"a\"}",
            "{\"a\":}",
            "{\"a\":1,}",
            "{\"a\":01}",
            "{\"a\":1.}",
            "{\"a\":.5}",
            "{\"a\":1e}",
            "{\"a\":1e400}",
            "{\"a\":\"\t\"}",
            "{\"a\":\"\\x\"}",
            "{\"a\":\"\\u12\"}",
            "{} x",
            "{'a':1}",
            "{\"a\":tru}",
            "{\"a\":+1}",
        ] {
            assert_eq!(round(bad), None, "{bad:?}");
        }
        let deep = format!("{{\"a\":{}1{}}}", "[".repeat(200), "]".repeat(200));
        assert_eq!(round(r#"{"a":"\ud800"}"#), None, "a lone surrogate");
        assert_eq!(round(&deep), None);
        let ok = format!("{{\"a\":{}1{}}}", "[".repeat(50), "]".repeat(50));
        assert!(round(&ok).is_some());
    }
}
