//! The `http` block (mapping §5), from the old (pre-1.20) and the new HTTP semantic
//! conventions alike.
//!
//! The exporter walks the attribute list once, in order: later keys overwrite earlier ones,
//! every HTTP/network key is consumed whether or not a block results, and the request URL is
//! either the full URL or assembled from scheme, host, port, target or path and query, with
//! different host and port sources for server spans and for every other kind.

use super::attributes::{get, int_of, str_of, val, Attrs};
use super::json;
use super::names::Kind;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::trace::v1::span::Event;
use std::borrow::Cow;

/// The http block of one piece.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Http<'a> {
    method: Option<&'a str>,
    url: Option<Cow<'a, str>>,
    user_agent: Option<&'a str>,
    client_ip: Option<&'a str>,
    x_forwarded_for: bool,
    status: Option<i64>,
    content_length: i64,
}

/// The URL parts seen, each `Some` once its key was (even with an empty value).
#[derive(Default)]
struct Parts<'a> {
    url: Option<&'a str>,
    scheme: Option<&'a str>,
    http_host: Option<&'a str>,
    target: Option<&'a str>,
    server_name: Option<&'a str>,
    net_host_port: Option<Cow<'a, str>>,
    host_name: Option<&'a str>,
    net_host_name: Option<&'a str>,
    net_peer_name: Option<&'a str>,
    net_peer_port: Option<Cow<'a, str>>,
    net_peer_ip: Option<&'a str>,
    path: Option<&'a str>,
    query: Option<&'a str>,
    server_address: Option<&'a str>,
    server_port: Option<Cow<'a, str>>,
}

fn non_empty(s: &str) -> Option<&str> {
    (!s.is_empty()).then_some(s)
}

/// A port: the string, or when that is empty the decimal of the integer (`0` for other types).
fn port(v: Option<&Value>) -> Cow<'_, str> {
    match str_of(v) {
        "" => Cow::Owned(int_of(v).to_string()),
        s => Cow::Borrowed(s),
    }
}

/// Go's `net.ParseIP`: plain IPv4 or IPv6 text, no port, zone or brackets.
fn is_ip(s: &str) -> bool {
    s.parse::<std::net::IpAddr>().is_ok()
}

/// Walks the attributes, consumes every HTTP/network key, and returns the block if any key
/// that makes one was seen.
pub(crate) fn make<'a>(attrs: &mut Attrs<'a>, kind: Kind, events: &'a [Event]) -> Option<Http<'a>> {
    let mut h = Http::default();
    let mut p = Parts::default();
    let (mut has_http, mut has_url, mut has_peer_addr) = (false, false, false);
    let mut consumed = Vec::new();
    for (pos, kv) in attrs.iter() {
        let v = val(kv);
        let s = str_of(v);
        match kv.key.as_str() {
            "http.method" | "http.request.method" => (h.method, has_http) = (non_empty(s), true),
            "http.client_ip" => (h.client_ip, has_http) = (non_empty(s), true),
            "http.user_agent" | "user_agent.original" => (h.user_agent, has_http) = (non_empty(s), true),
            "http.status_code" | "http.response.status_code" => (h.status, has_http) = (Some(int_of(v)), true),
            "http.url" | "url.full" => (p.url, has_http, has_url) = (Some(s), true, true),
            "http.scheme" | "url.scheme" => (p.scheme, has_http) = (Some(s), true),
            "http.host" => (p.http_host, has_http, has_url) = (Some(s), true, true),
            "http.target" => (p.target, has_http) = (Some(s), true),
            "http.server_name" => (p.server_name, has_http, has_url) = (Some(s), true, true),
            "net.host.port" => (p.net_host_port, has_http) = (Some(port(v)), true),
            "host.name" => (p.host_name, has_url) = (Some(s), true),
            "net.host.name" => (p.net_host_name, has_url) = (Some(s), true),
            "net.peer.name" => (p.net_peer_name, has_url) = (Some(s), true),
            "net.peer.port" => p.net_peer_port = Some(port(v)),
            "net.peer.ip" => {
                h.client_ip = h.client_ip.or(non_empty(s));
                (p.net_peer_ip, has_url, has_peer_addr) = (Some(s), true, true);
            }
            "network.peer.address" => {
                if is_ip(s) {
                    h.client_ip = h.client_ip.or(Some(s));
                    (has_url, has_peer_addr) = (true, true);
                }
            }
            "client.address" => {
                if is_ip(s) {
                    h.client_ip = Some(s);
                }
            }
            "url.path" => (p.path, has_http) = (Some(s), true),
            "url.query" => (p.query, has_http) = (Some(s), true),
            "server.address" => (p.server_address, has_url) = (Some(s), true),
            "server.port" => p.server_port = Some(port(v)),
            _ => continue,
        }
        consumed.push(pos);
    }
    for pos in consumed {
        attrs.consume_at(pos);
    }
    if !has_http {
        return None;
    }
    h.x_forwarded_for = h.client_ip.is_some() && !has_peer_addr;
    if has_url {
        h.url = Some(url(p, kind == Kind::Server));
    }
    h.content_length = content_length(attrs, events);
    Some(h)
}

fn url(p: Parts<'_>, server: bool) -> Cow<'_, str> {
    if let Some(full) = p.url {
        return Cow::Borrowed(full);
    }
    let scheme = p.scheme.unwrap_or("http");
    let (host, port) = match p.http_host {
        Some(host) => (host, Cow::Borrowed("")),
        None if server => (
            p.server_name.or(p.net_host_name).or(p.host_name).or(p.server_address).unwrap_or(""),
            p.net_host_port.or(p.server_port).unwrap_or_default(),
        ),
        None => (p.net_peer_name.or(p.net_peer_ip).unwrap_or(""), p.net_peer_port.unwrap_or_default()),
    };
    let mut url = format!("{scheme}://{host}");
    let default_port = (scheme == "http" && port == "80") || (scheme == "https" && port == "443");
    if !port.is_empty() && !default_port {
        url.push(':');
        url.push_str(&port);
    }
    match p.target {
        Some(target) => url.push_str(target),
        None => {
            url.push_str(p.path.unwrap_or("/"));
            if let Some(query) = p.query {
                if !query.starts_with('?') {
                    url.push('?');
                }
                url.push_str(query);
            }
        }
    }
    Cow::Owned(url)
}

/// `messaging.message_payload_size_bytes` of the span, when `message.type` is `RECEIVED`, else
/// of the first event that has a non-zero one, else 0.
fn content_length(attrs: &Attrs<'_>, events: &[Event]) -> i64 {
    let of = |message_type: &str, size: Option<i64>| if message_type == "RECEIVED" { size.unwrap_or(0) } else { 0 };
    let span =
        of(attrs.get_str("message.type"), attrs.get("messaging.message_payload_size_bytes").map(|kv| int_of(val(kv))));
    if span != 0 {
        return span;
    }
    events
        .iter()
        .map(|e| {
            let a = &e.attributes;
            of(
                str_of(get(a, "message.type").and_then(val)),
                get(a, "messaging.message_payload_size_bytes").map(|kv| int_of(val(kv))),
            )
        })
        .find(|&n| n != 0)
        .unwrap_or(0)
}

/// `"http":{"request":{…},"response":{…}}`; both objects appear even when empty.
pub(crate) fn write(buf: &mut Vec<u8>, h: &Http<'_>) {
    json::key(buf, "http");
    buf.extend_from_slice(b"{\"request\":{");
    if h.x_forwarded_for {
        json::bool_field(buf, "x_forwarded_for", true);
    }
    json::opt_str_field(buf, "method", h.method.unwrap_or(""));
    json::opt_str_field(buf, "url", h.url.as_deref().unwrap_or(""));
    json::opt_str_field(buf, "user_agent", h.user_agent.unwrap_or(""));
    json::opt_str_field(buf, "client_ip", h.client_ip.unwrap_or(""));
    buf.extend_from_slice(b"},\"response\":{");
    if let Some(status) = h.status {
        json::int_field(buf, "status", status);
    }
    json::int_field(buf, "content_length", h.content_length);
    buf.extend_from_slice(b"}}");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::translate::test_attrs::{i, kv, s};
    use opentelemetry_proto::tonic::common::v1::KeyValue;

    /// The block's JSON (or "none") and the keys left in the remaining map.
    fn run(kvs: &[KeyValue], kind: Kind, events: &[Event]) -> (String, Vec<String>) {
        let mut attrs = Attrs::new(kvs);
        let out = match make(&mut attrs, kind, events) {
            Some(h) => {
                let mut buf = Vec::new();
                write(&mut buf, &h);
                String::from_utf8(buf).unwrap()
            }
            None => "none".into(),
        };
        (out, attrs.remaining_entries().iter().map(|(_, kv)| kv.key.clone()).collect())
    }

    #[test]
    fn old_conventions_server() {
        let kvs = [
            s("http.method", "POST"),
            s("http.url", "https://api.example.org/api/locations"),
            s("http.target", "/api/locations"),
            i("http.status_code", 500),
            s("http.user_agent", "PostmanRuntime/7.21.0"),
            s("http.client_ip", "192.168.15.32"),
            s("other", "x"),
        ];
        let (out, left) = run(&kvs, Kind::Server, &[]);
        assert_eq!(
            out,
            r#""http":{"request":{"x_forwarded_for":true,"method":"POST","url":"https://api.example.org/api/locations","user_agent":"PostmanRuntime/7.21.0","client_ip":"192.168.15.32"},"response":{"status":500,"content_length":0}}"#
        );
        assert_eq!(left, ["other"]);
    }

    #[test]
    fn server_url_assembled_from_parts() {
        let kvs = [
            s("http.method", "GET"),
            s("http.scheme", "https"),
            s("http.server_name", "api.example.com"),
            i("net.host.port", 8443),
            s("http.target", "/users/junit"),
        ];
        assert!(run(&kvs, Kind::Server, &[]).0.contains(r#""url":"https://api.example.com:8443/users/junit""#));
        let kvs =
            [s("http.method", "GET"), s("http.scheme", "http"), s("net.host.name", "h"), s("net.host.port", "80")];
        assert!(run(&kvs, Kind::Server, &[]).0.contains(r#""url":"http://h/""#));
        let kvs = [s("http.method", "GET"), s("http.host", "hh"), s("net.host.port", "99")];
        assert!(run(&kvs, Kind::Server, &[]).0.contains(r#""url":"http://hh/""#), "no port with http.host");
    }

    #[test]
    fn new_conventions_server_and_client() {
        let kvs = [
            s("http.request.method", "GET"),
            s("url.scheme", "https"),
            s("server.address", "api.example.com"),
            i("server.port", 443),
            s("url.path", "/users"),
            s("url.query", "a=b"),
            s("client.address", "10.0.0.1"),
            i("http.response.status_code", 200),
            s("user_agent.original", "ua"),
        ];
        let (out, left) = run(&kvs, Kind::Server, &[]);
        assert_eq!(
            out,
            r#""http":{"request":{"x_forwarded_for":true,"method":"GET","url":"https://api.example.com/users?a=b","user_agent":"ua","client_ip":"10.0.0.1"},"response":{"status":200,"content_length":0}}"#
        );
        assert!(left.is_empty());
        // a client span does not take server.address as its host
        let kvs =
            [s("http.request.method", "GET"), s("server.address", "h"), s("url.path", "/p"), s("url.query", "a=b")];
        assert!(run(&kvs, Kind::Client, &[]).0.contains(r#""url":"http:///p?a=b""#));
        let kvs = [s("url.full", "https://x/y"), s("network.peer.address", "1.2.3.4"), s("url.query", "")];
        assert!(run(&kvs, Kind::Client, &[]).0.contains(r#""request":{"url":"https://x/y","client_ip":"1.2.3.4"}"#));
        let kvs = [s("url.path", "/p"), s("url.query", ""), s("server.address", "h")];
        assert!(run(&kvs, Kind::Server, &[]).0.contains(r#""url":"http://h/p?""#), "empty query: bare ?");
    }

    #[test]
    fn client_url_and_peer_address() {
        let kvs = [
            s("http.method", "GET"),
            s("http.scheme", "https"),
            s("net.peer.ip", "2607:f8b0:4000:80c::2004"),
            s("net.peer.port", "9443"),
            s("http.target", "/"),
        ];
        assert_eq!(
            run(&kvs, Kind::Client, &[]).0,
            r#""http":{"request":{"method":"GET","url":"https://2607:f8b0:4000:80c::2004:9443/","client_ip":"2607:f8b0:4000:80c::2004"},"response":{"content_length":0}}"#
        );
        let kvs = [s("http.method", "GET"), s("net.peer.name", "n"), kv("net.peer.port", Value::DoubleValue(1.5))];
        assert!(run(&kvs, Kind::Client, &[]).0.contains(r#""url":"http://n:0/""#), "odd port type gives 0");
        // network.peer.address that is not an IP is consumed and ignored
        let kvs = [s("http.method", "GET"), s("network.peer.address", "host:80")];
        let (out, left) = run(&kvs, Kind::Client, &[]);
        assert_eq!(out, r#""http":{"request":{"method":"GET"},"response":{"content_length":0}}"#);
        assert!(left.is_empty());
    }

    #[test]
    fn client_ip_rules() {
        let kvs = [s("http.method", "GET"), s("http.client_ip", "1.1.1.1"), s("http.client_ip", "")];
        assert!(!run(&kvs, Kind::Server, &[]).0.contains("client_ip"), "empty clears");
        let kvs = [s("http.method", "GET"), s("http.client_ip", "1.1.1.1"), s("net.peer.ip", "2.2.2.2")];
        assert!(run(&kvs, Kind::Server, &[]).0.contains(r#"{"method":"GET","url":"http:///","client_ip":"1.1.1.1"}"#));
        let kvs = [s("http.method", "GET"), s("net.peer.ip", "2.2.2.2"), s("client.address", "3.3.3.3")];
        assert!(run(&kvs, Kind::Server, &[]).0.contains(r#""client_ip":"3.3.3.3"}"#), "client.address overwrites");
    }

    #[test]
    fn status_as_string_is_zero_and_last_alias_wins() {
        let kvs = [s("http.status_code", "500")];
        assert!(run(&kvs, Kind::Server, &[]).0.contains(r#""response":{"status":0,"#));
        let kvs = [s("url.full", "a"), s("http.url", "b")];
        assert!(run(&kvs, Kind::Client, &[]).0.contains(r#""url":"b""#));
        let kvs = [s("host.name", "h")];
        assert_eq!(run(&kvs, Kind::Server, &[]).0, "none", "host.name alone makes no block");
        assert_eq!(run(&[], Kind::Server, &[]).0, "none");
    }

    #[test]
    fn content_length_from_span_or_first_event() {
        let ev = |n: i64| Event {
            attributes: vec![s("message.type", "RECEIVED"), i("messaging.message_payload_size_bytes", n)],
            ..Default::default()
        };
        let kvs = [s("http.method", "GET")];
        let events = [Event::default(), ev(0), ev(12), ev(13)];
        assert!(run(&kvs, Kind::Server, &events).0.contains(r#""content_length":12"#));
        let kvs =
            [s("http.method", "GET"), s("message.type", "RECEIVED"), i("messaging.message_payload_size_bytes", 7)];
        let (out, left) = run(&kvs, Kind::Server, &events);
        assert!(out.contains(r#""content_length":7"#));
        assert_eq!(left, ["message.type", "messaging.message_payload_size_bytes"]);
    }
}
