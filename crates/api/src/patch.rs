//! Partial updates of a JSON document: merge patches (RFC 7386; callout, Pipeliner, Autotask
//! PATCH) and JSON Patch (RFC 6902; SuperOffice accepts both), applied to the stored
//! document before it is parsed and validated again, so a patch can never store what a
//! whole document could not.

use serde_json::{Map, Value};

use crate::problem::Problem;

/// How keys of a patch meet the document's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Keys {
    /// Exactly (callout, Pipeliner).
    Exact,
    /// Ignoring ASCII case, the document's spelling kept (the .NET vendors).
    IgnoreCase,
}

/// Applies a merge patch: a key set to `null` is removed, an object merges into an object,
/// anything else replaces. Depth is bounded by the patch, which the body limit bounds.
pub(crate) fn merge(target: &mut Value, patch: &Value, keys: Keys) {
    let Value::Object(patch) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let Value::Object(map) = target else {
        return;
    };
    for (key, value) in patch {
        let existing = match keys {
            Keys::Exact => map.contains_key(key).then(|| key.clone()),
            Keys::IgnoreCase => map.keys().find(|k| k.eq_ignore_ascii_case(key)).cloned(),
        };
        let key = existing.unwrap_or_else(|| key.clone());
        if value.is_null() {
            map.remove(&key);
        } else {
            merge(map.entry(key).or_insert(Value::Null), value, keys);
        }
    }
}

/// Applies a JSON Patch (`add`, `remove`, `replace`, `test`; paths as JSON Pointers, object
/// keys matched ignoring ASCII case). An operation that cannot apply fails the whole patch.
pub(crate) fn json_patch(target: &mut Value, operations: &[Value]) -> Result<(), Problem> {
    for (n, operation) in operations.iter().enumerate() {
        let op = operation.get("op").and_then(Value::as_str).unwrap_or("");
        let path = operation
            .get("path")
            .and_then(Value::as_str)
            .ok_or_else(|| Problem::invalid(format!("[{n}].path"), "a JSON Pointer is required"))?;
        let tokens: Vec<String> = path
            .split('/')
            .skip(1)
            .map(|t| t.replace("~1", "/").replace("~0", "~"))
            .collect();
        if !path.is_empty() && !path.starts_with('/') {
            return Err(Problem::invalid(
                format!("[{n}].path"),
                format!("{path:?} is not a JSON Pointer"),
            ));
        }
        let value = operation.get("value").cloned();
        let bad =
            |reason: &str| Problem::invalid(path.to_string(), format!("{op} {path}: {reason}"));
        let Some((last, parents)) = tokens.split_last() else {
            return Err(bad("the whole document cannot be patched"));
        };
        let mut parent = &mut *target;
        for token in parents {
            parent = child(parent, token).ok_or_else(|| bad("no such path"))?;
        }
        match op {
            "add" | "replace" => {
                let value = value.ok_or_else(|| bad("a value is required"))?;
                match parent {
                    Value::Object(map) => {
                        let key = map
                            .keys()
                            .find(|k| k.eq_ignore_ascii_case(last))
                            .cloned()
                            .unwrap_or_else(|| last.clone());
                        if op == "replace" && !map.contains_key(&key) {
                            return Err(bad("no such member"));
                        }
                        map.insert(key, value);
                    }
                    Value::Array(items) => {
                        let index = if last == "-" && op == "add" {
                            items.len()
                        } else {
                            last.parse::<usize>().map_err(|_| bad("not an index"))?
                        };
                        match op {
                            "add" if index <= items.len() => items.insert(index, value),
                            "replace" if index < items.len() => items[index] = value,
                            _ => return Err(bad("index out of range")),
                        }
                    }
                    _ => return Err(bad("not a container")),
                }
            }
            "remove" => match parent {
                Value::Object(map) => {
                    let key = map.keys().find(|k| k.eq_ignore_ascii_case(last)).cloned();
                    key.and_then(|k| map.remove(&k))
                        .ok_or_else(|| bad("no such member"))?;
                }
                Value::Array(items) => {
                    let index = last.parse::<usize>().map_err(|_| bad("not an index"))?;
                    if index >= items.len() {
                        return Err(bad("index out of range"));
                    }
                    items.remove(index);
                }
                _ => return Err(bad("not a container")),
            },
            "test" => {
                let found = child(parent, last).ok_or_else(|| bad("no such path"))?;
                if Some(&*found) != value.as_ref() {
                    return Err(bad("the value differs"));
                }
            }
            other => {
                return Err(Problem::invalid(
                    format!("[{n}].op"),
                    format!("{other:?} is not add, remove, replace or test"),
                ))
            }
        }
    }
    Ok(())
}

fn child<'v>(value: &'v mut Value, token: &str) -> Option<&'v mut Value> {
    match value {
        Value::Object(map) => {
            let key = map.keys().find(|k| k.eq_ignore_ascii_case(token))?.clone();
            map.get_mut(&key)
        }
        Value::Array(items) => items.get_mut(token.parse::<usize>().ok()?),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn merge_patches_follow_rfc_7386() {
        let mut doc = json!({"a": "b", "c": {"d": "e", "f": "g"}});
        merge(&mut doc, &json!({"a": "z", "c": {"f": null}}), Keys::Exact);
        assert_eq!(doc, json!({"a": "z", "c": {"d": "e"}}));
        let mut doc = json!({"Name": "x"});
        merge(&mut doc, &json!({"name": "y", "new": 1}), Keys::IgnoreCase);
        assert_eq!(doc, json!({"Name": "y", "new": 1}));
    }

    #[test]
    fn json_patches_apply_or_fail_whole() {
        let mut doc = json!({"Name": "x", "Events": ["a"], "Headers": {"A": "1"}});
        json_patch(
            &mut doc,
            &[
                json!({"op": "replace", "path": "/name", "value": "y"}),
                json!({"op": "add", "path": "/Events/-", "value": "b"}),
                json!({"op": "remove", "path": "/Headers/A"}),
                json!({"op": "test", "path": "/Name", "value": "y"}),
            ],
        )
        .unwrap();
        assert_eq!(
            doc,
            json!({"Name": "y", "Events": ["a", "b"], "Headers": {}})
        );
        for bad in [
            json!({"op": "replace", "path": "/Nope", "value": 1}),
            json!({"op": "move", "path": "/Name"}),
            json!({"op": "add", "path": "", "value": 1}),
            json!({"op": "add", "path": "Name", "value": 1}),
            json!({"op": "remove", "path": "/Events/9"}),
            json!({"op": "add", "path": "/Name/x/y", "value": 1}),
            json!({"path": "/Name"}),
        ] {
            assert!(
                json_patch(&mut doc.clone(), std::slice::from_ref(&bad)).is_err(),
                "{bad}"
            );
        }
    }
}
