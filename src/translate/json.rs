//! The JSON writer: Go's `encoding/json` output, byte for byte, written straight into the
//! documents' buffer.
//!
//! The exporter's documents come from Go's encoder, and the golden tests compare whole
//! documents, so the writer follows Go rather than serde_json: HTML-escaped strings
//! (`<` `>` `&` as `\u003c`…), `\u2028`/`\u2029` escaped, each invalid UTF-8 byte as `\ufffd`,
//! and floats in Go's shortest form (`1700000000.1234567`, `1e+21`, no trailing `.0`).
//! Commas need no state: a key or an array element gets one unless the buffer ends in `{` or
//! `[`, and no finished value ends in either.
//!
//! It also writes OTLP values "raw", as the exporter's `AsRaw()` does for metadata and link
//! attributes: maps with sorted keys (the last of duplicate keys wins), bytes as base64, an
//! empty value as `null`. A NaN or infinite double, which Go's encoder refuses (dropping the
//! whole span), is left out instead: the map entry or array element holding it is skipped.

use base64::Engine;
use opentelemetry_proto::tonic::common::v1::{any_value::Value, AnyValue, KeyValue};
use std::io::Write;

/// Deeper values are written as `null`: prost refuses to decode more than 100 levels, so only
/// a value built in code reaches this, and the writer's recursion stays bounded.
const MAX_DEPTH: usize = 100;

/// ASCII bytes Go writes as they are (its `htmlSafeSet`).
const fn safe_table() -> [bool; 128] {
    let mut t = [false; 128];
    let mut b = 0x20;
    while b < 128 {
        t[b] = !matches!(b as u8, b'"' | b'\\' | b'<' | b'>' | b'&');
        b += 1;
    }
    t
}
static SAFE: [bool; 128] = safe_table();
const HEX: &[u8; 16] = b"0123456789abcdef";

/// A comma before a key or element, unless it is the first in its object or array.
pub(crate) fn sep(buf: &mut Vec<u8>) {
    if !matches!(buf.last(), Some(b'{' | b'[') | None) {
        buf.push(b',');
    }
}

/// `"k":` (with its comma). Keys here are our own ASCII names, safe as they are.
pub(crate) fn key(buf: &mut Vec<u8>, k: &str) {
    sep(buf);
    buf.push(b'"');
    buf.extend_from_slice(k.as_bytes());
    buf.extend_from_slice(b"\":");
}

/// The length of the valid UTF-8 sequence starting `s` (whose first byte is not ASCII).
fn utf8_len(s: &[u8]) -> Option<usize> {
    let n = match s.first()? {
        0xC2..=0xDF => 2,
        0xE0..=0xEF => 3,
        0xF0..=0xF4 => 4,
        _ => return None,
    };
    let chunk = s.get(..n)?;
    std::str::from_utf8(chunk).ok().map(|_| n)
}

/// A JSON string of `s`, escaped as Go escapes it.
pub(crate) fn string(buf: &mut Vec<u8>, s: &[u8]) {
    prefixed_string(buf, "", s);
}

/// A JSON string of `prefix` (plain ASCII, written as it is) followed by `s`.
pub(crate) fn prefixed_string(buf: &mut Vec<u8>, prefix: &str, s: &[u8]) {
    buf.push(b'"');
    buf.extend_from_slice(prefix.as_bytes());
    escape(buf, s);
    buf.push(b'"');
}

/// The inside of a JSON string: `s` escaped as Go escapes it, without the quotes.
pub(crate) fn escape(buf: &mut Vec<u8>, s: &[u8]) {
    let mut start = 0;
    let mut i = 0;
    while let Some(&b) = s.get(i) {
        if b < 0x80 {
            if SAFE[b as usize] {
                i += 1;
                continue;
            }
            buf.extend_from_slice(&s[start..i]);
            match b {
                b'"' => buf.extend_from_slice(b"\\\""),
                b'\\' => buf.extend_from_slice(b"\\\\"),
                b'\n' => buf.extend_from_slice(b"\\n"),
                b'\r' => buf.extend_from_slice(b"\\r"),
                b'\t' => buf.extend_from_slice(b"\\t"),
                0x08 => buf.extend_from_slice(b"\\b"),
                0x0c => buf.extend_from_slice(b"\\f"),
                _ => buf.extend_from_slice(&[b'\\', b'u', b'0', b'0', HEX[(b >> 4) as usize], HEX[(b & 15) as usize]]),
            }
            i += 1;
            start = i;
            continue;
        }
        match utf8_len(&s[i..]) {
            Some(n) => {
                // U+2028 and U+2029 are E2 80 A8 / E2 80 A9.
                if n == 3 && s[i] == 0xE2 && s[i + 1] == 0x80 && (s[i + 2] == 0xA8 || s[i + 2] == 0xA9) {
                    buf.extend_from_slice(&s[start..i]);
                    buf.extend_from_slice(if s[i + 2] == 0xA8 { b"\\u2028" } else { b"\\u2029" });
                    start = i + n;
                }
                i += n;
            }
            None => {
                buf.extend_from_slice(&s[start..i]);
                buf.extend_from_slice(b"\\ufffd");
                i += 1;
                start = i;
            }
        }
    }
    buf.extend_from_slice(&s[start..]);
}

/// `"k":"v"`.
pub(crate) fn str_field(buf: &mut Vec<u8>, k: &str, v: &[u8]) {
    key(buf, k);
    string(buf, v);
}

/// `"k":"v"` when `v` is not empty (Go's nil pointer for an empty string, with `omitempty`).
pub(crate) fn opt_str_field(buf: &mut Vec<u8>, k: &str, v: &str) {
    if !v.is_empty() {
        str_field(buf, k, v.as_bytes());
    }
}

/// `"k":"v"`, or `"k":null` when `v` is empty (a nil pointer without `omitempty`).
pub(crate) fn str_or_null_field(buf: &mut Vec<u8>, k: &str, v: &[u8]) {
    key(buf, k);
    if v.is_empty() {
        buf.extend_from_slice(b"null");
    } else {
        string(buf, v);
    }
}

pub(crate) fn bool_field(buf: &mut Vec<u8>, k: &str, v: bool) {
    key(buf, k);
    buf.extend_from_slice(if v { b"true" } else { b"false" });
}

pub(crate) fn int(buf: &mut Vec<u8>, v: i64) {
    let mut digits = [0u8; 20];
    let mut n = v.unsigned_abs();
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    if v < 0 {
        buf.push(b'-');
    }
    buf.extend_from_slice(&digits[at..]);
}

pub(crate) fn int_field(buf: &mut Vec<u8>, k: &str, v: i64) {
    key(buf, k);
    int(buf, v);
}

/// A finite float as Go's encoder writes it: shortest round-trip digits, plain decimal for
/// 1e-6 ≤ |f| < 1e21 (no `.0` on integral values), else `1e+21` / `1e-7`. Callers check
/// `is_finite` first; a non-finite value writes `null` rather than invalid JSON.
pub(crate) fn float(buf: &mut Vec<u8>, f: f64) {
    if !f.is_finite() {
        buf.extend_from_slice(b"null");
        return;
    }
    let abs = f.abs();
    // Not ryu, though it is faster: on an exact tie between two shortest digit strings it rounds
    // down where Go (and core::fmt) round up (1658206780088562.25 is `…562.3` in Go, `…562.2`
    // in ryu).
    // Writing into a Vec cannot fail.
    if abs != 0.0 && !(1e-6..1e21).contains(&abs) {
        let start = buf.len();
        let _ = write!(buf, "{f:e}");
        if let Some(e) = buf[start..].iter().position(|&b| b == b'e') {
            if buf.get(start + e + 1) != Some(&b'-') {
                buf.insert(start + e + 1, b'+');
            }
        }
    } else {
        let _ = write!(buf, "{f}");
    }
}

pub(crate) fn float_field(buf: &mut Vec<u8>, k: &str, v: f64) {
    key(buf, k);
    float(buf, v);
}

/// 16 lowercase hex digits of an 8-byte id.
pub(crate) fn hex_u64(buf: &mut Vec<u8>, id: u64) {
    for b in id.to_be_bytes() {
        buf.push(HEX[(b >> 4) as usize]);
        buf.push(HEX[(b & 15) as usize]);
    }
}

pub(crate) fn hex(buf: &mut Vec<u8>, bytes: &[u8]) {
    for &b in bytes {
        buf.push(HEX[(b >> 4) as usize]);
        buf.push(HEX[(b & 15) as usize]);
    }
}

/// An X-Ray trace id of a 16-byte OTLP trace id: `1-` + 8 hex digits + `-` + 24 hex digits.
pub(crate) fn trace_id(buf: &mut Vec<u8>, id: &[u8]) {
    buf.extend_from_slice(b"\"1-");
    hex(buf, id.get(..4).unwrap_or_default());
    buf.push(b'-');
    hex(buf, id.get(4..).unwrap_or_default());
    buf.push(b'"');
}

/// The value inside an OTLP `AnyValue`, if any. The profiles-only string-table reference is
/// treated as no value.
pub(crate) fn inner(v: Option<&AnyValue>) -> Option<&Value> {
    match v?.value.as_ref()? {
        Value::StringValueStrindex(_) => None,
        other => Some(other),
    }
}

/// A double Go's encoder would refuse.
pub(crate) fn non_finite(v: Option<&Value>) -> bool {
    matches!(v, Some(Value::DoubleValue(d)) if !d.is_finite())
}

/// An OTLP value as Go's `AsRaw()` then `encoding/json` writes it; no value is `null`.
pub(crate) fn raw(buf: &mut Vec<u8>, v: Option<&Value>) {
    raw_at(buf, v, 0);
}

fn raw_at(buf: &mut Vec<u8>, v: Option<&Value>, depth: usize) {
    if depth > MAX_DEPTH {
        buf.extend_from_slice(b"null");
        return;
    }
    match v {
        None => buf.extend_from_slice(b"null"),
        Some(Value::StringValue(s)) => string(buf, s.as_bytes()),
        Some(Value::BoolValue(b)) => buf.extend_from_slice(if *b { b"true" } else { b"false" }),
        Some(Value::IntValue(i)) => int(buf, *i),
        Some(Value::DoubleValue(d)) => float(buf, *d),
        // pdata copies the bytes with `append(nil, b...)`: no bytes is a nil slice, `null`.
        Some(Value::BytesValue(b)) if b.is_empty() => buf.extend_from_slice(b"null"),
        Some(Value::BytesValue(b)) => {
            buf.push(b'"');
            let start = buf.len();
            buf.resize(start + b.len().div_ceil(3) * 4, 0);
            let n = base64::engine::general_purpose::STANDARD.encode_slice(b, &mut buf[start..]).unwrap_or(0);
            buf.truncate(start + n);
            buf.push(b'"');
        }
        Some(Value::ArrayValue(a)) => {
            buf.push(b'[');
            for e in &a.values {
                let e = inner(Some(e));
                if non_finite(e) {
                    continue;
                }
                sep(buf);
                raw_at(buf, e, depth + 1);
            }
            buf.push(b']');
        }
        Some(Value::KvlistValue(m)) => map_at(buf, &m.values, depth + 1),
        Some(Value::StringValueStrindex(_)) => buf.extend_from_slice(b"null"),
    }
}

/// A key/value list as a JSON object: keys sorted by bytes, the last of duplicates wins,
/// NaN/Inf entries left out.
pub(crate) fn map(buf: &mut Vec<u8>, kvs: &[KeyValue]) {
    map_at(buf, kvs, 0);
}

fn map_at(buf: &mut Vec<u8>, kvs: &[KeyValue], depth: usize) {
    let mut idx: Vec<usize> = (0..kvs.len()).filter(|&i| !non_finite(inner(kvs[i].value.as_ref()))).collect();
    // Stable: equal keys stay in list order, so the last of each run is the winner.
    idx.sort_by(|&a, &b| kvs[a].key.cmp(&kvs[b].key));
    buf.push(b'{');
    for (n, &i) in idx.iter().enumerate() {
        if idx.get(n + 1).is_some_and(|&next| kvs[next].key == kvs[i].key) {
            continue;
        }
        sep(buf);
        string(buf, kvs[i].key.as_bytes());
        buf.push(b':');
        raw_at(buf, inner(kvs[i].value.as_ref()), depth);
    }
    buf.push(b'}');
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::translate::test_attrs::kv;
    use opentelemetry_proto::tonic::common::v1::{ArrayValue, KeyValueList};

    fn s(bytes: &[u8]) -> String {
        let mut buf = Vec::new();
        string(&mut buf, bytes);
        String::from_utf8(buf).unwrap()
    }

    fn f(v: f64) -> String {
        let mut buf = Vec::new();
        float(&mut buf, v);
        String::from_utf8(buf).unwrap()
    }

    fn any(v: Value) -> AnyValue {
        AnyValue { value: Some(v) }
    }

    #[test]
    fn strings_escape_like_go_with_html_escaping() {
        assert_eq!(s(b"plain"), r#""plain""#);
        assert_eq!(s(b"a\"b\\c"), r#""a\"b\\c""#);
        assert_eq!(s(b"\n\r\t\x08\x0c"), r#""\n\r\t\b\f""#);
        assert_eq!(s(b"\x00\x1f\x7f"), "\"\\u0000\\u001f\x7f\"");
        assert_eq!(s(b"<a&b>"), r#""\u003ca\u0026b\u003e""#);
        assert_eq!(s("x\u{2028}y\u{2029}".as_bytes()), r#""x\u2028y\u2029""#);
        assert_eq!(s("héllo €𝄞".as_bytes()), "\"héllo €𝄞\"");
        // a literal U+FFFD stays raw; each invalid byte becomes one \ufffd
        assert_eq!(s("\u{fffd}".as_bytes()), "\"\u{fffd}\"");
        assert_eq!(s(b"a\xe2\x82"), r#""a\ufffd\ufffd""#);
        assert_eq!(s(b"\xed\xa0\x80"), r#""\ufffd\ufffd\ufffd""#);
        assert_eq!(s(b"\xc3"), r#""\ufffd""#);
    }

    #[test]
    fn floats_follow_go() {
        assert_eq!(f(1_700_000_000_123_456_789u64 as f64 / 1e9), "1700000000.1234567");
        assert_eq!(f(1_700_000_001.0), "1700000001");
        assert_eq!(f(0.0), "0");
        assert_eq!(f(-0.0), "-0");
        assert_eq!(f(1e21), "1e+21");
        assert_eq!(f(1e20), "100000000000000000000");
        assert_eq!(f(1e-7), "1e-7");
        assert_eq!(f(0.000001), "0.000001");
        assert_eq!(f(-1.5e-300), "-1.5e-300");
        assert_eq!(f(1.5e300), "1.5e+300");
        assert_eq!(f(0.1), "0.1");
        assert_eq!(f(12345678901234567890.0), "12345678901234567000");
        assert_eq!(f(f64::NAN), "null");
        assert_eq!(f(1e16), "10000000000000000");
        assert_eq!(f(9.5e-6), "0.0000095");
    }

    #[test]
    fn an_exact_tie_rounds_up_as_go_does() {
        // …562.25 exactly: the ulp there is a quarter.
        assert_eq!(f(1_658_206_780_088_562.0 + 0.25), "1658206780088562.3");
    }

    #[test]
    fn ints_and_ids() {
        let mut buf = Vec::new();
        int(&mut buf, i64::MIN);
        buf.push(b' ');
        int(&mut buf, 0);
        buf.push(b' ');
        hex_u64(&mut buf, 0x0123_4567_89ab_cdef);
        buf.push(b' ');
        trace_id(&mut buf, &[0x5f, 0x84, 0xc7, 0xa1, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
        assert_eq!(
            String::from_utf8(buf).unwrap(),
            "-9223372036854775808 0 0123456789abcdef \"1-5f84c7a1-0102030405060708090a0b0c\""
        );
    }

    #[test]
    fn raw_values_as_go_as_raw() {
        let nested = Value::KvlistValue(KeyValueList {
            values: vec![
                kv("z", Value::IntValue(1)),
                kv("a", Value::BoolValue(true)),
                kv("z", Value::IntValue(2)),
                KeyValue { key: "e".into(), value: None, ..Default::default() },
                kv("nan", Value::DoubleValue(f64::NAN)),
            ],
        });
        let array = Value::ArrayValue(ArrayValue {
            values: vec![
                any(Value::StringValue("s".into())),
                any(Value::DoubleValue(f64::INFINITY)),
                AnyValue { value: None },
                any(Value::BytesValue(vec![1, 2, 3])),
                any(Value::BytesValue(vec![])),
                any(nested),
            ],
        });
        let mut buf = Vec::new();
        raw(&mut buf, Some(&array));
        assert_eq!(String::from_utf8(buf).unwrap(), r#"["s",null,"AQID",null,{"a":true,"e":null,"z":2}]"#);
    }
}
