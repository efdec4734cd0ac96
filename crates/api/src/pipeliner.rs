//! Pipeliner's webhook endpoints (`seeds/pipeliner-webhooks.txt`), below
//! `/pipeliner/api/v100/rest/spaces/{space}/entities/Webhooks`: create (`POST`), list (`GET`),
//! get, update (`PATCH`, a partial document) and delete (`DELETE`) by the webhook's id, a
//! UUID (the subscription's GUID).
//!
//! Answers are Pipeliner's envelope: `{"success": true, "data": ...}`, lists with `total` and
//! `page_info` (cursor paging with `first`, default 30, at most 100, and `after`). The
//! webhook's `signature` is never returned, as Pipeliner does. Errors are
//! `{"success": false, "code", "errorname", "message", "field"}` (the seed documents only
//! "unexpected error"; this keeps Pipeliner's `success` flag and names the field). The space
//! in the path is not checked: the caller's tenant decides what it sees.

use base64::Engine as _;
use callout::core::vendor::pipeliner;
use callout::core::Profile;
use callout::store::SubscriptionFilter;
use callout::Subscription;
use http::{Method, Response, StatusCode};
use serde_json::{json, Value};

use crate::patch::{self, Keys};
use crate::problem::Problem;
use crate::scope::Scope;
use crate::web::{self, Call};

type Reply = Result<Response<Vec<u8>>, Problem>;

/// Pipeliner's default and largest page.
const PAGE_DEFAULT: usize = 30;
const PAGE_MAX: usize = 100;

pub(crate) fn handle(scope: &Scope<'_>, call: &Call<'_>) -> Response<Vec<u8>> {
    route(scope, call).unwrap_or_else(problem)
}

fn route(scope: &Scope<'_>, call: &Call<'_>) -> Reply {
    let path = call.path();
    let rest: Vec<String> = path.iter().map(|s| s.to_ascii_lowercase()).collect();
    let rest: Vec<&str> = rest.iter().map(String::as_str).collect();
    match (call.method, rest.as_slice()) {
        (&Method::POST, [_space, "entities", "webhooks"]) => {
            let sub = pipeliner::parse_webhook(call.text()?)?;
            let stored = scope.create(sub, false)?;
            data(StatusCode::OK, shown(&stored))
        }
        (&Method::GET, [_space, "entities", "webhooks"]) => list(scope, call),
        (m, [_space, "entities", "webhooks", _]) => {
            let id = &path[3];
            let stored = find(scope, id)?;
            match *m {
                Method::GET => data(StatusCode::OK, shown(&stored)),
                Method::PATCH => {
                    let mut document = pipeliner::render_webhook(&stored);
                    let changes = call.json()?;
                    if !changes.is_object() {
                        return Err(Problem::malformed("an update is a JSON object"));
                    }
                    patch::merge(&mut document, &changes, Keys::Exact);
                    let next = pipeliner::parse_webhook_value(&document)?;
                    data(StatusCode::OK, shown(&scope.replace(stored.id, next)?))
                }
                Method::DELETE => {
                    scope.delete(stored.id)?;
                    Ok(web::json(StatusCode::OK, &json!({"success": true})))
                }
                _ => Err(Problem::method_not_allowed("GET, PATCH, DELETE")),
            }
        }
        (_, [_, "entities", "webhooks"]) => Err(Problem::method_not_allowed("GET, POST")),
        _ => Err(Problem::no_route()),
    }
}

fn data(status: StatusCode, value: Value) -> Reply {
    Ok(web::json(status, &json!({"success": true, "data": value})))
}

/// The caller's Pipeliner webhooks, in id order.
fn mine(scope: &Scope<'_>) -> Result<Vec<Subscription>, Problem> {
    let mut subs = scope.list(&SubscriptionFilter::default())?;
    subs.retain(|s| s.profile == Profile::Pipeliner);
    Ok(subs)
}

fn find(scope: &Scope<'_>, id: &str) -> Result<Subscription, Problem> {
    mine(scope)?
        .into_iter()
        .find(|s| s.guid == id)
        .ok_or_else(|| Problem::not_found("webhook with this id"))
}

fn list(scope: &Scope<'_>, call: &Call<'_>) -> Reply {
    let first = match call.param("first") {
        None => PAGE_DEFAULT,
        Some(v) => v
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=PAGE_MAX).contains(n))
            .ok_or_else(|| {
                Problem::invalid("first", format!("first: {v:?} is outside 1..={PAGE_MAX}"))
            })?,
    };
    let after = call.param("after").map(cursor_id).transpose()?.unwrap_or(0);
    let all = mine(scope)?;
    let total = all.len();
    let before_count = all.iter().filter(|s| s.id <= after).count();
    let page: Vec<&Subscription> = all.iter().filter(|s| s.id > after).take(first).collect();
    let has_next = before_count + page.len() < total;
    let cursor = |s: &&Subscription| {
        base64::engine::general_purpose::STANDARD.encode(format!("[\"{}\"]", s.id))
    };
    Ok(web::json(
        StatusCode::OK,
        &json!({
            "success": true,
            "total": total,
            "page_info": {
                "start_cursor": page.first().map(cursor),
                "end_cursor": page.last().map(cursor),
                "has_previous_page": before_count > 0,
                "has_next_page": has_next,
            },
            "data": page.iter().map(|s| shown(s)).collect::<Vec<Value>>(),
        }),
    ))
}

/// A cursor is the base64 of `["<id>"]`, the shape of Pipeliner's own.
fn cursor_id(cursor: &str) -> Result<u64, Problem> {
    let bad = || Problem::invalid("after", "after: not a cursor this API gave");
    let text = base64::engine::general_purpose::STANDARD
        .decode(cursor)
        .map_err(|_| bad())?;
    let ids: Vec<String> = serde_json::from_slice(&text).map_err(|_| bad())?;
    ids.first().and_then(|id| id.parse().ok()).ok_or_else(bad)
}

/// A webhook as answered: Pipeliner's shape without its signature.
fn shown(sub: &Subscription) -> Value {
    let mut value = pipeliner::render_webhook(sub);
    if let Value::Object(map) = &mut value {
        map.remove("signature");
        map.insert("is_deleted".into(), json!(false));
    }
    value
}

/// Pipeliner's error envelope.
pub(crate) fn problem(problem: Problem) -> Response<Vec<u8>> {
    let name = match problem.code {
        "invalid" | "malformed" => "ERROR_INVALID_FIELD_VALUE",
        "not_found" => "ERROR_ENTITY_NOT_FOUND",
        "unauthorized" => "ERROR_UNAUTHORIZED",
        "too_large" => "ERROR_REQUEST_TOO_LARGE",
        "method_not_allowed" => "ERROR_METHOD_NOT_ALLOWED",
        _ => "ERROR_UNEXPECTED",
    };
    let allow = problem.allow.clone();
    let response = web::json(
        problem.status,
        &json!({
            "success": false,
            "code": problem.status.as_u16(),
            "errorname": name,
            "message": problem.message,
            "field": problem.field,
        }),
    );
    Problem::finish(allow, response)
}
