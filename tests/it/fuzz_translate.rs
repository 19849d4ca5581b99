//! Fuzz target for the span translator: arbitrary OTLP requests (every value type, nested
//! arrays and maps, NaN and infinite doubles, ids of odd lengths, every span kind, local roots,
//! links, `exception` events with stack traces cut from each language's syntax) convert
//! without a panic into valid JSON documents of at most 64 KB, and the tally accounts for
//! every span. `PROPTEST_CASES` sets the number of cases, as for the other targets.

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value::Value, AnyValue, ArrayValue, KeyValue, KeyValueList};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::span::{Event, Link};
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status};
use proptest::prelude::*;
use xray_daemon::translate::{Documents, Options, RandomIds, Translator, MAX_DOCUMENT_BYTES};

/// Keys the translator reads, so that arbitrary values reach every block.
const KEYS: &[&str] = &[
    "http.method",
    "http.request.method",
    "http.url",
    "url.full",
    "http.scheme",
    "url.scheme",
    "http.host",
    "http.target",
    "http.server_name",
    "net.host.port",
    "host.name",
    "net.host.name",
    "net.peer.name",
    "net.peer.port",
    "net.peer.ip",
    "network.peer.address",
    "client.address",
    "url.path",
    "url.query",
    "server.address",
    "server.port",
    "http.client_ip",
    "http.user_agent",
    "user_agent.original",
    "http.status_code",
    "http.response.status_code",
    "http.status_text",
    "aws.operation",
    "rpc.method",
    "rpc.system",
    "rpc.service",
    "aws.account_id",
    "aws.region",
    "aws.request_id",
    "aws.requestId",
    "aws.queue_url",
    "aws.queue.url",
    "messaging.url",
    "aws.table_name",
    "aws.table.name",
    "aws.dynamodb.table_names",
    "db.system",
    "db.name",
    "db.statement",
    "db.user",
    "db.connection_string",
    "enduser.id",
    "aws.xray.annotations",
    "aws.xray.metadata.default",
    "aws.xray.metadata.ns",
    "aws.xray.inprogress",
    "aws.span.kind",
    "aws.local.service",
    "aws.remote.service",
    "aws.remote.operation",
    "peer.service",
    "aws.service",
    "message.type",
    "messaging.message_payload_size_bytes",
    "otel.resource.x",
];

const RESOURCE_KEYS: &[&str] = &[
    "service.name",
    "service.version",
    "cloud.provider",
    "cloud.platform",
    "cloud.account.id",
    "host.id",
    "k8s.cluster.name",
    "aws.ecs.launchtype",
    "service.instance.id",
    "telemetry.sdk.name",
    "telemetry.auto.version",
    "aws.log.group.arns",
    "aws.log.group.names",
    "container.image.tags",
    "container.image.tag",
];

/// Strings that mean something to some block.
const WORDS: &[&str] = &[
    "",
    "LOCAL_ROOT",
    "aws-api",
    "AWS::S3",
    "AWS.SDK.S3",
    "mysql",
    "postgresql",
    "RECEIVED",
    "aws",
    "gcp",
    "aws_ec2",
    "aws_ecs",
    "aws_eks",
    "aws_elastic_beanstalk",
    "ec2",
    "fargate",
    "1.2.3.4",
    "::1",
    "jdbc:mysql://h:3306/x",
    "http",
    "https",
    "80",
    "443",
    "{\"a\":1}",
    "null",
    "[1]",
    "a&b",
    "arn:aws:logs:r:1:log-group:g:*",
    "é<>&\u{2028}",
    "\u{0}",
];

/// Fragments of the five stack-trace syntaxes, including the exporter's crash inputs.
const TRACE_BITS: &[&str] = &[
    "\n",
    "\r\n",
    "\tat ",
    "a.B.c",
    "(",
    ")",
    ":",
    "F.java:12",
    "Caused by: ",
    "X:",
    "app//m",
    "  File \"",
    "\"",
    ", line ",
    ", in ",
    "During handling of the above exception, another exception occurred:",
    "    at ",
    "native",
    "goroutine 1 [running]:",
    "\t/x/y.go:42 +0x1",
    " in ",
    ":line",
    ":line 7",
    "at ",
    "é",
    "99999999999999999999",
];

fn text() -> impl Strategy<Value = String> {
    prop_oneof![prop::sample::select(WORDS).prop_map(str::to_owned), ".{0,24}"]
}

fn value() -> impl Strategy<Value = Option<AnyValue>> {
    let leaf = prop_oneof![
        Just(None),
        text().prop_map(|s| Some(Value::StringValue(s))),
        any::<bool>().prop_map(|b| Some(Value::BoolValue(b))),
        prop_oneof![any::<i64>(), 0i64..700].prop_map(|i| Some(Value::IntValue(i))),
        prop_oneof![any::<f64>(), Just(f64::NAN), Just(f64::INFINITY), Just(f64::NEG_INFINITY), Just(-0.0)]
            .prop_map(|d| Some(Value::DoubleValue(d))),
        prop::collection::vec(any::<u8>(), 0..8).prop_map(|b| Some(Value::BytesValue(b))),
    ]
    .prop_map(|value| AnyValue { value });
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4)
                .prop_map(|values| AnyValue { value: Some(Value::ArrayValue(ArrayValue { values })) }),
            prop::collection::vec((text(), inner), 0..4).prop_map(|kvs| AnyValue {
                value: Some(Value::KvlistValue(KeyValueList {
                    values: kvs
                        .into_iter()
                        .map(|(key, v)| KeyValue { key, value: Some(v), ..Default::default() })
                        .collect(),
                })),
            }),
        ]
    })
    .prop_map(Some)
}

fn attributes(keys: &'static [&'static str], max: usize) -> impl Strategy<Value = Vec<KeyValue>> {
    let key = prop_oneof![3 => prop::sample::select(keys).prop_map(str::to_owned), 1 => text()];
    prop::collection::vec((key, value()), 0..max)
        .prop_map(|kvs| kvs.into_iter().map(|(key, value)| KeyValue { key, value, ..Default::default() }).collect())
}

fn id(usual: usize) -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        8 => prop::collection::vec(any::<u8>(), usual),
        1 => Just(vec![0; usual]),
        1 => prop::collection::vec(any::<u8>(), 0..20),
    ]
}

fn stacktrace() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop_oneof![4 => prop::sample::select(TRACE_BITS).prop_map(str::to_owned), 1 => ".{0,8}"],
        0..40,
    )
    .prop_map(|parts| parts.concat())
}

fn event() -> impl Strategy<Value = Event> {
    let name = prop::sample::select(&["exception", "HTTP request failure", "other"][..]);
    let extra = prop_oneof![
        Just(vec![]),
        stacktrace().prop_map(|t| vec![KeyValue {
            key: "exception.stacktrace".into(),
            value: Some(AnyValue { value: Some(Value::StringValue(t)) }),
            ..Default::default()
        }]),
    ];
    let keys: &'static [&'static str] = &[
        "exception.type",
        "exception.message",
        "http.response.status_code",
        "aws.http.error_message",
        "message.type",
        "messaging.message_payload_size_bytes",
    ];
    (name, attributes(keys, 5), extra, any::<u64>()).prop_map(|(name, mut attributes, extra, time_unix_nano)| {
        attributes.extend(extra);
        Event { name: name.into(), attributes, time_unix_nano, ..Default::default() }
    })
}

fn link() -> impl Strategy<Value = Link> {
    (id(16), id(8), attributes(KEYS, 3)).prop_map(|(trace_id, span_id, attributes)| Link {
        trace_id,
        span_id,
        attributes,
        ..Default::default()
    })
}

fn span() -> impl Strategy<Value = Span> {
    let local_root = prop_oneof![Just(false), Just(true)];
    (
        (id(16), id(8), prop_oneof![Just(vec![]), id(8)], 0i32..7, text()),
        (any::<u64>(), any::<u64>(), attributes(KEYS, 12), local_root, 0i32..4, text()),
        (prop::collection::vec(event(), 0..3), prop::collection::vec(link(), 0..3)),
    )
        .prop_map(
            |(
                (trace_id, span_id, parent_span_id, kind, name),
                (start, end, mut attrs, lr, code, message),
                (events, links),
            )| {
                if lr {
                    attrs.insert(
                        0,
                        KeyValue {
                            key: "aws.span.kind".into(),
                            value: Some(AnyValue { value: Some(Value::StringValue("LOCAL_ROOT".into())) }),
                            ..Default::default()
                        },
                    );
                }
                Span {
                    trace_id,
                    span_id,
                    parent_span_id,
                    kind,
                    name,
                    start_time_unix_nano: start,
                    end_time_unix_nano: end,
                    attributes: attrs,
                    events,
                    links,
                    status: Some(Status { code, message }),
                    ..Default::default()
                }
            },
        )
}

fn resource() -> impl Strategy<Value = Option<Resource>> {
    let language = prop::sample::select(&["java", "php", "python", "javascript", "dotnet", "go", "nodejs", ""][..]);
    prop_oneof![
        1 => Just(None),
        4 => (attributes(RESOURCE_KEYS, 8), language).prop_map(|(mut attributes, language)| {
            attributes.push(KeyValue {
                key: "telemetry.sdk.language".into(),
                value: Some(AnyValue { value: Some(Value::StringValue(language.into())) }),
                ..Default::default()
            });
            Some(Resource { attributes, ..Default::default() })
        }),
    ]
}

fn request() -> impl Strategy<Value = ExportTraceServiceRequest> {
    prop::collection::vec((resource(), prop::collection::vec(prop::collection::vec(span(), 0..4), 0..3)), 0..3)
        .prop_map(|groups| ExportTraceServiceRequest {
            resource_spans: groups
                .into_iter()
                .map(|(resource, scopes)| ResourceSpans {
                    resource,
                    scope_spans: scopes.into_iter().map(|spans| ScopeSpans { spans, ..Default::default() }).collect(),
                    ..Default::default()
                })
                .collect(),
        })
}

fn options() -> impl Strategy<Value = Options> {
    (prop::collection::vec(prop::sample::select(KEYS).prop_map(str::to_owned), 0..4), any::<bool>())
        .prop_map(|(indexed_attributes, index_all_attributes)| Options { indexed_attributes, index_all_attributes })
}

proptest! {
    /// Any request: no panic, valid JSON of at most 64 KB each, and a tally that adds up.
    #[test]
    fn fuzz_translate_request(req in request(), options in options()) {
        let translator = Translator::new(&options);
        let mut out = Documents::new();
        let tally = translator.request(&req, &mut RandomIds, &mut out);
        let spans: usize = req.resource_spans.iter().flat_map(|r| &r.scope_spans).map(|s| s.spans.len()).sum();
        prop_assert_eq!((tally.spans + tally.invalid + tally.too_large) as usize, spans);
        prop_assert_eq!(tally.documents as usize, out.len());
        prop_assert!(tally.documents >= tally.spans && tally.documents <= 2 * tally.spans);
        for doc in out.iter() {
            prop_assert!(doc.len() <= MAX_DOCUMENT_BYTES);
            let parsed: serde_json::Value = serde_json::from_slice(doc)
                .map_err(|e| TestCaseError::fail(format!("{e}: {}", String::from_utf8_lossy(doc))))?;
            prop_assert!(parsed.get("trace_id").is_some() && parsed.get("start_time").is_some());
        }
    }

    /// A huge attribute: the span is skipped as too large, and nothing of it stays behind.
    #[test]
    fn fuzz_translate_too_large(sp in span(), size in 60_000usize..80_000) {
        let mut sp = sp;
        sp.attributes.push(KeyValue {
            key: "big".into(),
            value: Some(AnyValue { value: Some(Value::StringValue("<".repeat(size / 6))) }),
            ..Default::default()
        });
        let mut out = Documents::new();
        if Translator::new(&Options::default()).span(None, &sp, &mut RandomIds, &mut out).is_err() {
            prop_assert_eq!(out.len(), 0);
        }
        prop_assert!(out.iter().all(|d| d.len() <= MAX_DOCUMENT_BYTES));
    }
}
