//! OTLP spans as they arrive: in a `T1S` datagram on the UDP port (AWS's OpenTelemetry
//! distribution sends them there in Lambda), or in an OTLP/HTTP `POST /v1/traces`.
//!
//! Both carry an `ExportTraceServiceRequest`. It is decoded once, on receipt, to check it and
//! count its spans. What is buffered is its protobuf encoding as received (JSON is converted
//! once, here): two encoded requests concatenated are one valid request holding both messages'
//! `resource_spans`, so a batch is built from the received bytes without encoding them again.
//!
//! X-Ray's OTLP endpoint refuses a span over 200 KB. Such a span is taken out here, and counted,
//! so that it cannot sink the batch it would travel in; only then is the request encoded again.

use base64::Engine;
use bytes::Bytes;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;
use std::fmt;

/// The largest span X-Ray's OTLP endpoint takes, encoded.
pub const MAX_SPAN_BYTES: usize = 200_000;

/// Why a payload is not an `ExportTraceServiceRequest`. The text carries no payload bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Malformed {
    /// A `T1S` body that is not base64.
    Base64,
    /// Not a protobuf `ExportTraceServiceRequest`.
    Protobuf(String),
    /// Not an OTLP/JSON `ExportTraceServiceRequest`.
    Json(String),
}

impl Malformed {
    /// A short, stable name for counters and structured logs.
    pub fn as_str(&self) -> &'static str {
        match self {
            Malformed::Base64 => "bad_base64",
            Malformed::Protobuf(_) => "bad_protobuf",
            Malformed::Json(_) => "bad_json",
        }
    }
}

impl fmt::Display for Malformed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Malformed::Base64 => f.write_str("the T1S payload is not base64"),
            Malformed::Protobuf(e) => write!(f, "not an OTLP ExportTraceServiceRequest in protobuf: {e}"),
            Malformed::Json(e) => write!(f, "not an OTLP ExportTraceServiceRequest in JSON: {e}"),
        }
    }
}

/// `google.rpc.Status`: what an OTLP/HTTP server answers a request it cannot take with.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct Status {
    /// A `google.rpc.Code`: 3 for INVALID_ARGUMENT, 8 for RESOURCE_EXHAUSTED, 14 for UNAVAILABLE.
    #[prost(int32, tag = "1")]
    pub code: i32,
    #[prost(string, tag = "2")]
    pub message: String,
}

/// A checked request: its protobuf encoding, ready for the buffer, and what was in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checked {
    /// The request to send, without the spans that were too large.
    pub body: Bytes,
    /// The spans it holds.
    pub spans: u32,
    /// Spans over [`MAX_SPAN_BYTES`] that were taken out.
    pub too_large: u32,
}

/// The body of a `T1S` datagram after its prefix: standard, padded base64 of a protobuf request.
pub fn from_udp(base64: &[u8]) -> Result<Checked, Malformed> {
    let raw = base64::engine::general_purpose::STANDARD.decode(base64).map_err(|_| Malformed::Base64)?;
    from_protobuf(Bytes::from(raw))
}

/// A protobuf request as received.
pub fn from_protobuf(body: Bytes) -> Result<Checked, Malformed> {
    let request = ExportTraceServiceRequest::decode(body.clone()).map_err(|e| Malformed::Protobuf(e.to_string()))?;
    Ok(check(request, Some(body)))
}

/// An OTLP/JSON request (hex trace and span ids, as the OTLP specification maps them).
pub fn from_json(body: &[u8]) -> Result<Checked, Malformed> {
    let request: ExportTraceServiceRequest =
        serde_json::from_slice(body).map_err(|e| Malformed::Json(e.to_string()))?;
    Ok(check(request, None))
}

/// Counts the spans, takes out the ones that are too large, and keeps `received` when nothing
/// had to change.
fn check(mut request: ExportTraceServiceRequest, received: Option<Bytes>) -> Checked {
    // No span is longer than the encoding that holds it: a body of at most MAX_SPAN_BYTES (every
    // T1S datagram) needs no span measured.
    let measure = received.as_ref().is_none_or(|body| body.len() > MAX_SPAN_BYTES);
    let mut spans = 0usize;
    let mut too_large = 0usize;
    for resource in &mut request.resource_spans {
        for scope in &mut resource.scope_spans {
            let before = scope.spans.len();
            if measure {
                scope.spans.retain(|span| span.encoded_len() <= MAX_SPAN_BYTES);
            }
            too_large += before - scope.spans.len();
            spans += scope.spans.len();
        }
    }
    let body = match received {
        Some(body) if too_large == 0 => body,
        _ => Bytes::from(request.encode_to_vec()),
    };
    let count = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
    Checked { body, spans: count(spans), too_large: count(too_large) }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
    use opentelemetry_proto::tonic::resource::v1::Resource;
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};

    /// A request of `n` spans named `name-<i>` under a resource with `service.name = service`.
    pub(crate) fn request(service: &str, name: &str, n: usize) -> ExportTraceServiceRequest {
        let attribute = KeyValue {
            key: "service.name".into(),
            value: Some(AnyValue { value: Some(any_value::Value::StringValue(service.into())) }),
            ..Default::default()
        };
        let spans = (0..n)
            .map(|i| Span {
                trace_id: vec![1; 16],
                span_id: (i as u64 + 1).to_be_bytes().to_vec(),
                name: format!("{name}-{i}"),
                start_time_unix_nano: 1_700_000_000_000_000_000,
                end_time_unix_nano: 1_700_000_000_100_000_000,
                ..Default::default()
            })
            .collect();
        ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: Some(Resource { attributes: vec![attribute], ..Default::default() }),
                scope_spans: vec![ScopeSpans { spans, ..Default::default() }],
                ..Default::default()
            }],
        }
    }

    #[test]
    fn a_t1s_payload_is_counted_and_kept_byte_for_byte() {
        let encoded = request("svc", "op", 20).encode_to_vec();
        let b64 = base64::engine::general_purpose::STANDARD.encode(&encoded);
        let checked = from_udp(b64.as_bytes()).unwrap();
        assert_eq!((checked.spans, checked.too_large), (20, 0));
        assert_eq!(checked.body, encoded);
    }

    #[test]
    fn bad_payloads_say_what_is_wrong_without_quoting_them() {
        assert_eq!(from_udp(b"not base64!"), Err(Malformed::Base64));
        let truncated = request("svc", "op", 3).encode_to_vec();
        let b64 = base64::engine::general_purpose::STANDARD.encode(&truncated[..truncated.len() - 5]);
        let e = from_udp(b64.as_bytes()).unwrap_err();
        assert_eq!(e.as_str(), "bad_protobuf");
        assert!(e.to_string().starts_with("not an OTLP ExportTraceServiceRequest in protobuf"), "{e}");
        assert_eq!(from_json(b"{\"resourceSpans\": 7}").unwrap_err().as_str(), "bad_json");
    }

    #[test]
    fn concatenated_requests_are_one_request_with_both() {
        let (a, b) = (request("a", "x", 2), request("b", "y", 3));
        let joined = [a.encode_to_vec(), b.encode_to_vec()].concat();
        let both = ExportTraceServiceRequest::decode(&joined[..]).unwrap();
        assert_eq!(both.resource_spans.len(), 2);
        assert_eq!(from_protobuf(Bytes::from(joined)).unwrap().spans, 5);
    }

    #[test]
    fn json_is_converted_once_with_hex_ids() {
        let json = r#"{"resourceSpans":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"svc"}}]},
            "scopeSpans":[{"spans":[{"traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174",
            "name":"op","startTimeUnixNano":"1700000000000000000","endTimeUnixNano":"1700000000100000000"}]}]}]}"#;
        let checked = from_json(json.as_bytes()).unwrap();
        assert_eq!(checked.spans, 1);
        let decoded = ExportTraceServiceRequest::decode(checked.body).unwrap();
        let span = &decoded.resource_spans[0].scope_spans[0].spans[0];
        assert_eq!(span.trace_id, hex::decode("5b8efff798038103d269b633813fc60c").unwrap());
        assert_eq!(span.end_time_unix_nano, 1_700_000_000_100_000_000);
    }

    #[test]
    fn a_span_over_200_kb_is_taken_out_and_counted() {
        let mut r = request("svc", "op", 3);
        r.resource_spans[0].scope_spans[0].spans[1].name = "x".repeat(MAX_SPAN_BYTES);
        let checked = from_protobuf(Bytes::from(r.encode_to_vec())).unwrap();
        assert_eq!((checked.spans, checked.too_large), (2, 1));
        let kept = ExportTraceServiceRequest::decode(checked.body).unwrap();
        let names: Vec<&str> = kept.resource_spans[0].scope_spans[0].spans.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["op-0", "op-2"]);
    }
}
