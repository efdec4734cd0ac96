//! What a delivery's body says: callout's own envelope (the `standard` profile) around the
//! subscription's view of each event.
//!
//! One event: `{"type":"contact.updated","timestamp":"…","data":{…}}`. A chunk of several
//! events (one publish that matched many): the same envelope with `data` a list, and `type`
//! the events' common name or `batch` when they differ. Each data item carries the event id,
//! entity, action, record id, time, actor, tenant, changed paths, the record's `fields` as the
//! subscription shapes them (projection, expansions), the related record, and the
//! subscription's `properties`.

use serde_json::{json, Map, Value};

use callout_core::{rfc3339, CompiledSubscription, Event};

/// Resolves a related record for `expand`: given the event and the dot path to expand, returns
/// the value to put there, or `None` to leave the field as it is.
pub type Expander = dyn Fn(&Event, &str) -> Option<Value> + Send + Sync;

/// The event with the subscription's `expand` paths resolved by the host's expander.
pub(crate) fn expanded(
    sub: &CompiledSubscription,
    event: &Event,
    expander: Option<&Expander>,
) -> Event {
    let mut event = event.clone();
    if let (Some(expand), Some(options)) = (expander, sub.entity_options(&event.entity)) {
        for path in &options.expand {
            if let Some(value) = expand(&event, path) {
                set_path(&mut event.data, path, value);
            }
        }
    }
    event
}

/// One event as a subscription sees it.
pub(crate) fn item(
    sub: &CompiledSubscription,
    event: &Event,
    expander: Option<&Expander>,
) -> Value {
    let shaped = sub.shape_data(&expanded(sub, event, expander));
    let name = event.name();
    let mut item = Map::new();
    item.insert("event_id".into(), json!(event.event_id));
    item.insert("entity".into(), json!(name.entity));
    item.insert("action".into(), json!(name.action));
    item.insert("id".into(), json!(event.id));
    if let Some(at) = event.occurred_at {
        item.insert("occurred_at".into(), json!(rfc3339(at, 3)));
    }
    for (key, value) in [("actor", &event.actor), ("tenant", &event.tenant)] {
        if let Some(value) = value {
            item.insert(key.into(), json!(value));
        }
    }
    if let Some(changed) = event.changed_paths() {
        item.insert("changes".into(), json!(changed.as_ref()));
    }
    item.insert("fields".into(), shaped);
    if let Some(related) = &event.related {
        item.insert(
            "related".into(),
            json!({"entity": related.entity, "id": related.id, "fields": related.data}),
        );
    }
    let properties = &sub.subscription().properties;
    if !properties.is_empty() {
        item.insert("properties".into(), Value::Object(properties.clone()));
    }
    Value::Object(item)
}

/// The body of one delivery carrying `events` (at least one), as bytes ready to sign.
pub(crate) fn standard(
    sub: &CompiledSubscription,
    events: &[&Event],
    now_ms: u64,
    expander: Option<&Expander>,
) -> Vec<u8> {
    let names: Vec<String> = events.iter().map(|e| e.name().to_string()).collect();
    let kind = match names.first() {
        Some(first) if names.iter().all(|n| n == first) => first.clone(),
        _ => "batch".to_string(),
    };
    let data = match events {
        [one] => item(sub, one, expander),
        many => Value::Array(many.iter().map(|e| item(sub, e, expander)).collect()),
    };
    let body = json!({"type": kind, "timestamp": rfc3339(now_ms, 3), "data": data});
    // Serialising a Value cannot fail (all keys are strings).
    serde_json::to_vec(&body).unwrap_or_default()
}

/// Puts `value` at a dot path, creating objects on the way and replacing non-objects.
fn set_path(target: &mut Value, path: &str, value: Value) {
    let mut node = target;
    let mut segments = path.split('.').peekable();
    while let Some(segment) = segments.next() {
        if !node.is_object() {
            *node = Value::Object(Map::new());
        }
        let Value::Object(map) = node else { return };
        if segments.peek().is_none() {
            map.insert(segment.to_string(), value);
            return;
        }
        node = map.entry(segment.to_string()).or_insert(Value::Null);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use callout_core::Subscription;

    fn compiled(sub: Subscription) -> CompiledSubscription {
        CompiledSubscription::compile(sub).unwrap()
    }

    #[test]
    fn one_event_envelope() {
        let sub = compiled(
            Subscription::new("https://r.example/")
                .events(["*"])
                .load_only("Contact", ["email1"])
                .property("source", json!("crm")),
        );
        let event = Event::updated("Contact", "42")
            .data(json!({"email1": "a@x", "phone": "1"}))
            .previous(json!({"email1": "b@x", "phone": "1"}))
            .actor("7")
            .event_id("e1")
            .occurred_at(1_614_265_330_000);
        let body: Value =
            serde_json::from_slice(&standard(&sub, &[&event], 1_614_265_331_000, None)).unwrap();
        assert_eq!(
            body,
            json!({"type": "contact.updated", "timestamp": "2021-02-25T15:02:11.000Z", "data": {
                "event_id": "e1", "entity": "contact", "action": "updated", "id": "42",
                "occurred_at": "2021-02-25T15:02:10.000Z", "actor": "7", "changes": ["email1"],
                "fields": {"email1": "a@x"}, "properties": {"source": "crm"}}})
        );
    }

    #[test]
    fn chunks_are_lists_and_mixed_types_are_batches() {
        let sub = compiled(Subscription::new("https://r.example/").events(["*"]));
        let a = Event::created("Contact", "1").event_id("a");
        let b = Event::created("contact", "2").event_id("b");
        let c = Event::deleted("Ticket", "3").event_id("c");
        let same: Value = serde_json::from_slice(&standard(&sub, &[&a, &b], 0, None)).unwrap();
        assert_eq!(same["type"], "contact.created");
        assert_eq!(same["data"].as_array().unwrap().len(), 2);
        let mixed: Value = serde_json::from_slice(&standard(&sub, &[&a, &c], 0, None)).unwrap();
        assert_eq!(mixed["type"], "batch");
        assert_eq!(mixed["data"][1]["id"], "3");
    }

    #[test]
    fn expander_fills_related_records_before_projection() {
        let sub = compiled(
            Subscription::new("https://r.example/")
                .events(["*"])
                .expand("Contact", ["primary_account"])
                .load_only("Contact", ["id", "primary_account.name"]),
        );
        let expander = |event: &Event, path: &str| {
            (path == "primary_account")
                .then(|| json!({"id": event.data["primary_account"], "name": "Acme", "secret": 1}))
        };
        let event =
            Event::created("Contact", "1").data(json!({"id": "1", "primary_account": "acc-9"}));
        let item = item(&sub, &event, Some(&expander));
        assert_eq!(
            item["fields"],
            json!({"id": "1", "primary_account": {"name": "Acme"}})
        );
    }
}
