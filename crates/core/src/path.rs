//! Dot paths into nested JSON: lookup, change detection and projection.

use std::sync::Arc;

use serde_json::{Map, Value};

/// A dot path as filters keep it: one shared allocation, so that the matcher can hand every
/// filter on the same path the same copy and look it up once per event.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct Path(Arc<str>);

impl Path {
    pub(crate) fn new(text: &str) -> Path {
        Path(text.into())
    }

    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }

    pub(crate) fn lookup<'v>(&self, value: &'v Value) -> Option<&'v Value> {
        lookup(value, &self.0)
    }

    /// Whether a copy of this path is held anywhere but here.
    pub(crate) fn is_shared(&self) -> bool {
        Arc::strong_count(&self.0) > 1
    }
}

impl std::borrow::Borrow<str> for Path {
    fn borrow(&self) -> &str {
        &self.0
    }
}

/// The value at a dot path (`address.city`), or `None` where any segment is missing or the
/// parent is not an object. Arrays are values, not containers: paths do not index into them.
pub fn lookup<'v>(value: &'v Value, path: &str) -> Option<&'v Value> {
    path.split('.')
        .try_fold(value, |current, segment| current.as_object()?.get(segment))
}

/// Whether a path is well formed: non-empty segments separated by single dots.
pub(crate) fn is_valid(path: &str) -> bool {
    !path.is_empty() && path.split('.').all(|s| !s.trim().is_empty())
}

/// The dot paths whose values differ between `previous` and `data`. Objects are compared key by
/// key, recursively; anything else (arrays included) is compared whole, so a changed array is
/// one changed path.
pub fn changed_paths(previous: &Value, data: &Value) -> Vec<String> {
    let mut out = Vec::new();
    diff(previous, data, &mut String::new(), &mut out);
    out
}

fn diff(before: &Value, after: &Value, prefix: &mut String, out: &mut Vec<String>) {
    match (before.as_object(), after.as_object()) {
        (Some(b), Some(a)) => {
            let keys = b.keys().chain(a.keys().filter(|k| !b.contains_key(*k)));
            for key in keys {
                let missing = Value::Null;
                let (bv, av) = (
                    b.get(key).unwrap_or(&missing),
                    a.get(key).unwrap_or(&missing),
                );
                let appeared_or_vanished = b.contains_key(key) != a.contains_key(key);
                if bv == av && !appeared_or_vanished {
                    continue;
                }
                let len = prefix.len();
                if !prefix.is_empty() {
                    prefix.push('.');
                }
                prefix.push_str(key);
                if bv == av {
                    // A null that appeared or vanished: same value, different shape.
                    out.push(prefix.clone());
                } else {
                    diff(bv, av, prefix, out);
                }
                prefix.truncate(len);
            }
        }
        _ if before != after && !prefix.is_empty() => out.push(prefix.clone()),
        // Two different non-object roots: the record itself changed, nothing to name.
        _ => {}
    }
}

/// Whether a change at `changed` touches the watched `field`: the same path, a child of it
/// (`address.city` changed, `address` watched), or a parent of it (`address` replaced whole,
/// `address.city` watched).
pub(crate) fn touches(field: &str, changed: &str) -> bool {
    fn is_prefix(parent: &str, child: &str) -> bool {
        child.len() > parent.len()
            && child.starts_with(parent)
            && child.as_bytes()[parent.len()] == b'.'
    }
    field == changed || is_prefix(field, changed) || is_prefix(changed, field)
}

/// Copies the value at `path` from `source` into `target`, creating the nested objects on the
/// way so the projection keeps the record's shape. A missing path copies nothing.
pub(crate) fn copy_path(source: &Value, target: &mut Map<String, Value>, path: &str) {
    let Some(value) = lookup(source, path) else {
        return;
    };
    let mut segments = path.split('.').peekable();
    let mut node = target;
    while let Some(segment) = segments.next() {
        if segments.peek().is_none() {
            node.insert(segment.to_string(), value.clone());
            return;
        }
        let child = node
            .entry(segment.to_string())
            .or_insert_with(|| Value::Object(Map::new()));
        match child {
            Value::Object(map) => node = map,
            // An ancestor was already copied whole: it holds this path too.
            _ => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn lookup_follows_nested_objects_only() {
        let v = json!({"a": {"b": {"c": 1}}, "list": [{"x": 1}]});
        assert_eq!(lookup(&v, "a.b.c"), Some(&json!(1)));
        assert_eq!(lookup(&v, "a.b"), Some(&json!({"c": 1})));
        assert_eq!(lookup(&v, "a.z"), None);
        assert_eq!(lookup(&v, "a.b.c.d"), None);
        assert_eq!(lookup(&v, "list.x"), None);
    }

    #[test]
    fn changed_paths_are_nested_and_arrays_whole() {
        let before =
            json!({"name": "A", "address": {"city": "X", "zip": "1"}, "tags": [1, 2], "gone": 1});
        let after =
            json!({"name": "A", "address": {"city": "Y", "zip": "1"}, "tags": [1, 3], "new": true});
        let mut changed = changed_paths(&before, &after);
        changed.sort();
        assert_eq!(changed, ["address.city", "gone", "new", "tags"]);
        assert!(changed_paths(&before, &before).is_empty());
        // A field that went from null to absent did change shape.
        assert_eq!(changed_paths(&json!({"a": null}), &json!({})), ["a"]);
    }

    #[test]
    fn touches_parent_child_and_same() {
        assert!(touches("address", "address.city"));
        assert!(touches("address.city", "address"));
        assert!(touches("email1", "email1"));
        assert!(!touches("email1", "email10"));
        assert!(!touches("address.city", "address.zip"));
    }

    #[test]
    fn copy_path_keeps_shape() {
        let src = json!({"a": {"b": 1, "c": 2}, "d": 3});
        let mut out = Map::new();
        copy_path(&src, &mut out, "a.b");
        copy_path(&src, &mut out, "d");
        copy_path(&src, &mut out, "missing.x");
        assert_eq!(Value::Object(out), json!({"a": {"b": 1}, "d": 3}));
    }
}
