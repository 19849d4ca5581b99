//! Golden tests of local roots (mapping §1): the split into a dependency subsegment and a
//! service segment, and the single segment of a local-root Server or Internal span.

use super::*;

fn lr(kind: i32, mut attrs: Vec<KeyValue>) -> Span {
    attrs.insert(0, s("aws.span.kind", "LOCAL_ROOT"));
    span(kind, "GetItem call", true, attrs)
}

fn link() -> Link {
    Link { trace_id: TRACE.to_vec(), span_id: vec![0xab; 8], ..Default::default() }
}

#[test]
fn client_split_golden() {
    let mut sp = lr(
        3,
        vec![
            s("rpc.system", "aws-api"),
            s("rpc.method", "GetItem"),
            s("aws.remote.service", "AWS::DynamoDB"),
            s("aws.remote.operation", "GetItem"),
            s("aws.local.service", "orders-api"),
            s("http.method", "POST"),
            i("http.status_code", 200),
            s("aws.region", "us-east-1"),
        ],
    );
    sp.links = vec![link()];
    let res = resource(vec![s("service.name", "svc")]);
    let d = docs(&Translator::new(&Options::default()), Some(&res), &sp);
    let dependency = [
        r#"{"name":"DynamoDB","id":"deadbeef00000001","start_time":1700000000.1234567,"#,
        &format!(r#""links":[{{"trace_id":"{TRACE_ID}","id":"abababababababab"}}],"trace_id":"{TRACE_ID}","end_time":1700000001,"#),
        r#""http":{"request":{"method":"POST"},"response":{"status":200,"content_length":0}},"fault":false,"error":false,"throttle":false,"#,
        r#""aws":{"xray":{"auto_instrumentation":false},"operation":"GetItem","region":"us-east-1"},"#,
        r#""metadata":{"default":{"aws.local.service":"orders-api","aws.remote.operation":"GetItem","aws.remote.service":"AWS::DynamoDB","#,
        r#""aws.span.kind":"LOCAL_ROOT","rpc.system":"aws-api"}},"namespace":"aws","parent_id":"0000000000000001","type":"subsegment"}"#,
    ]
    .concat();
    let service = [
        r#"{"name":"orders-api","id":"0000000000000001","start_time":1700000000.1234567,"#,
        &format!(r#""trace_id":"{TRACE_ID}","end_time":1700000001,"fault":false,"error":false,"throttle":false,"#),
        r#""aws":{"xray":{"auto_instrumentation":false}},"metadata":{"default":{}},"parent_id":"cafe000000000002"}"#,
    ]
    .concat();
    assert_eq!(d, [dependency, service]);
}

#[test]
fn server_and_internal_local_roots_are_one_segment() {
    let sp = lr(1, vec![s("aws.local.service", "local"), s("peer.service", "p")]);
    let doc = one(Some(&resource(vec![s("r", "v")])), &sp);
    assert!(doc.starts_with(r#"{"name":"local","#), "{doc}");
    assert!(!doc.contains("\"type\"") && !doc.contains("namespace"), "{doc}");
    assert!(!doc.contains("otel.resource"), "an Internal span with a parent stores no resource: {doc}");
    assert!(doc.contains(r#""parent_id":"cafe000000000002""#));
    let mut sp = lr(2, vec![s("rpc.system", "aws-api")]);
    sp.links = vec![link()];
    let doc = one(Some(&resource(vec![s("r", "v")])), &sp);
    assert!(!doc.contains("namespace") && doc.contains("\"links\"") && doc.contains("otel.resource.r"), "{doc}");
}

#[test]
fn consumer_split_keeps_links_on_the_service_segment() {
    let mut sp = lr(5, vec![s("aws.remote.service", "queue"), s("plain", "p")]);
    sp.links = vec![link()];
    let res = resource(vec![s("service.name", "svc"), s("r", "v")]);
    let d = docs(&Translator::new(&Options::default()), Some(&res), &sp);
    assert_eq!(d.len(), 2);
    assert!(d[0].starts_with(r#"{"name":"queue","#) && !d[0].contains("\"links\""), "{}", d[0]);
    assert!(d[0].contains(r#""namespace":"remote","parent_id":"0000000000000001","type":"subsegment""#), "{}", d[0]);
    assert!(d[0].contains(r#""otel.resource.r":"v""#), "a consumer stores the resource: {}", d[0]);
    assert!(d[1].starts_with(r#"{"name":"svc","#) && d[1].contains("\"links\""), "{}", d[1]);
    assert!(
        d[1].contains(r#""metadata":{"default":{"otel.resource.r":"v","otel.resource.service.name":"svc"}}"#),
        "{}",
        d[1]
    );
    assert!(!d[1].contains("aws.remote.service") && !d[1].contains("\"type\""), "{}", d[1]);
}

#[test]
fn split_with_a_non_aws_provider_does_not_panic() {
    let sp = lr(4, vec![s("aws.remote.service", "topic")]);
    let res = resource(vec![s("cloud.provider", "gcp")]);
    let d = docs(&Translator::new(&Options::default()), Some(&res), &sp);
    assert_eq!(d.len(), 2);
    assert!(d.iter().all(|doc| !doc.contains("\"aws\"")), "{d:?}");
}

#[test]
fn empty_override_names_are_null() {
    let sp = lr(0, vec![s("aws.remote.service", ""), s("aws.local.service", "")]);
    let d = docs(&Translator::new(&Options::default()), None, &sp);
    assert!(d[0].starts_with(r#"{"name":null,"#), "{}", d[0]);
    assert!(d[1].starts_with(r#"{"name":null,"#), "{}", d[1]);
    // without the attributes the computed names stay
    let sp = lr(0, vec![]);
    let d = docs(&Translator::new(&Options::default()), None, &sp);
    assert!(d[0].starts_with(r#"{"name":"GetItem call","#) && d[1].starts_with(r#"{"name":"GetItem call","#), "{d:?}");
    assert!(d[0].contains(r#""namespace":"remote""#), "an unspecified-kind dependency gets remote: {}", d[0]);
}

#[test]
fn split_ids_are_drawn_first_then_exceptions_per_piece() {
    let mut sp = lr(3, vec![]);
    sp.events = vec![Event { name: "exception".into(), ..Default::default() }];
    let d = docs(&Translator::new(&Options::default()), None, &sp);
    assert!(d[0].contains(r#""exceptions":[{"id":"0000000000000002""#), "{}", d[0]);
    assert!(d[1].contains(r#""exceptions":[{"id":"0000000000000003""#), "{}", d[1]);
    assert!(d[1].starts_with(r#"{"name":"GetItem call","id":"0000000000000001""#), "{}", d[1]);
}
