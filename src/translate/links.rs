//! `links` (mapping §10): the span's links, in order, each with its X-Ray trace id, its span
//! id (`""` when zero) and its attributes as raw values.
//!
//! A link the exporter could not have decoded (a trace id that is not 16 bytes, a span id
//! neither empty nor 8 bytes) is left out; the span keeps its other links. Trace state, flags
//! and dropped counts are ignored, as the exporter ignores them.

use super::json;
use opentelemetry_proto::tonic::trace::v1::span::Link;

fn usable(link: &Link) -> bool {
    link.trace_id.len() == 16 && (link.span_id.is_empty() || link.span_id.len() == 8)
}

/// Writes `"links":[…]` unless no link is usable.
pub(crate) fn write(buf: &mut Vec<u8>, links: &[Link]) {
    let mut usable_links = links.iter().filter(|l| usable(l)).peekable();
    if usable_links.peek().is_none() {
        return;
    }
    json::key(buf, "links");
    buf.push(b'[');
    for link in usable_links {
        json::sep(buf);
        buf.extend_from_slice(b"{\"trace_id\":");
        json::trace_id(buf, &link.trace_id);
        buf.extend_from_slice(b",\"id\":\"");
        if link.span_id.iter().any(|&b| b != 0) {
            json::hex(buf, &link.span_id);
        }
        buf.push(b'"');
        let finite = link.attributes.iter().any(|kv| !json::non_finite(json::inner(kv.value.as_ref())));
        if finite {
            json::key(buf, "attributes");
            json::map(buf, &link.attributes);
        }
        buf.push(b'}');
    }
    buf.push(b']');
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::translate::test_attrs::kv;
    use opentelemetry_proto::tonic::common::v1::{any_value::Value, KeyValue};

    fn link(trace: Vec<u8>, span: Vec<u8>, attrs: Vec<KeyValue>) -> Link {
        Link { trace_id: trace, span_id: span, attributes: attrs, ..Default::default() }
    }
    fn out(links: &[Link]) -> String {
        let mut buf = Vec::new();
        write(&mut buf, links);
        String::from_utf8(buf).unwrap()
    }

    #[test]
    fn links_in_order_with_raw_attributes() {
        let trace: Vec<u8> = (1..=16).collect();
        let links = [
            link(
                trace.clone(),
                vec![0xab; 8],
                vec![kv("x", Value::IntValue(1)), kv("a", Value::StringValue("s".into()))],
            ),
            link(trace.clone(), vec![0; 8], vec![kv("x", Value::IntValue(1))]),
            link(trace.clone(), vec![], vec![]),
        ];
        assert_eq!(
            out(&links),
            concat!(
                r#""links":[{"trace_id":"1-01020304-05060708090a0b0c0d0e0f10","id":"abababababababab","attributes":{"a":"s","x":1}},"#,
                r#"{"trace_id":"1-01020304-05060708090a0b0c0d0e0f10","id":"","attributes":{"x":1}},"#,
                r#"{"trace_id":"1-01020304-05060708090a0b0c0d0e0f10","id":""}]"#
            )
        );
    }

    #[test]
    fn bad_links_are_dropped_alone() {
        let good = link(vec![1; 16], vec![2; 8], vec![]);
        let links = [link(vec![1; 15], vec![2; 8], vec![]), link(vec![1; 16], vec![2; 3], vec![]), good];
        assert_eq!(
            out(&links),
            r#""links":[{"trace_id":"1-01010101-010101010101010101010101","id":"0202020202020202"}]"#
        );
        assert_eq!(out(&links[..2]), "");
        assert_eq!(out(&[]), "");
        let nan = link(vec![1; 16], vec![2; 8], vec![kv("n", Value::DoubleValue(f64::NAN))]);
        assert_eq!(
            out(&[nan]),
            r#""links":[{"trace_id":"1-01010101-010101010101010101010101","id":"0202020202020202"}]"#
        );
    }
}
