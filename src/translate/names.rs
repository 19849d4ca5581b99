//! The segment's `name` and `namespace`, as the exporter picks them (mapping §3).
//!
//! X-Ray names a segment after a service, not an operation, so the exporter walks a list of
//! attributes and takes the first non-empty one, falling back to the span name with the
//! characters X-Ray refuses removed. Values from attributes are used verbatim; only the span
//! name is sanitised (`fix_segment_name`). A database span is named `db@host`, the host taken
//! from the connection string as Go's `net/url` would parse it (`db_host`).

use super::attributes::{get_str, Attrs};
use opentelemetry_proto::tonic::common::v1::KeyValue;
use std::borrow::Cow;
use unicode_general_category::{get_general_category, GeneralCategory as G};

/// What names a segment.
pub(crate) struct Named<'a> {
    pub(crate) name: Cow<'a, [u8]>,
    pub(crate) namespace: Option<&'static str>,
}

/// The OTLP span kinds; an unknown value counts as `Unspecified`, as every check in the
/// exporter treats it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Unspecified,
    Internal,
    Server,
    Client,
    Producer,
    Consumer,
}

impl Kind {
    pub(crate) fn of(kind: i32) -> Kind {
        match kind {
            1 => Kind::Internal,
            2 => Kind::Server,
            3 => Kind::Client,
            4 => Kind::Producer,
            5 => Kind::Consumer,
            _ => Kind::Unspecified,
        }
    }
}

/// `rpc.system` is exactly `aws-api` (first occurrence, string).
pub(crate) fn is_aws_sdk(attrs: &Attrs<'_>) -> bool {
    attrs.get_str("rpc.system") == "aws-api"
}

/// Drops one leading `AWS.SDK.` or else `AWS::`, on `aws-api` spans only.
pub(crate) fn trim_aws_sdk_prefix(name: &str, aws_sdk: bool) -> &str {
    if !aws_sdk {
        return name;
    }
    name.strip_prefix("AWS.SDK.").or_else(|| name.strip_prefix("AWS::")).unwrap_or(name)
}

/// The name and namespace of one piece, from its span attributes (after the exporter's
/// removals) and the resource.
pub(crate) fn name<'a>(attrs: &Attrs<'a>, resource: &'a [KeyValue], kind: Kind, span_name: &'a str) -> Named<'a> {
    let aws_sdk = is_aws_sdk(attrs);
    let present = |key: &str| attrs.get(key).is_some();
    let mut name: Cow<'a, str> = Cow::Borrowed("");
    let local_root = kind == Kind::Internal && attrs.get_str("aws.span.kind") == "LOCAL_ROOT";
    if (kind == Kind::Server || local_root) && present("aws.local.service") {
        name = Cow::Borrowed(attrs.get_str("aws.local.service"));
    }
    if matches!(kind, Kind::Client | Kind::Producer | Kind::Consumer) && present("aws.remote.service") {
        name = Cow::Borrowed(trim_aws_sdk_prefix(attrs.get_str("aws.remote.service"), aws_sdk));
    }
    if name.is_empty() {
        name = Cow::Borrowed(attrs.get_str("peer.service"));
    }
    let mut namespace = aws_sdk.then_some("aws");
    if name.is_empty() && present("aws.service") {
        name = Cow::Borrowed(attrs.get_str("aws.service"));
        namespace = namespace.or(Some("aws"));
    }
    if name.is_empty() && present("db.name") {
        let db = attrs.get_str("db.name");
        let host = attrs.get("db.connection_string").and_then(|_| {
            let conn = attrs.get_str("db.connection_string");
            db_host(conn.strip_prefix("jdbc:").unwrap_or(conn))
        });
        name = match host {
            Some(host) if !host.is_empty() => Cow::Owned(format!("{db}@{host}")),
            _ => Cow::Borrowed(db),
        };
    }
    if name.is_empty() && kind == Kind::Server {
        name = Cow::Borrowed(get_str(resource, "service.name"));
    }
    for key in ["rpc.service", "http.host", "net.peer.name"] {
        if name.is_empty() {
            name = Cow::Borrowed(attrs.get_str(key));
        }
    }
    if namespace.is_none() && matches!(kind, Kind::Client | Kind::Producer) {
        namespace = Some("remote");
    }
    let name = match name {
        Cow::Borrowed("") => fix_segment_name(span_name),
        Cow::Borrowed(s) => Cow::Borrowed(s.as_bytes()),
        Cow::Owned(s) => Cow::Owned(s.into_bytes()),
    };
    Named { name, namespace }
}

/// The characters X-Ray accepts in a name: space, ASCII digits, Unicode letters (general
/// category L*, not `char::is_alphabetic`, which also takes Nl and combining marks) and
/// `_ . : / % & # = + - @`.
fn allowed(c: char) -> bool {
    match c {
        ' ' | '0'..='9' | '_' | '.' | ':' | '/' | '%' | '&' | '#' | '=' | '+' | '-' | '@' => true,
        c if c.is_ascii() => c.is_ascii_alphabetic(),
        c => matches!(
            get_general_category(c),
            G::UppercaseLetter | G::LowercaseLetter | G::TitlecaseLetter | G::ModifierLetter | G::OtherLetter
        ),
    }
}

/// The span name with every refused character deleted, cut to its first 200 bytes (possibly
/// inside a character: the writer turns the stray bytes into `\ufffd`, as Go does), or `span`
/// when nothing is left.
pub(crate) fn fix_segment_name(name: &str) -> Cow<'_, [u8]> {
    const MAX: usize = 200;
    let fixed: Cow<'_, str> = if name.chars().all(allowed) {
        Cow::Borrowed(name)
    } else {
        Cow::Owned(name.chars().filter(|&c| allowed(c)).collect())
    };
    match fixed {
        Cow::Borrowed("") => Cow::Borrowed(b"span"),
        Cow::Owned(s) if s.is_empty() => Cow::Borrowed(b"span"),
        Cow::Borrowed(s) => Cow::Borrowed(&s.as_bytes()[..s.len().min(MAX)]),
        Cow::Owned(s) => {
            let mut b = s.into_bytes();
            b.truncate(MAX);
            Cow::Owned(b)
        }
    }
}

/// The host name Go's `url.Parse(s).Hostname()` returns, or `None` when it fails to parse.
/// Covers the rules that decide whether a host comes out: scheme, opaque forms, authority,
/// userinfo, port and percent-escape validation, brackets.
pub(crate) fn db_host(s: &str) -> Option<String> {
    if s.bytes().any(|b| b < 0x20 || b == 0x7f) {
        return None;
    }
    let (s, fragment) = s.split_once('#').unwrap_or((s, ""));
    unescape(fragment, false)?;
    if s == "*" {
        return Some(String::new());
    }
    let (scheme, rest) = split_scheme(s)?;
    let rest = match rest.strip_suffix('?') {
        Some(r) if rest.matches('?').count() == 1 => r,
        _ => rest.split_once('?').map_or(rest, |(r, _)| r),
    };
    if !rest.starts_with('/') {
        if scheme.is_some() {
            return Some(String::new()); // opaque: no host
        }
        if rest.split('/').next().unwrap_or("").contains(':') {
            return None;
        }
    }
    let mut host = String::new();
    let mut path = rest;
    if (scheme.is_some() || !rest.starts_with("///")) && rest.starts_with("//") {
        let authority = &rest[2..];
        let (authority, p) = authority.find('/').map_or((authority, ""), |i| authority.split_at(i));
        path = p;
        let host_port = match authority.rfind('@') {
            Some(i) => {
                let userinfo = &authority[..i];
                if !userinfo.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._:~!$&'()*+,;=%@".contains(&b)) {
                    return None;
                }
                unescape(userinfo, false)?;
                &authority[i + 1..]
            }
            None => authority,
        };
        host = parse_host(host_port)?;
    }
    unescape(path, false)?;
    Some(hostname(&host).to_owned())
}

/// `scheme:` when the text before the first `:` is a valid scheme; an error when it is empty.
fn split_scheme(s: &str) -> Option<(Option<&str>, &str)> {
    for (i, b) in s.bytes().enumerate() {
        match b {
            b'a'..=b'z' | b'A'..=b'Z' => {}
            b'0'..=b'9' | b'+' | b'-' | b'.' if i > 0 => {}
            b':' if i == 0 => return None,
            b':' => return Some((Some(&s[..i]), &s[i + 1..])),
            _ => return Some((None, s)),
        }
    }
    Some((None, s))
}

/// `:digits` or nothing.
fn valid_optional_port(p: &str) -> bool {
    p.is_empty() || (p.starts_with(':') && p[1..].bytes().all(|b| b.is_ascii_digit()))
}

/// Go's `parseHost`: brackets must hold an IPv6 address, a port must be digits, and only
/// characters a host may hold, `%25` or non-ASCII escapes.
fn parse_host(host: &str) -> Option<String> {
    if let Some(inner) = host.strip_prefix('[') {
        let close = inner.rfind(']')?;
        if !valid_optional_port(&inner[close + 1..]) {
            return None;
        }
        let addr = &inner[..close];
        let ip = addr.find("%25").map_or(addr, |z| &addr[..z]);
        ip.parse::<std::net::Ipv6Addr>().ok()?;
    } else if let Some(i) = host.rfind(':') {
        if !valid_optional_port(&host[i..]) {
            return None;
        }
    }
    unescape(host, true)
}

/// Percent-decoding with Go's checks; `in_host` also refuses characters a host cannot hold
/// and `%XX` escapes of ASCII bytes other than `%25`.
fn unescape(s: &str, in_host: bool) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        if c == b'%' {
            let h = b.get(i + 1).and_then(|&h| (h as char).to_digit(16))?;
            let l = b.get(i + 2).and_then(|&l| (l as char).to_digit(16))?;
            if in_host && h < 8 && &b[i..i + 3] != b"%25" {
                return None;
            }
            out.push((h * 16 + l) as u8);
            i += 3;
            continue;
        }
        if in_host && c < 0x80 && !(c.is_ascii_alphanumeric() || b"-_.~!$&'()*+,;=:[]<>\"".contains(&c)) {
            return None;
        }
        out.push(c);
        i += 1;
    }
    Some(String::from_utf8_lossy(&out).into_owned())
}

/// `URL.Hostname()`: the host without its port and brackets.
fn hostname(host: &str) -> &str {
    let host = match host.rfind(':') {
        Some(i) if valid_optional_port(&host[i..]) => &host[..i],
        _ => host,
    };
    host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::translate::test_attrs::s as kv;

    fn named(attrs: &[KeyValue], resource: &[KeyValue], kind: Kind, span: &str) -> (String, Option<&'static str>) {
        let a = Attrs::new(attrs);
        let n = name(&a, resource, kind, span);
        (String::from_utf8_lossy(&n.name).into_owned(), n.namespace)
    }

    #[test]
    fn fix_segment_name_keeps_letters_by_general_category() {
        assert_eq!(&*fix_segment_name("héllo wörld! ١٢٣ \\tab\t(x)"), "héllo wörld  tabx".as_bytes());
        assert_eq!(
            &*fix_segment_name("EP @ test_15.testing-d\u{F6}main.org#GO"),
            "EP @ test_15.testing-d\u{F6}main.org#GO".as_bytes()
        );
        assert_eq!(&*fix_segment_name("<subDomain>.example.com"), b"subDomain.example.com");
        assert_eq!(&*fix_segment_name("<>"), b"span");
        assert_eq!(&*fix_segment_name(""), b"span");
        // Nl (Roman numeral), Mn (combining acute), Lm (modifier letter), Lo (CJK)
        assert_eq!(&*fix_segment_name("\u{2160}e\u{301}\u{2B0}\u{4E2D}"), "e\u{2B0}\u{4E2D}".as_bytes());
        let long = "é".repeat(150);
        assert_eq!(fix_segment_name(&long).len(), 200);
        let odd = format!("a{}", "é".repeat(150));
        let cut = fix_segment_name(&odd);
        assert_eq!(cut.len(), 200);
        assert!(std::str::from_utf8(&cut).is_err(), "cut inside a character");
    }

    #[test]
    fn trim_only_on_aws_sdk_spans() {
        assert_eq!(trim_aws_sdk_prefix("AWS::DynamoDB", true), "DynamoDB");
        assert_eq!(trim_aws_sdk_prefix("AWS.SDK.S3", true), "S3");
        assert_eq!(trim_aws_sdk_prefix("AWS.SDK.AWS::X", true), "AWS::X");
        assert_eq!(trim_aws_sdk_prefix("AWS.SDK.S3", false), "AWS.SDK.S3");
    }

    #[test]
    fn db_host_like_go_net_url() {
        assert_eq!(db_host("postgresql://db.host:5432").as_deref(), Some("db.host"));
        assert_eq!(db_host("mysql://user:pw@db.dev.example.com:3306/x?y#z").as_deref(), Some("db.dev.example.com"));
        assert_eq!(db_host("mysql://[::1]:3306").as_deref(), Some("::1"));
        assert_eq!(db_host("host:3306").as_deref(), Some("")); // scheme "host", opaque
        assert_eq!(db_host("Server=x;Database=y").as_deref(), Some(""));
        assert_eq!(db_host("//h/p").as_deref(), Some("h"));
        assert_eq!(db_host(":x"), None);
        assert_eq!(db_host("a b:c/"), None, "colon in first segment");
        assert_eq!(db_host("x://h:port"), None);
        assert_eq!(db_host("x://[zz]"), None);
        assert_eq!(db_host("x://h/%zz"), None);
        assert_eq!(db_host("x://h%41"), None, "ASCII escapes are refused in hosts");
        assert_eq!(db_host("x://h{}"), None);
        assert_eq!(db_host("x://u{@h"), None, "invalid userinfo");
        assert_eq!(db_host("x://h\n"), None);
    }

    #[test]
    fn name_rules_in_order() {
        let res = [kv("service.name", "svc")];
        assert_eq!(named(&[], &res, Kind::Server, "GET /").0, "svc");
        assert_eq!(named(&[], &res, Kind::Client, "GET /"), ("GET /".into(), Some("remote")));
        assert_eq!(named(&[], &res, Kind::Producer, "p").1, Some("remote"));
        assert_eq!(named(&[], &res, Kind::Consumer, "c").1, None);
        let local = [kv("aws.local.service", "local"), kv("peer.service", "peer")];
        assert_eq!(named(&local, &res, Kind::Server, "x").0, "local");
        assert_eq!(named(&local, &res, Kind::Internal, "x").0, "peer");
        let lr = [kv("aws.span.kind", "LOCAL_ROOT"), kv("aws.local.service", "local")];
        assert_eq!(named(&lr, &res, Kind::Internal, "x").0, "local");
        let remote = [kv("rpc.system", "aws-api"), kv("aws.remote.service", "AWS::S3")];
        assert_eq!(named(&remote, &res, Kind::Client, "x"), ("S3".into(), Some("aws")));
        let svc = [kv("aws.service", "")];
        assert_eq!(named(&svc, &res, Kind::Client, "x! y"), ("x y".into(), Some("aws")));
        let db = [kv("db.name", "orders"), kv("db.connection_string", "jdbc:postgresql://db.host:5432")];
        assert_eq!(named(&db, &res, Kind::Client, "q").0, "orders@db.host");
        let no_db = [kv("db.name", ""), kv("db.connection_string", "jdbc:postgresql://db.host:5432")];
        assert_eq!(named(&no_db, &res, Kind::Client, "q").0, "@db.host");
        let rest = [kv("net.peer.name", "np"), kv("http.host", "hh"), kv("rpc.service", "rs")];
        assert_eq!(named(&rest, &res, Kind::Client, "q").0, "rs");
        assert_eq!(named(&rest[..2], &res, Kind::Client, "q").0, "hh");
        assert_eq!(named(&rest[..1], &res, Kind::Client, "q").0, "np");
        let long = "x".repeat(300);
        assert_eq!(named(&[kv("peer.service", &long)], &res, Kind::Client, "q").0.len(), 300, "verbatim");
    }
}
