//! Flags and cause, with deterministic exception ids.

use super::*;
use crate::translate::test_attrs::{kv, s};
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue};
use opentelemetry_proto::tonic::trace::v1::Status;

fn span(attrs: Vec<KeyValue>, code: StatusCode, message: &str, events: Vec<Event>) -> Span {
    Span {
        attributes: attrs,
        status: Some(Status { code: code as i32, message: message.into() }),
        events,
        ..Default::default()
    }
}

fn event(name: &str, attrs: Vec<KeyValue>) -> Event {
    Event { name: name.into(), attributes: attrs, time_unix_nano: 1_700_000_000_123_456_789, ..Default::default() }
}

/// The flags, the cause JSON and the keys left.
fn run(span: &Span, kind: Kind, language: &str) -> ((bool, bool, bool), String, Vec<String>) {
    let mut attrs = Attrs::new(&span.attributes);
    let aws_sdk = attrs.get_str("rpc.system") == "aws-api";
    let flags = flags(&attrs, span);
    let cause = decide(&mut attrs, span, aws_sdk);
    let mut n = 0u64;
    let mut next = || {
        n += 1;
        n
    };
    let mut buf = Vec::new();
    write(&mut buf, &cause, span, kind, language, aws_sdk, &mut next);
    let left = attrs.remaining_entries().iter().map(|(_, kv)| kv.key.clone()).collect();
    (flags, String::from_utf8(buf).unwrap(), left)
}

#[test]
fn flags_table() {
    let f = |attrs: Vec<KeyValue>, code| run(&span(attrs, code, "", vec![]), Kind::Server, "").0;
    let code = |c: i64| vec![kv("http.status_code", Value::IntValue(c))];
    assert_eq!(f(vec![], StatusCode::Error), (true, false, false));
    assert_eq!(f(vec![], StatusCode::Ok), (false, false, false));
    assert_eq!(f(code(200), StatusCode::Error), (true, false, false));
    assert_eq!(f(code(600), StatusCode::Unset), (false, false, false));
    assert_eq!(f(code(404), StatusCode::Error), (false, true, false), "4xx wins over status");
    assert_eq!(f(code(429), StatusCode::Unset), (false, true, true));
    assert_eq!(f(code(503), StatusCode::Unset), (true, false, false));
    assert_eq!(f(vec![kv("http.response.status_code", Value::IntValue(500))], StatusCode::Unset), (true, false, false));
    let both =
        vec![kv("http.status_code", Value::IntValue(200)), kv("http.response.status_code", Value::IntValue(500))];
    assert_eq!(f(both, StatusCode::Unset), (false, false, false), "http.status_code first");
    assert_eq!(f(vec![s("http.status_code", "500")], StatusCode::Unset), (false, false, false), "a string is 0");
}

#[test]
fn status_path() {
    let sp = span(vec![s("http.status_text", "text")], StatusCode::Error, "msg", vec![]);
    let (_, out, left) = run(&sp, Kind::Server, "");
    assert_eq!(out, r#""cause":{"exceptions":[{"id":"0000000000000001","message":"msg","type":""}]}"#);
    assert!(left.is_empty(), "http.status_text consumed");
    let sp = span(vec![s("http.status_text", "text")], StatusCode::Error, "", vec![]);
    assert!(run(&sp, Kind::Server, "").1.contains(r#""message":"text","type":""}"#));
    let sp = span(vec![s("http.status_text", "text")], StatusCode::Ok, "", vec![]);
    assert_eq!(run(&sp, Kind::Server, "").1, "");
    assert_eq!(run(&sp, Kind::Server, "").2, ["http.status_text"], "kept on other paths");
    let sp = span(vec![], StatusCode::Error, "", vec![]);
    assert_eq!(run(&sp, Kind::Server, "").1, "", "no message, no cause");
}

#[test]
fn exception_events() {
    let ex = event(
        "exception",
        vec![
            s("exception.type", "java.lang.IllegalStateException"),
            s("exception.message", "bad state"),
            s("exception.stacktrace", "x\n\tat a.B.c(B.java:7)\nCaused by: java.lang.IllegalArgumentException: bad"),
        ],
    );
    let empty = event("exception", vec![s("exception.type", "EmptyError")]);
    let sp = span(vec![], StatusCode::Error, "ignored", vec![ex, event("other", vec![]), empty]);
    let (flags, out, _) = run(&sp, Kind::Client, "java");
    assert_eq!(flags, (true, false, false));
    assert_eq!(
        out,
        concat!(
            r#""cause":{"exceptions":[{"id":"0000000000000001","message":"bad state","type":"java.lang.IllegalStateException","remote":true,"#,
            r#""cause":"0000000000000002","stack":[{"path":"B.java","line":7,"label":"a.B.c"}]},"#,
            r#"{"id":"0000000000000002","message":"bad","type":"java.lang.IllegalArgumentException","remote":true},"#,
            r#"{"id":"0000000000000003","message":"","type":"EmptyError","remote":true}]}"#
        )
    );
    let sp = span(vec![], StatusCode::Unset, "", vec![event("exception", vec![])]);
    let (flags, out, _) = run(&sp, Kind::Server, "");
    assert_eq!(flags, (false, false, false), "events set no flag");
    assert_eq!(out, r#""cause":{"exceptions":[{"id":"0000000000000001","message":"","type":"","remote":false}]}"#);
}

#[test]
fn http_request_failure_events_on_aws_sdk_spans() {
    let fail = event(
        "HTTP request failure",
        vec![kv("http.response.status_code", Value::IntValue(503)), s("aws.http.error_message", "slow down")],
    );
    let incomplete = event("HTTP request failure", vec![kv("http.response.status_code", Value::IntValue(503))]);
    let sp = span(vec![s("rpc.system", "aws-api")], StatusCode::Unset, "", vec![fail.clone(), incomplete.clone()]);
    assert_eq!(
        run(&sp, Kind::Client, "").1,
        r#""cause":{"exceptions":[{"id":"0000000000000001","message":"503@1700000000.123456@slow down","type":"aws.http.error.event","remote":true}]}"#
    );
    let sp = span(vec![s("rpc.system", "aws-api")], StatusCode::Error, "m", vec![incomplete]);
    assert_eq!(run(&sp, Kind::Client, "").1, r#""cause":{}"#);
    let sp = span(vec![], StatusCode::Unset, "", vec![fail]);
    assert_eq!(run(&sp, Kind::Client, "").1, "", "not an aws-api span");
}

#[test]
fn as_string_of_values() {
    use opentelemetry_proto::tonic::common::v1::ArrayValue;
    assert_eq!(as_string(Some(&Value::DoubleValue(1.5))), "1.5");
    assert_eq!(as_string(Some(&Value::DoubleValue(f64::NAN))), "json: unsupported value: NaN");
    assert_eq!(as_string(Some(&Value::BytesValue(vec![1, 2, 3]))), "AQID");
    assert_eq!(as_string(Some(&Value::BytesValue(vec![]))), "");
    assert_eq!(as_string(Some(&Value::BoolValue(true))), "true");
    assert_eq!(as_string(None), "");
    let arr = Value::ArrayValue(ArrayValue { values: vec![AnyValue { value: Some(Value::StringValue("<".into())) }] });
    assert_eq!(as_string(Some(&arr)), r#"["\u003c"]"#);
}
