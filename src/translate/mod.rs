//! OTLP spans to X-Ray segment documents, as the OpenTelemetry Collector's `awsxray` exporter
//! (contrib v0.156.0) writes them.
//!
//! A pure translator: a span and its resource in, JSON documents out, written back to back
//! into one reusable buffer ([`Documents`]); no I/O, logging or global state. One span makes
//! one document, or two when it is a local root (`aws.span.kind` = `LOCAL_ROOT`) of a calling
//! kind: the call as a subsegment, then the local service as a segment. A span that cannot be
//! converted makes none and says why ([`Skip`]), so that the caller can count it.
//!
//! The mapping, field by field, and where this differs from the exporter (no panics, NaN
//! values dropped rather than the span, no trailing newline, …) are in
//! `docs/span-translation.md`. Each block of the document has its own file, like the
//! exporter's: [`segment`] runs the steps of one document in order and writes its fields.

mod annotations;
mod attributes;
mod aws;
mod cause;
mod http;
mod json;
mod links;
mod metadata_json;
mod names;
mod segment;
mod sql;
mod stack;
#[cfg(test)]
mod test_attrs;

use annotations::Index;
use names::Kind;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value::Value, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::Span;
use segment::Piece;

/// The exporter's `indexed_attributes` / `index_all_attributes`
/// (`XRAY_DAEMON_INDEXED_ATTRIBUTES`, `XRAY_DAEMON_INDEX_ALL_ATTRIBUTES`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Options {
    pub indexed_attributes: Vec<String>,
    pub index_all_attributes: bool,
}

/// X-Ray's limit for one segment document.
pub const MAX_DOCUMENT_BYTES: usize = 64 * 1024;

/// Why a span made no documents (a stable name for metrics labels via [`Skip::as_str`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skip {
    /// The trace id is not 16 bytes or is all zero, the span id is not 8 bytes or is all zero,
    /// or the parent span id is neither empty nor 8 bytes.
    Invalid,
    /// A document would be over [`MAX_DOCUMENT_BYTES`].
    TooLarge,
}

impl Skip {
    pub fn as_str(self) -> &'static str {
        match self {
            Skip::Invalid => "invalid",
            Skip::TooLarge => "too_large",
        }
    }
}

/// Where fresh random 8-byte ids come from (the split's service segment id, exception ids).
/// Tests inject a deterministic one.
pub trait Ids {
    fn next_id(&mut self) -> u64;
}

/// Random ids from `fastrand`; never 0.
#[derive(Debug, Default, Clone, Copy)]
pub struct RandomIds;

impl Ids for RandomIds {
    fn next_id(&mut self) -> u64 {
        loop {
            let id = fastrand::u64(..);
            if id != 0 {
                return id;
            }
        }
    }
}

/// Documents written back to back: document `i` is `bytes[ends[i-1]..ends[i]]` (`ends[-1]` = 0).
#[derive(Debug, Default)]
pub struct Documents {
    bytes: Vec<u8>,
    ends: Vec<usize>,
}

impl Documents {
    pub fn new() -> Self {
        Self::default()
    }

    /// Empties the buffer, keeping its capacity.
    pub fn clear(&mut self) {
        self.bytes.clear();
        self.ends.clear();
    }

    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// The bytes of all documents together.
    pub fn total_bytes(&self) -> usize {
        self.bytes.len()
    }

    /// The bytes the buffer holds room for.
    pub fn capacity(&self) -> usize {
        self.bytes.capacity()
    }

    pub fn iter(&self) -> impl Iterator<Item = &[u8]> + '_ {
        let mut start = 0;
        self.ends.iter().map(move |&end| {
            let doc = self.bytes.get(start..end).unwrap_or_default();
            start = end;
            doc
        })
    }
}

/// What [`Translator::request`] converted and skipped.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Tally {
    /// Spans converted.
    pub spans: u32,
    pub documents: u32,
    pub invalid: u32,
    pub too_large: u32,
}

/// Turns spans into documents with the options it was made with.
#[derive(Debug, Clone)]
pub struct Translator {
    index: Index,
}

fn ok_id(id: &[u8], len: usize) -> bool {
    id.len() == len && id.iter().any(|&b| b != 0)
}

impl Translator {
    pub fn new(options: &Options) -> Translator {
        Translator { index: Index::new(&options.indexed_attributes, options.index_all_attributes) }
    }

    /// Appends the documents of one span (1, or 2 for a `LOCAL_ROOT` split) to `out`. On
    /// `Err` nothing is appended.
    pub fn span(
        &self,
        resource: Option<&Resource>,
        span: &Span,
        ids: &mut impl Ids,
        out: &mut Documents,
    ) -> Result<usize, Skip> {
        if !ok_id(&span.trace_id, 16) || !ok_id(&span.span_id, 8) || !matches!(span.parent_span_id.len(), 0 | 8) {
            return Err(Skip::Invalid);
        }
        let resource: &[KeyValue] = resource.map_or(&[], |r| &r.attributes);
        let local_root = matches!(
            attributes::get(&span.attributes, "aws.span.kind").and_then(attributes::val),
            Some(Value::StringValue(s)) if s == "LOCAL_ROOT"
        );
        let mut next_id = || ids.next_id();
        let mut pieces = [Piece::Plain, Piece::Plain];
        let n = if !local_root {
            1
        } else if matches!(Kind::of(span.kind), Kind::Server | Kind::Internal) {
            pieces[0] = Piece::LocalRoot;
            1
        } else {
            let service_id = next_id();
            pieces = [Piece::Dependency(service_id), Piece::Service(service_id)];
            2
        };
        let (bytes_before, docs_before) = (out.bytes.len(), out.ends.len());
        for piece in pieces.into_iter().take(n) {
            let start = out.bytes.len();
            segment::write(&mut out.bytes, &self.index, resource, span, piece, &mut next_id);
            if out.bytes.len() - start > MAX_DOCUMENT_BYTES {
                out.bytes.truncate(bytes_before);
                out.ends.truncate(docs_before);
                return Err(Skip::TooLarge);
            }
            out.ends.push(out.bytes.len());
        }
        Ok(n)
    }

    /// Every span of a request, in resource → scope → span order; counts what was skipped
    /// and why.
    pub fn request(&self, request: &ExportTraceServiceRequest, ids: &mut impl Ids, out: &mut Documents) -> Tally {
        let mut tally = Tally::default();
        for rs in &request.resource_spans {
            for span in rs.scope_spans.iter().flat_map(|ss| &ss.spans) {
                match self.span(rs.resource.as_ref(), span, ids, out) {
                    Ok(n) => {
                        tally.spans += 1;
                        tally.documents += n as u32;
                    }
                    Err(Skip::Invalid) => tally.invalid += 1,
                    Err(Skip::TooLarge) => tally.too_large += 1,
                }
            }
        }
        tally
    }
}

#[cfg(test)]
mod tests;
