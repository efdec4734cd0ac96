//! Pipeliner: the chunked webhook body its receivers expect, and its webhook registration
//! format (`url`, `events`, `insecure_ssl`, `options`, `signature`), comments in the options
//! included.

use serde_json::{json, Map, Value};

use super::fields::Fields;
use super::json::{Escape, J};
use super::VendorError;
use crate::error::InvalidSubscription;
use crate::event::{Action, Event};
use crate::filter::FieldFilter;
use crate::matcher::{project, CompiledSubscription};
use crate::name::canonical_entity;
use crate::subscription::{limits, EntityOptions, Profile, Secret, Subscription};
use crate::time::rfc3339;

const PL: Profile = Profile::Pipeliner;

/// The webhook's fields: those of `seeds/pipeliner-webhooks.txt` (`url`, `events`,
/// `insecure_ssl`, `options`, `signature`, `created`, `modified`, `id`), the
/// `custom_entity_api_name` and the snapshot fields (`is_deleted`, `application_id`,
/// `client_id`) that PROFILES.md documents, so that a webhook read back can be sent again, and
/// callout's own optional `name`. Any other key is refused, not ignored.
const WEBHOOK_FIELDS: &[&str] = &[
    "id",
    "name",
    "url",
    "events",
    "insecure_ssl",
    "options",
    "signature",
    "custom_entity_api_name",
    "created",
    "modified",
    "is_deleted",
    "application_id",
    "client_id",
];

/// The entity whose events `custom_entity_api_name` narrows.
pub const CUSTOM_ENTITY: &str = "CustomEntity";

/// The field of a `CustomEntity` event's data that carries its type's API name:
/// `custom_entity_api_name` becomes an `eq` filter on it.
pub const CUSTOM_ENTITY_API_NAME: &str = "custom_entity_api_name";

/// Pipeliner's verbs, so that a custom action folded to `documentlinked` is sent as
/// `DocumentLinked` again.
const VERBS: &[&str] = &[
    "Create",
    "Update",
    "Delete",
    "DocumentLinked",
    "LinkedDocument",
    "OwnerChanged",
    "Lost",
    "Won",
    "Move",
    "Qualify",
    "BackToLead",
    "Comment",
];

/// What the body carries that is not the subscription's: the space and application the
/// webhook belongs to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PipelinerContext {
    /// `team_space_id` of every element.
    pub team_space_id: String,
    /// `webhook.application_id`; `null` when `None`.
    pub application_id: Option<String>,
    /// `webhook.client_id`; `null` when `None`.
    pub client_id: Option<String>,
}

fn pascal(text: &str) -> String {
    text.split(['_', '-', ' '])
        .filter(|w| !w.is_empty())
        .map(|w| {
            let mut chars = w.chars();
            chars.next().map_or_else(String::new, |first| {
                first.to_uppercase().chain(chars).collect()
            })
        })
        .collect()
}

/// The event's Pipeliner name, `<Entity>.<Action>`: `Account.Update`, `Contact.Create`,
/// `Account.DocumentLinked`; custom verbs in PascalCase.
pub fn event_name(event: &Event) -> String {
    let action = match &event.action {
        Action::Created => "Create".to_string(),
        Action::Updated => "Update".to_string(),
        Action::Deleted => "Delete".to_string(),
        Action::Custom(verb) => VERBS
            .iter()
            .find(|v| v.eq_ignore_ascii_case(verb))
            .map_or_else(|| pascal(verb), |v| v.to_string()),
    };
    format!("{}.{action}", pascal(event.entity.trim()))
}

fn record(id: &str, data: &Value) -> J {
    let mut fields = vec![("id".to_string(), J::str(id))];
    for (key, value) in data.as_object().into_iter().flatten() {
        if key != "id" {
            fields.push((key.clone(), J::Value(value.clone())));
        }
    }
    J::Obj(fields)
}

fn time(unix_ms: Option<u64>) -> J {
    unix_ms.map_or(J::Null, |t| J::Str(rfc3339(t, 0)))
}

/// The body of one chunk (at most `chunk_size` events, which the engine groups), byte for byte
/// as Pipeliner sends it: a JSON array of
/// `{"webhook","event","event_time","team_space_id","related_entity","entity"}`.
///
/// `webhook` is the subscription's snapshot (`id` = its guid, `options` in Pipeliner's shape,
/// never the signature); `event_time` is the event's `occurred_at` to the second (the engine
/// stamps it); `entity` is `{"id": ..}` then the record's fields as the host gave them
/// (relations not expanded stay URI strings), trimmed by `load-only`; `related_entity` is the
/// event's related record trimmed by the `related_entity` options, or `null`.
pub fn chunk_body(
    sub: &CompiledSubscription,
    events: &[Event],
    context: &PipelinerContext,
) -> Vec<u8> {
    let s = sub.subscription();
    let webhook = J::Obj(vec![
        ("id".into(), J::str(&s.guid)),
        ("insecure_ssl".into(), J::Bool(s.insecure_tls)),
        ("options".into(), J::Value(render_options(s))),
        ("url".into(), J::str(&s.target_url)),
        ("is_deleted".into(), J::Bool(false)),
        ("created".into(), time(s.created_at)),
        ("modified".into(), time(s.updated_at.or(s.created_at))),
        (
            "application_id".into(),
            J::opt_str(context.application_id.as_deref()),
        ),
        ("client_id".into(), J::opt_str(context.client_id.as_deref())),
        (
            "events".into(),
            J::Arr(s.events.iter().map(J::str).collect()),
        ),
    ]);
    let elements = events
        .iter()
        .map(|event| {
            let related = event.related.as_ref().map_or(J::Null, |r| {
                let data = if s.related.load_only.is_empty() {
                    r.data.clone()
                } else {
                    project(&r.data, &s.related.load_only)
                };
                record(&r.id, &data)
            });
            J::Obj(vec![
                ("webhook".into(), webhook.clone()),
                ("event".into(), J::Str(event_name(event))),
                (
                    "event_time".into(),
                    J::Str(rfc3339(event.occurred_at.unwrap_or(0), 0)),
                ),
                ("team_space_id".into(), J::str(&context.team_space_id)),
                ("related_entity".into(), related),
                ("entity".into(), record(&event.id, &sub.shape_data(event))),
            ])
        })
        .collect();
    J::Arr(elements).to_bytes(Escape::Minimal)
}

/// Removes `#` and `//` comments outside strings, as Pipeliner's own options example writes
/// them. A comment runs to the end of its line; with `flattened`, also up to the next `"`,
/// `{`, `}`, `[` or `]`, for documents whose line breaks were lost (the seed's example is one
/// line, so its comments are followed by more JSON on the same line).
pub fn strip_comments(text: &str, flattened: bool) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    let (mut in_string, mut escaped) = (false, false);
    while let Some(c) = chars.next() {
        if in_string {
            out.push(c);
            match c {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                '"' => in_string = false,
                _ => {}
            }
            continue;
        }
        let comment = c == '#' || (c == '/' && chars.peek() == Some(&'/'));
        if !comment {
            in_string = c == '"';
            out.push(c);
            continue;
        }
        out.push(' ');
        while let Some(&next) = chars.peek() {
            if next == '\n' || (flattened && matches!(next, '"' | '{' | '}' | '[' | ']')) {
                break;
            }
            chars.next();
        }
    }
    out
}

fn parse_entity_options(value: &Value, at: &str) -> Result<EntityOptions, VendorError> {
    let f = Fields::new(PL, value, at)?;
    f.only(&[
        "filter",
        "filter-op",
        "on-field-change",
        "expand",
        "load-only",
    ])?;
    let mut options = EntityOptions {
        on_field_change: f.strings("on-field-change")?.unwrap_or_default(),
        expand: f.strings("expand")?.unwrap_or_default(),
        load_only: f.strings("load-only")?.unwrap_or_default(),
        ..EntityOptions::default()
    };
    let filter = f.object("filter")?;
    let ops = f.object("filter-op")?;
    for (path, op) in ops.into_iter().flatten() {
        let field = format!("filter-op.{path}");
        if !filter.is_some_and(|m| m.contains_key(path)) {
            return Err(f.error(&field, "has no filter on this field"));
        }
        if !op.is_string() {
            return Err(f.error(&field, "must be an operator name"));
        }
    }
    for (path, value) in filter.into_iter().flatten() {
        let op = ops
            .and_then(|o| o.get(path))
            .and_then(Value::as_str)
            .unwrap_or("eq");
        options
            .filters
            .push(FieldFilter::new(path.clone(), op, value.clone()));
    }
    Ok(options)
}

fn render_entity_options(
    options: &EntityOptions,
    skip: Option<&FieldFilter>,
) -> Map<String, Value> {
    let mut out = Map::new();
    let mut filter = Map::new();
    let mut ops = Map::new();
    for f in options.filters.iter().filter(|f| Some(*f) != skip) {
        filter.insert(f.path.clone(), f.value.clone());
        if f.op != "eq" {
            ops.insert(f.path.clone(), json!(f.op));
        }
    }
    if !filter.is_empty() {
        out.insert("filter".into(), Value::Object(filter));
    }
    if !ops.is_empty() {
        out.insert("filter-op".into(), Value::Object(ops));
    }
    for (key, list) in [
        ("on-field-change", &options.on_field_change),
        ("expand", &options.expand),
        ("load-only", &options.load_only),
    ] {
        if !list.is_empty() {
            out.insert(key.into(), json!(list));
        }
    }
    out
}

/// The filter `custom_entity_api_name` became, if the subscription has one.
fn custom_entity_filter(sub: &Subscription) -> Option<(&String, &FieldFilter)> {
    sub.entities
        .iter()
        .filter(|(name, _)| canonical_entity(name) == canonical_entity(CUSTOM_ENTITY))
        .find_map(|(name, o)| {
            o.filters
                .iter()
                .find(|f| f.path == CUSTOM_ENTITY_API_NAME && f.op == "eq" && f.value.is_string())
                .map(|f| (name, f))
        })
}

/// The subscription's options in Pipeliner's shape; what was left at its default (no
/// chunk_size, chunk_delay 0, empty lists) is left out, so a plain webhook renders `{}`.
pub fn render_options(sub: &Subscription) -> Value {
    let mut options = Map::new();
    let custom = custom_entity_filter(sub);
    let mut entity = Map::new();
    for (name, o) in &sub.entities {
        let skip = custom.filter(|(n, _)| *n == name).map(|(_, f)| f);
        let rendered = render_entity_options(o, skip);
        if !rendered.is_empty() {
            entity.insert(name.clone(), Value::Object(rendered));
        }
    }
    if !entity.is_empty() {
        options.insert("entity".into(), Value::Object(entity));
    }
    let related = render_entity_options(&sub.related, None);
    if !related.is_empty() {
        options.insert("related_entity".into(), Value::Object(related));
    }
    if !sub.skip_keys.is_empty() {
        options.insert("skip_keys".into(), json!(sub.skip_keys));
    }
    if let Some(size) = sub.chunk_size {
        options.insert("chunk_size".into(), json!(size));
    }
    if sub.chunk_delay != 0 {
        options.insert("chunk_delay".into(), json!(sub.chunk_delay));
    }
    Value::Object(options)
}

/// Names a validation error's field the way Pipeliner's API does.
fn vendor_field(error: &InvalidSubscription) -> String {
    use InvalidSubscription as E;
    let option = |key: &str| -> &'static str {
        match key {
            "on_field_change" => "on-field-change",
            "load_only" => "load-only",
            "expand" => "expand",
            "always_fields" => "always_fields",
            _ => "filter",
        }
    };
    let entity = |e: &str| {
        if e == "related" {
            "options.related_entity".to_string()
        } else {
            format!("options.entity.{e}")
        }
    };
    match error {
        E::EmptyName | E::NameTooLong { .. } => "name".into(),
        E::BadUrl { .. } => "url".into(),
        E::BadSecret { .. } => "signature".into(),
        E::NoEvents | E::BadEventPattern { .. } => "events".into(),
        E::ChunkSize { .. } => "options.chunk_size".into(),
        E::ChunkDelay { .. } => "options.chunk_delay".into(),
        E::UnknownOperator {
            entity: e, field, ..
        } => format!("{}.filter-op.{field}", entity(e)),
        E::BadFilterValue {
            entity: e, field, ..
        }
        | E::BadRegex {
            entity: e, field, ..
        } => {
            format!("{}.filter.{field}", entity(e))
        }
        E::BadPath { field, .. } => match field.split_once('.') {
            Some((key, e)) => format!("{}.{}", entity(e), option(key)),
            None => "options".into(),
        },
        E::BadEntity { entity: e } => entity(e),
        E::TooLong { field, .. } | E::TooMany { field, .. } => match *field {
            "target_url" => "url".into(),
            "skip_keys" => "options.skip_keys".into(),
            "filters" => "options.entity".into(),
            other => other.to_string(),
        },
        _ => String::new(),
    }
}

/// Parses a Pipeliner webhook (`url`, `events`, `insecure_ssl`, `options`, `signature`,
/// `custom_entity_api_name`; read-only `id`, `created`, `modified` are kept) into a
/// subscription. A key Pipeliner does not document, at the top or in the options, is an error
/// naming it; `is_deleted`, `application_id` and `client_id` are accepted and ignored. `#`
/// and `//` comments outside strings are accepted (see [`strip_comments`]).
///
/// Options: `entity.<E>` with `filter` + `filter-op` (default `eq`), `on-field-change`,
/// `expand`, `load-only`; `related_entity` (`expand`, `load-only`, ...); `skip_keys`;
/// `chunk_size` (1..=100, default 100); `chunk_delay` (seconds). `signature` must be a UUID.
/// Pipeliner webhooks have no name: an optional `name` is read, else the URL names it.
/// `custom_entity_api_name` becomes an `eq` filter on [`CUSTOM_ENTITY_API_NAME`] of
/// [`CUSTOM_ENTITY`] events.
pub fn parse_webhook(text: &str) -> Result<Subscription, VendorError> {
    let value: Value = match serde_json::from_str(&strip_comments(text, false)) {
        Ok(value) => value,
        Err(first) => serde_json::from_str(&strip_comments(text, true))
            .map_err(|_| VendorError::new(PL, "", format!("not valid JSON: {first}")))?,
    };
    parse_webhook_value(&value)
}

/// [`parse_webhook`] for an already parsed (comment-free) JSON document.
pub fn parse_webhook_value(value: &Value) -> Result<Subscription, VendorError> {
    let f = Fields::new(PL, value, "")?;
    f.only(WEBHOOK_FIELDS)?;
    let url = f.required_string("url")?;
    let mut sub = Subscription::new(url);
    sub.profile = PL;
    if let Some(name) = f.string("name")? {
        sub.name = name;
    }
    sub.guid = f.id("id")?.unwrap_or_default();
    sub.events = f
        .strings("events")?
        .ok_or_else(|| f.error("events", "is required"))?;
    sub.insecure_tls = f.bool("insecure_ssl")?.unwrap_or(false);
    sub.created_at = f.time("created")?;
    sub.updated_at = f.time("modified")?;
    if let Some(signature) = f.string("signature")?.filter(|s| !s.is_empty()) {
        sub.secrets.push(Secret::new(signature));
    }
    if let Some(options) = f.get("options") {
        let o = Fields::new(PL, options, "options")?;
        o.only(&[
            "entity",
            "related_entity",
            "skip_keys",
            "chunk_size",
            "chunk_delay",
        ])?;
        for (name, value) in o.object("entity")?.into_iter().flatten() {
            let options = parse_entity_options(value, &format!("options.entity.{name}"))?;
            sub.entities.insert(name.clone(), options);
        }
        if let Some(related) = o.get("related_entity") {
            sub.related = parse_entity_options(related, "options.related_entity")?;
        }
        sub.skip_keys = o.strings("skip_keys")?.unwrap_or_default();
        if let Some(size) = o.u64("chunk_size")? {
            sub.chunk_size = u32::try_from(size)
                .ok()
                .map(Some)
                .filter(|s| s.is_some_and(|s| (1..=limits::CHUNK_SIZE).contains(&s)))
                .ok_or_else(|| {
                    o.error(
                        "chunk_size",
                        format!("{size} is outside 1..={}", limits::CHUNK_SIZE),
                    )
                })?;
        }
        if let Some(delay) = o.u64("chunk_delay")? {
            sub.chunk_delay = i64::try_from(delay)
                .ok()
                .filter(|d| *d <= limits::CHUNK_DELAY)
                .ok_or_else(|| {
                    o.error(
                        "chunk_delay",
                        format!("{delay} seconds is outside 0..={}", limits::CHUNK_DELAY),
                    )
                })?;
        }
    }
    if let Some(api_name) = f
        .string("custom_entity_api_name")?
        .filter(|s| !s.is_empty())
    {
        let key = sub
            .entities
            .keys()
            .find(|k| canonical_entity(k) == canonical_entity(CUSTOM_ENTITY))
            .cloned()
            .unwrap_or_else(|| CUSTOM_ENTITY.to_string());
        sub.entities
            .entry(key)
            .or_default()
            .filters
            .push(FieldFilter::new(
                CUSTOM_ENTITY_API_NAME,
                "eq",
                json!(api_name),
            ));
    }
    sub.validate()
        .map_err(|e| VendorError::invalid(PL, vendor_field(&e), e))?;
    Ok(sub)
}

/// A subscription in Pipeliner's webhook shape, signature included (this is the registration
/// document, not a body). `name` appears only when it is not the one derived from the URL.
pub fn render_webhook(sub: &Subscription) -> Value {
    let mut out = Map::new();
    if !sub.guid.is_empty() {
        out.insert("id".into(), json!(sub.guid));
    }
    if sub.name != crate::subscription::default_name(&sub.target_url) {
        out.insert("name".into(), json!(sub.name));
    }
    out.insert("url".into(), json!(sub.target_url));
    out.insert("events".into(), json!(sub.events));
    out.insert("insecure_ssl".into(), json!(sub.insecure_tls));
    out.insert("options".into(), render_options(sub));
    if let Some(signature) = sub.secrets.first() {
        out.insert("signature".into(), json!(signature.expose()));
    }
    if let Some((_, filter)) = custom_entity_filter(sub) {
        out.insert("custom_entity_api_name".into(), filter.value.clone());
    }
    if let Some(created) = sub.created_at {
        out.insert("created".into(), json!(rfc3339(created, 3)));
    }
    if let Some(modified) = sub.updated_at {
        out.insert("modified".into(), json!(rfc3339(modified, 3)));
    }
    Value::Object(out)
}
