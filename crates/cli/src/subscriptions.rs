//! `callout subscriptions ...`: the engine's subscription calls, fed with callout's JSON or a
//! vendor's registration document, shown as tables or JSON.

use std::borrow::Cow;
use std::io::Write;

use callout::core::vendor::{autotask, pipeliner, superoffice};
use callout::core::{redact_url, Kind, Secret, REDACTED as HIDDEN};
use callout::store::SubscriptionFilter;
use callout::{Engine, State, Subscription};
use serde_json::{Map, Value};

use crate::args::{DocumentArgs, Format, ListArgs, RotateArgs, ShowArgs, SubscriptionsCommand};
use crate::error::Failure;
use crate::input;
use crate::output::{self, Table};
use crate::store::{self, Context};

/// What output shows in place of a secret; a document carrying it back is refused, so that a
/// shown-then-edited subscription cannot store the placeholder as its secret. URL passwords and
/// header values show as callout-core's `***` ([`HIDDEN`]), and are treated alike.
const REDACTED: &str = "<redacted>";

pub(crate) fn run(
    ctx: &Context,
    command: &SubscriptionsCommand,
    out: &mut dyn Write,
) -> Result<(), Failure> {
    let engine = ctx.open()?;
    let result = match command {
        SubscriptionsCommand::List(args) => list(ctx, &engine, args, out),
        SubscriptionsCommand::Show(args) => show(ctx, &engine, args, out),
        SubscriptionsCommand::Create(args) => {
            let sub = parse(&args.document, None)?;
            let unsigned = sub.secrets.is_empty();
            let subs = engine.subscriptions();
            let stored = if args.test {
                subs.create_tested(sub)?
            } else {
                subs.create(sub)?
            };
            // The engine made the secret: this is the one time it is shown.
            let made = stored.secrets.first().filter(|_| unsigned);
            report(ctx, out, "created", &stored, made.map(Secret::expose))
        }
        SubscriptionsCommand::Update(args) => {
            let before = get(&engine, args.id)?;
            let sub = parse(&args.document, Some(&before))?;
            let stored = engine.subscriptions().update(sub)?;
            report(ctx, out, "updated", &stored, None)
        }
        SubscriptionsCommand::Delete(args) => {
            let removed = engine
                .subscriptions()
                .delete(args.id)?
                .ok_or_else(|| no_subscription(args.id))?;
            report(ctx, out, "deleted", &removed, None)
        }
        SubscriptionsCommand::Activate(args) => {
            let stored = engine.subscriptions().set_state(args.id, State::Active)?;
            report(ctx, out, "activated", &stored, None)
        }
        SubscriptionsCommand::Deactivate(args) => {
            let stored = engine.subscriptions().set_state(args.id, State::Stopped)?;
            report(ctx, out, "deactivated", &stored, None)
        }
        SubscriptionsCommand::RotateSecret(args) => rotate_secret(ctx, &engine, args, out),
    };
    // Close even after a failure, so a deactivation URL already queued still gets its call;
    // the command's own failure is the one worth reporting.
    let closed = store::close(&engine);
    result.and(closed)
}

pub(crate) fn no_subscription(id: u64) -> Failure {
    Failure::not_found(format_args!("no subscription {id}"))
}

pub(crate) fn get(engine: &Engine, id: u64) -> Result<Subscription, Failure> {
    engine
        .subscriptions()
        .get(id)?
        .ok_or_else(|| no_subscription(id))
}

fn list(
    ctx: &Context,
    engine: &Engine,
    args: &ListArgs,
    out: &mut dyn Write,
) -> Result<(), Failure> {
    let superoffice_only = [
        ("--file", args.file.is_some()),
        ("--select", args.select.is_some()),
    ];
    if let Some((flag, _)) = superoffice_only.iter().find(|(_, given)| *given) {
        if args.format != Format::Superoffice {
            return Err(Failure::usage(format_args!(
                "{flag} is SuperOffice's (GetAllWebhooks): give it with --format superoffice"
            )));
        }
    }
    let filter = SubscriptionFilter {
        name: args.name.clone(),
        event: args.event.clone(),
        state: args.state.map(State::from),
    };
    let mut subs = engine.subscriptions().list(&filter)?;
    if let Some(path) = &args.file {
        let request = input::text(None, Some(path))?;
        let request = superoffice::WebhookFilter::parse(&request).map_err(Failure::usage)?;
        subs = superoffice::get_all_webhooks(&subs, &request)
            .map_err(Failure::usage)?
            .into_iter()
            .cloned()
            .collect();
    }
    let subs: Vec<Cow<'_, Subscription>> =
        subs.iter().map(|s| shown(s, args.show_secrets)).collect();
    if args.format != Format::Callout {
        // As `show`: a vendor's documents are JSON whatever --json says.
        let all = Value::Array(
            subs.iter()
                .map(|s| vendor_json(s, args.format, args.show_secrets))
                .collect(),
        );
        let all = match &args.select {
            Some(selection) => superoffice::select(&all, selection),
            None => all,
        };
        return output::print_json(out, &all);
    }
    if ctx.json {
        let all: Vec<Value> = subs
            .iter()
            .map(|s| callout_json(s, args.show_secrets))
            .collect::<Result<_, _>>()?;
        return output::print_json(out, &all);
    }
    let mut table = Table::new(&["ID", "NAME", "STATE", "PROFILE", "EVENTS", "TARGET"]);
    for sub in &subs {
        table.row(vec![
            sub.id.to_string(),
            sub.name.clone(),
            sub.state.as_str().to_string(),
            json_name(&sub.profile)?,
            sub.events.join(","),
            target(sub),
        ]);
    }
    table.print(out)
}

fn show(
    ctx: &Context,
    engine: &Engine,
    args: &ShowArgs,
    out: &mut dyn Write,
) -> Result<(), Failure> {
    let stored = get(engine, args.id)?;
    let sub = shown(&stored, args.show_secrets);
    if args.format != Format::Callout {
        // A vendor's document is JSON whatever --json says: that is its only shape.
        return output::print_json(out, &vendor_json(&sub, args.format, args.show_secrets));
    }
    let document = callout_json(&sub, args.show_secrets)?;
    if ctx.json {
        return output::print_json(out, &document);
    }
    let mut fields: Vec<(String, String)> = Vec::new();
    let object = document.as_object().cloned().unwrap_or_default();
    // The fields people look for first, then the rest as the JSON names them.
    let first = [
        "id",
        "name",
        "state",
        "profile",
        "kind",
        "events",
        "target_url",
        "secrets",
    ];
    let rest = object.keys().filter(|k| !first.contains(&k.as_str()));
    for name in first.iter().copied().chain(rest.map(String::as_str)) {
        let Some(value) = object.get(name).filter(|v| !is_empty(v)) else {
            continue;
        };
        let text = match value {
            Value::Array(secrets) if name == "secrets" => secrets
                .iter()
                .map(secret_text)
                .collect::<Vec<_>>()
                .join(", "),
            Value::Number(ms) if name.ends_with("_at") => {
                ms.as_u64().map_or_else(|| ms.to_string(), output::time)
            }
            Value::String(s) => s.clone(),
            Value::Array(items) if items.iter().all(Value::is_string) => items
                .iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(", "),
            other => other.to_string(),
        };
        fields.push((name.to_string(), text));
    }
    let counts = engine.subscription_stats(sub.id)?;
    fields.push((
        "deliveries".into(),
        format!(
            "due {}, in flight {}, held {}, delivered {}, dead {}",
            counts.due, counts.in_flight, counts.held, counts.delivered, counts.dead
        ),
    ));
    output::print_fields(out, &fields)
}

/// What a command did to a subscription; `made_secret` is a secret the engine made for it,
/// shown this once (with --json, as `new_secret` beside the subscription).
fn report(
    ctx: &Context,
    out: &mut dyn Write,
    done: &str,
    sub: &Subscription,
    made_secret: Option<&str>,
) -> Result<(), Failure> {
    let sub = shown(sub, false);
    if ctx.json {
        let mut document = callout_json(&sub, false)?;
        if let (Some(secret), Some(object)) = (made_secret, document.as_object_mut()) {
            object.insert("new_secret".into(), Value::String(secret.into()));
        }
        return output::print_json(out, &document);
    }
    writeln!(
        out,
        "{done} subscription {} \"{}\" ({})",
        sub.id,
        output::cell(&sub.name),
        sub.state.as_str()
    )?;
    if let Some(secret) = made_secret {
        writeln!(
            out,
            "new secret, shown only now (give it to the receiver): {secret}"
        )?;
    }
    Ok(())
}

/// `rotate-secret`: the new secret signs from now on, the old ones beside it for the grace.
fn rotate_secret(
    ctx: &Context,
    engine: &Engine,
    args: &RotateArgs,
    out: &mut dyn Write,
) -> Result<(), Failure> {
    let stored =
        engine
            .subscriptions()
            .rotate_secret(args.id, args.secret.clone(), Some(args.grace))?;
    let made = stored
        .secrets
        .last()
        .filter(|_| args.secret.is_none())
        .map(Secret::expose);
    report(ctx, out, "rotated the secret of", &stored, made)?;
    if !ctx.json {
        match stored.next_secret_expiry() {
            Some(until) => writeln!(
                out,
                "the old secret signs beside the new one until {}",
                output::time(until)
            )?,
            None => writeln!(out, "the old secret no longer signs")?,
        }
    }
    Ok(())
}

/// The subscription the document describes. For an update (`before` given), callout's JSON is
/// merged into the stored subscription (RFC 7386: absent keys keep their value, `null` clears
/// one), while a vendor's document replaces it whole, as that vendor's update call does.
fn parse(args: &DocumentArgs, before: Option<&Subscription>) -> Result<Subscription, Failure> {
    let text = input::text(args.document.as_deref(), args.file.as_deref())?;
    let mut sub = match args.format {
        Format::Callout => {
            let mut document: Value = serde_json::from_str(&text)
                .map_err(|e| Failure::usage(format_args!("malformed subscription JSON: {e}")))?;
            // The document as given is checked, not the merge: a misspelt key set to null
            // would vanish in the merge and the typo would go unnoticed.
            Subscription::check_fields(&document).map_err(Failure::usage)?;
            if let Some(before) = before {
                keep_redacted_secrets(&mut document);
                keep_hidden_credentials(&mut document, before);
                let mut merged = serde_json::to_value(before).map_err(Failure::failed)?;
                merge_patch(&mut merged, document);
                document = merged;
            }
            let mut sub = Subscription::from_value(document).map_err(Failure::usage)?;
            if sub.name.trim().is_empty() {
                // As the builders do: a subscription is named after its target until named.
                sub.name = match &sub.kind {
                    Kind::Webhook => Subscription::new(sub.target_url.clone()).name,
                    Kind::Handler(handler) => Subscription::handler(handler.clone()).name,
                };
            }
            sub
        }
        Format::Autotask => {
            autotask::parse_request(&text, args.entity.as_deref()).map_err(|error| {
                match args.entity {
                    // A REST document's entity is the endpoint's: here, the flag's.
                    None if error.field == "Entity" => {
                        Failure::usage(format_args!("{error} with --entity"))
                    }
                    _ => Failure::usage(error),
                }
            })?
        }
        Format::Superoffice => superoffice::parse_webhook(&text).map_err(Failure::usage)?,
        Format::Pipeliner => pipeliner::parse_webhook(&text).map_err(Failure::usage)?,
    };
    if let Some(before) = before {
        if args.format == Format::Callout && sub.id != before.id {
            return Err(Failure::usage(format_args!(
                "the document's id {} is not the subscription being updated ({})",
                sub.id, before.id
            )));
        }
        sub.id = before.id;
        if sub.guid.is_empty() {
            sub.guid.clone_from(&before.guid);
        }
        sub.created_at = sub.created_at.or(before.created_at);
        if sub.created_by.is_none() {
            sub.created_by.clone_from(&before.created_by);
        }
    }
    if sub.secrets.iter().any(|s| s.expose() == REDACTED) {
        return Err(Failure::usage(format_args!(
            "secrets: \"{REDACTED}\" is a placeholder; give the real secret or leave it out"
        )));
    }
    let hidden_password = format!(":{HIDDEN}@");
    let urls = [
        ("target_url", Some(&sub.target_url)),
        ("deactivation_url", sub.deactivation_url.as_ref()),
    ];
    for (field, url) in urls {
        if url.is_some_and(|url| url.contains(&hidden_password)) {
            return Err(Failure::usage(format_args!(
                "{field}: the password \"{HIDDEN}\" is a placeholder; give the real URL or leave it out"
            )));
        }
    }
    if let Some((name, _)) = sub.headers.iter().find(|(_, value)| value == HIDDEN) {
        return Err(Failure::usage(format_args!(
            "headers: {name:?} has the placeholder value \"{HIDDEN}\"; give the real value or leave the header out"
        )));
    }
    Ok(sub)
}

/// The subscription as output shows it: unless `reveal`, URL passwords and custom header values
/// replaced by placeholders, and a name that still is a URL with a password (the default before
/// names left the userinfo out) redacted too.
fn shown(sub: &Subscription, reveal: bool) -> Cow<'_, Subscription> {
    if reveal {
        return Cow::Borrowed(sub);
    }
    let mut shown = sub.clone();
    shown.name = redact_url(&sub.name).into_owned();
    shown.target_url = redact_url(&sub.target_url).into_owned();
    shown.deactivation_url = sub
        .deactivation_url
        .as_deref()
        .map(|url| redact_url(url).into_owned());
    for (_, value) in &mut shown.headers {
        *value = HIDDEN.to_string();
    }
    Cow::Owned(shown)
}

/// A shown subscription edited and fed back keeps its stored URL password and header values
/// where the document still carries their placeholders: a URL exactly as it was shown, a header
/// of the same name (ignoring case) whose value is the placeholder.
fn keep_hidden_credentials(patch: &mut Value, before: &Subscription) {
    let Some(object) = patch.as_object_mut() else {
        return;
    };
    let urls = [
        ("target_url", Some(&before.target_url)),
        ("deactivation_url", before.deactivation_url.as_ref()),
    ];
    for (field, stored) in urls {
        let Some(stored) = stored else { continue };
        let as_shown = redact_url(stored);
        if object.get(field).and_then(Value::as_str) == Some(as_shown.as_ref()) {
            object.insert(field.into(), Value::String(stored.clone()));
        }
    }
    let headers = object.get_mut("headers").and_then(Value::as_array_mut);
    for header in headers.into_iter().flatten() {
        let Some([name, value]) = header.as_array_mut().map(Vec::as_mut_slice) else {
            continue;
        };
        let (Some(name), Some(HIDDEN)) = (name.as_str(), value.as_str()) else {
            continue;
        };
        let stored = before
            .headers
            .iter()
            .find(|(stored, _)| stored.eq_ignore_ascii_case(name));
        if let Some((_, stored)) = stored {
            *value = Value::String(stored.clone());
        }
    }
}

/// A shown subscription edited and fed back keeps its stored secrets (and their expiries) when
/// they are still all placeholders.
fn keep_redacted_secrets(patch: &mut Value) {
    let all_redacted = patch
        .get("secrets")
        .and_then(Value::as_array)
        .is_some_and(|s| !s.is_empty() && s.iter().all(|v| secret_value(v) == Some(REDACTED)));
    if all_redacted {
        if let Some(object) = patch.as_object_mut() {
            object.remove("secrets");
        }
    }
}

/// RFC 7386 JSON merge patch.
fn merge_patch(target: &mut Value, patch: Value) {
    let Value::Object(patch) = patch else {
        *target = patch;
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    if let Value::Object(target) = target {
        for (key, value) in patch {
            if value.is_null() {
                target.remove(&key);
            } else {
                merge_patch(target.entry(key).or_insert(Value::Null), value);
            }
        }
    }
}

/// callout's JSON form, secrets replaced by the placeholder unless `show_secrets`.
fn callout_json(sub: &Subscription, show_secrets: bool) -> Result<Value, Failure> {
    let mut value = serde_json::to_value(sub)
        .map_err(|e| Failure::failed(format_args!("cannot write subscription {}: {e}", sub.id)))?;
    if !show_secrets {
        for secret in value
            .get_mut("secrets")
            .and_then(Value::as_array_mut)
            .into_iter()
            .flatten()
        {
            // An expiring secret keeps its expiry in sight: only its text is hidden.
            match secret {
                Value::Object(expiring) => {
                    expiring.insert("secret".into(), Value::String(REDACTED.into()));
                }
                other => *other = Value::String(REDACTED.into()),
            }
        }
    }
    Ok(value)
}

/// A secret's text in callout's JSON: the string itself, or an expiring one's `secret`.
fn secret_value(secret: &Value) -> Option<&str> {
    match secret {
        Value::Object(expiring) => expiring.get("secret").and_then(Value::as_str),
        other => other.as_str(),
    }
}

/// A secret as the `show` table prints it: its text (or placeholder), and when it stops
/// signing if it does.
fn secret_text(secret: &Value) -> String {
    let text = secret_value(secret).unwrap_or_default();
    match secret.get("expires_at").and_then(Value::as_u64) {
        Some(until) => format!("{text} (signs until {})", output::time(until)),
        None => text.to_string(),
    }
}

/// A vendor's registration document for the subscription, its secret field replaced by the
/// placeholder unless `show_secrets`.
fn vendor_json(sub: &Subscription, format: Format, show_secrets: bool) -> Value {
    let (mut value, secret_key) = match format {
        Format::Autotask => (autotask::render_rest(sub), "SecretKey"),
        Format::Superoffice => (superoffice::render_webhook(sub), "Secret"),
        Format::Pipeliner | Format::Callout => (pipeliner::render_webhook(sub), "signature"),
    };
    if !show_secrets {
        for (key, secret) in value.as_object_mut().into_iter().flatten() {
            let is_set = secret.as_str().is_some_and(|s| !s.is_empty());
            if key.eq_ignore_ascii_case(secret_key) && is_set {
                *secret = Value::String(REDACTED.into());
            }
        }
    }
    value
}

/// Null, `""`, `[]`, `{}`, or an object of only such values: nothing worth a line.
fn is_empty(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.values().all(is_empty),
        _ => false,
    }
}

/// Where deliveries go: the URL, or the handler that serves them.
fn target(sub: &Subscription) -> String {
    match &sub.kind {
        Kind::Webhook => sub.target_url.clone(),
        Kind::Handler(name) => format!("handler:{name}"),
    }
}

/// A serde enum's JSON name (`too_many_errors`, `superoffice`), as the documents spell it.
pub(crate) fn json_name(value: &impl serde::Serialize) -> Result<String, Failure> {
    match serde_json::to_value(value) {
        Ok(Value::String(name)) => Ok(name),
        _ => Err(Failure::failed("cannot name an enum value")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn merge_patch_follows_rfc_7386() {
        let mut target = json!({"a": "b", "c": {"d": "e", "f": "g"}, "keep": 1});
        merge_patch(&mut target, json!({"a": "z", "c": {"f": null}, "new": [1]}));
        assert_eq!(
            target,
            json!({"a": "z", "c": {"d": "e"}, "keep": 1, "new": [1]})
        );
    }

    #[test]
    fn shown_secrets_are_placeholders_and_come_back_as_the_stored_ones() {
        let sub = Subscription::new("https://receiver.example/h")
            .events(["contact.created"])
            .secret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw");
        let mut shown = callout_json(&sub, false).unwrap();
        assert_eq!(shown["secrets"], json!([REDACTED]));
        keep_redacted_secrets(&mut shown);
        assert!(shown.get("secrets").is_none());
        assert_eq!(
            callout_json(&sub, true).unwrap()["secrets"],
            json!(["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"])
        );
    }

    #[test]
    fn vendor_documents_hide_their_secret_field() {
        let sub = Subscription::new("https://receiver.example/h")
            .events(["contact.updated"])
            .secret("Something Super Secret");
        let shown = vendor_json(&sub, Format::Superoffice, false);
        assert_eq!(shown["Secret"], json!(REDACTED));
        assert!(!shown.to_string().contains("Super Secret"));
    }
}
