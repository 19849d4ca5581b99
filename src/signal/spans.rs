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
use opentelemetry_proto::tonic::trace::v1::Span;
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

/// `google.rpc.Status`: what an OTLP/HTTP server answers a request it cannot take with, and what
/// an OTLP/gRPC server's `grpc-status-details-bin` carries.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct Status {
    /// A `google.rpc.Code`: 3 for INVALID_ARGUMENT, 8 for RESOURCE_EXHAUSTED, 14 for UNAVAILABLE.
    #[prost(int32, tag = "1")]
    pub code: i32,
    #[prost(string, tag = "2")]
    pub message: String,
    /// Typed details, such as a `google.rpc.RetryInfo`.
    #[prost(message, repeated, tag = "3")]
    pub details: Vec<Any>,
}

/// `google.protobuf.Any`: a message and the URL of its type.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct Any {
    /// `type.googleapis.com/` and the message's full name.
    #[prost(string, tag = "1")]
    pub type_url: String,
    #[prost(bytes = "vec", tag = "2")]
    pub value: Vec<u8>,
}

/// A request as it arrived, decoded once: its spans are counted and checked from it, and
/// translated into segment documents from it. `wire` is its protobuf encoding as received, when
/// it came as protobuf, so that it can be forwarded without being encoded again.
#[derive(Debug, Clone, PartialEq)]
pub struct Received {
    pub request: ExportTraceServiceRequest,
    pub wire: Option<Bytes>,
}

impl Received {
    /// A request decoded by someone else (the gRPC server), with no wire bytes kept.
    pub fn decoded(request: ExportTraceServiceRequest) -> Received {
        Received { request, wire: None }
    }

    /// The spans it holds.
    pub fn spans(&self) -> usize {
        self.request.resource_spans.iter().flat_map(|r| &r.scope_spans).map(|s| s.spans.len()).sum()
    }
}

/// The body of a `T1S` datagram after its prefix: standard, padded base64 of a protobuf request.
pub fn from_udp(base64: &[u8]) -> Result<Received, Malformed> {
    let raw = base64::engine::general_purpose::STANDARD.decode(base64).map_err(|_| Malformed::Base64)?;
    from_protobuf(Bytes::from(raw))
}

/// A protobuf request as received.
pub fn from_protobuf(body: Bytes) -> Result<Received, Malformed> {
    let request = ExportTraceServiceRequest::decode(body.clone()).map_err(|e| Malformed::Protobuf(e.to_string()))?;
    Ok(Received { request, wire: Some(body) })
}

/// An OTLP/JSON request (hex trace and span ids, as the OTLP specification maps them). It must
/// be a JSON object: serde would also read an array as the message's fields in order, and take
/// `[]` for an empty request.
pub fn from_json(body: &[u8]) -> Result<Received, Malformed> {
    if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(Malformed::Json("the body is not a JSON object".into()));
    }
    let request: ExportTraceServiceRequest =
        serde_json::from_slice(body).map_err(|e| Malformed::Json(e.to_string()))?;
    Ok(Received { request, wire: None })
}

/// Whether a span's ids can be sent: a trace id of 16 bytes and a span id of 8, neither all
/// zeros. OTLP says such a span is invalid; X-Ray cannot place it in a trace.
pub fn valid_ids(span: &Span) -> bool {
    let nonzero = |id: &[u8]| id.iter().any(|&b| b != 0);
    span.trace_id.len() == 16 && span.span_id.len() == 8 && nonzero(&span.trace_id) && nonzero(&span.span_id)
}

/// A request ready for X-Ray's OTLP endpoint: its protobuf encoding, without the spans the
/// endpoint would refuse, and what was in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checked {
    /// The request to send.
    pub body: Bytes,
    /// The spans it holds.
    pub spans: u32,
    /// Spans over [`MAX_SPAN_BYTES`] that were taken out.
    pub too_large: u32,
    /// Spans with invalid ids ([`valid_ids`]) that were taken out.
    pub invalid: u32,
}

/// Takes out the spans X-Ray's OTLP endpoint would refuse (invalid ids, over 200 KB) and keeps
/// the request's bytes as received when nothing had to change.
pub fn for_otlp(received: Received) -> Checked {
    let Received { mut request, wire } = received;
    // No span is longer than the encoding that holds it: a body of at most MAX_SPAN_BYTES (every
    // T1S datagram) needs no span measured.
    let measure = wire.as_ref().is_none_or(|body| body.len() > MAX_SPAN_BYTES);
    let (mut spans, mut too_large, mut invalid) = (0usize, 0usize, 0usize);
    for resource in &mut request.resource_spans {
        for scope in &mut resource.scope_spans {
            let before = scope.spans.len();
            scope.spans.retain(valid_ids);
            invalid += before - scope.spans.len();
            let before = scope.spans.len();
            if measure {
                scope.spans.retain(|span| span.encoded_len() <= MAX_SPAN_BYTES);
            }
            too_large += before - scope.spans.len();
            spans += scope.spans.len();
        }
    }
    let body = match wire {
        Some(body) if too_large == 0 && invalid == 0 => body,
        _ => Bytes::from(request.encode_to_vec()),
    };
    let count = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
    Checked { body, spans: count(spans), too_large: count(too_large), invalid: count(invalid) }
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
        let checked = for_otlp(from_udp(b64.as_bytes()).unwrap());
        assert_eq!((checked.spans, checked.too_large, checked.invalid), (20, 0, 0));
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
        assert_eq!(from_protobuf(Bytes::from(joined)).unwrap().spans(), 5);
    }

    #[test]
    fn json_is_converted_once_with_hex_ids() {
        let json = r#"{"resourceSpans":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"svc"}}]},
            "scopeSpans":[{"spans":[{"traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174",
            "name":"op","startTimeUnixNano":"1700000000000000000","endTimeUnixNano":"1700000000100000000"}]}]}]}"#;
        let checked = for_otlp(from_json(json.as_bytes()).unwrap());
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
        let checked = for_otlp(from_protobuf(Bytes::from(r.encode_to_vec())).unwrap());
        assert_eq!((checked.spans, checked.too_large), (2, 1));
        let kept = ExportTraceServiceRequest::decode(checked.body).unwrap();
        let names: Vec<&str> = kept.resource_spans[0].scope_spans[0].spans.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["op-0", "op-2"]);
    }

    #[test]
    fn a_json_body_must_be_an_object() {
        for body in ["[]", " [1]", "7", "\"x\"", "null", ""] {
            assert_eq!(from_json(body.as_bytes()).unwrap_err().as_str(), "bad_json", "{body:?}");
        }
        assert_eq!(from_json(b" {}").unwrap().spans(), 0);
    }

    #[test]
    fn spans_with_invalid_ids_are_taken_out_and_counted() {
        let mut r = request("svc", "op", 6);
        let spans = &mut r.resource_spans[0].scope_spans[0].spans;
        spans[0].trace_id = vec![0; 16];
        spans[1].trace_id = vec![1; 15];
        spans[2].span_id = vec![0; 8];
        spans[3].span_id = vec![];
        let checked = for_otlp(from_protobuf(Bytes::from(r.encode_to_vec())).unwrap());
        assert_eq!((checked.spans, checked.invalid, checked.too_large), (2, 4, 0));
        let kept = ExportTraceServiceRequest::decode(checked.body).unwrap();
        let names: Vec<&str> = kept.resource_spans[0].scope_spans[0].spans.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["op-4", "op-5"]);
        // A JSON span with an empty trace id is one of them.
        let json =
            r#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"","spanId":"eee19b7ec3c1b174","name":"x"}]}]}]}"#;
        let checked = for_otlp(from_json(json.as_bytes()).unwrap());
        assert_eq!((checked.spans, checked.invalid), (0, 1));
    }
}
