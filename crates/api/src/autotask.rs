//! Autotask's REST webhook endpoints (`seeds/autotask-webhooks-rest.txt` and Autotask's
//! REST conventions), below `/autotask/atservicesrest/v1.0`, for every webhook entity
//! (`CompanyWebhooks`, `ContactWebhooks`, `ConfigurationItemWebhooks`, `TicketWebhooks`,
//! `TicketNoteWebhooks`; names ignore case):
//!
//! - `POST {Entity}Webhooks` creates (`{"itemId"}`), refusing a duplicate (same entity, URL
//!   and a callout type in common); `PATCH` changes the fields given and `PUT` replaces the
//!   webhook, both with the `id` in the body (`{"itemId"}`); `GET {Entity}Webhooks/{id}` is
//!   `{"item"}`; `DELETE {Entity}Webhooks/{id}` is `{"itemId"}`;
//! - `GET {Entity}Webhooks/query?search={...}` and `POST {Entity}Webhooks/query` filter with
//!   Autotask's expressions (`eq noteq gt gte lt lte beginsWith endsWith contains exist
//!   notExist in notIn`, grouped by `and` / `or`) and answer `{"items", "pageDetails"}`;
//!   `.../query/count` answers `{"queryCount"}`;
//! - the child collections `{Entity}Webhooks/{parentId}/Fields`, `/UdfFields` and
//!   `/ExcludedResources`: `GET` lists, `POST` adds, `PATCH`/`PUT` change a field child (its
//!   `id` in the body), `GET`/`DELETE .../{id}` one child. A child's `id` is its `FieldID`,
//!   `UdfFieldID` or `ResourceID`, unique within its webhook.
//!
//! `SecretKey` is always `null` in answers (write-only); a `PUT` without one keeps the stored
//! key. Errors are Autotask's `{"errors": ["..."]}`, each message naming the field, with a 4xx
//! status (Autotask itself answers many validation errors with 500; callout says 400).

use callout::core::vendor::autotask;
use callout::core::Profile;
use callout::store::SubscriptionFilter;
use callout::Subscription;
use http::{Method, Response, StatusCode};
use serde_json::{json, Map, Value};

use crate::patch::{self, Keys};
use crate::problem::Problem;
use crate::scope::Scope;
use crate::web::{self, Call};

type Reply = Result<Response<Vec<u8>>, Problem>;

/// Autotask's page size: a query answers at most this many items.
const MAX_RECORDS: usize = 500;

pub(crate) fn handle(scope: &Scope<'_>, call: &Call<'_>) -> Response<Vec<u8>> {
    route(scope, call).unwrap_or_else(problem)
}

/// A child collection of a webhook: its key in the REST document and its children's id key.
#[derive(Debug, Clone, Copy)]
struct Child {
    collection: &'static str,
    id_key: &'static str,
    name_key: Option<&'static str>,
}

const CHILDREN: &[Child] = &[
    Child {
        collection: "Fields",
        id_key: "FieldID",
        name_key: Some("FieldName"),
    },
    Child {
        collection: "UdfFields",
        id_key: "UdfFieldID",
        name_key: Some("UdfFieldName"),
    },
    Child {
        collection: "ExcludedResources",
        id_key: "ResourceID",
        name_key: None,
    },
];

fn route(scope: &Scope<'_>, call: &Call<'_>) -> Reply {
    let path = call.path();
    let Some((first, rest)) = path.split_first() else {
        return Err(Problem::no_route());
    };
    let entity = entity_of_path(first)?;
    let rest: Vec<String> = rest.iter().map(|s| s.to_ascii_lowercase()).collect();
    let rest: Vec<&str> = rest.iter().map(String::as_str).collect();
    let at = Endpoint { scope, entity };
    match (call.method, rest.as_slice()) {
        (&Method::POST, []) => at.create(call),
        (&Method::PATCH, []) => at.update(call, false),
        (&Method::PUT, []) => at.update(call, true),
        (&Method::GET, ["query"]) => {
            let search = call
                .param_nocase("search")
                .ok_or_else(|| Problem::invalid("search", "search: a query is required"))?;
            let query = serde_json::from_str(search)
                .map_err(|e| Problem::malformed(format!("search is not valid JSON: {e}")))?;
            at.query(&query, false, first)
        }
        (&Method::POST, ["query"]) => at.query(&call.json()?, false, first),
        (&Method::GET, ["query", "count"]) => {
            let search = call.param_nocase("search").unwrap_or("{}");
            let query = serde_json::from_str(search)
                .map_err(|e| Problem::malformed(format!("search is not valid JSON: {e}")))?;
            at.query(&query, true, first)
        }
        (&Method::POST, ["query", "count"]) => at.query(&call.json()?, true, first),
        (m, [_]) => {
            let id = parse_id(path[1], "id")?;
            match *m {
                Method::GET => Ok(item(&shown(&at.require(id)?))),
                Method::DELETE => {
                    at.require(id)?;
                    scope.delete(id)?;
                    Ok(item_id(json!(id)))
                }
                _ => Err(Problem::method_not_allowed("GET, DELETE")),
            }
        }
        (m, [_, collection]) => {
            let child = child_of(collection)?;
            let parent = at.require(parse_id(path[1], "parentId")?)?;
            match *m {
                Method::GET => Ok(items(
                    children(&parent, child).into_iter().collect(),
                    MAX_RECORDS,
                    None,
                )),
                Method::POST => at.add_child(call, parent, child),
                Method::PATCH | Method::PUT if child.name_key.is_some() => {
                    at.change_child(call, parent, child, *m == Method::PUT)
                }
                _ if child.name_key.is_some() => {
                    Err(Problem::method_not_allowed("GET, POST, PATCH, PUT"))
                }
                _ => Err(Problem::method_not_allowed("GET, POST")),
            }
        }
        (m, [_, collection, _]) => {
            let child = child_of(collection)?;
            let parent = at.require(parse_id(path[1], "parentId")?)?;
            let id = path[3];
            let found = children(&parent, child)
                .into_iter()
                .find(|c| text(&c["id"]) == *id)
                .ok_or_else(|| {
                    Problem::not_found(&format!("{} child with this id", child.collection))
                })?;
            match *m {
                Method::GET => Ok(item(&found)),
                Method::DELETE => at.remove_child(parent, child, id),
                _ => Err(Problem::method_not_allowed("GET, DELETE")),
            }
        }
        _ => Err(Problem::no_route()),
    }
}

/// `CompanyWebhooks` -> Autotask's legacy entity name (`Account`).
fn entity_of_path(segment: &str) -> Result<&'static str, Problem> {
    let lower = segment.to_ascii_lowercase();
    lower
        .strip_suffix("webhooks")
        .and_then(autotask::webhook_entity)
        .ok_or_else(Problem::no_route)
}

fn child_of(segment: &str) -> Result<Child, Problem> {
    CHILDREN
        .iter()
        .find(|c| c.collection.eq_ignore_ascii_case(segment))
        .copied()
        .ok_or_else(Problem::no_route)
}

fn parse_id(text: &str, field: &str) -> Result<u64, Problem> {
    text.parse::<u64>()
        .map_err(|_| Problem::invalid(field, format!("{field}: {text:?} is not an id")))
}

/// The webhook entity a subscription's events are for, when it is an Autotask webhook.
pub(crate) fn entity_of(sub: &Subscription) -> Option<&'static str> {
    if sub.profile != Profile::Autotask {
        return None;
    }
    sub.events
        .iter()
        .find_map(|pattern| pattern.split('.').next().and_then(autotask::webhook_entity))
}

struct Endpoint<'s, 'e> {
    scope: &'s Scope<'e>,
    entity: &'static str,
}

impl Endpoint<'_, '_> {
    /// The caller's webhooks of this entity, in id order.
    fn mine(&self) -> Result<Vec<Subscription>, Problem> {
        let mut subs = self.scope.list(&SubscriptionFilter::default())?;
        subs.retain(|s| entity_of(s) == Some(self.entity));
        Ok(subs)
    }

    fn require(&self, id: u64) -> Result<Subscription, Problem> {
        self.scope
            .get(id)?
            .filter(|s| entity_of(s) == Some(self.entity))
            .ok_or_else(|| Problem::not_found(&format!("{}Webhook with id {id}", self.entity)))
    }

    fn parse(&self, document: &Value) -> Result<Subscription, Problem> {
        Ok(autotask::parse_rest_value(document, self.entity)?)
    }

    fn refuse_duplicate(&self, candidate: &Subscription) -> Result<(), Problem> {
        let mine = self.mine()?;
        match autotask::find_duplicate(candidate, &mine) {
            Some(other) => Err(Problem::invalid(
                "WebhookUrl",
                format!(
                    "WebhookUrl: webhook {} already calls this URL for the same entity and callout type",
                    other.id
                ),
            )),
            None => Ok(()),
        }
    }

    fn create(&self, call: &Call<'_>) -> Reply {
        let sub = self.parse(&call.json()?)?;
        self.refuse_duplicate(&sub)?;
        let stored = self.scope.create(sub, false)?;
        Ok(item_id(json!(stored.id)))
    }

    /// PATCH (the fields given change) or PUT (the document replaces the webhook; its child
    /// collections and its secret stay unless given).
    fn update(&self, call: &Call<'_>, replace: bool) -> Reply {
        let body = call.json()?;
        let Value::Object(given) = &body else {
            return Err(Problem::malformed("the body is a JSON object"));
        };
        let id = given
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("id"))
            .and_then(|(_, v)| v.as_u64())
            .ok_or_else(|| Problem::invalid("id", "id: the webhook's id is required"))?;
        let stored = self.require(id)?;
        let rendered = autotask::render_rest(&stored);
        let document = if replace {
            let mut document = body.clone();
            for kept in ["Fields", "UdfFields", "ExcludedResources", "SecretKey"] {
                let present = given.keys().any(|k| k.eq_ignore_ascii_case(kept));
                if !present {
                    document[kept] = rendered[kept].clone();
                }
            }
            document
        } else {
            let mut document = rendered;
            patch::merge(&mut document, &body, Keys::IgnoreCase);
            document
        };
        let next = self.parse(&document)?;
        self.refuse_duplicate(&next)?;
        self.scope.replace(id, next)?;
        Ok(item_id(json!(id)))
    }

    fn query(&self, query: &Value, count: bool, collection: &str) -> Reply {
        let Value::Object(query) = query else {
            return Err(Problem::malformed("a query is a JSON object"));
        };
        let get = |key: &str| {
            query
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(key))
                .map(|(_, v)| v)
        };
        if let Some(unknown) = query.keys().find(|k| {
            !["filter", "maxrecords", "includefields"].contains(&k.to_ascii_lowercase().as_str())
        }) {
            return Err(Problem::invalid(
                unknown.clone(),
                format!("{unknown}: not a query key (filter, MaxRecords, IncludeFields)"),
            ));
        }
        let filter = match get("filter") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(items)) => items.clone(),
            Some(_) => return Err(Problem::invalid("filter", "filter: a list of expressions")),
        };
        let max = match get("MaxRecords") {
            None | Some(Value::Null) => MAX_RECORDS,
            Some(v) => v
                .as_u64()
                .and_then(|n| usize::try_from(n).ok())
                .filter(|n| (1..=MAX_RECORDS).contains(n))
                .ok_or_else(|| {
                    Problem::invalid("MaxRecords", format!("MaxRecords: 1..={MAX_RECORDS}"))
                })?,
        };
        let include: Option<Vec<String>> =
            match get("IncludeFields") {
                None | Some(Value::Null) => None,
                Some(v) => Some(serde_json::from_value::<Vec<String>>(v.clone()).map_err(
                    |_| Problem::invalid("IncludeFields", "IncludeFields: a list of names"),
                )?),
            };
        // Checked against an empty webhook first, so a bad expression is refused even when
        // there is nothing to match.
        let template = shown(&Subscription::default());
        for expression in &filter {
            matches(&template, expression)?;
        }
        // Checked against an empty webhook first, so a bad expression is refused even when
        // there is nothing to match.
        let template = shown(&Subscription::default());
        for expression in &filter {
            matches(&template, expression)?;
        }
        let mut found = Vec::new();
        for sub in self.mine()? {
            let rendered = shown(&sub);
            if filter.iter().try_fold(true, |all, e| {
                Ok::<_, Problem>(all && matches(&rendered, e)?)
            })? {
                found.push(rendered);
            }
        }
        if count {
            return Ok(web::json(
                StatusCode::OK,
                &json!({"queryCount": found.len()}),
            ));
        }
        let next = (found.len() > max).then(|| {
            let last = found[max - 1]["id"].clone();
            let filter = json!([{"op": "and", "items": [
                {"op": "and", "items": filter},
                {"op": "gt", "field": "id", "value": last},
            ]}]);
            let mut search = json!({"filter": filter, "MaxRecords": max});
            if let Some(include) = &include {
                search["IncludeFields"] = json!(include);
            }
            format!(
                "/autotask/atservicesrest/v1.0/{collection}/query?search={}",
                percent_encode(&search.to_string())
            )
        });
        found.truncate(max);
        if let Some(include) = &include {
            for rendered in &mut found {
                if let Value::Object(map) = rendered {
                    map.retain(|k, _| {
                        k == "id" || include.iter().any(|f| f.eq_ignore_ascii_case(k))
                    });
                }
            }
        }
        Ok(items(found, max, next))
    }

    /// Stores the parent with its child collection changed by `change`.
    fn with_children(
        &self,
        parent: Subscription,
        child: Child,
        change: impl FnOnce(&mut Vec<Value>) -> Result<(), Problem>,
    ) -> Result<(), Problem> {
        let mut document = autotask::render_rest(&parent);
        let mut list = match document[child.collection].take() {
            Value::Array(list) => list,
            _ => Vec::new(),
        };
        change(&mut list)?;
        document[child.collection] = Value::Array(list);
        let next = self.parse(&document)?;
        self.scope.replace(parent.id, next)?;
        Ok(())
    }

    fn add_child(&self, call: &Call<'_>, parent: Subscription, child: Child) -> Reply {
        let body = call.json()?;
        let entry = child_entry(&body)?;
        let id = child_id(&entry, child)?;
        let exists = children(&parent, child)
            .iter()
            .any(|c| text(&c["id"]) == text(&id));
        if exists {
            return Err(Problem::invalid(
                child.id_key,
                format!(
                    "{}: {} is already in {}",
                    child.id_key,
                    text(&id),
                    child.collection
                ),
            ));
        }
        self.with_children(parent, child, |list| {
            list.push(entry);
            Ok(())
        })?;
        Ok(item_id(id))
    }

    fn change_child(
        &self,
        call: &Call<'_>,
        parent: Subscription,
        child: Child,
        replace: bool,
    ) -> Reply {
        let body = call.json()?;
        let id = body
            .as_object()
            .and_then(|m| m.iter().find(|(k, _)| k.eq_ignore_ascii_case("id")))
            .map(|(_, v)| text(v))
            .ok_or_else(|| Problem::invalid("id", "id: the child's id is required"))?;
        let current = children(&parent, child)
            .into_iter()
            .find(|c| text(&c["id"]) == id)
            .ok_or_else(|| {
                Problem::not_found(&format!("{} child with this id", child.collection))
            })?;
        let mut next = if replace { body.clone() } else { current };
        if !replace {
            patch::merge(&mut next, &body, Keys::IgnoreCase);
        }
        let entry = child_entry(&next)?;
        let new_id = text(&child_id(&entry, child)?);
        if new_id != id {
            return Err(Problem::invalid(
                child.id_key,
                format!("{}: a child's {} cannot change", child.id_key, child.id_key),
            ));
        }
        self.with_children(parent, child, |list| {
            for item in list.iter_mut() {
                if child_id(item, child).map(|v| text(&v)).ok().as_deref() == Some(id.as_str()) {
                    *item = entry.clone();
                }
            }
            Ok(())
        })?;
        Ok(item_id(id_value(&id)))
    }

    fn remove_child(&self, parent: Subscription, child: Child, id: &str) -> Reply {
        self.with_children(parent, child, |list| {
            list.retain(|item| child_id(item, child).map(|v| text(&v)).ok().as_deref() != Some(id));
            Ok(())
        })?;
        Ok(item_id(id_value(id)))
    }
}

/// A child as stored in the parent's document: the keys Autotask documents for it, without
/// the `id` and `WebhookID` a client may send back.
fn child_entry(body: &Value) -> Result<Value, Problem> {
    let Value::Object(given) = body else {
        return Err(Problem::malformed("a child is a JSON object"));
    };
    let mut entry = Map::new();
    for (key, value) in given {
        if key.eq_ignore_ascii_case("id") || key.eq_ignore_ascii_case("WebhookID") {
            continue;
        }
        entry.insert(key.clone(), value.clone());
    }
    Ok(Value::Object(entry))
}

/// A child's id: its id key's value, or for fields named rather than numbered, the name.
fn child_id(entry: &Value, child: Child) -> Result<Value, Problem> {
    let get = |key: &str| {
        entry
            .as_object()
            .and_then(|m| m.iter().find(|(k, _)| k.eq_ignore_ascii_case(key)))
            .map(|(_, v)| v.clone())
            .filter(|v| !v.is_null())
    };
    get(child.id_key)
        .or_else(|| child.name_key.and_then(get))
        .ok_or_else(|| Problem::invalid(child.id_key, format!("{}: is required", child.id_key)))
}

/// A webhook's children as Autotask lists them, with `id` and `WebhookID`.
fn children(parent: &Subscription, child: Child) -> Vec<Value> {
    let rendered = autotask::render_rest(parent);
    let Value::Array(list) = &rendered[child.collection] else {
        return Vec::new();
    };
    list.iter()
        .filter_map(|entry| {
            let id = child_id(entry, child).ok()?;
            let mut shown = Map::new();
            shown.insert("id".into(), id);
            shown.insert("WebhookID".into(), json!(parent.id));
            if let Value::Object(map) = entry {
                shown.extend(map.clone());
            }
            Some(Value::Object(shown))
        })
        .collect()
}

/// A webhook as answered: Autotask's REST shape, `SecretKey` null.
fn shown(sub: &Subscription) -> Value {
    let mut hidden = sub.clone();
    hidden.secrets.clear();
    autotask::render_rest(&hidden)
}

fn text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn id_value(id: &str) -> Value {
    match id.parse::<u64>() {
        Ok(n) if n.to_string() == id => json!(n),
        _ => json!(id),
    }
}

fn item(value: &Value) -> Response<Vec<u8>> {
    web::json(StatusCode::OK, &json!({"item": value}))
}

fn item_id(id: Value) -> Response<Vec<u8>> {
    web::json(StatusCode::OK, &json!({"itemId": id}))
}

fn items(found: Vec<Value>, requested: usize, next: Option<String>) -> Response<Vec<u8>> {
    web::json(
        StatusCode::OK,
        &json!({
            "items": found,
            "pageDetails": {
                "count": found.len(),
                "requestCount": requested,
                "prevPageUrl": null,
                "nextPageUrl": next,
            },
        }),
    )
}

/// Whether `item` passes one filter expression.
pub(crate) fn matches(item: &Value, expression: &Value) -> Result<bool, Problem> {
    let bad = |reason: String| Problem::invalid("filter", format!("filter: {reason}"));
    let Value::Object(e) = expression else {
        return Err(bad(format!("{expression} is not an expression")));
    };
    let get = |key: &str| {
        e.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v)
    };
    let op = get("op")
        .and_then(Value::as_str)
        .ok_or_else(|| bad("an expression needs an op".into()))?
        .to_ascii_lowercase();
    if op == "and" || op == "or" {
        let Some(Value::Array(items)) = get("items") else {
            return Err(bad(format!("{op} needs items")));
        };
        let mut results = Vec::with_capacity(items.len());
        for sub in items {
            results.push(matches(item, sub)?);
        }
        return Ok(if op == "and" {
            results.iter().all(|r| *r)
        } else {
            results.iter().any(|r| *r)
        });
    }
    let field = get("field")
        .and_then(Value::as_str)
        .ok_or_else(|| bad(format!("{op} needs a field")))?;
    let Value::Object(map) = item else {
        return Ok(false);
    };
    let actual = map
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(field))
        .map(|(_, v)| v)
        .ok_or_else(|| Problem::invalid(field, format!("{field}: not a field of the webhook")))?;
    let value = get("value").unwrap_or(&Value::Null);
    let lower = |v: &Value| text(v).to_lowercase();
    let compare = |v: &Value| -> Option<std::cmp::Ordering> {
        match (actual.as_f64(), v.as_f64()) {
            (Some(a), Some(b)) => a.partial_cmp(&b),
            _ => Some(lower(actual).cmp(&lower(v))),
        }
    };
    let equal = |v: &Value| match (actual, v) {
        (Value::Bool(a), Value::Bool(b)) => a == b,
        (Value::Bool(a), Value::String(b)) => b.eq_ignore_ascii_case(&a.to_string()),
        _ => compare(v) == Some(std::cmp::Ordering::Equal) && !actual.is_null(),
    };
    use std::cmp::Ordering::*;
    Ok(match op.as_str() {
        "eq" => equal(value),
        "noteq" => !equal(value),
        "gt" => compare(value) == Some(Greater),
        "gte" => matches!(compare(value), Some(Greater | Equal)),
        "lt" => compare(value) == Some(Less),
        "lte" => matches!(compare(value), Some(Less | Equal)),
        "beginswith" => lower(actual).starts_with(&lower(value)),
        "endswith" => lower(actual).ends_with(&lower(value)),
        "contains" => lower(actual).contains(&lower(value)),
        "exist" => !actual.is_null(),
        "notexist" => actual.is_null(),
        "in" | "notin" => {
            let Value::Array(list) = value else {
                return Err(bad(format!("{op} needs a list value")));
            };
            let found = list.iter().any(equal);
            if op == "in" {
                found
            } else {
                !found
            }
        }
        other => return Err(bad(format!("{other:?} is not an Autotask operator"))),
    })
}

fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len() * 3);
    for byte in text.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(byte as char)
            }
            other => out.push_str(&format!("%{other:02X}")),
        }
    }
    out
}

/// Autotask's error shape.
pub(crate) fn problem(problem: Problem) -> Response<Vec<u8>> {
    let response = web::json(problem.status, &json!({"errors": [problem.message]}));
    Problem::finish(problem.allow, response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filter_expressions_follow_autotask() {
        let item =
            json!({"id": 5, "Name": "Acme.Accounts", "IsActive": true, "DeactivationUrl": null});
        let yes = |e: Value| matches(&item, &e).unwrap();
        assert!(yes(json!({"op": "eq", "field": "ID", "value": 5})));
        assert!(yes(json!({"op": "eq", "field": "isactive", "value": true})));
        assert!(yes(
            json!({"op": "beginsWith", "field": "name", "value": "acme"})
        ));
        assert!(yes(json!({"op": "notExist", "field": "DeactivationUrl"})));
        assert!(yes(json!({"op": "in", "field": "id", "value": [1, 5]})));
        assert!(yes(json!({"op": "or", "items": [
            {"op": "eq", "field": "id", "value": 1},
            {"op": "gt", "field": "id", "value": 4},
        ]})));
        assert!(!yes(json!({"op": "lt", "field": "id", "value": 5})));
        assert!(matches(&item, &json!({"op": "eq", "field": "Nope", "value": 1})).is_err());
        assert!(matches(&item, &json!({"op": "like", "field": "id", "value": 1})).is_err());
        assert!(matches(&item, &json!({"op": "in", "field": "id", "value": 1})).is_err());
    }
}
