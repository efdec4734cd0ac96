//! SuperOffice's webhook endpoints (`seeds/superoffice-post-webhook.txt`,
//! `seeds/superoffice-get-all-webhooks.txt`), below `/superoffice/api/v1`:
//!
//! - `POST Webhook` creates and answers 200 with the `WebhookWithLinks` (`_Links.Self`);
//! - `GET|PUT|PATCH|DELETE Webhook/{id}`: PATCH takes a JSON Patch (an array, RFC 6902) or a
//!   merge patch (an object), as SuperOffice's content types list both; DELETE answers 204;
//! - `POST Agents/Webhook/GetAllWebhooks` filters by `NameFilter`, `EventFilter`,
//!   `StatusFilter` and answers the array.
//!
//! `$select` projects every webhook answered. `Secret` is always `null` in answers: callout
//! keeps secrets write-only although SuperOffice's samples echo them. Errors are SuperOffice's
//! WebAPI error object, `{"Error", "ErrorType", "ErrorSource"}`, with the field named in
//! `ErrorSource` (the seeds are silent on errors; this is the shape of SuperOffice's WebAPI
//! exceptions, the field put where its source goes).

use callout::core::vendor::superoffice::{self, WebhookFilter};
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

pub(crate) fn handle(scope: &Scope<'_>, call: &Call<'_>, base: &str) -> Response<Vec<u8>> {
    route(scope, call, base).unwrap_or_else(problem)
}

fn route(scope: &Scope<'_>, call: &Call<'_>, base: &str) -> Reply {
    let path = call.path();
    let lower: Vec<String> = path.iter().map(|s| s.to_ascii_lowercase()).collect();
    let lower: Vec<&str> = lower.iter().map(String::as_str).collect();
    let select = call.param_nocase("$select").unwrap_or("");
    let answer = |status: StatusCode, value: Value| -> Reply {
        Ok(web::json(status, &superoffice::select(&value, select)))
    };
    match (call.method, lower.as_slice()) {
        (&Method::POST, ["webhook"]) => {
            let sub = parse(call)?;
            // SuperOffice's save-time check, as an option of the create call: `?test=true`
            // sends the target a `test` event first and saves only if it answers 200.
            let tested = call
                .param_nocase("test")
                .is_some_and(|value| value.eq_ignore_ascii_case("true"));
            let stored = scope.create(sub, tested)?;
            answer(StatusCode::OK, with_links(&stored, base))
        }
        (m, ["webhook", id]) => {
            let id = webhook_id(id)?;
            let stored = require(scope, id)?;
            match *m {
                Method::GET => answer(StatusCode::OK, with_links(&stored, base)),
                Method::PUT => {
                    let next = parse(call)?;
                    let next = keep_secret(next, &stored);
                    answer(StatusCode::OK, with_links(&scope.replace(id, next)?, base))
                }
                Method::PATCH => {
                    let mut document = superoffice::render_webhook(&stored);
                    match call.json()? {
                        Value::Array(operations) => patch::json_patch(&mut document, &operations)?,
                        merge @ Value::Object(_) => {
                            patch::merge(&mut document, &merge, Keys::IgnoreCase)
                        }
                        _ => {
                            return Err(Problem::malformed(
                                "a patch is a JSON Patch array or a merge patch object",
                            ))
                        }
                    }
                    let next = superoffice::parse_webhook_value(&document)?;
                    answer(StatusCode::OK, with_links(&scope.replace(id, next)?, base))
                }
                Method::DELETE => {
                    scope.delete(id)?;
                    Ok(web::empty(StatusCode::NO_CONTENT))
                }
                _ => Err(Problem::method_not_allowed("GET, PUT, PATCH, DELETE")),
            }
        }
        (&Method::POST, ["agents", "webhook", "getallwebhooks"]) => {
            let filter = if call.body.iter().all(u8::is_ascii_whitespace) {
                WebhookFilter::default()
            } else {
                WebhookFilter::parse(call.text()?)?
            };
            let mine = scope.list(&SubscriptionFilter::default())?;
            let mine: Vec<Subscription> = mine
                .into_iter()
                .filter(|s| s.profile == Profile::Superoffice)
                .collect();
            let found = superoffice::get_all_webhooks(&mine, &filter)?;
            let list: Vec<Value> = found.into_iter().map(shown).collect();
            answer(StatusCode::OK, Value::Array(list))
        }
        (_, ["webhook"] | ["agents", "webhook", "getallwebhooks"]) => {
            Err(Problem::method_not_allowed("POST"))
        }
        _ => Err(Problem::no_route()),
    }
}

fn parse(call: &Call<'_>) -> Result<Subscription, Problem> {
    Ok(superoffice::parse_webhook(call.text()?)?)
}

fn webhook_id(text: &str) -> Result<u64, Problem> {
    text.parse::<u64>()
        .map_err(|_| Problem::invalid("WebhookId", format!("{text:?} is not a webhook id")))
}

/// The caller's SuperOffice webhook `id`: a subscription of another profile is not one.
fn require(scope: &Scope<'_>, id: u64) -> Result<Subscription, Problem> {
    scope
        .get(id)?
        .filter(|s| s.profile == Profile::Superoffice)
        .ok_or_else(|| Problem::not_found("webhook with this WebhookId"))
}

/// A PUT without `Secret` keeps the stored one: answers never carry it, so a client that reads
/// a webhook and saves it back would otherwise remove it.
fn keep_secret(mut next: Subscription, stored: &Subscription) -> Subscription {
    if next.secrets.is_empty() {
        next.secrets = stored.secrets.clone();
    }
    next
}

/// A webhook as answered: SuperOffice's shape, `Secret` null.
fn shown(sub: &Subscription) -> Value {
    let mut hidden = sub.clone();
    hidden.secrets.clear();
    superoffice::render_webhook(&hidden)
}

/// `WebhookWithLinks`: the webhook and `_Links.Self`.
fn with_links(sub: &Subscription, base: &str) -> Value {
    let mut value = shown(sub);
    if let Value::Object(map) = &mut value {
        map.insert(
            "_Links".into(),
            json!({"Self": format!("{base}/Webhook/{}", sub.id)}),
        );
    }
    value
}

/// SuperOffice's error object.
pub(crate) fn problem(problem: Problem) -> Response<Vec<u8>> {
    let error_type = match problem.code {
        "invalid" | "malformed" => "ArgumentException",
        "not_found" => "NotFoundException",
        "unauthorized" => "UnauthorizedAccessException",
        "too_large" => "RequestTooLargeException",
        "method_not_allowed" => "NotSupportedException",
        _ => "SoException",
    };
    let allow = problem.allow.clone();
    let response = web::json(
        problem.status,
        &json!({
            "Error": problem.message,
            "ErrorType": error_type,
            "ErrorSource": problem.field.unwrap_or_default(),
        }),
    );
    Problem::finish(allow, response)
}
