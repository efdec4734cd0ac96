//! What a delivery's body says: callout's own envelope (the `standard` profile) around the
//! subscription's view of each event.
//!
//! One event per message, as Standard Webhooks receivers expect:
//! `{"type":"contact.updated","timestamp":"…","data":{…}}`. Only a subscription that sets
//! `chunk_size` (above 1) gets the batch envelope: the same object with `data` always a list
//! (of one event too, so a batch receiver reads one shape), and `type` the events' common name,
//! or `batch` when they differ. Each data item carries the event id,
//! entity, action, record id, time, actor, tenant, changed paths, the record's `fields` as the
//! subscription shapes them (projection, expansions), the related record, and the
//! subscription's `properties`.

use std::borrow::Cow;

use serde::Serialize;
use serde_json::{Map, Value};

use callout_core::{CompiledSubscription, Event, Rfc3339};

/// Resolves a related record for `expand`: given the event and the dot path to expand, returns
/// the value to put there, or `None` to leave the field as it is.
pub type Expander = dyn Fn(&Event, &str) -> Option<Value> + Send + Sync;

/// The event with the subscription's `expand` paths resolved by the host's expander; the event
/// itself, uncopied, when there is nothing to expand.
pub(crate) fn expanded<'a>(
    sub: &CompiledSubscription,
    event: &'a Event,
    expander: Option<&Expander>,
) -> Cow<'a, Event> {
    let paths = sub
        .entity_options(&event.entity)
        .map(|options| options.expand.as_slice())
        .unwrap_or_default();
    let Some(expand) = expander.filter(|_| !paths.is_empty()) else {
        return Cow::Borrowed(event);
    };
    let mut event = event.clone();
    for path in paths {
        if let Some(value) = expand(&event, path) {
            set_path(&mut event.data, path, value);
        }
    }
    Cow::Owned(event)
}

/// One event as a subscription sees it. Written straight from the event, not through a
/// `Value` tree (a copy of every event on the publish path); its fields are declared in key
/// order, the order a JSON object's keys have here.
#[derive(Serialize)]
struct Item<'a> {
    action: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    actor: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    changes: Option<Cow<'a, [String]>>,
    entity: Cow<'a, str>,
    event_id: Option<&'a str>,
    fields: Cow<'a, Value>,
    id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    occurred_at: Option<Rfc3339>,
    #[serde(skip_serializing_if = "Map::is_empty")]
    properties: &'a Map<String, Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    related: Option<RelatedItem<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tenant: Option<&'a str>,
}

#[derive(Serialize)]
struct RelatedItem<'a> {
    entity: &'a str,
    fields: &'a Value,
    id: &'a str,
}

/// One event as a subscription sees it.
fn item<'a>(
    sub: &'a CompiledSubscription,
    event: &'a Event,
    expander: Option<&Expander>,
) -> Item<'a> {
    // Borrowed from the event unless an expansion or `load_only` made new data.
    let fields = match expanded(sub, event, expander) {
        Cow::Borrowed(event) => sub.shape_data(event),
        Cow::Owned(expanded) => Cow::Owned(sub.shape_data(&expanded).into_owned()),
    };
    Item {
        action: event.action.as_str(),
        actor: event.actor.as_deref(),
        changes: event.changed_paths(),
        entity: event.canonical_entity(),
        event_id: event.event_id.as_deref(),
        fields,
        id: &event.id,
        occurred_at: event.occurred_at.map(|at| Rfc3339::new(at, 3)),
        properties: &sub.subscription().properties,
        related: event.related.as_ref().map(|related| RelatedItem {
            entity: &related.entity,
            fields: &related.data,
            id: &related.id,
        }),
        tenant: event.tenant.as_deref(),
    }
}

#[derive(Serialize)]
struct Envelope<'a> {
    data: Data<'a>,
    timestamp: Rfc3339,
    #[serde(rename = "type")]
    kind: &'a str,
}

/// `data` of the envelope: the event's item, or a batch's list.
#[derive(Serialize)]
#[serde(untagged)]
// Made and serialised at once on the publish path: boxing the large variant would cost an
// allocation per message to save stack space for a moment.
#[allow(clippy::large_enum_variant)]
enum Data<'a> {
    One(Item<'a>),
    Batch(Vec<Item<'a>>),
}

/// The body of one delivery carrying `events` (at least one), as bytes ready to sign.
pub(crate) fn standard(
    sub: &CompiledSubscription,
    events: &[&Event],
    first_name: &str,
    now_ms: u64,
    expander: Option<&Expander>,
) -> Vec<u8> {
    let same_name = |a: &&Event, b: &&Event| {
        a.action == b.action && a.canonical_entity() == b.canonical_entity()
    };
    let kind = match events.split_first() {
        Some((first, rest)) if rest.iter().all(|e| same_name(e, first)) => first_name,
        _ => "batch",
    };
    let data = match events {
        [one] if sub.subscription().events_per_request() == 1 => {
            Data::One(item(sub, one, expander))
        }
        _ => Data::Batch(events.iter().map(|e| item(sub, e, expander)).collect()),
    };
    let body = Envelope {
        data,
        timestamp: Rfc3339::new(now_ms, 3),
        kind,
    };
    // Room for a typical message at once, rather than growing through 128, 256, 512 bytes.
    let mut out = Vec::with_capacity(512);
    // Serialising these cannot fail (all keys are strings).
    let _ = serde_json::to_writer(&mut out, &body);
    out
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
    use serde_json::json;

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
        let body = standard(&sub, &[&event], &event.type_name(), 1_614_265_331_000, None);
        let expected = json!({"type": "contact.updated", "timestamp": "2021-02-25T15:02:11.000Z",
            "data": {"event_id": "e1", "entity": "contact", "action": "updated", "id": "42",
                "occurred_at": "2021-02-25T15:02:10.000Z", "actor": "7", "changes": ["email1"],
                "fields": {"email1": "a@x"}, "properties": {"source": "crm"}}});
        // Byte for byte what a JSON object writes (keys sorted), as receivers have seen it.
        assert_eq!(
            String::from_utf8(body).unwrap(),
            serde_json::to_string(&expected).unwrap()
        );
    }

    #[test]
    fn a_chunk_with_a_related_record_and_no_optional_fields_writes_what_an_object_would() {
        let sub = compiled(
            Subscription::new("https://r.example/")
                .events(["*"])
                .chunk_size(10),
        );
        let linked = Event::created("Contact", "1").related("Company", "9", json!({"name": "A"}));
        let bare = Event::deleted("Contact", "2");
        let body = standard(&sub, &[&linked, &bare], &linked.type_name(), 0, None);
        let expected = json!({"type": "batch", "timestamp": "1970-01-01T00:00:00.000Z", "data": [
            {"event_id": null, "entity": "contact", "action": "created", "id": "1", "fields": {},
                "related": {"entity": "Company", "id": "9", "fields": {"name": "A"}}},
            {"event_id": null, "entity": "contact", "action": "deleted", "id": "2", "fields": {}}
        ]});
        assert_eq!(
            String::from_utf8(body).unwrap(),
            serde_json::to_string(&expected).unwrap()
        );
    }

    #[test]
    fn chunks_are_lists_and_mixed_types_are_batches() {
        let sub = compiled(
            Subscription::new("https://r.example/")
                .events(["*"])
                .chunk_size(10),
        );
        let a = Event::created("Contact", "1").event_id("a");
        let b = Event::created("contact", "2").event_id("b");
        let c = Event::deleted("Ticket", "3").event_id("c");
        let same: Value =
            serde_json::from_slice(&standard(&sub, &[&a, &b], &a.type_name(), 0, None)).unwrap();
        assert_eq!(same["type"], "contact.created");
        assert_eq!(same["data"].as_array().unwrap().len(), 2);
        let mixed: Value =
            serde_json::from_slice(&standard(&sub, &[&a, &c], &a.type_name(), 0, None)).unwrap();
        assert_eq!(mixed["type"], "batch");
        assert_eq!(mixed["data"][1]["id"], "3");
        let alone: Value =
            serde_json::from_slice(&standard(&sub, &[&c], &c.type_name(), 0, None)).unwrap();
        assert_eq!(alone["type"], "ticket.deleted");
        assert_eq!(
            alone["data"][0]["id"], "3",
            "a batching subscription reads one shape"
        );
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
        let item = serde_json::to_value(item(&sub, &event, Some(&expander))).unwrap();
        assert_eq!(
            item["fields"],
            json!({"id": "1", "primary_account": {"name": "Acme"}})
        );
    }
}
