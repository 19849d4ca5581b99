//! Golden tests: whole documents, byte for byte, from spans built like the exporter's own
//! tests and the cases of the mapping reference; every document must also parse as JSON.

use super::*;
use crate::translate::test_attrs::{i, kv, s};
use opentelemetry_proto::tonic::common::v1::{AnyValue, ArrayValue};
use opentelemetry_proto::tonic::trace::v1::span::{Event, Link};
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Status};

/// Ids 1, 2, 3… for reproducible documents.
struct Seq(u64);
impl Ids for Seq {
    fn next_id(&mut self) -> u64 {
        self.0 += 1;
        self.0
    }
}

const TRACE: [u8; 16] =
    [0x5f, 0x84, 0xc7, 0xa1, 0xd5, 0x3c, 0x0c, 0x7a, 0x55, 0x22, 0x5c, 0x7e, 0x44, 0x5b, 0x7d, 0x48];
const TRACE_ID: &str = "1-5f84c7a1-d53c0c7a55225c7e445b7d48";

fn span(kind: i32, name: &str, parent: bool, attrs: Vec<KeyValue>) -> Span {
    Span {
        trace_id: TRACE.to_vec(),
        span_id: vec![0xde, 0xad, 0xbe, 0xef, 0, 0, 0, 1],
        parent_span_id: if parent { vec![0xca, 0xfe, 0, 0, 0, 0, 0, 2] } else { vec![] },
        name: name.into(),
        kind,
        start_time_unix_nano: 1_700_000_000_123_456_789,
        end_time_unix_nano: 1_700_000_001_000_000_000,
        attributes: attrs,
        ..Default::default()
    }
}

fn resource(attrs: Vec<KeyValue>) -> Resource {
    Resource { attributes: attrs, ..Default::default() }
}

/// The documents of one span, checked to be JSON.
fn docs(t: &Translator, res: Option<&Resource>, sp: &Span) -> Vec<String> {
    let mut out = Documents::new();
    let n = t.span(res, sp, &mut Seq(0), &mut out).expect("converted");
    assert_eq!(n, out.len());
    out.iter()
        .map(|d| {
            serde_json::from_slice::<serde_json::Value>(d).expect("valid JSON");
            String::from_utf8(d.to_vec()).expect("UTF-8")
        })
        .collect()
}

fn one(res: Option<&Resource>, sp: &Span) -> String {
    let d = docs(&Translator::new(&Options::default()), res, sp);
    assert_eq!(d.len(), 1);
    d.into_iter().next().unwrap_or_default()
}

#[test]
fn server_span_with_error_status_and_ec2_resource() {
    let res = resource(vec![
        s("service.name", "signup_aggregator"),
        s("service.version", "semver:1.1.4"),
        s("cloud.provider", "aws"),
        s("cloud.platform", "aws_ec2"),
        s("cloud.account.id", "999999998"),
        s("cloud.availability_zone", "us-west-1b"),
        s("host.id", "i-123"),
        s("telemetry.sdk.name", "opentelemetry"),
        s("telemetry.sdk.language", "java"),
        s("telemetry.sdk.version", "1.2.3"),
    ]);
    let mut sp = span(
        2,
        "/api/locations",
        true,
        vec![
            s("http.method", "POST"),
            s("http.url", "https://api.example.org/api/locations"),
            s("http.target", "/api/locations"),
            i("http.status_code", 500),
            s("http.status_text", "java.lang.NullPointerException"),
            s("http.user_agent", "PostmanRuntime/7.21.0"),
            s("enduser.id", "go.tester@example.com"),
            s("enterprise.app.id", "25F2E73B"),
        ],
    );
    sp.status = Some(Status { code: 2, message: String::new() });
    let expected = [
        r#"{"name":"signup_aggregator","id":"deadbeef00000001","start_time":1700000000.1234567,"#,
        r#""service":{"version":"semver:1.1.4"},"origin":"AWS::EC2::Instance","user":"go.tester@example.com","#,
        &format!(r#""trace_id":"{TRACE_ID}","end_time":1700000001,"#),
        r#""http":{"request":{"method":"POST","url":"https://api.example.org/api/locations","user_agent":"PostmanRuntime/7.21.0"},"#,
        r#""response":{"status":500,"content_length":0}},"fault":true,"error":false,"throttle":false,"#,
        r#""cause":{"exceptions":[{"id":"0000000000000001","message":"java.lang.NullPointerException","type":""}]},"#,
        r#""aws":{"ec2":{"instance_id":"i-123","availability_zone":"us-west-1b","instance_size":null,"ami_id":null},"#,
        r#""xray":{"sdk":"opentelemetry for java","sdk_version":"1.2.3","auto_instrumentation":false},"account_id":"999999998"},"#,
        r#""metadata":{"default":{"enterprise.app.id":"25F2E73B","otel.resource.cloud.account.id":"999999998","#,
        r#""otel.resource.cloud.availability_zone":"us-west-1b","otel.resource.cloud.platform":"aws_ec2","#,
        r#""otel.resource.cloud.provider":"aws","otel.resource.host.id":"i-123","#,
        r#""otel.resource.service.name":"signup_aggregator","otel.resource.service.version":"semver:1.1.4","#,
        r#""otel.resource.telemetry.sdk.language":"java","otel.resource.telemetry.sdk.name":"opentelemetry","#,
        r#""otel.resource.telemetry.sdk.version":"1.2.3"}},"parent_id":"cafe000000000002"}"#,
    ]
    .concat();
    assert_eq!(one(Some(&res), &sp), expected);
}

#[test]
fn aws_sdk_client_subsegment() {
    let sp = span(
        3,
        "DynamoDB.GetItem",
        true,
        vec![
            s("rpc.system", "aws-api"),
            s("rpc.service", "DynamoDB"),
            s("rpc.method", "GetItem"),
            s("http.method", "POST"),
            s("http.url", "https://dynamodb.us-east-1.amazonaws.com/"),
            i("http.status_code", 200),
            s("aws.request_id", "18BO1FEPJSSAOGNJEDPTPCMIU7VV4KQNSO5AEMVJF66Q9ASUAAJG"),
            kv(
                "aws.dynamodb.table_names",
                Value::ArrayValue(ArrayValue {
                    values: vec![AnyValue { value: Some(Value::StringValue("otel-dev-Testing".into())) }],
                }),
            ),
            s("aws.region", "us-east-1"),
        ],
    );
    let expected = [
        r#"{"name":"DynamoDB","id":"deadbeef00000001","start_time":1700000000.1234567,"#,
        &format!(r#""trace_id":"{TRACE_ID}","end_time":1700000001,"#),
        r#""http":{"request":{"method":"POST","url":"https://dynamodb.us-east-1.amazonaws.com/"},"response":{"status":200,"content_length":0}},"#,
        r#""fault":false,"error":false,"throttle":false,"#,
        r#""aws":{"xray":{"auto_instrumentation":false},"operation":"GetItem","region":"us-east-1","#,
        r#""request_id":"18BO1FEPJSSAOGNJEDPTPCMIU7VV4KQNSO5AEMVJF66Q9ASUAAJG","table_name":"otel-dev-Testing"},"#,
        r#""metadata":{"default":{"aws.dynamodb.table_names":["otel-dev-Testing"],"rpc.service":"DynamoDB","rpc.system":"aws-api"}},"#,
        r#""namespace":"aws","parent_id":"cafe000000000002","type":"subsegment"}"#,
    ]
    .concat();
    assert_eq!(one(None, &sp), expected);
}

#[test]
fn sql_client_subsegment() {
    let sp = span(
        3,
        "call update_user_preference( ?, ?, ? )",
        true,
        vec![
            s("db.system", "mysql"),
            s("db.name", "customers"),
            s("db.statement", "call update_user_preference( ?, ?, ? )"),
            s("db.user", "userprefsvc"),
            s("db.connection_string", "mysql://db.dev.example.com:3306"),
            s("net.peer.name", "db.dev.example.com"),
            s("net.peer.port", "3306"),
        ],
    );
    let expected = [
        r#"{"name":"customers@db.dev.example.com","id":"deadbeef00000001","start_time":1700000000.1234567,"#,
        &format!(r#""trace_id":"{TRACE_ID}","end_time":1700000001,"fault":false,"error":false,"throttle":false,"#),
        r#""aws":{"xray":{"auto_instrumentation":false}},"namespace":"remote","parent_id":"cafe000000000002","type":"subsegment","#,
        r#""sql":{"connection_string":"mysql://db.dev.example.com:3306/customers","url":"call update_user_preference( ?, ?, ? )","#,
        r#""sanitized_query":"call update_user_preference( ?, ?, ? )","database_type":"mysql","user":"userprefsvc"}}"#,
    ]
    .concat();
    assert_eq!(one(None, &sp), expected);
}

#[test]
fn root_producer_is_a_segment_that_keeps_namespace_remote() {
    let sp = span(4, "my-topic send", false, vec![]);
    let expected = format!(
        r#"{{"name":"my-topic send","id":"deadbeef00000001","start_time":1700000000.1234567,"trace_id":"{TRACE_ID}","end_time":1700000001,"fault":false,"error":false,"throttle":false,"aws":{{"xray":{{"auto_instrumentation":false}}}},"namespace":"remote"}}"#
    );
    assert_eq!(one(Some(&resource(vec![])), &sp), expected);
}

#[test]
fn in_progress_and_the_swap_it_causes() {
    // removing the bool moves the last attribute into its slot: http.url is then walked after
    // url.full and wins
    let sp = span(
        3,
        "x",
        true,
        vec![
            s("url.full", "https://a/"),
            kv("aws.xray.inprogress", Value::BoolValue(true)),
            s("other", "o"),
            s("http.url", "https://b/"),
        ],
    );
    let doc = one(None, &sp);
    assert!(
        doc.contains(&format!(
            r#""trace_id":"{TRACE_ID}","in_progress":true,"http":{{"request":{{"url":"https://b/"}}"#
        )),
        "{doc}"
    );
    assert!(!doc.contains("end_time") && !doc.contains("inprogress"));
    let not_bool = span(3, "x", true, vec![s("aws.xray.inprogress", "true")]);
    let doc = one(None, &not_bool);
    assert!(
        doc.contains(r#""end_time":1700000001"#)
            && doc.contains(r#""metadata":{"default":{"aws.xray.inprogress":"true"}}"#)
    );
    let done = span(3, "x", true, vec![kv("aws.xray.inprogress", Value::BoolValue(false))]);
    let doc = one(None, &done);
    assert!(doc.contains(r#""end_time":1700000001"#) && !doc.contains("in_progress") && !doc.contains("metadata"));
}

#[test]
fn indexed_consumed_keys_come_back_as_annotations() {
    let t = Translator::new(&Options {
        indexed_attributes: vec!["http.method".into(), "missing".into()],
        index_all_attributes: false,
    });
    let sp = span(2, "x", true, vec![s("http.method", "GET"), s("http.method", "PUT")]);
    let doc = docs(&t, None, &sp).concat();
    assert!(doc.contains(r#""request":{"method":"PUT"}"#), "{doc}");
    assert!(doc.contains(r#""annotations":{"http.method":"GET"}"#), "first occurrence put back: {doc}");
}

#[test]
fn span_name_is_cut_at_200_bytes() {
    let sp = span(2, &format!("a{}", "é".repeat(150)), true, vec![]);
    let doc = one(None, &sp);
    assert!(doc.starts_with(&format!(r#"{{"name":"a{}\ufffd","#, "é".repeat(99))), "{doc}");
    assert!(one(None, &span(2, "<>!", true, vec![])).starts_with(r#"{"name":"span","#));
}

#[test]
fn links_are_written_before_the_trace_id() {
    let mut sp = span(5, "consume", true, vec![]);
    sp.links =
        vec![Link { trace_id: TRACE.to_vec(), span_id: vec![0; 8], attributes: vec![i("x", 1)], ..Default::default() }];
    let doc = one(None, &sp);
    assert!(
        doc.contains(&format!(r#""links":[{{"trace_id":"{TRACE_ID}","id":"","attributes":{{"x":1}}}}],"trace_id""#)),
        "{doc}"
    );
    assert!(!doc.contains("\"type\""), "a consumer is a segment");
}

#[test]
fn invalid_ids_are_skipped_and_append_nothing() {
    let t = Translator::new(&Options::default());
    let mut out = Documents::new();
    let good = span(2, "x", true, vec![]);
    t.span(None, &good, &mut Seq(0), &mut out).expect("good");
    let bad = [
        Span { trace_id: vec![0; 16], ..good.clone() },
        Span { trace_id: vec![1; 15], ..good.clone() },
        Span { span_id: vec![0; 8], ..good.clone() },
        Span { span_id: vec![1; 9], ..good.clone() },
        Span { parent_span_id: vec![1; 3], ..good.clone() },
    ];
    for b in &bad {
        assert_eq!(t.span(None, b, &mut Seq(0), &mut out), Err(Skip::Invalid));
    }
    assert_eq!(out.len(), 1);
    let zero_parent = Span { parent_span_id: vec![0; 8], kind: 3, ..good };
    let doc = one(None, &zero_parent);
    assert!(!doc.contains("parent_id") && !doc.contains("\"type\""), "an all-zero parent is a root");
    assert_eq!(Skip::Invalid.as_str(), "invalid");
    assert_eq!(Skip::TooLarge.as_str(), "too_large");
}

#[test]
fn too_large_documents_are_removed_whole() {
    let t = Translator::new(&Options::default());
    let mut out = Documents::new();
    t.span(None, &span(2, "first", true, vec![]), &mut Seq(0), &mut out).expect("small");
    let before = out.total_bytes();
    let big = span(3, "x", true, vec![s("aws.span.kind", "LOCAL_ROOT"), s("big", &"x".repeat(MAX_DOCUMENT_BYTES))]);
    assert_eq!(t.span(None, &big, &mut Seq(0), &mut out), Err(Skip::TooLarge));
    assert_eq!((out.len(), out.total_bytes()), (1, before));
    let fits = span(2, "x", true, vec![s("big", &"x".repeat(MAX_DOCUMENT_BYTES - 400))]);
    assert_eq!(t.span(None, &fits, &mut Seq(0), &mut out), Ok(1));
    assert!(out.iter().all(|d| d.len() <= MAX_DOCUMENT_BYTES));
    out.clear();
    assert!(out.is_empty() && out.total_bytes() == 0);
}

#[test]
fn request_tally_adds_up() {
    let good = span(2, "x", true, vec![]);
    let split = span(3, "y", true, vec![s("aws.span.kind", "LOCAL_ROOT")]);
    let bad = Span { span_id: vec![], ..good.clone() };
    let req = ExportTraceServiceRequest {
        resource_spans: vec![
            ResourceSpans {
                resource: Some(resource(vec![s("service.name", "svc")])),
                scope_spans: vec![ScopeSpans { spans: vec![good.clone(), split], ..Default::default() }],
                ..Default::default()
            },
            ResourceSpans {
                resource: None,
                scope_spans: vec![ScopeSpans { spans: vec![bad], ..Default::default() }, ScopeSpans::default()],
                ..Default::default()
            },
        ],
    };
    let mut out = Documents::new();
    let tally = Translator::new(&Options::default()).request(&req, &mut RandomIds, &mut out);
    assert_eq!(tally, Tally { spans: 2, documents: 3, invalid: 1, too_large: 0 });
    assert_eq!(out.len(), 3);
    let names: Vec<String> = out
        .iter()
        .map(|d| serde_json::from_slice::<serde_json::Value>(d).unwrap()["name"].as_str().unwrap_or("").to_string())
        .collect();
    assert_eq!(names, ["svc", "y", "svc"]);
}

#[test]
fn random_ids_are_never_zero() {
    let mut ids = RandomIds;
    assert!((0..1000).all(|_| ids.next_id() != 0));
}

#[path = "tests_local_root.rs"]
mod local_root;

#[test]
fn exception_event_on_a_client_span_is_remote() {
    let mut sp = span(3, "x", true, vec![]);
    sp.events = vec![Event {
        name: "exception".into(),
        attributes: vec![
            s("exception.type", "E"),
            s("exception.message", "m"),
            s("exception.stacktrace", "E: m\n    at f (a.js:1:2)"),
        ],
        ..Default::default()
    }];
    let res = resource(vec![s("telemetry.sdk.language", "javascript")]);
    let doc = one(Some(&res), &sp);
    assert!(
        doc.contains(r#""cause":{"exceptions":[{"id":"0000000000000001","message":"m","type":"E","remote":true,"stack":[{"path":"a.js","line":1,"label":"f "}]}]}"#),
        "{doc}"
    );
}
