//! Annotations, metadata, user and service.

use super::*;
use crate::translate::test_attrs::{i, kv, s, strs};
use opentelemetry_proto::tonic::common::v1::KeyValueList;

#[derive(Default)]
struct Case<'a> {
    span: &'a [KeyValue],
    resource: &'a [KeyValue],
    store: bool,
    index: &'a [&'a str],
    all: bool,
    service: bool,
}

fn run(c: Case<'_>) -> String {
    let keys: Vec<String> = c.index.iter().map(|k| (*k).to_string()).collect();
    let index = Index::new(&keys, c.all);
    let mut attrs = Attrs::new(c.span);
    let mut buf = Vec::new();
    write(&mut buf, &mut attrs, c.resource, c.store, &index, c.service);
    String::from_utf8(buf).unwrap()
}

#[test]
fn plain_attributes_go_to_default_metadata() {
    let span = [s("b", "x"), i("a", 1), kv("d", Value::DoubleValue(0.5)), kv("e", Value::BytesValue(vec![1, 2, 3]))];
    assert_eq!(
        run(Case { span: &span, ..Case::default() }),
        r#""metadata":{"default":{"a":1,"b":"x","d":0.5,"e":"AQID"}}"#
    );
    let empty = [KeyValue { key: "none".into(), value: None, ..Default::default() }];
    assert_eq!(run(Case { span: &empty, ..Case::default() }), "", "empty values are skipped");
    assert_eq!(run(Case::default()), "");
}

#[test]
fn indexed_keys_become_annotations_with_fixed_keys() {
    let span = [s("an.key-1", "v"), i("num", 2), kv("arr", strs(&["x"])), s("other", "o")];
    assert_eq!(
        run(Case { span: &span, index: &["an.key-1", "num", "arr"], ..Case::default() }),
        r#""annotations":{"an.key_1":"v","num":2},"metadata":{"default":{"other":"o"}}"#
    );
    assert_eq!(
        run(Case { span: &span, all: true, ..Case::default() }),
        r#""annotations":{"an.key_1":"v","num":2,"other":"o"}"#
    );
}

#[test]
fn aws_xray_annotations_names_more_keys() {
    let span = [kv("aws.xray.annotations", strs(&["k1", "otel.resource.r"])), s("k1", "v1"), s("k2", "v2")];
    let resource = [s("r", "rv"), s("q", "qv")];
    assert_eq!(
        run(Case { span: &span, resource: &resource, store: true, ..Case::default() }),
        r#""annotations":{"k1":"v1","otel.resource.r":"rv"},"metadata":{"default":{"k2":"v2","otel.resource.q":"qv"}}"#
    );
    let not_array = [s("aws.xray.annotations", "k1"), s("k1", "v1")];
    assert_eq!(
        run(Case { span: &not_array, ..Case::default() }),
        r#""metadata":{"default":{"aws.xray.annotations":"k1","k1":"v1"}}"#
    );
}

#[test]
fn resource_attributes_on_segments_only() {
    let resource = [s("service.name", "svc"), kv("arr", strs(&["a"])), i("n", 3)];
    let out = run(Case { resource: &resource, store: true, all: true, ..Case::default() });
    assert_eq!(
        out,
        r#""annotations":{"otel.resource.n":3,"otel.resource.service.name":"svc"},"metadata":{"default":{"otel.resource.arr":["a"]}}"#
    );
    assert_eq!(run(Case { resource: &resource, store: false, all: true, ..Case::default() }), "");
    let out = run(Case { resource: &resource, store: true, index: &["otel.resource.n"], ..Case::default() });
    assert_eq!(
        out,
        r#""annotations":{"otel.resource.n":3},"metadata":{"default":{"otel.resource.arr":["a"],"otel.resource.service.name":"svc"}}"#
    );
}

#[test]
fn span_annotations_overwrite_resource_ones_and_the_last_key_wins() {
    let resource = [s("x", "res")];
    let span = [s("otel.resource.x", "span"), s("a-b", "1"), s("a_b", "2")];
    assert_eq!(
        run(Case { span: &span, resource: &resource, store: true, all: true, ..Case::default() }),
        r#""annotations":{"a_b":"2","otel.resource.x":"span"}"#
    );
}

#[test]
fn metadata_namespaces_from_json() {
    let span = [
        s("aws.xray.metadata.ns", r#"{"b":1,"a":{"z":null}}"#),
        s("aws.xray.metadata.nul", "null"),
        s("aws.xray.metadata.bad", "[1]"),
        s("aws.xray.metadata.DEFAULT", r#"{"merged":12345678901234567890}"#),
        kv("aws.xray.metadata.int", Value::IntValue(1)),
        s("plain", "p"),
    ];
    assert_eq!(
        run(Case { span: &span, ..Case::default() }),
        concat!(
            r#""metadata":{"default":{"aws.xray.metadata.bad":"[1]","aws.xray.metadata.int":1,"merged":12345678901234567000,"plain":"p"},"#,
            r#""ns":{"a":{"z":null},"b":1},"nul":null}"#
        )
    );
    // in index-all mode they are plain string annotations
    let out = run(Case { span: &span[..1], all: true, ..Case::default() });
    assert_eq!(out, r#""annotations":{"aws.xray.metadata.ns":"{\"b\":1,\"a\":{\"z\":null}}"}"#);
}

#[test]
fn service_segment_keeps_resource_metadata_only() {
    let span = [
        s("plain", "p"),
        s("aws.xray.metadata.ns", r#"{"otel.resource.k":1,"x":2}"#),
        s("aws.xray.metadata.n2", "null"),
    ];
    assert_eq!(
        run(Case { span: &span, service: true, ..Case::default() }),
        r#""metadata":{"default":{},"n2":null,"ns":{"otel.resource.k":1}}"#
    );
    let resource = [s("r", "v")];
    assert_eq!(
        run(Case { span: &span[..1], resource: &resource, store: true, service: true, ..Case::default() }),
        r#""metadata":{"default":{"otel.resource.r":"v"}}"#
    );
}

#[test]
fn nan_values_are_dropped_alone() {
    let nested = Value::KvlistValue(KeyValueList { values: vec![kv("n", Value::DoubleValue(f64::NAN)), i("k", 1)] });
    let span =
        [kv("nan", Value::DoubleValue(f64::NAN)), kv("inf", Value::DoubleValue(f64::NEG_INFINITY)), kv("m", nested)];
    assert_eq!(run(Case { span: &span, ..Case::default() }), r#""metadata":{"default":{"m":{"k":1}}}"#);
    assert_eq!(run(Case { span: &span[..2], all: true, ..Case::default() }), "");
}

#[test]
fn user_is_consumed() {
    let span = [s("enduser.id", "u1"), s("other", "o")];
    let mut attrs = Attrs::new(&span);
    assert_eq!(user(&mut attrs), "u1");
    assert_eq!(attrs.remaining_entries().len(), 1);
    let span = [i("enduser.id", 5)];
    let mut attrs = Attrs::new(&span);
    assert_eq!(user(&mut attrs), "");
    assert!(attrs.remaining_entries().is_empty());
}

#[test]
fn service_version_sources() {
    let svc = |r: &[KeyValue]| {
        let mut buf = Vec::new();
        write_service(&mut buf, r);
        String::from_utf8(buf).unwrap()
    };
    assert_eq!(svc(&[s("service.version", "1.0"), s("container.image.tag", "t")]), r#""service":{"version":"1.0"}"#);
    assert_eq!(
        svc(&[kv("container.image.tags", strs(&["a", "b"])), s("container.image.tag", "t")]),
        r#""service":{"version":"a"}"#
    );
    assert_eq!(
        svc(&[kv("container.image.tags", strs(&[])), s("container.image.tag", "t")]),
        r#""service":{"version":"t"}"#
    );
    assert_eq!(svc(&[i("service.version", 1)]), r#""service":{}"#);
    assert_eq!(svc(&[]), "");
}
