//! One X-Ray document from one span: the exporter's `MakeSegment` pipeline (mapping §0) and
//! the overrides of the local-root pieces (§1), written field by field in the order of Go's
//! struct (§12).
//!
//! The steps run in the exporter's order because each consumes attributes the later ones
//! would otherwise see: http, the cause's status text, the aws keys, the sql keys, then the
//! configured indexed keys come back, then `enduser.id`, and what is left becomes annotations
//! and metadata. The fields are then written in document order, which is not the order they
//! were computed in.

use super::annotations::{self, Index};
use super::attributes::{get, get_str, str_of, val, Attrs};
use super::aws;
use super::cause;
use super::http;
use super::json;
use super::links;
use super::names::{self, Kind};
use super::sql;
use opentelemetry_proto::tonic::common::v1::{any_value::Value, KeyValue};
use opentelemetry_proto::tonic::trace::v1::Span;
use std::borrow::Cow;

/// The attributes a local root's service segment is converted without.
const NOT_ON_SERVICE_SEGMENT: [&str; 4] =
    ["aws.remote.service", "aws.remote.operation", "remoteTarget", "K8s.RemoteNamespace"];

/// Which document of a span this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Piece {
    /// A span that is not a local root: the conversion as it is.
    Plain,
    /// A local-root Server or Internal span: always a segment, without type and namespace.
    LocalRoot,
    /// The first of a split local root: the call, as a subsegment of the service segment
    /// whose id this is.
    Dependency(u64),
    /// The second of a split: the local service, with this generated span id.
    Service(u64),
}

fn id_of(bytes: &[u8]) -> u64 {
    bytes.try_into().map_or(0, u64::from_be_bytes)
}

/// Writes one piece of `span` into `buf`. The span's ids were checked by the caller.
pub(crate) fn write(
    buf: &mut Vec<u8>,
    index: &Index,
    resource: &[KeyValue],
    span: &Span,
    piece: Piece,
    next_id: &mut dyn FnMut() -> u64,
) {
    let kind = Kind::of(span.kind);
    let (span_id, parent) = match piece {
        Piece::Plain | Piece::LocalRoot => (id_of(&span.span_id), id_of(&span.parent_span_id)),
        Piece::Dependency(s) => (id_of(&span.span_id), s),
        Piece::Service(s) => (s, id_of(&span.parent_span_id)),
    };
    let service = matches!(piece, Piece::Service(_));
    let mut attrs = Attrs::new(&span.attributes);
    if service {
        for key in NOT_ON_SERVICE_SEGMENT {
            attrs.remove_first(key);
        }
    }
    let in_progress = match attrs.get("aws.xray.inprogress").and_then(val) {
        Some(Value::BoolValue(b)) => {
            attrs.remove_first("aws.xray.inprogress");
            *b
        }
        _ => false,
    };
    let segment = matches!(kind, Kind::Server | Kind::Consumer) || parent == 0;
    let aws_sdk = names::is_aws_sdk(&attrs);

    // The consuming steps, in the exporter's order.
    // The service segment drops the http block, but its keys are consumed all the same.
    let http = http::make(&mut attrs, kind, &span.events).filter(|_| !service);
    let (fault, error, throttle) = cause::flags(&attrs, span);
    let cause = cause::decide(&mut attrs, span, aws_sdk);
    let aws = aws::make(&mut attrs, resource);
    let sql = sql::make(&mut attrs, &span.name);
    for key in index.keys() {
        attrs.put_back(key);
    }
    let user = annotations::user(&mut attrs);

    let named = names::name(&attrs, resource, kind, &span.name);
    let mut name = named.name;
    let (namespace, subsegment, with_links) = match piece {
        Piece::Plain => (named.namespace, !segment, true),
        Piece::LocalRoot => (None, false, true),
        Piece::Dependency(_) => (named.namespace.or(Some("remote")), true, kind != Kind::Consumer),
        Piece::Service(_) => (None, false, kind == Kind::Consumer),
    };
    // The local-root overrides read the span as it came in.
    let original = &span.attributes;
    match piece {
        Piece::Dependency(_) if get(original, "aws.remote.service").is_some() => {
            let remote = get_str(original, "aws.remote.service");
            let aws_sdk = get_str(original, "rpc.system") == "aws-api";
            name = Cow::Borrowed(names::trim_aws_sdk_prefix(remote, aws_sdk).as_bytes());
        }
        Piece::Service(_) => {
            if let Some(kv) = get(original, "aws.local.service").or_else(|| get(resource, "service.name")) {
                name = Cow::Borrowed(str_of(val(kv)).as_bytes());
            }
        }
        _ => {}
    }

    buf.push(b'{');
    json::str_or_null_field(buf, "name", &name);
    json::key(buf, "id");
    if span_id == 0 {
        buf.extend_from_slice(b"null");
    } else {
        buf.push(b'"');
        json::hex_u64(buf, span_id);
        buf.push(b'"');
    }
    json::float_field(buf, "start_time", span.start_time_unix_nano as f64 / 1e9);
    annotations::write_service(buf, resource);
    if let Some(origin) = aws::origin(resource) {
        json::str_field(buf, "origin", origin.as_bytes());
    }
    json::opt_str_field(buf, "user", user);
    if with_links {
        links::write(buf, &span.links);
    }
    json::key(buf, "trace_id");
    json::trace_id(buf, &span.trace_id);
    if in_progress {
        json::bool_field(buf, "in_progress", true);
    } else {
        json::float_field(buf, "end_time", span.end_time_unix_nano as f64 / 1e9);
    }
    if let Some(h) = &http {
        http::write(buf, h);
    }
    json::bool_field(buf, "fault", fault);
    json::bool_field(buf, "error", error);
    json::bool_field(buf, "throttle", throttle);
    cause::write(buf, &cause, span, kind, get_str(resource, "telemetry.sdk.language"), aws_sdk, next_id);
    if let Some(a) = &aws {
        aws::write(buf, a, service);
    }
    annotations::write(buf, &mut attrs, resource, segment, index, service);
    if let Some(ns) = namespace {
        json::str_field(buf, "namespace", ns.as_bytes());
    }
    if parent != 0 {
        buf.extend_from_slice(b",\"parent_id\":\"");
        json::hex_u64(buf, parent);
        buf.push(b'"');
    }
    if subsegment {
        json::str_field(buf, "type", b"subsegment");
    }
    if let Some(s) = &sql {
        sql::write(buf, s);
    }
    buf.push(b'}');
}
