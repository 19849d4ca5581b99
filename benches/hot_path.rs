//! Criterion micro-benchmarks of the data path: header split/validate, buffer push/pop, the
//! PutTraceSegments body written from the received bytes, and the request built and signed:
//! the daemon's own way (`XrayApi`: the stable headers, SigV4) beside the AWS SDK's client
//! (its orchestrator, interceptors and signing, sending to an in-memory HTTP client that
//! answers 200 at once), so that what the SDK's call path costs per call shows next to ours; and
//! a span's way in: a request of 20 spans decoded, and translated into segment documents.
//!
//! `cargo bench --bench hot_path` measures; `cargo test --all-targets` runs each once.

use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::HttpRequest;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_runtime_api::http::{Response, StatusCode};
use aws_smithy_types::body::SdkBody;
use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{span::SpanKind, ResourceSpans, ScopeSpans, Span};
use prost::Message;
use std::hint::black_box;
use std::sync::Arc;
use xray_daemon::aws::trace_segments_body;
use xray_daemon::aws::xray_api::XrayApi;
use xray_daemon::pipeline::buffer::Buffer;
use xray_daemon::signal::segments::{classify, Datagram};
use xray_daemon::signal::spans;
use xray_daemon::translate::{Documents, Options, RandomIds, Translator};

fn segment(i: usize, size: usize) -> Vec<u8> {
    let head = format!(
        r#"{{"trace_id":"1-6b070b79-{i:024x}","id":"{:016x}","name":"bench","start_time":1795623800.611,"end_time":1795623800.613,"annotations":{{"pad":""#,
        0x2000_0000_0000_0000u64 + i as u64
    );
    let mut doc = head.into_bytes();
    doc.resize(size.saturating_sub(3), b'x');
    doc.extend_from_slice(b"\"}}");
    doc
}

fn datagram(header: &str, size: usize) -> Vec<u8> {
    let mut d = header.as_bytes().to_vec();
    d.push(b'\n');
    d.extend_from_slice(&segment(1, size));
    d
}

fn header(c: &mut Criterion) {
    let mut g = c.benchmark_group("header");
    for (name, h) in [
        ("common_1KB", r#"{"format":"json","version":1}"#),
        ("sdk_spaces_1KB", r#"{"format": "json", "version": 1}"#),
        ("unusual_1KB", r#"{ "version" : 1 , "format" : "JSON" }"#),
    ] {
        let d = datagram(h, 1024);
        g.throughput(Throughput::Bytes(d.len() as u64));
        g.bench_function(name, |b| b.iter(|| black_box(classify(black_box(&d)))));
    }
    g.finish();
}

fn buffer(c: &mut Criterion) {
    let mut g = c.benchmark_group("buffer");
    let body = Bytes::from(segment(1, 1024));
    g.throughput(Throughput::Elements(50));
    g.bench_function("push_50_take_complete_1KB", |b| {
        let buf = Arc::new(Buffer::new(64 << 20, 50));
        b.iter(|| {
            for _ in 0..50 {
                black_box(buf.push(body.clone()));
            }
            // Dropping the batch returns its bytes, as a delivered batch does.
            drop(buf.take_batch(50, 1 << 20).expect("a batch"));
        })
    });
    g.bench_function("copy_in_push_50_1KB", |b| {
        let raw = datagram(r#"{"format":"json","version":1}"#, 1024);
        let buf = Arc::new(Buffer::new(64 << 20, 50));
        b.iter(|| {
            for _ in 0..50 {
                if let Datagram::Segment(s) = classify(&raw) {
                    black_box(buf.push(Bytes::copy_from_slice(s)));
                }
            }
            // Dropping the batch returns its bytes, as a delivered batch does.
            drop(buf.take_batch(50, 1 << 20).expect("a batch"));
        })
    });
    g.finish();
}

/// Answers every request with an empty PutTraceSegments result.
#[derive(Debug, Clone)]
struct Ok200;

impl HttpConnector for Ok200 {
    fn call(&self, _request: HttpRequest) -> HttpConnectorFuture {
        let status = StatusCode::try_from(200u16).expect("200");
        HttpConnectorFuture::ready(Ok(Response::new(status, SdkBody::from(r#"{"UnprocessedTraceSegments":[]}"#))))
    }
}

impl HttpClient for Ok200 {
    fn http_connector(&self, _: &HttpConnectorSettings, _: &RuntimeComponents) -> SharedHttpConnector {
        SharedHttpConnector::new(self.clone())
    }
}

/// The daemon's old call path: the SDK's PutTraceSegments with the body written as ours is.
async fn sdk_send(client: &aws_sdk_xray::Client, docs: &[Bytes]) -> Result<(), String> {
    let body = trace_segments_body::encode(docs);
    client
        .put_trace_segments()
        .set_trace_segment_documents(Some(Vec::new()))
        .customize()
        .mutate_request(move |request| {
            request.headers_mut().insert("content-length", body.len().to_string());
            *request.body_mut() = SdkBody::from(body.clone());
        })
        .send()
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
}

fn request(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let config = aws_sdk_xray::Config::builder()
        .behavior_version(aws_sdk_xray::config::BehaviorVersion::latest())
        .region(aws_sdk_xray::config::Region::new("us-east-1"))
        .credentials_provider(aws_credential_types::Credentials::for_tests())
        .http_client(Ok200)
        .retry_config(aws_smithy_types::retry::RetryConfig::disabled())
        .build();
    let client = aws_sdk_xray::Client::from_conf(config);
    let own = rt.block_on(async { XrayApi::with_test_credentials("https://xray.us-east-1.amazonaws.com") });
    let mut g = c.benchmark_group("put_trace_segments");
    for size in [200, 1024, 8192] {
        let docs: Vec<Bytes> = (0..50).map(|i| Bytes::from(segment(i, size))).collect();
        g.throughput(Throughput::Bytes(docs.iter().map(|d| d.len() as u64).sum()));
        g.bench_function(format!("encode_50x{size}B"), |b| b.iter(|| trace_segments_body::encode(&docs)));
        g.bench_function(format!("encode_sign_50x{size}B"), |b| {
            b.iter(|| black_box(rt.block_on(own.signed("/TraceSegments", trace_segments_body::encode(&docs)))))
        });
        g.bench_function(format!("encode_sdk_sign_send_50x{size}B"), |b| {
            b.iter(|| rt.block_on(sdk_send(&client, &docs)).expect("ok"))
        });
    }
    g.finish();
}

/// A string attribute.
fn kv(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(any_value::Value::StringValue(value.into())) }),
        ..Default::default()
    }
}

/// An int attribute.
fn kv_int(key: &str, value: i64) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(any_value::Value::IntValue(value)) }),
        ..Default::default()
    }
}

/// 20 spans as a Lambda function's ADOT sends them in one `T1S` datagram (the shape of the load
/// harness's): a server span, HTTP client calls and DynamoDB calls, under a Lambda resource.
fn lambda_request() -> ExportTraceServiceRequest {
    let resource = Resource {
        attributes: vec![
            kv("service.name", "orders-api"),
            kv("cloud.provider", "aws"),
            kv("cloud.platform", "aws_lambda"),
            kv("cloud.region", "us-east-1"),
            kv("faas.name", "orders-api"),
            kv("telemetry.sdk.language", "python"),
            kv("telemetry.sdk.name", "opentelemetry"),
            kv("telemetry.sdk.version", "1.33.1"),
            kv("telemetry.auto.version", "0.54b1-aws"),
        ],
        ..Default::default()
    };
    let start = 1_796_000_000_000_000_000u64;
    let spans = (0..20u64)
        .map(|i| {
            let (kind, name, attributes) = match i {
                0 => (
                    SpanKind::Server,
                    "orders-api".to_owned(),
                    vec![
                        kv("faas.trigger", "http"),
                        kv("http.request.method", "GET"),
                        kv("http.route", "/orders/{id}"),
                        kv_int("http.response.status_code", 200),
                    ],
                ),
                _ if i % 3 == 0 => (
                    SpanKind::Client,
                    "GET".to_owned(),
                    vec![
                        kv("http.request.method", "GET"),
                        kv("url.full", &format!("https://inventory.internal.example.com/v2/items/{i:06}?fields=stock")),
                        kv("server.address", "inventory.internal.example.com"),
                        kv_int("http.response.status_code", 200),
                    ],
                ),
                _ => (
                    SpanKind::Client,
                    "DynamoDB.GetItem".to_owned(),
                    vec![
                        kv("rpc.system", "aws-api"),
                        kv("rpc.service", "DynamoDB"),
                        kv("rpc.method", "GetItem"),
                        kv("aws.region", "us-east-1"),
                        kv("aws.request_id", "N5TPS0QH4FJ1LRG9A8DK3VCM7BUU0R2E6IQ9ASUAAJG"),
                        kv("aws.dynamodb.table_names", "orders"),
                        kv_int("http.response.status_code", 200),
                    ],
                ),
            };
            Span {
                trace_id: [7u8; 16].to_vec(),
                span_id: (i + 1).to_be_bytes().to_vec(),
                parent_span_id: if i == 0 { Vec::new() } else { 1u64.to_be_bytes().to_vec() },
                name,
                kind: kind as i32,
                start_time_unix_nano: start + i * 1_500_000,
                end_time_unix_nano: start + i * 1_500_000 + 6_000_000,
                attributes,
                ..Default::default()
            }
        })
        .collect();
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(resource),
            scope_spans: vec![ScopeSpans { spans, ..Default::default() }],
            ..Default::default()
        }],
    }
}

/// A span's way in, per span: the request decoded, and each span translated into its segment
/// documents (what the intake does in the default span mode).
fn spans(c: &mut Criterion) {
    let request = lambda_request();
    let wire = Bytes::from(request.encode_to_vec());
    let translator = Translator::new(&Options::default());
    let mut g = c.benchmark_group("spans");
    g.throughput(Throughput::Elements(20));
    g.bench_function("decode_20", |b| b.iter(|| black_box(spans::from_protobuf(black_box(wire.clone())))));
    g.bench_function("translate_20", |b| {
        let mut out = Documents::new();
        b.iter(|| {
            out.clear();
            black_box(translator.request(black_box(&request), &mut RandomIds, &mut out))
        })
    });
    g.finish();
}

criterion_group!(benches, header, buffer, request, spans);
criterion_main!(benches);
