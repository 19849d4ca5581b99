//! Attributes for the translator's tests, in one place: every block's tests build spans of them.

use opentelemetry_proto::tonic::common::v1::{any_value::Value, AnyValue, ArrayValue, KeyValue};

/// A key and a value of any type.
pub(crate) fn kv(k: &str, v: Value) -> KeyValue {
    KeyValue { key: k.into(), value: Some(AnyValue { value: Some(v) }), ..Default::default() }
}

/// A string attribute.
pub(crate) fn s(k: &str, v: &str) -> KeyValue {
    kv(k, Value::StringValue(v.into()))
}

/// An int attribute.
pub(crate) fn i(k: &str, v: i64) -> KeyValue {
    kv(k, Value::IntValue(v))
}

/// An array of strings.
pub(crate) fn strs(items: &[&str]) -> Value {
    Value::ArrayValue(ArrayValue {
        values: items.iter().map(|v| AnyValue { value: Some(Value::StringValue((*v).into())) }).collect(),
    })
}
