//! The span's attributes as the exporter sees them, without copying them into a map.
//!
//! The exporter reads a span's attributes two ways. *Lookups* (`Get`) return the first
//! occurrence of a key in the list. The *remaining map* is built by walking the list, so the
//! last occurrence of a key wins there; each step deletes the keys it consumes, a configured
//! indexed key may be put back (first occurrence), and what is left becomes annotations or
//! metadata. [`Attrs`] keeps the list's order (as a vector of positions, so that the
//! exporter's swap-removes can be mimicked) and one "consumed" flag per position; the
//! remaining value of a key is its last unconsumed occurrence.
//!
//! The `str_of`/`int_of` helpers are the exporter's `Str()`/`Int()`: `""` and `0` for a value
//! of another type.

use super::json::inner;
use opentelemetry_proto::tonic::common::v1::{any_value::Value, KeyValue};

/// `Str()`: the string, or `""` for any other type.
pub(crate) fn str_of(v: Option<&Value>) -> &str {
    match v {
        Some(Value::StringValue(s)) => s,
        _ => "",
    }
}

/// `Int()`: the integer, or 0 for any other type.
pub(crate) fn int_of(v: Option<&Value>) -> i64 {
    match v {
        Some(Value::IntValue(i)) => *i,
        _ => 0,
    }
}

/// The value of a key/value pair.
pub(crate) fn val(kv: &KeyValue) -> Option<&Value> {
    inner(kv.value.as_ref())
}

/// `Get` on a plain list (resource, event, link): the first occurrence.
pub(crate) fn get<'a>(kvs: &'a [KeyValue], key: &str) -> Option<&'a KeyValue> {
    kvs.iter().find(|kv| kv.key == key)
}

/// `Str()` of the first occurrence, `""` when absent.
pub(crate) fn get_str<'a>(kvs: &'a [KeyValue], key: &str) -> &'a str {
    str_of(get(kvs, key).and_then(val))
}

/// A span's attribute list with the exporter's order and remaining map.
pub(crate) struct Attrs<'a> {
    kvs: &'a [KeyValue],
    /// Positions in `kvs`, in the order the exporter iterates them.
    order: Vec<usize>,
    /// Per entry of `order`: deleted from the remaining map.
    consumed: Vec<bool>,
}

impl<'a> Attrs<'a> {
    pub(crate) fn new(kvs: &'a [KeyValue]) -> Self {
        Attrs { kvs, order: (0..kvs.len()).collect(), consumed: vec![false; kvs.len()] }
    }

    /// pdata's `Map.Remove`: the first occurrence is replaced by the last entry. Returns the
    /// removed pair.
    pub(crate) fn remove_first(&mut self, key: &str) -> Option<&'a KeyValue> {
        let pos = self.position(key)?;
        let kv = &self.kvs[self.order[pos]];
        self.order.swap_remove(pos);
        self.consumed.swap_remove(pos);
        Some(kv)
    }

    fn position(&self, key: &str) -> Option<usize> {
        self.order.iter().position(|&i| self.kvs[i].key == key)
    }

    /// Every pair, in order, with its position.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (usize, &'a KeyValue)> + '_ {
        let kvs = self.kvs;
        self.order.iter().enumerate().map(move |(pos, &i)| (pos, &kvs[i]))
    }

    /// `Get`: the first occurrence.
    pub(crate) fn get(&self, key: &str) -> Option<&'a KeyValue> {
        self.position(key).map(|pos| &self.kvs[self.order[pos]])
    }

    /// `Str()` of the first occurrence.
    pub(crate) fn get_str(&self, key: &str) -> &'a str {
        str_of(self.get(key).and_then(val))
    }

    /// The value in the remaining map: the last unconsumed occurrence.
    pub(crate) fn remaining(&self, key: &str) -> Option<&'a KeyValue> {
        self.order
            .iter()
            .zip(&self.consumed)
            .rev()
            .find(|(&i, &c)| !c && self.kvs[i].key == key)
            .map(|(&i, _)| &self.kvs[i])
    }

    /// Deletes from the remaining map every key for which `pred` holds.
    pub(crate) fn consume_where(&mut self, pred: impl Fn(&str) -> bool) {
        for (pos, &i) in self.order.iter().enumerate() {
            if pred(&self.kvs[i].key) {
                self.consumed[pos] = true;
            }
        }
    }

    pub(crate) fn consume_at(&mut self, pos: usize) {
        if let Some(c) = self.consumed.get_mut(pos) {
            *c = true;
        }
    }

    /// The exporter's "put back" of an indexed key: when the key is no longer in the remaining
    /// map but is on the span, its first occurrence returns.
    pub(crate) fn put_back(&mut self, key: &str) {
        let mut first = None;
        for (pos, &i) in self.order.iter().enumerate() {
            if self.kvs[i].key == key {
                if !self.consumed[pos] {
                    return;
                }
                first = first.or(Some(pos));
            }
        }
        if let Some(pos) = first {
            self.consumed[pos] = false;
        }
    }

    /// The remaining map: one entry per key (its last unconsumed occurrence), in list order of
    /// those occurrences, with a sequence number that orders them.
    pub(crate) fn remaining_entries(&self) -> Vec<(usize, &'a KeyValue)> {
        let mut live: Vec<(usize, &'a KeyValue)> = self
            .order
            .iter()
            .zip(&self.consumed)
            .enumerate()
            .filter(|(_, (_, &c))| !c)
            .map(|(pos, (&i, _))| (pos, &self.kvs[i]))
            .collect();
        // Keep the last of each key: sort by key (stable, so positions stay ascending), drop
        // all but the last of each run, then restore list order.
        live.sort_by(|a, b| a.1.key.cmp(&b.1.key));
        let mut out: Vec<(usize, &'a KeyValue)> = Vec::with_capacity(live.len());
        for (n, e) in live.iter().enumerate() {
            if live.get(n + 1).is_none_or(|next| next.1.key != e.1.key) {
                out.push(*e);
            }
        }
        out.sort_by_key(|e| e.0);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::translate::test_attrs::s as kv;

    fn keys_vals(entries: &[(usize, &KeyValue)]) -> Vec<String> {
        entries.iter().map(|(_, kv)| format!("{}={}", kv.key, str_of(val(kv)))).collect()
    }

    #[test]
    fn lookups_take_the_first_and_the_remaining_map_the_last() {
        let kvs = vec![kv("a", "1"), kv("b", "2"), kv("a", "3")];
        let attrs = Attrs::new(&kvs);
        assert_eq!(attrs.get_str("a"), "1");
        assert_eq!(str_of(val(attrs.remaining("a").unwrap())), "3");
        assert_eq!(keys_vals(&attrs.remaining_entries()), ["b=2", "a=3"]);
    }

    #[test]
    fn remove_swaps_the_last_entry_into_the_hole() {
        let kvs = vec![kv("x", "1"), kv("gone", ""), kv("y", "2"), kv("x", "3")];
        let mut attrs = Attrs::new(&kvs);
        assert_eq!(attrs.remove_first("gone").map(|kv| kv.key.as_str()), Some("gone"));
        let order: Vec<&str> = attrs.iter().map(|(_, kv)| kv.key.as_str()).collect();
        assert_eq!(order, ["x", "x", "y"]);
        // the former last `x` is now second, so the remaining map's `x` is "3" still, but the
        // walk order changed
        assert_eq!(keys_vals(&attrs.remaining_entries()), ["x=3", "y=2"]);
        assert!(attrs.remove_first("absent").is_none());
    }

    #[test]
    fn consumed_keys_leave_and_indexed_ones_come_back_first() {
        let kvs = vec![kv("http.method", "GET"), kv("other", "o"), kv("http.method", "POST")];
        let mut attrs = Attrs::new(&kvs);
        attrs.consume_where(|k| k == "http.method");
        assert!(attrs.remaining("http.method").is_none());
        assert_eq!(keys_vals(&attrs.remaining_entries()), ["other=o"]);
        attrs.put_back("http.method");
        assert_eq!(keys_vals(&attrs.remaining_entries()), ["http.method=GET", "other=o"]);
        // a key still in the map is not put back twice
        attrs.put_back("http.method");
        assert_eq!(attrs.remaining_entries().len(), 2);
        attrs.put_back("absent");
        attrs.consume_at(1);
        assert_eq!(keys_vals(&attrs.remaining_entries()), ["http.method=GET"]);
    }

    #[test]
    fn str_and_int_of_other_types_are_empty() {
        assert_eq!(str_of(Some(&Value::IntValue(3))), "");
        assert_eq!(int_of(Some(&Value::StringValue("500".into()))), 0);
        assert_eq!(int_of(Some(&Value::IntValue(500))), 500);
        assert_eq!(str_of(None), "");
    }
}
