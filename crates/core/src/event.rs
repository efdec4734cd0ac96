//! What an event is: a change to one of the host's records.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::name::{canonical_action, canonical_entity, EventName};
use crate::path;

/// What happened to the record.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Action {
    /// The record was created.
    Created,
    /// The record's fields changed.
    Updated,
    /// The record was deleted.
    Deleted,
    /// A host-defined verb such as `linked_document` or `won`, kept in canonical form.
    Custom(String),
}

impl Action {
    /// Parses any vendor spelling (`Update`, `changed`, `LinkedDocument`...).
    pub fn parse(raw: &str) -> Action {
        match canonical_action(raw).as_ref() {
            "created" => Action::Created,
            "updated" => Action::Updated,
            "deleted" => Action::Deleted,
            other => Action::Custom(other.to_string()),
        }
    }

    /// The canonical name: `created`, `updated`, `deleted` or the custom verb.
    pub fn as_str(&self) -> &str {
        match self {
            Action::Created => "created",
            Action::Updated => "updated",
            Action::Deleted => "deleted",
            Action::Custom(verb) => verb,
        }
    }
}

impl Serialize for Action {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Action {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(|s| Action::parse(&s))
    }
}

/// The second record of an event about a link between two records (Pipeliner's
/// `Account.LinkedDocument`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Related {
    /// The related record's type.
    pub entity: String,
    /// The related record's key.
    pub id: String,
    /// Its fields.
    #[serde(default)]
    pub data: Value,
}

/// A change to one of the host's records, as the host publishes it.
///
/// ```
/// use callout_core::Event;
/// use serde_json::json;
///
/// let event = Event::updated("Contact", "42")
///     .data(json!({"email1": "new@example.com", "name": "Ada"}))
///     .previous(json!({"email1": "old@example.com", "name": "Ada"}))
///     .actor("7");
/// assert_eq!(event.name().to_string(), "contact.updated");
/// assert_eq!(event.changed_paths().unwrap().as_ref(), ["email1".to_string()]);
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// The record's type, as the host spells it (`Contact`, `sale`...).
    pub entity: String,
    /// What happened.
    pub action: Action,
    /// The record's key.
    pub id: String,
    /// The record's fields after the change (for a delete, the last known fields).
    #[serde(default)]
    pub data: Value,
    /// The fields before the change, for updates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous: Option<Value>,
    /// The dot paths that changed; derived from `data` and `previous` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub changed: Option<Vec<String>>,
    /// Who made the change (a user or resource id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
    /// The `Webhook-Skip-Key` of the request that caused the change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skip_key: Option<String>,
    /// The host's tenant (SuperOffice `ContextIdentifier`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// The second record, for events about a link.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub related: Option<Related>,
    /// A unique id; host-supplied ids make publishing idempotent. The engine generates one when
    /// absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_id: Option<String>,
    /// When the change happened, in milliseconds since the Unix epoch; the engine stamps the
    /// publish time when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub occurred_at: Option<u64>,
}

impl Event {
    /// Refuses a key of `document` that the engine's JSON form of an event does not have (its
    /// `related` record included), naming it and the field probably meant; check a document
    /// from a person or client with this before deserializing it. `data` and `previous` are
    /// the host's records and may hold any keys.
    ///
    /// ```
    /// use callout_core::Event;
    /// use serde_json::json;
    /// let err = Event::check_fields(&json!({"entity": "Contact", "action": "created", "id": "1", "actr": "7"}));
    /// assert_eq!(err.unwrap_err().to_string(), r#"unknown field "actr" (did you mean "actor"?)"#);
    /// ```
    pub fn check_fields(document: &Value) -> Result<(), crate::known::UnknownField> {
        crate::known::event(document)
    }

    /// An event with any action, spelled the host's or a vendor's way.
    pub fn new(entity: impl Into<String>, action: &str, id: impl Into<String>) -> Event {
        Event {
            entity: entity.into(),
            action: Action::parse(action),
            id: id.into(),
            data: Value::Object(Default::default()),
            previous: None,
            changed: None,
            actor: None,
            skip_key: None,
            tenant: None,
            related: None,
            event_id: None,
            occurred_at: None,
        }
    }

    /// A record was created.
    pub fn created(entity: impl Into<String>, id: impl Into<String>) -> Event {
        Event::new(entity, "created", id)
    }

    /// A record was updated.
    pub fn updated(entity: impl Into<String>, id: impl Into<String>) -> Event {
        Event::new(entity, "updated", id)
    }

    /// A record was deleted.
    pub fn deleted(entity: impl Into<String>, id: impl Into<String>) -> Event {
        Event::new(entity, "deleted", id)
    }

    /// Sets the record's fields after the change.
    pub fn data(mut self, data: Value) -> Event {
        self.data = data;
        self
    }

    /// Sets the record's fields before the change.
    pub fn previous(mut self, previous: Value) -> Event {
        self.previous = Some(previous);
        self
    }

    /// Names the changed fields explicitly instead of deriving them.
    pub fn changed<I, S>(mut self, paths: I) -> Event
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.changed = Some(paths.into_iter().map(Into::into).collect());
        self
    }

    /// Sets who made the change.
    pub fn actor(mut self, actor: impl Into<String>) -> Event {
        self.actor = Some(actor.into());
        self
    }

    /// Sets the `Webhook-Skip-Key` of the request that caused the change.
    pub fn skip_key(mut self, key: impl Into<String>) -> Event {
        self.skip_key = Some(key.into());
        self
    }

    /// Sets the tenant.
    pub fn tenant(mut self, tenant: impl Into<String>) -> Event {
        self.tenant = Some(tenant.into());
        self
    }

    /// Sets the related record.
    pub fn related(
        mut self,
        entity: impl Into<String>,
        id: impl Into<String>,
        data: Value,
    ) -> Event {
        self.related = Some(Related {
            entity: entity.into(),
            id: id.into(),
            data,
        });
        self
    }

    /// Sets the event id (for idempotent publishing).
    pub fn event_id(mut self, id: impl Into<String>) -> Event {
        self.event_id = Some(id.into());
        self
    }

    /// Sets when the change happened, in milliseconds since the Unix epoch.
    pub fn occurred_at(mut self, unix_ms: u64) -> Event {
        self.occurred_at = Some(unix_ms);
        self
    }

    /// The canonical `entity.action` name.
    pub fn name(&self) -> EventName {
        EventName {
            entity: canonical_entity(&self.entity).into_owned(),
            action: self.action.as_str().to_string(),
        }
    }

    /// The canonical name as text, `entity.action` (as [`Event::name`] displays), in one
    /// allocation rather than three.
    pub fn type_name(&self) -> String {
        let mut buf = [0u8; 64];
        let entity = crate::name::canonical_entity_in(&self.entity, &mut buf);
        let action = self.action.as_str();
        let mut out = String::with_capacity(entity.len() + 1 + action.len());
        out.push_str(&entity);
        out.push('.');
        out.push_str(action);
        out
    }

    /// The canonical entity, borrowed when the host already spells it canonically.
    pub fn canonical_entity(&self) -> Cow<'_, str> {
        canonical_entity(&self.entity)
    }

    /// The changed dot paths: as given, else derived from `previous` and `data`. `None` when
    /// neither was given, i.e. what changed is unknown.
    pub fn changed_paths(&self) -> Option<Cow<'_, [String]>> {
        match (&self.changed, &self.previous) {
            (Some(given), _) => Some(Cow::Borrowed(given.as_slice())),
            (None, Some(previous)) => Some(Cow::Owned(path::changed_paths(previous, &self.data))),
            (None, None) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn event_round_trips_through_json() {
        let event = Event::new("Account", "LinkedDocument", "7")
            .data(json!({"name": "Acme", "nested": {"x": [1, 2]}}))
            .previous(json!({"name": "Old"}))
            .changed(["name"])
            .actor("u1")
            .skip_key("sync")
            .tenant("Cust54321")
            .related("Document", "d1", json!({"title": "T"}))
            .event_id("e-1")
            .occurred_at(1_700_000_000_000);
        let text = serde_json::to_string(&event).unwrap();
        let back: Event = serde_json::from_str(&text).unwrap();
        assert_eq!(back, event);
        assert_eq!(back.action, Action::Custom("linkeddocument".into()));
        assert_eq!(back.name().to_string(), "account.linkeddocument");
    }

    #[test]
    fn type_name_is_the_displayed_name() {
        for event in [
            Event::updated("Contact", "1"),
            Event::created("Company", "2"),
            Event::new("sale", "changed", "3"),
            Event::new("Ticket_Note", "Custom-Thing", "4"),
        ] {
            assert_eq!(event.type_name(), event.name().to_string());
        }
    }

    #[test]
    fn minimal_json_event_parses_with_vendor_action() {
        let event: Event =
            serde_json::from_str(r#"{"entity":"sale","action":"changed","id":"3"}"#).unwrap();
        assert_eq!(event.action, Action::Updated);
        assert_eq!(event.changed_paths(), None);
    }

    #[test]
    fn changed_paths_given_win_over_derived() {
        let event = Event::updated("Contact", "1")
            .data(json!({"a": 1, "b": 2}))
            .previous(json!({"a": 0, "b": 2}));
        assert_eq!(event.changed_paths().unwrap().as_ref(), ["a".to_string()]);
        let event = event.changed(["b"]);
        assert_eq!(event.changed_paths().unwrap().as_ref(), ["b".to_string()]);
    }
}
