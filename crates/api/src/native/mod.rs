//! callout's own REST API under `/v1`: subscriptions (CRUD, list filters, test send, stats,
//! attempts), publishing with `Idempotency-Key`, deliveries and their attempts, dead letters
//! (list, replay, purge) and stats. Every endpoint is an annotated function below, and the
//! OpenAPI 3.1 document (`/v1/openapi.json`) is generated from those annotations and the types
//! of `types.rs`.

mod types;

use std::sync::OnceLock;

use callout::core::Secret;
use callout::store::SubscriptionFilter;
use callout::{DeadFilter, Event, Subscription};
use http::{Method, Response, StatusCode};
use serde_json::Value;
use utoipa::{IntoParams, OpenApi};

use crate::patch::{self, Keys};
use crate::problem::Problem;
use crate::scope::Scope;
use crate::web::{self, Call};

use self::types::*;

/// Most subscriptions one list page returns.
const PAGE_MAX: usize = 1_000;
/// Most attempts one listing returns.
const ATTEMPTS_MAX: usize = 1_000;

type Reply = Result<Response<Vec<u8>>, Problem>;

/// Answers a request below `/v1`.
pub(crate) fn handle(scope: &Scope<'_>, call: &Call<'_>) -> Response<Vec<u8>> {
    route(scope, call).unwrap_or_else(problem)
}

fn route(scope: &Scope<'_>, call: &Call<'_>) -> Reply {
    let m = call.method;
    match call.path().as_slice() {
        ["subscriptions"] => match *m {
            Method::GET => list_subscriptions(scope, call),
            Method::POST => create_subscription(scope, call),
            _ => Err(Problem::method_not_allowed("GET, POST")),
        },
        ["subscriptions", id] => {
            let id = path_id(id)?;
            match *m {
                Method::GET => get_subscription(scope, id),
                Method::PUT => replace_subscription(scope, call, id),
                Method::PATCH => patch_subscription(scope, call, id),
                Method::DELETE => delete_subscription(scope, id),
                _ => Err(Problem::method_not_allowed("GET, PUT, PATCH, DELETE")),
            }
        }
        ["subscriptions", id, "rotate-secret"] => {
            only(m, Method::POST, || rotate_secret(scope, call, path_id(id)?))
        }
        ["subscriptions", id, "test"] => {
            only(m, Method::POST, || test_subscription(scope, path_id(id)?))
        }
        ["subscriptions", id, "stats"] => {
            only(m, Method::GET, || subscription_stats(scope, path_id(id)?))
        }
        ["subscriptions", id, "attempts"] => only(m, Method::GET, || {
            subscription_attempts(scope, call, path_id(id)?)
        }),
        ["events"] => only(m, Method::POST, || publish(scope, call)),
        ["deliveries", id] => only(m, Method::GET, || get_delivery(scope, path_id(id)?)),
        ["deliveries", id, "attempts"] => {
            only(m, Method::GET, || delivery_attempts(scope, path_id(id)?))
        }
        ["dead-letters"] => match *m {
            Method::GET => list_dead_letters(scope, call),
            Method::DELETE => purge_dead_letters(scope, call),
            _ => Err(Problem::method_not_allowed("GET, DELETE")),
        },
        ["dead-letters", "replay"] => only(m, Method::POST, || replay_dead_letters(scope, call)),
        ["stats"] => only(m, Method::GET, || stats(scope)),
        _ => Err(Problem::no_route()),
    }
}

fn only(method: &Method, wanted: Method, f: impl FnOnce() -> Reply) -> Reply {
    if *method == wanted {
        f()
    } else {
        Err(Problem::method_not_allowed(wanted.as_str()))
    }
}

fn path_id(text: &str) -> Result<u64, Problem> {
    text.parse::<u64>()
        .map_err(|_| Problem::invalid("id", format!("{text:?} is not an id")))
}

/// callout's error shape: `{"error": {"code", "message", "field"}}`.
pub(crate) fn problem(problem: Problem) -> Response<Vec<u8>> {
    let allow = problem.allow.clone();
    Problem::finish(
        allow,
        web::json(
            problem.status,
            &ErrorDoc {
                error: ErrorDetail {
                    code: problem.code.to_string(),
                    message: problem.message,
                    field: problem.field,
                },
            },
        ),
    )
}

/// Refuses query parameters an endpoint does not take, so a typo is not silently ignored.
fn known_params(call: &Call<'_>, known: &[&str]) -> Result<(), Problem> {
    match call.param_names().find(|name| !known.contains(name)) {
        Some(name) => Err(Problem::invalid(
            name.to_string(),
            format!("unknown query parameter {name:?}; this endpoint takes {known:?}"),
        )),
        None => Ok(()),
    }
}

fn number<T: std::str::FromStr>(call: &Call<'_>, name: &str) -> Result<Option<T>, Problem> {
    call.param(name)
        .map(|v| {
            v.parse::<T>()
                .map_err(|_| Problem::invalid(name, format!("{name}: {v:?} is not a number")))
        })
        .transpose()
}

/// An id parameter: a u64 within the int64 range the OpenAPI document gives ids.
fn id_param(call: &Call<'_>, name: &str) -> Result<Option<u64>, Problem> {
    match number::<u64>(call, name)? {
        Some(id) if id > i64::MAX as u64 => Err(Problem::invalid(
            name,
            format!("{name}: {id} is outside the id range"),
        )),
        other => Ok(other),
    }
}

fn flag(call: &Call<'_>, name: &str) -> Result<bool, Problem> {
    match call.param(name) {
        None | Some("false") => Ok(false),
        Some("true") => Ok(true),
        Some(other) => Err(Problem::invalid(
            name,
            format!("{name}: {other:?} is not true or false"),
        )),
    }
}

fn ok(status: StatusCode, body: &impl serde::Serialize) -> Reply {
    Ok(web::json(status, body))
}

/// The subscription a request body describes, signed by `secrets` when the body names none:
/// the body is checked key by key first (an unknown key is refused with the one probably
/// meant), then read whole and validated.
fn subscription_from(value: Value, secrets: Vec<Secret>) -> Result<Subscription, Problem> {
    let Value::Object(mut map) = value else {
        return Err(Problem::malformed("a subscription is a JSON object"));
    };
    // Read-only and ignored, so a document read back may be sent again as it is.
    map.remove("secret_count");
    let value = Value::Object(map);
    Subscription::check_fields(&value)?;
    let given = value
        .get("secrets")
        .filter(|v| !v.is_null())
        .map(|v| serde_json::from_value::<Vec<String>>(v.clone()))
        .transpose()
        .map_err(|_| Problem::invalid("secrets", "secrets: a list of strings is expected"))?;
    let doc: SubscriptionDoc = serde_json::from_value(value)
        .map_err(|e| Problem::malformed(format!("malformed subscription: {e}")))?;
    let secrets = match given {
        Some(given) => given.into_iter().map(Secret::new).collect(),
        None => secrets,
    };
    let sub = doc.into_subscription(secrets);
    sub.validate()?;
    Ok(sub)
}

fn shown(sub: &Subscription) -> SubscriptionDoc {
    SubscriptionDoc::from(sub)
}

/// Query parameters of a subscription listing.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
struct ListQuery {
    /// Name contains this, ignoring case.
    name: Option<String>,
    /// A pattern of the subscription matches this event name, or equals this pattern.
    event: Option<String>,
    /// In this state.
    state: Option<StateDoc>,
    /// Only subscriptions with a greater id (the previous page's `next_after`).
    after: Option<u64>,
    /// Most subscriptions to return, 1..=1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<usize>,
}

/// Lists the caller's subscriptions.
#[utoipa::path(
    get, path = "/v1/subscriptions", tag = "subscriptions",
    params(ListQuery),
    responses(
        (status = 200, description = "A page of subscriptions", body = SubscriptionPage),
        (status = 400, description = "A bad parameter", body = ErrorDoc),
        (status = 401, description = "Not authorized", body = ErrorDoc),
    )
)]
fn list_subscriptions(scope: &Scope<'_>, call: &Call<'_>) -> Reply {
    known_params(call, &["name", "event", "state", "after", "limit"])?;
    let state = call
        .param("state")
        .map(|s| {
            serde_json::from_value::<StateDoc>(Value::String(s.to_string())).map_err(|_| {
                Problem::invalid(
                    "state",
                    format!("state: {s:?} is not active, stopped or too_many_errors"),
                )
            })
        })
        .transpose()?;
    let limit = number::<usize>(call, "limit")?.unwrap_or(100);
    if !(1..=PAGE_MAX).contains(&limit) {
        return Err(Problem::invalid(
            "limit",
            format!("limit: {limit} is outside 1..={PAGE_MAX}"),
        ));
    }
    let after = id_param(call, "after")?.unwrap_or(0);
    let filter = SubscriptionFilter {
        name: call.param("name").map(str::to_string),
        event: call.param("event").map(str::to_string),
        state: state.map(Into::into),
    };
    let subs = scope.list(&filter)?;
    let page: Vec<SubscriptionDoc> = subs
        .iter()
        .filter(|s| s.id > after)
        .take(limit + 1)
        .map(shown)
        .collect();
    let more = page.len() > limit;
    let data: Vec<SubscriptionDoc> = page.into_iter().take(limit).collect();
    let next_after = more.then(|| data.last().map(|s| s.id)).flatten();
    ok(StatusCode::OK, &SubscriptionPage { data, next_after })
}

/// Query parameters of a create.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
struct CreateQuery {
    /// Send the target a `test` event first and create only if it answers 200.
    test: Option<bool>,
}

/// Creates a subscription for the caller's tenant.
#[utoipa::path(
    post, path = "/v1/subscriptions", tag = "subscriptions",
    params(CreateQuery),
    request_body = SubscriptionDoc,
    responses(
        (status = 201, description = "Created", body = SubscriptionDoc),
        (status = 400, description = "Invalid: the error names the field", body = ErrorDoc),
        (status = 401, description = "Not authorized", body = ErrorDoc),
        (status = 413, description = "The body is too large", body = ErrorDoc),
        (status = 502, description = "The target did not answer the test event with 200", body = ErrorDoc),
    )
)]
fn create_subscription(scope: &Scope<'_>, call: &Call<'_>) -> Reply {
    known_params(call, &["test"])?;
    let tested = flag(call, "test")?;
    let sub = subscription_from(call.json()?, Vec::new())?;
    let unsigned = sub.secrets.is_empty();
    let stored = scope.create(sub, tested)?;
    let mut answer = shown(&stored);
    // The engine made a secret for an unsigned standard webhook: the caller learns it now only.
    if unsigned {
        answer.new_secret = stored.secrets.last().map(|s| s.expose().to_string());
    }
    ok(StatusCode::CREATED, &answer)
}

/// Rotates in a new signing secret; the current ones keep signing beside it for the grace
/// period, so receivers can switch without a gap.
#[utoipa::path(
    post, path = "/v1/subscriptions/{id}/rotate-secret", tag = "subscriptions",
    params(("id" = u64, Path, description = "Subscription id")),
    request_body = RotationDoc,
    responses(
        (status = 200, description = "Rotated; `new_secret` when callout made it", body = SubscriptionDoc),
        (status = 400, description = "Invalid: the error names the field", body = ErrorDoc),
        (status = 401, description = "Not authorized", body = ErrorDoc),
        (status = 404, description = "The caller has no such subscription", body = ErrorDoc),
        (status = 413, description = "The body is too large", body = ErrorDoc),
    )
)]
fn rotate_secret(scope: &Scope<'_>, call: &Call<'_>, id: u64) -> Reply {
    let rotation: RotationDoc = if call.body.iter().all(u8::is_ascii_whitespace) {
        RotationDoc::default()
    } else {
        serde_json::from_value(call.json()?)
            .map_err(|e| Problem::malformed(format!("malformed rotation: {e}")))?
    };
    if rotation.grace_seconds.is_some_and(|g| g > 31_536_000) {
        return Err(Problem::invalid(
            "grace_seconds",
            "grace_seconds: at most a year",
        ));
    }
    let sub = scope.require(id)?;
    let generated = rotation.secret.is_none();
    let rotated = scope.engine.subscriptions().rotate_secret(
        sub.id,
        rotation.secret,
        rotation.grace_seconds.map(std::time::Duration::from_secs),
    )?;
    let mut answer = shown(&rotated);
    if generated {
        answer.new_secret = rotated.secrets.last().map(|s| s.expose().to_string());
    }
    ok(StatusCode::OK, &answer)
}

/// One of the caller's subscriptions.
#[utoipa::path(
    get, path = "/v1/subscriptions/{id}", tag = "subscriptions",
    params(("id" = u64, Path, description = "Subscription id")),
    responses(
        (status = 200, description = "The subscription", body = SubscriptionDoc),
        (status = 400, description = "Not an id", body = ErrorDoc),
        (status = 401, description = "Not authorized", body = ErrorDoc),
        (status = 404, description = "The caller has no such subscription", body = ErrorDoc),
    )
)]
fn get_subscription(scope: &Scope<'_>, id: u64) -> Reply {
    ok(StatusCode::OK, &shown(&scope.require(id)?))
}

/// Replaces a subscription. Its secrets are kept when the document has no `secrets` (they
/// cannot be read back); `"secrets": []` removes them.
#[utoipa::path(
    put, path = "/v1/subscriptions/{id}", tag = "subscriptions",
    params(("id" = u64, Path, description = "Subscription id")),
    request_body = SubscriptionDoc,
    responses(
        (status = 200, description = "Replaced", body = SubscriptionDoc),
        (status = 400, description = "Invalid: the error names the field", body = ErrorDoc),
        (status = 401, description = "Not authorized", body = ErrorDoc),
        (status = 404, description = "The caller has no such subscription", body = ErrorDoc),
        (status = 413, description = "The body is too large", body = ErrorDoc),
    )
)]
fn replace_subscription(scope: &Scope<'_>, call: &Call<'_>, id: u64) -> Reply {
    let stored = scope.require(id)?;
    let next = subscription_from(call.json()?, stored.secrets)?;
    ok(StatusCode::OK, &shown(&scope.replace(id, next)?))
}

/// Changes a subscription with a JSON merge patch (RFC 7386): absent keys keep their value,
/// `null` resets one.
#[utoipa::path(
    patch, path = "/v1/subscriptions/{id}", tag = "subscriptions",
    params(("id" = u64, Path, description = "Subscription id")),
    request_body(content = SubscriptionDoc, content_type = "application/merge-patch+json"),
    responses(
        (status = 200, description = "Changed", body = SubscriptionDoc),
        (status = 400, description = "Invalid: the error names the field", body = ErrorDoc),
        (status = 401, description = "Not authorized", body = ErrorDoc),
        (status = 404, description = "The caller has no such subscription", body = ErrorDoc),
        (status = 413, description = "The body is too large", body = ErrorDoc),
    )
)]
fn patch_subscription(scope: &Scope<'_>, call: &Call<'_>, id: u64) -> Reply {
    let stored = scope.require(id)?;
    let body = call.json()?;
    let Value::Object(mut changes) = body else {
        return Err(Problem::malformed("a merge patch is a JSON object"));
    };
    // Checked before merging, so an unknown key is named as the client wrote it.
    Subscription::check_fields(&Value::Object(
        changes
            .iter()
            .filter(|(k, _)| *k != "secret_count")
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
    ))?;
    let secrets = match changes.remove("secrets") {
        None => stored.secrets.clone(),
        Some(Value::Null) => Vec::new(),
        Some(given) => serde_json::from_value::<Vec<String>>(given)
            .map_err(|_| Problem::invalid("secrets", "secrets: a list of strings is expected"))?
            .into_iter()
            .map(Secret::new)
            .collect(),
    };
    let mut document = serde_json::to_value(shown(&stored)).map_err(|e| Problem::internal(&e))?;
    patch::merge(&mut document, &Value::Object(changes), Keys::Exact);
    let next = subscription_from(document, Vec::new())?;
    let next = Subscription { secrets, ..next };
    next.validate()?;
    ok(StatusCode::OK, &shown(&scope.replace(id, next)?))
}

/// Deletes a subscription; its deactivation URL is called.
#[utoipa::path(
    delete, path = "/v1/subscriptions/{id}", tag = "subscriptions",
    params(("id" = u64, Path, description = "Subscription id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 400, description = "Not an id", body = ErrorDoc),
        (status = 401, description = "Not authorized", body = ErrorDoc),
        (status = 404, description = "The caller has no such subscription", body = ErrorDoc),
    )
)]
fn delete_subscription(scope: &Scope<'_>, id: u64) -> Reply {
    match scope.delete(id)? {
        Some(_) => Ok(web::empty(StatusCode::NO_CONTENT)),
        None => Err(Problem::not_found("such subscription")),
    }
}

/// Sends the subscription's target a `test` event now, signed like its deliveries.
#[utoipa::path(
    post, path = "/v1/subscriptions/{id}/test", tag = "subscriptions",
    params(("id" = u64, Path, description = "Subscription id")),
    responses(
        (status = 200, description = "The target answered 200", body = TestDoc),
        (status = 400, description = "Not an id", body = ErrorDoc),
        (status = 401, description = "Not authorized", body = ErrorDoc),
        (status = 404, description = "The caller has no such subscription", body = ErrorDoc),
        (status = 502, description = "The target did not answer 200", body = ErrorDoc),
    )
)]
fn test_subscription(scope: &Scope<'_>, id: u64) -> Reply {
    let sub = scope.require(id)?;
    scope.engine.subscriptions().send_test(&sub)?;
    ok(StatusCode::OK, &TestDoc { status: 200 })
}

/// Deliveries by state for one subscription.
#[utoipa::path(
    get, path = "/v1/subscriptions/{id}/stats", tag = "subscriptions",
    params(("id" = u64, Path, description = "Subscription id")),
    responses(
        (status = 200, description = "Counts", body = CountsDoc),
        (status = 400, description = "Not an id", body = ErrorDoc),
        (status = 401, description = "Not authorized", body = ErrorDoc),
        (status = 404, description = "The caller has no such subscription", body = ErrorDoc),
    )
)]
fn subscription_stats(scope: &Scope<'_>, id: u64) -> Reply {
    let sub = scope.require(id)?;
    let counts = scope.engine.subscription_stats(sub.id)?;
    ok(StatusCode::OK, &CountsDoc::from(counts))
}

/// Query parameters of an attempt listing.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
struct AttemptsQuery {
    /// Most attempts to return, newest first, 1..=1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<usize>,
}

/// The newest attempts of one subscription's deliveries, newest first.
#[utoipa::path(
    get, path = "/v1/subscriptions/{id}/attempts", tag = "subscriptions",
    params(("id" = u64, Path, description = "Subscription id"), AttemptsQuery),
    responses(
        (status = 200, description = "Attempts, newest first", body = Vec<AttemptDoc>),
        (status = 400, description = "A bad parameter", body = ErrorDoc),
        (status = 401, description = "Not authorized", body = ErrorDoc),
        (status = 404, description = "The caller has no such subscription", body = ErrorDoc),
    )
)]
fn subscription_attempts(scope: &Scope<'_>, call: &Call<'_>, id: u64) -> Reply {
    known_params(call, &["limit"])?;
    let limit = number::<usize>(call, "limit")?.unwrap_or(100);
    if !(1..=ATTEMPTS_MAX).contains(&limit) {
        return Err(Problem::invalid(
            "limit",
            format!("limit: {limit} is outside 1..={ATTEMPTS_MAX}"),
        ));
    }
    let sub = scope.require(id)?;
    let attempts: Vec<AttemptDoc> = scope
        .engine
        .subscription_attempts(sub.id, limit)?
        .into_iter()
        .map(|(delivery, attempt)| AttemptDoc::new(delivery, attempt))
        .collect();
    ok(StatusCode::OK, &attempts)
}

/// Publishes one event or a batch (atomically) as the caller's tenant. With an
/// `Idempotency-Key`, the key is the event id (`key:N` for the Nth event of a batch), so a
/// repeated request is reported as duplicates and enqueues nothing. Event ids are scoped to
/// the caller's tenant.
#[utoipa::path(
    post, path = "/v1/events", tag = "events",
    params(("Idempotency-Key" = Option<String>, Header, description = "Makes a repeated publish a no-op")),
    request_body = Publish,
    responses(
        (status = 202, description = "Stored; deliveries are durable", body = ReceiptDoc),
        (status = 400, description = "Invalid: the error names the field", body = ErrorDoc),
        (status = 401, description = "Not authorized", body = ErrorDoc),
        (status = 413, description = "Over the publish limits", body = ErrorDoc),
    )
)]
fn publish(scope: &Scope<'_>, call: &Call<'_>) -> Reply {
    let documents = Publish::from_value(call.json()?)?.events();
    let key = call
        .headers
        .get("idempotency-key")
        .map(|v| {
            v.to_str()
                .map(|k| k.trim().to_string())
                .map_err(|_| Problem::invalid("Idempotency-Key", "the key is not ASCII text"))
        })
        .transpose()?
        .filter(|k| !k.is_empty());
    let batch = documents.len() > 1;
    let mut events = Vec::with_capacity(documents.len());
    for (n, doc) in documents.into_iter().enumerate() {
        let mut event = Event::from(doc);
        if let Some(key) = &key {
            let id = if batch {
                format!("{key}:{n}")
            } else {
                key.clone()
            };
            match &event.event_id {
                Some(given) if *given != id => {
                    let place = if batch {
                        format!("[{n}].")
                    } else {
                        String::new()
                    };
                    return Err(Problem::invalid(
                        format!("{place}event_id"),
                        format!("event {n}: event_id {given:?} differs from the Idempotency-Key"),
                    ));
                }
                _ => event.event_id = Some(id),
            }
        }
        events.push(event);
    }
    let receipt = scope.publish(events)?;
    ok(StatusCode::ACCEPTED, &ReceiptDoc::from(receipt))
}

/// One delivery of the caller's subscriptions.
#[utoipa::path(
    get, path = "/v1/deliveries/{id}", tag = "deliveries",
    params(("id" = u64, Path, description = "Delivery id")),
    responses(
        (status = 200, description = "The delivery", body = DeliveryDoc),
        (status = 400, description = "Not an id", body = ErrorDoc),
        (status = 401, description = "Not authorized", body = ErrorDoc),
        (status = 404, description = "The caller has no such delivery", body = ErrorDoc),
    )
)]
fn get_delivery(scope: &Scope<'_>, id: u64) -> Reply {
    let delivery = scope
        .delivery(id)?
        .ok_or_else(|| Problem::not_found("such delivery"))?;
    ok(StatusCode::OK, &DeliveryDoc::from(delivery))
}

/// Every recorded attempt of a delivery, oldest first.
#[utoipa::path(
    get, path = "/v1/deliveries/{id}/attempts", tag = "deliveries",
    params(("id" = u64, Path, description = "Delivery id")),
    responses(
        (status = 200, description = "Attempts, oldest first", body = Vec<AttemptDoc>),
        (status = 400, description = "Not an id", body = ErrorDoc),
        (status = 401, description = "Not authorized", body = ErrorDoc),
        (status = 404, description = "The caller has no such delivery", body = ErrorDoc),
    )
)]
fn delivery_attempts(scope: &Scope<'_>, id: u64) -> Reply {
    let attempts = scope
        .attempts(id)?
        .ok_or_else(|| Problem::not_found("such delivery"))?;
    let attempts: Vec<AttemptDoc> = attempts
        .into_iter()
        .map(|a| AttemptDoc::new(id, a))
        .collect();
    ok(StatusCode::OK, &attempts)
}

/// Which dead letters a listing, replay or purge means.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
struct DeadQuery {
    /// Only this subscription's (one of the caller's); all of the caller's when absent.
    subscription: Option<u64>,
    /// Dead-lettered at or after this time (RFC 3339).
    #[param(format = DateTime)]
    from: Option<String>,
    /// Dead-lettered before this time (RFC 3339).
    #[param(format = DateTime)]
    to: Option<String>,
}

fn dead_filter(call: &Call<'_>) -> Result<DeadFilter, Problem> {
    known_params(call, &["subscription", "from", "to"])?;
    let time = |name: &str| -> Result<Option<u64>, Problem> {
        call.param(name)
            .map(|v| {
                callout::core::parse_rfc3339(v).ok_or_else(|| {
                    Problem::invalid(name, format!("{name}: {v:?} is not an RFC 3339 time"))
                })
            })
            .transpose()
    };
    Ok(DeadFilter {
        subscription: id_param(call, "subscription")?,
        from_ms: time("from")?.unwrap_or(0),
        to_ms: time("to")?.unwrap_or(u64::MAX),
    })
}

/// The caller's dead letters.
#[utoipa::path(
    get, path = "/v1/dead-letters", tag = "dead letters",
    params(DeadQuery),
    responses(
        (status = 200, description = "Dead letters, by id", body = Vec<DeliveryDoc>),
        (status = 400, description = "A bad parameter", body = ErrorDoc),
        (status = 401, description = "Not authorized", body = ErrorDoc),
        (status = 404, description = "The caller has no such subscription", body = ErrorDoc),
    )
)]
fn list_dead_letters(scope: &Scope<'_>, call: &Call<'_>) -> Reply {
    let filter = dead_filter(call)?;
    let dead: Vec<DeliveryDoc> = scope
        .dead_letters(&filter)?
        .into_iter()
        .map(DeliveryDoc::from)
        .collect();
    ok(StatusCode::OK, &dead)
}

/// Puts the selected dead letters back in the queue, due now.
#[utoipa::path(
    post, path = "/v1/dead-letters/replay", tag = "dead letters",
    params(DeadQuery),
    responses(
        (status = 200, description = "How many were replayed", body = CountDoc),
        (status = 400, description = "A bad parameter", body = ErrorDoc),
        (status = 401, description = "Not authorized", body = ErrorDoc),
        (status = 404, description = "The caller has no such subscription", body = ErrorDoc),
    )
)]
fn replay_dead_letters(scope: &Scope<'_>, call: &Call<'_>) -> Reply {
    let filter = dead_filter(call)?;
    let count = scope.replay_dead(&filter)?;
    ok(StatusCode::OK, &CountDoc { count })
}

/// Deletes the selected dead letters.
#[utoipa::path(
    delete, path = "/v1/dead-letters", tag = "dead letters",
    params(DeadQuery),
    responses(
        (status = 200, description = "How many were purged", body = CountDoc),
        (status = 400, description = "A bad parameter", body = ErrorDoc),
        (status = 401, description = "Not authorized", body = ErrorDoc),
        (status = 404, description = "The caller has no such subscription", body = ErrorDoc),
    )
)]
fn purge_dead_letters(scope: &Scope<'_>, call: &Call<'_>) -> Reply {
    let filter = dead_filter(call)?;
    let count = scope.purge_dead(&filter)?;
    ok(StatusCode::OK, &CountDoc { count })
}

/// Deliveries by state over the caller's subscriptions.
#[utoipa::path(
    get, path = "/v1/stats", tag = "stats",
    responses(
        (status = 200, description = "Counts", body = CountsDoc),
        (status = 401, description = "Not authorized", body = ErrorDoc),
    )
)]
fn stats(scope: &Scope<'_>) -> Reply {
    ok(StatusCode::OK, &CountsDoc::from(scope.stats()?))
}

/// callout's REST API, as OpenAPI 3.1.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "callout",
        description = "callout's management API: webhook subscriptions, publishing, deliveries, dead letters and stats. Every request authenticates (Authorization: Bearer or Basic, as the host decides) and acts for one tenant.",
    ),
    paths(
        list_subscriptions, create_subscription, get_subscription, replace_subscription,
        patch_subscription, delete_subscription, rotate_secret, test_subscription, subscription_stats,
        subscription_attempts, publish, get_delivery, delivery_attempts, list_dead_letters,
        replay_dead_letters, purge_dead_letters, stats,
    ),
    modifiers(&Security),
)]
struct ApiDoc;

/// Declares the bearer scheme and applies it to every operation.
struct Security;

impl utoipa::Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{
            HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme,
        };
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        openapi.security = Some(vec![SecurityRequirement::new(
            "bearer",
            Vec::<String>::new(),
        )]);
    }
}

/// The OpenAPI 3.1 document of callout's REST API (`/v1`), as served at `/v1/openapi.json`.
pub fn openapi_json() -> &'static str {
    static DOCUMENT: OnceLock<String> = OnceLock::new();
    DOCUMENT.get_or_init(|| {
        let mut document = serde_json::to_value(ApiDoc::openapi()).unwrap_or_default();
        // utoipa puts `writeOnly` of an array field on its items (its array schema has no such
        // flag); the flag belongs on the field.
        let secrets =
            &mut document["components"]["schemas"]["Subscription"]["properties"]["secrets"];
        if let Value::Object(field) = secrets {
            field.insert("writeOnly".into(), Value::Bool(true));
            if let Some(Value::Object(items)) = field.get_mut("items") {
                items.remove("writeOnly");
            }
        }
        serde_json::to_string_pretty(&document).unwrap_or_default()
    })
}

pub(crate) fn openapi_response(method: &Method) -> Response<Vec<u8>> {
    if *method != Method::GET && *method != Method::HEAD {
        return problem(Problem::method_not_allowed("GET, HEAD"));
    }
    let mut response = web::json(StatusCode::OK, &());
    *response.body_mut() = openapi_json().as_bytes().to_vec();
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_openapi_document_is_3_1_and_names_every_endpoint() {
        let doc: Value = serde_json::from_str(openapi_json()).unwrap();
        assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
        let paths = doc["paths"].as_object().unwrap();
        for path in [
            "/v1/subscriptions",
            "/v1/subscriptions/{id}",
            "/v1/subscriptions/{id}/test",
            "/v1/events",
            "/v1/deliveries/{id}/attempts",
            "/v1/dead-letters",
            "/v1/dead-letters/replay",
            "/v1/stats",
        ] {
            assert!(paths.contains_key(path), "{path} missing");
        }
        let subscription = &doc["components"]["schemas"]["Subscription"]["properties"];
        assert_eq!(subscription["secrets"]["writeOnly"], true);
        assert_eq!(subscription["id"]["readOnly"], true);
    }

    #[test]
    fn the_subscription_document_has_the_models_fields_and_no_secret() {
        // Every key callout's JSON has is in the API's document, bar the write-only secrets.
        let model = serde_json::to_value(Subscription::default()).unwrap();
        let doc = serde_json::to_value(SubscriptionDoc::from(
            &Subscription::new("https://r.example/")
                .secret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"),
        ))
        .unwrap();
        let doc = doc.as_object().unwrap();
        for key in model.as_object().unwrap().keys() {
            assert_eq!(doc.contains_key(key), key != "secrets", "{key}");
        }
        assert_eq!(doc["secret_count"], 1);
        assert!(!Value::Object(doc.clone()).to_string().contains("MfKQ9r8G"));
    }
}
