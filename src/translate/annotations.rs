//! `annotations`, `metadata`, `user` and `service` (mapping §9): where the attributes no
//! other block consumed end up.
//!
//! An indexed attribute (configured, named in `aws.xray.annotations`, or every one in
//! index-all mode) becomes an annotation under a fixed key (`[0-9A-Za-z.]`, others `_`) if its
//! value is a string, number or bool. Everything else goes to metadata: `aws.xray.metadata.<ns>`
//! strings holding a JSON object become namespace `<ns>`, the rest lands in `default` as raw
//! values. Segments also carry the resource attributes as `otel.resource.<key>`.
//!
//! Go's maps decide two collisions by chance (two span keys fixing to one annotation key; a
//! key merged from `aws.xray.metadata.default` against a plain attribute): here the later
//! attribute in the list wins. A NaN or infinite double is left out (the exporter drops the
//! span). Keys are sorted by sorting a small vector of references, not through a map.

use super::attributes::{get, str_of, val, Attrs};
use super::json::{self, non_finite};
use super::metadata_json::{self, Object};
use opentelemetry_proto::tonic::common::v1::{any_value::Value, KeyValue};
use std::cmp::Ordering;

const RESOURCE_PREFIX: &str = "otel.resource.";
const METADATA_PREFIX: &str = "aws.xray.metadata.";

/// The configured indexed keys, sorted for lookups, and the index-all switch.
#[derive(Debug, Clone, Default)]
pub(crate) struct Index {
    keys: Vec<String>,
    all: bool,
}

impl Index {
    pub(crate) fn new(keys: &[String], all: bool) -> Index {
        let mut keys = keys.to_vec();
        keys.sort();
        keys.dedup();
        Index { keys, all }
    }

    /// The configured keys, in sorted order (for putting consumed keys back).
    pub(crate) fn keys(&self) -> &[String] {
        &self.keys
    }

    fn has(&self, key: &str) -> bool {
        !self.all && self.keys.binary_search_by(|k| k.as_str().cmp(key)).is_ok()
    }

    /// Whether `otel.resource.<key>` is configured.
    fn has_resource(&self, key: &str) -> bool {
        !self.all && self.keys.binary_search_by(|k| k.bytes().cmp(RESOURCE_PREFIX.bytes().chain(key.bytes()))).is_ok()
    }
}

/// An annotation or metadata key: a resource key is `otel.resource.<key>`.
#[derive(Clone, Copy)]
struct Key<'a> {
    resource: bool,
    key: &'a str,
}

impl Key<'_> {
    fn prefix(&self) -> &'static str {
        if self.resource {
            RESOURCE_PREFIX
        } else {
            ""
        }
    }
    fn raw(&self) -> impl Iterator<Item = u8> + '_ {
        self.prefix().bytes().chain(self.key.bytes())
    }
    /// The annotation key: every character but `[0-9A-Za-z.]` becomes one `_`.
    fn fixed(&self) -> impl Iterator<Item = u8> + '_ {
        let fix = |c: char| if c.is_ascii_alphanumeric() || c == '.' { c as u8 } else { b'_' };
        self.prefix().bytes().chain(self.key.chars().map(fix))
    }
}

/// A metadata namespace and its object (`None`: `null`).
type Namespace<'a> = (&'a str, Option<&'a Object>);

enum Meta<'a> {
    Any(&'a Value),
    Json(&'a serde_json::Value),
}

/// What an `aws.xray.metadata.*` attribute parsed to.
enum Parsed {
    NotMetadata,
    Failed,
    Null,
    Object(Object),
}

fn annotatable(v: Option<&Value>) -> bool {
    matches!(v, Some(Value::StringValue(_) | Value::IntValue(_) | Value::BoolValue(_)))
        || matches!(v, Some(Value::DoubleValue(d)) if d.is_finite())
}

/// `user`: `Str()` of `enduser.id`, which is always consumed.
pub(crate) fn user<'a>(attrs: &mut Attrs<'a>) -> &'a str {
    let user = attrs.remaining("enduser.id").map_or("", |kv| str_of(val(kv)));
    attrs.consume_where(|k| k == "enduser.id");
    user
}

/// `"service":{"version":…}` from `service.version`, else the first of a non-empty
/// `container.image.tags` array, else `container.image.tag`; `{}` when the value is empty.
pub(crate) fn write_service(buf: &mut Vec<u8>, resource: &[KeyValue]) {
    let tags = match get(resource, "container.image.tags").and_then(val) {
        Some(Value::ArrayValue(a)) if !a.values.is_empty() => Some(str_of(json::inner(a.values.first()))),
        _ => None,
    };
    let version = get(resource, "service.version")
        .map(|kv| str_of(val(kv)))
        .or(tags)
        .or_else(|| get(resource, "container.image.tag").map(|kv| str_of(val(kv))));
    if let Some(version) = version {
        json::key(buf, "service");
        buf.push(b'{');
        json::opt_str_field(buf, "version", version);
        buf.push(b'}');
    }
}

/// Sorts by `cmp` (then list order) and keeps the last of each equal key.
fn sort_dedup<T>(items: &mut Vec<(T, usize)>, cmp: impl Fn(&T, &T) -> Ordering) {
    items.sort_by(|a, b| cmp(&a.0, &b.0).then(a.1.cmp(&b.1)));
    let keep: Vec<bool> = (0..items.len())
        .map(|i| items.get(i + 1).is_none_or(|next| cmp(&items[i].0, &next.0) != Ordering::Equal))
        .collect();
    let mut keep = keep.into_iter();
    items.retain(|_| keep.next().unwrap_or(true));
}

/// Writes `annotations` and `metadata` from what is left of the attributes (consuming
/// `aws.xray.annotations`) and, for segments, the resource. `service_segment` keeps only the
/// `otel.resource.` metadata keys (mapping §1c).
pub(crate) fn write(
    buf: &mut Vec<u8>,
    attrs: &mut Attrs<'_>,
    resource: &[KeyValue],
    store_resource: bool,
    index: &Index,
    service_segment: bool,
) {
    let mut dynamic: Vec<&str> = Vec::new();
    if let Some(Value::ArrayValue(a)) = attrs.remaining("aws.xray.annotations").and_then(val) {
        dynamic = a
            .values
            .iter()
            .filter_map(|v| match json::inner(Some(v)) {
                Some(Value::StringValue(s)) => Some(s.as_str()),
                _ => None,
            })
            .collect();
        attrs.consume_where(|k| k == "aws.xray.annotations");
    }
    let span_indexed = |k: &str| index.all || index.has(k) || dynamic.contains(&k);
    let resource_indexed = |k: &str| {
        index.all || index.has_resource(k) || dynamic.iter().any(|d| d.strip_prefix(RESOURCE_PREFIX) == Some(k))
    };

    let entries = attrs.remaining_entries();
    let parsed: Vec<Parsed> = entries
        .iter()
        .map(|(_, kv)| match val(kv) {
            Some(Value::StringValue(s))
                if !index.all && !span_indexed(&kv.key) && kv.key.starts_with(METADATA_PREFIX) =>
            {
                match metadata_json::parse_object(s) {
                    None => Parsed::Failed,
                    Some(None) => Parsed::Null,
                    Some(Some(object)) => Parsed::Object(object),
                }
            }
            _ => Parsed::NotMetadata,
        })
        .collect();

    let mut annotations: Vec<((Key<'_>, &Value), usize)> = Vec::new();
    let mut metadata: Vec<((Key<'_>, Meta<'_>), usize)> = Vec::new();
    let mut namespaces: Vec<Namespace<'_>> = Vec::new();
    if store_resource {
        for (seq, kv) in resource.iter().enumerate() {
            let key = Key { resource: true, key: &kv.key };
            match val(kv) {
                v if non_finite(v) => {}
                Some(v) if annotatable(Some(v)) && resource_indexed(&kv.key) => annotations.push(((key, v), seq)),
                Some(v) => metadata.push(((key, Meta::Any(v)), seq)),
                None => {}
            }
        }
    }
    for ((&(_, kv), parsed), seq) in entries.iter().zip(&parsed).zip(resource.len()..) {
        let key = Key { resource: false, key: &kv.key };
        let v = val(kv);
        if span_indexed(&kv.key) {
            if let Some(v) = v.filter(|v| annotatable(Some(v))) {
                annotations.push(((key, v), seq));
            }
            continue;
        }
        match parsed {
            Parsed::NotMetadata | Parsed::Failed => {
                if let Some(v) = v.filter(|v| !non_finite(Some(v))) {
                    metadata.push(((key, Meta::Any(v)), seq));
                }
            }
            Parsed::Null | Parsed::Object(_) => {
                let ns = &kv.key[METADATA_PREFIX.len()..];
                let object = match parsed {
                    Parsed::Object(object) => Some(object),
                    _ => None,
                };
                if ns.eq_ignore_ascii_case("default") {
                    for (k, j) in object.into_iter().flatten() {
                        metadata.push(((Key { resource: false, key: k }, Meta::Json(j)), seq));
                    }
                } else {
                    namespaces.push((ns, object));
                }
            }
        }
    }

    sort_dedup(&mut annotations, |(a, _), (b, _)| a.fixed().cmp(b.fixed()));
    if !annotations.is_empty() {
        json::key(buf, "annotations");
        buf.push(b'{');
        for ((k, v), _) in &annotations {
            json::sep(buf);
            buf.push(b'"');
            buf.extend(k.fixed());
            buf.extend_from_slice(b"\":");
            json::raw(buf, Some(*v));
        }
        buf.push(b'}');
    }

    sort_dedup(
        &mut metadata,
        |(a, _), (b, _)| {
            if a.resource == b.resource {
                a.key.cmp(b.key)
            } else {
                a.raw().cmp(b.raw())
            }
        },
    );
    let has_default = !metadata.is_empty();
    if has_default {
        namespaces.push(("default", None));
    }
    if namespaces.is_empty() {
        return;
    }
    namespaces.sort_by(|a, b| a.0.cmp(b.0));
    let keep = |k: &str| !service_segment || k.starts_with(RESOURCE_PREFIX);
    json::key(buf, "metadata");
    buf.push(b'{');
    for (ns, object) in &namespaces {
        json::sep(buf);
        json::string(buf, ns.as_bytes());
        buf.push(b':');
        if has_default && *ns == "default" {
            buf.push(b'{');
            for ((k, m), _) in &metadata {
                if k.resource || keep(k.key) {
                    json::sep(buf);
                    json::prefixed_string(buf, k.prefix(), k.key.as_bytes());
                    buf.push(b':');
                    match m {
                        Meta::Any(v) => json::raw(buf, Some(v)),
                        Meta::Json(j) => metadata_json::write(buf, j),
                    }
                }
            }
            buf.push(b'}');
        } else {
            match object {
                Some(object) => metadata_json::write_object(buf, object, keep),
                None => buf.extend_from_slice(b"null"),
            }
        }
    }
    buf.push(b'}');
}

#[cfg(test)]
#[path = "annotations_tests.rs"]
mod tests;
