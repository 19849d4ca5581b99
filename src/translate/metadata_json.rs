//! The JSON text of an `aws.xray.metadata.<namespace>` attribute, read as Go's
//! `json.Unmarshal` into a `map[string]any` reads it, and written back as Go's encoder would.
//!
//! The exporter parses such a string into a map and re-encodes it, so the document holds a
//! normalised copy: object keys sorted and deduplicated (the last wins), every number a
//! float64 (`12345678901234567890` becomes `12345678901234567000`), strings re-escaped (a lone
//! surrogate escape becomes U+FFFD). Anything but an object or `null` at the top, bad syntax,
//! or a number beyond float64's range is a failure, and the exporter keeps the raw string.
//! serde_json is not used: it keeps integers exact and refuses lone surrogates, where Go does
//! neither. Nesting is limited to 100 levels (Go allows 10 000) so that the recursion stays
//! small; deeper input counts as a failure.

use super::json;

const MAX_DEPTH: usize = 100;

/// A parsed JSON value with Go's types.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Json {
    Null,
    Bool(bool),
    Num(f64),
    Str(String),
    Arr(Vec<Json>),
    /// Sorted by key, keys unique.
    Obj(Vec<(String, Json)>),
}

/// `Some(None)` for a top-level `null`, `Some(Some(pairs))` for an object, `None` otherwise.
pub(crate) fn parse_object(text: &str) -> Option<Option<Vec<(String, Json)>>> {
    let mut p = Parser { b: text.as_bytes(), i: 0 };
    let v = p.value(0)?;
    p.ws();
    if p.i != p.b.len() {
        return None;
    }
    match v {
        Json::Null => Some(None),
        Json::Obj(pairs) => Some(Some(pairs)),
        _ => None,
    }
}

struct Parser<'a> {
    b: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn ws(&mut self) {
        while matches!(self.b.get(self.i), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.i += 1;
        }
    }

    fn eat(&mut self, lit: &[u8]) -> Option<()> {
        self.b.get(self.i..)?.starts_with(lit).then(|| self.i += lit.len())
    }

    fn value(&mut self, depth: usize) -> Option<Json> {
        if depth > MAX_DEPTH {
            return None;
        }
        self.ws();
        match *self.b.get(self.i)? {
            b'{' => {
                self.i += 1;
                let mut pairs: Vec<(String, Json)> = Vec::new();
                self.ws();
                if self.eat(b"}").is_some() {
                    return Some(Json::Obj(pairs));
                }
                loop {
                    self.ws();
                    let k = self.string()?;
                    self.ws();
                    self.eat(b":")?;
                    let v = self.value(depth + 1)?;
                    pairs.push((k, v));
                    self.ws();
                    if self.eat(b",").is_none() {
                        self.eat(b"}")?;
                        break;
                    }
                }
                // Stable sort, then keep the last of equal keys.
                pairs.sort_by(|a, b| a.0.cmp(&b.0));
                let mut out: Vec<(String, Json)> = Vec::with_capacity(pairs.len());
                for (k, v) in pairs {
                    match out.last_mut() {
                        Some(last) if last.0 == k => last.1 = v,
                        _ => out.push((k, v)),
                    }
                }
                Some(Json::Obj(out))
            }
            b'[' => {
                self.i += 1;
                let mut items = Vec::new();
                self.ws();
                if self.eat(b"]").is_some() {
                    return Some(Json::Arr(items));
                }
                loop {
                    items.push(self.value(depth + 1)?);
                    self.ws();
                    if self.eat(b",").is_none() {
                        self.eat(b"]")?;
                        return Some(Json::Arr(items));
                    }
                }
            }
            b'"' => self.string().map(Json::Str),
            b't' => self.eat(b"true").map(|_| Json::Bool(true)),
            b'f' => self.eat(b"false").map(|_| Json::Bool(false)),
            b'n' => self.eat(b"null").map(|_| Json::Null),
            _ => self.number(),
        }
    }

    /// `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`, as a finite float64.
    fn number(&mut self) -> Option<Json> {
        let start = self.i;
        let digits = |p: &mut Self| {
            let from = p.i;
            while p.b.get(p.i).is_some_and(u8::is_ascii_digit) {
                p.i += 1;
            }
            p.i > from
        };
        let _ = self.eat(b"-");
        if self.eat(b"0").is_none() && !digits(self) {
            return None;
        }
        if self.eat(b".").is_some() && !digits(self) {
            return None;
        }
        if matches!(self.b.get(self.i), Some(b'e' | b'E')) {
            self.i += 1;
            if matches!(self.b.get(self.i), Some(b'+' | b'-')) {
                self.i += 1;
            }
            if !digits(self) {
                return None;
            }
        }
        let text = std::str::from_utf8(&self.b[start..self.i]).ok()?;
        let f: f64 = text.parse().ok()?;
        f.is_finite().then_some(Json::Num(f))
    }

    fn hex4(&mut self) -> Option<u32> {
        let h = self.b.get(self.i..self.i + 4)?;
        let s = std::str::from_utf8(h).ok()?;
        let v = u32::from_str_radix(s, 16).ok().filter(|_| s.bytes().all(|c| c.is_ascii_hexdigit()))?;
        self.i += 4;
        Some(v)
    }

    fn string(&mut self) -> Option<String> {
        self.eat(b"\"")?;
        let mut out = Vec::new();
        loop {
            let c = *self.b.get(self.i)?;
            self.i += 1;
            match c {
                b'"' => return String::from_utf8(out).ok(),
                b'\\' => {
                    let e = *self.b.get(self.i)?;
                    self.i += 1;
                    let ch = match e {
                        b'"' => '"',
                        b'\\' => '\\',
                        b'/' => '/',
                        b'b' => '\u{8}',
                        b'f' => '\u{c}',
                        b'n' => '\n',
                        b'r' => '\r',
                        b't' => '\t',
                        b'u' => {
                            let u = self.hex4()?;
                            if (0xD800..0xE000).contains(&u) {
                                // A high surrogate followed by a low one's escape makes a pair;
                                // anything else is U+FFFD (and what follows is read on its own).
                                let save = self.i;
                                let low = (u < 0xDC00 && self.eat(b"\\u").is_some()).then(|| self.hex4()).flatten();
                                match low {
                                    Some(l) if (0xDC00..0xE000).contains(&l) => {
                                        char::from_u32(0x10000 + ((u - 0xD800) << 10) + (l - 0xDC00))
                                            .unwrap_or('\u{fffd}')
                                    }
                                    _ => {
                                        self.i = save;
                                        '\u{fffd}'
                                    }
                                }
                            } else {
                                char::from_u32(u).unwrap_or('\u{fffd}')
                            }
                        }
                        _ => return None,
                    };
                    let mut tmp = [0u8; 4];
                    out.extend_from_slice(ch.encode_utf8(&mut tmp).as_bytes());
                }
                c if c < 0x20 => return None,
                c => out.push(c),
            }
        }
    }
}

/// Writes a parsed value as Go's encoder writes the `any` it became.
pub(crate) fn write(buf: &mut Vec<u8>, v: &Json) {
    match v {
        Json::Null => buf.extend_from_slice(b"null"),
        Json::Bool(b) => buf.extend_from_slice(if *b { b"true" } else { b"false" }),
        Json::Num(f) => json::float(buf, *f),
        Json::Str(s) => json::string(buf, s.as_bytes()),
        Json::Arr(items) => {
            buf.push(b'[');
            for item in items {
                json::sep(buf);
                write(buf, item);
            }
            buf.push(b']');
        }
        Json::Obj(pairs) => write_object(buf, pairs, |_| true),
    }
}

/// An object, keeping only the keys `keep` accepts.
pub(crate) fn write_object(buf: &mut Vec<u8>, pairs: &[(String, Json)], keep: impl Fn(&str) -> bool) {
    buf.push(b'{');
    for (k, v) in pairs.iter().filter(|(k, _)| keep(k)) {
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
            Some(pairs) => write_object(&mut buf, &pairs, |_| true),
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
            round(r#"{"n":12345678901234567890,"e":1e21,"m":-0,"s":1E-7}"#).as_deref(),
            Some(r#"{"e":1e+21,"m":-0,"n":12345678901234567000,"s":1e-7}"#)
        );
        assert_eq!(round("null").as_deref(), Some("null"));
        assert_eq!(round("{}").as_deref(), Some("{}"));
        assert_eq!(
            round(r#"{"u":"\u00e9\ud83d\ude00\ud800x\udc00","w":"\/\b\f\n\r\t"}"#).as_deref(),
            Some("{\"u\":\"é😀\u{fffd}x\u{fffd}\",\"w\":\"/\\b\\f\\n\\r\\t\"}")
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
        assert_eq!(round(&deep), None);
        let ok = format!("{{\"a\":{}1{}}}", "[".repeat(50), "]".repeat(50));
        assert!(round(&ok).is_some());
    }
}
