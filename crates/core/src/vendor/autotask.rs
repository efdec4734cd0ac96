//! Autotask: the callout body its receivers parse (with .NET's string escaping), the
//! DeactivationUrl body, and its webhook registration formats (REST JSON and SOAP XML), with
//! readiness and duplicate checks.

use std::borrow::Cow;

use quick_xml::events::Event as Xml;
use quick_xml::Reader;
use serde_json::{json, Map, Value};

use super::fields::Fields;
use super::json::{Escape, J};
use super::VendorError;
use crate::error::InvalidSubscription;
use crate::event::{Action, Event};
use crate::matcher::CompiledSubscription;
use crate::name::{autotask_event_patterns, canonical_action, canonical_entity, Part};
use crate::path::{lookup, touches};
use crate::subscription::{EntityOptions, Profile, Secret, State, Subscription};
use crate::time::rfc3339;

const AT: Profile = Profile::Autotask;

/// The fields of the REST `<Entity>Webhook` (`seeds/autotask-webhooks-rest.txt`) and its child
/// collections (PROFILES.md). Any other key is refused, not ignored.
const REST_FIELDS: &[&str] = &[
    "id",
    "WebhookGUID",
    "Name",
    "WebhookUrl",
    "DeactivationUrl",
    "IsActive",
    "IsReady",
    "IsSubscribedToCreateEvents",
    "IsSubscribedToUpdateEvents",
    "IsSubscribedToDeleteEvents",
    "SecretKey",
    "SendThresholdExceededNotification",
    "NotificationEmailAddress",
    "OwnerResourceID",
    "Fields",
    "UdfFields",
    "ExcludedResources",
];

/// The fields of the SOAP `<Entity>Webhook` (`seeds/autotask-webhook-soap.txt`): REST's without
/// the child collections, with `Active` and `Ready` for `IsActive` and `IsReady`.
const SOAP_FIELDS: &[&str] = &[
    "id",
    "WebhookGUID",
    "Name",
    "WebhookUrl",
    "DeactivationUrl",
    "Active",
    "Ready",
    "IsSubscribedToCreateEvents",
    "IsSubscribedToUpdateEvents",
    "IsSubscribedToDeleteEvents",
    "SecretKey",
    "SendThresholdExceededNotification",
    "NotificationEmailAddress",
    "OwnerResourceID",
];

/// The fields of one child of `Fields` or `UdfFields` (whichever id key the collection uses):
/// Autotask's `FieldID`/`UdfFieldID`, `IsSubscribedField`, `IsDisplayAlwaysField`, and the
/// `id` and `WebhookID` a child read back carries; callout also reads a field by name
/// (`FieldName`/`UdfFieldName`), as [`render_rest`] writes names that are not numbers.
const FIELD_FIELDS: &[&str] = &[
    "id",
    "WebhookID",
    "FieldID",
    "FieldName",
    "UdfFieldID",
    "UdfFieldName",
    "IsSubscribedField",
    "IsDisplayAlwaysField",
];

/// The fields of one child of `ExcludedResources`: `ResourceID`, and the `id` and `WebhookID`
/// a child read back carries.
const EXCLUDED_FIELDS: &[&str] = &["id", "WebhookID", "ResourceID"];

/// The entities Autotask supports webhooks for: canonical name and legacy `EntityType`.
const ENTITIES: &[(&str, &str)] = &[
    ("account", "Account"),
    ("contact", "Contact"),
    ("installedproduct", "InstalledProduct"),
    ("ticket", "Ticket"),
    ("ticketnote", "TicketNote"),
];

/// Where UDF fields (`UdfFields`) live in the host's data: `UserDefinedFields.<id or name>`.
pub const UDF_PREFIX: &str = "UserDefinedFields.";

/// How the actor's key is spelled in the body. Autotask sends `PersonID`; some receivers read
/// `PersonId`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PersonIdCasing {
    /// `PersonID`, what Autotask sends.
    #[default]
    PersonID,
    /// `PersonId`.
    PersonId,
}

impl PersonIdCasing {
    /// The key as written in the body.
    pub fn key(self) -> &'static str {
        match self {
            PersonIdCasing::PersonID => "PersonID",
            PersonIdCasing::PersonId => "PersonId",
        }
    }
}

/// The legacy webhook entity name (`Account`, `Contact`, `InstalledProduct`, `Ticket`,
/// `TicketNote`) for any spelling (`Company`, `ConfigurationItem`, `ticket_note`...), or `None`
/// when Autotask has no webhooks for it.
pub fn webhook_entity(entity: &str) -> Option<&'static str> {
    let canonical = canonical_entity(entity);
    ENTITIES
        .iter()
        .find(|(c, _)| *c == canonical)
        .map(|(_, legacy)| *legacy)
}

/// The body's `EntityType` for a host entity: the legacy name of a webhook entity (`Account`
/// for `Company`, `InstalledProduct` for `ConfigurationItem`), otherwise the host's spelling
/// with its first letter uppercase.
pub fn entity_type(entity: &str) -> String {
    webhook_entity(entity).map_or_else(|| upper_first(entity.trim()), str::to_string)
}

fn upper_first(text: &str) -> String {
    let mut chars = text.chars();
    chars.next().map_or_else(String::new, |first| {
        first.to_uppercase().chain(chars).collect::<String>()
    })
}

/// A string as Autotask's .NET serializer writes it, quotes included: `&<>'"`+`` ` `` and every
/// non-ASCII UTF-16 unit as `\uXXXX` in uppercase hex, control characters escaped.
///
/// ```
/// use callout_core::vendor::autotask::json_string;
/// assert_eq!(json_string("Café & co"), r#""Caf\u00E9 \u0026 co""#);
/// assert_eq!(json_string("🎉"), r#""\uD83C\uDF89""#);
/// ```
pub fn json_string(text: &str) -> String {
    String::from_utf8_lossy(&J::str(text).to_bytes(Escape::DotNet)).into_owned()
}

fn action_name(action: &Action) -> String {
    match action {
        Action::Created => "Create".into(),
        Action::Updated => "Update".into(),
        Action::Deleted => "Delete".into(),
        Action::Custom(verb) => upper_first(verb),
    }
}

/// The `Fields` object, as Autotask's field rules give it: the subscribed fields
/// (`IsSubscribedField`, `on_field_change`) that changed (on create, those the record has),
/// then the display-always fields (`IsDisplayAlwaysField`, `always_fields`), which "the API
/// adds to the payload when another field triggers a callout" (on delete, only they: nothing
/// changed, and they are what cross-references the record). Nothing else: a field that
/// changed but is not subscribed is not sent. Keys are in subscription order; a subscribed
/// field the record no longer has is `null`, a missing display-always field is left out.
fn callout_fields(sub: &CompiledSubscription, event: &Event) -> J {
    let mut out: Vec<(String, J)> = Vec::new();
    let data = &event.data;
    let push = |out: &mut Vec<(String, J)>, path: &str, value: Option<&Value>| {
        if !out.iter().any(|(k, _)| k == path) {
            out.push((path.to_string(), value.cloned().map_or(J::Null, J::Value)));
        }
    };
    let options = sub.entity_options(&event.entity);
    if event.action != Action::Deleted {
        let changed = match event.action {
            Action::Created => None,
            _ => event.changed_paths(),
        };
        for field in options.map(|o| o.on_field_change.as_slice()).unwrap_or(&[]) {
            let value = lookup(data, field);
            let fired = match &changed {
                Some(changed) => changed.iter().any(|c| touches(field, c)),
                None => value.is_some(),
            };
            if fired {
                push(&mut out, field, value);
            }
        }
    }
    for field in options.map(|o| o.always_fields.as_slice()).unwrap_or(&[]) {
        if let Some(value) = lookup(data, field) {
            push(&mut out, field, Some(value));
        }
    }
    J::Obj(out)
}

/// The callout body for one event, byte for byte as Autotask sends it:
/// `{"Action","Guid","EntityType","Id","Fields","EventTime","SequenceNumber","PersonID"}`.
///
/// `Id` and `PersonID` are integers when the host's ids are plain decimal numbers, strings
/// otherwise; `PersonID` is `null` when the event has no actor (the key is always present, so
/// receivers that bind to a class see a stable shape). `EventTime` is the event's
/// `occurred_at` to the second (the engine stamps it at publish). `sequence_number` counts up
/// per webhook; the engine keeps the counter.
pub fn callout_body(
    sub: &CompiledSubscription,
    event: &Event,
    sequence_number: u64,
    casing: PersonIdCasing,
) -> Vec<u8> {
    J::Obj(vec![
        ("Action".into(), J::Str(action_name(&event.action))),
        ("Guid".into(), J::str(&sub.subscription().guid)),
        ("EntityType".into(), J::Str(entity_type(&event.entity))),
        ("Id".into(), J::id(&event.id)),
        ("Fields".into(), callout_fields(sub, event)),
        (
            "EventTime".into(),
            J::Str(rfc3339(event.occurred_at.unwrap_or(0), 0)),
        ),
        ("SequenceNumber".into(), J::int(sequence_number)),
        (
            casing.key().into(),
            event.actor.as_deref().map_or(J::Null, J::id),
        ),
    ])
    .to_bytes(Escape::DotNet)
}

/// The body sent to the DeactivationUrl when the webhook is deleted, deactivated or switched
/// off for failing. Autotask does not publish it, so it is the callout shape with
/// `"Action":"Deactivated"`, empty `Fields`, `EntityType` the webhook's entity and `Id` the
/// webhook's own id; `person` is who deactivated it, if anyone.
pub fn deactivation_body(
    sub: &Subscription,
    sequence_number: u64,
    at_unix_ms: u64,
    person: Option<&str>,
    casing: PersonIdCasing,
) -> Vec<u8> {
    let entity = subscribed(sub).0.unwrap_or("Webhook");
    J::Obj(vec![
        ("Action".into(), J::str("Deactivated")),
        ("Guid".into(), J::str(&sub.guid)),
        ("EntityType".into(), J::str(entity)),
        ("Id".into(), J::int(sub.id)),
        ("Fields".into(), J::Obj(Vec::new())),
        ("EventTime".into(), J::Str(rfc3339(at_unix_ms, 0))),
        ("SequenceNumber".into(), J::int(sequence_number)),
        (casing.key().into(), person.map_or(J::Null, J::id)),
    ])
    .to_bytes(Escape::DotNet)
}

/// The webhook entity of an Autotask subscription and its callout types (create, update,
/// delete), read from its event patterns.
fn subscribed(sub: &Subscription) -> (Option<&'static str>, [bool; 3]) {
    let mut entity = None;
    let mut types = [false; 3];
    for pattern in sub.patterns().unwrap_or_default() {
        if let Part::Name(name) = &pattern.entity {
            entity = entity.or_else(|| webhook_entity(name));
        }
        match &pattern.action {
            Part::Any => types = [true; 3],
            Part::Name(a) => {
                let i = ["created", "updated", "deleted"]
                    .iter()
                    .position(|x| *x == canonical_action(a));
                if let Some(i) = i {
                    types[i] = true;
                }
            }
        }
    }
    (entity, types)
}

/// Whether the webhook is Ready: valid and with at least one subscribed field
/// (`IsSubscribedField` of `Fields` or `UdfFields`). Autotask sends nothing for a webhook that
/// is not, and neither does the matcher.
pub fn is_ready(sub: &Subscription) -> bool {
    sub.validate().is_ok() && has_subscribed_field(sub)
}

/// Whether the webhook has a subscribed field (system or UDF), whatever else it holds.
pub fn has_subscribed_field(sub: &Subscription) -> bool {
    sub.entities
        .values()
        .any(|options| !options.on_field_change.is_empty())
}

/// The existing Autotask webhook that `candidate` duplicates, if any: same entity, same
/// WebhookUrl, and at least one callout type in common (Autotask refuses those). A stored
/// webhook is not its own duplicate (same non-zero id).
pub fn find_duplicate<'a>(
    candidate: &Subscription,
    existing: &'a [Subscription],
) -> Option<&'a Subscription> {
    let (entity, types) = subscribed(candidate);
    let entity = entity?;
    existing.iter().find(|other| {
        let (other_entity, other_types) = subscribed(other);
        other.profile == AT
            && !(candidate.id != 0 && other.id == candidate.id)
            && other.target_url == candidate.target_url
            && other_entity == Some(entity)
            && types.iter().zip(other_types).any(|(a, b)| *a && b)
    })
}

/// Names a validation error's field the way Autotask's API does.
fn vendor_field(error: &InvalidSubscription) -> String {
    use InvalidSubscription as E;
    let field = match error {
        E::EmptyName | E::NameTooLong { .. } => "Name",
        E::BadUrl { field, .. } | E::TooLong { field, .. } | E::TooMany { field, .. } => {
            match *field {
                "target_url" => "WebhookUrl",
                "deactivation_url" => "DeactivationUrl",
                "notification_email" => "NotificationEmailAddress",
                "excluded_actors" => "ExcludedResources",
                "events" => "IsSubscribedTo*Events",
                "owner" => "OwnerResourceID",
                _ => "Fields",
            }
        }
        E::BadSecret { .. } => "SecretKey",
        E::NoEvents | E::BadEventPattern { .. } => "IsSubscribedTo*Events",
        _ => "Fields",
    };
    field.to_string()
}

/// Parses the body of a REST `POST .../<Entity>Webhooks` (see `seeds/autotask-webhooks-rest.txt`)
/// into a subscription. `entity` is the endpoint's entity: `Company`/`Account`, `Contact`,
/// `ConfigurationItem`/`InstalledProduct`, `Ticket` or `TicketNote`.
///
/// Keys are case-insensitive; a key Autotask does not document, here or in a child, is an
/// error naming it. Child collections: `Fields` (`FieldID` or `FieldName`;
/// `IsSubscribedField` → `on_field_change`, `IsDisplayAlwaysField` → `always_fields`),
/// `UdfFields` (`UdfFieldID` or `UdfFieldName`, under [`UDF_PREFIX`] in the host's data) and
/// `ExcludedResources` (`ResourceID` → `excluded_actors`). `IsActive` defaults to true;
/// `IsReady` is read-only and ignored (see [`is_ready`]).
pub fn parse_rest(json: &str, entity: &str) -> Result<Subscription, VendorError> {
    let value: Value = serde_json::from_str(json)
        .map_err(|e| VendorError::new(AT, "", format!("not valid JSON: {e}")))?;
    parse_rest_value(&value, entity)
}

/// [`parse_rest`] for an already parsed JSON document.
pub fn parse_rest_value(value: &Value, entity: &str) -> Result<Subscription, VendorError> {
    parse_rest_requiring(value, entity, &[])
}

/// [`parse_rest_value`], refusing a document without one of the `required` fields.
fn parse_rest_requiring(
    value: &Value,
    entity: &str,
    required: &[&str],
) -> Result<Subscription, VendorError> {
    let f = Fields::new(AT, value, "")?;
    f.only(REST_FIELDS)?;
    require(&f, required)?;
    parse_fields(&f, entity)
}

/// The fields Autotask requires of a request that creates a webhook, or replaces one (`PUT`),
/// in the REST API's spelling: those its `<Entity>Webhooks` entity marks required and that a
/// client writes (`id` is read-only), as its guide to creating a webhook repeats for both URLs
/// ("Both fields are required to create the webhook"). `SendThresholdExceededNotification` is
/// marked too, but Autotask's own SOAP sample creates a webhook without it, so it is not
/// required here and defaults to false. At least one `IsSubscribedTo*Events` must be true;
/// [`parse_rest`] checks that for every document.
pub const REQUIRED_REST_FIELDS: &[&str] = &[
    "Name",
    "WebhookUrl",
    "DeactivationUrl",
    "IsActive",
    "SecretKey",
];

/// [`REQUIRED_REST_FIELDS`] in the SOAP API's spelling (`Active` for `IsActive`).
pub const REQUIRED_SOAP_FIELDS: &[&str] = &[
    "Name",
    "WebhookUrl",
    "DeactivationUrl",
    "Active",
    "SecretKey",
];

/// Refuses `f` without a value (not null, not blank) for one of `required`.
fn require(f: &Fields<'_>, required: &[&str]) -> Result<(), VendorError> {
    let missing = required.iter().find(|key| match f.get(key) {
        None => true,
        Some(Value::String(text)) => text.trim().is_empty(),
        Some(_) => false,
    });
    match missing {
        Some(key) => Err(f.error(key, "is required: Autotask creates no webhook without it")),
        None => Ok(()),
    }
}

/// Parses the body of a request that creates an Autotask webhook (or replaces one), in
/// either of Autotask's APIs, as a client sends it: SOAP XML when it starts with `<` (see
/// [`parse_soap`]; the entity is its `xsi:type`'s, and `entity`, if given, must be the same),
/// REST JSON otherwise (see [`parse_rest`]; `entity` is the endpoint's, and required). Beyond
/// what those check, a field Autotask requires ([`REQUIRED_REST_FIELDS`],
/// [`REQUIRED_SOAP_FIELDS`]) must be there and not blank.
///
/// ```
/// use callout_core::vendor::autotask;
/// let soap = r#"<Entity xsi:type="AccountWebhook"><Active>True</Active>
///     <DeactivationUrl>https://r.example/off</DeactivationUrl>
///     <IsSubscribedToUpdateEvents>True</IsSubscribedToUpdateEvents><Name>crm.Accounts</Name>
///     <SecretKey>20201</SecretKey><WebhookUrl>https://r.example/at</WebhookUrl></Entity>"#;
/// assert_eq!(autotask::parse_request(soap, None).unwrap().events, ["account.updated"]);
/// let rest = r#"{"IsActive": true, "IsSubscribedToUpdateEvents": true, "Name": "crm.Accounts",
///     "WebhookUrl": "https://r.example/at", "SecretKey": "20201"}"#;
/// let refused = autotask::parse_request(rest, Some("Company")).unwrap_err();
/// assert_eq!(refused.field, "DeactivationUrl");
/// ```
pub fn parse_request(document: &str, entity: Option<&str>) -> Result<Subscription, VendorError> {
    let is_xml = document
        .trim_start_matches('\u{feff}')
        .trim_start()
        .starts_with('<');
    if !is_xml {
        let entity = entity.ok_or_else(|| {
            VendorError::new(
                AT,
                "Entity",
                "a REST document names no entity: give the endpoint's (Company, Contact, ConfigurationItem, Ticket or TicketNote)",
            )
        })?;
        let value: Value = serde_json::from_str(document)
            .map_err(|e| VendorError::new(AT, "", format!("not valid JSON: {e}")))?;
        return parse_rest_requiring(&value, entity, REQUIRED_REST_FIELDS);
    }
    let sub = parse_soap_requiring(document, REQUIRED_SOAP_FIELDS)?;
    if let Some(entity) = entity {
        let (soap_entity, _) = subscribed(&sub);
        if webhook_entity(entity) != soap_entity {
            return Err(VendorError::new(
                AT,
                "xsi:type",
                format!(
                    "is a webhook of {}, not of {entity:?}",
                    soap_entity.unwrap_or("another entity")
                ),
            ));
        }
    }
    Ok(sub)
}

/// A webhook from its fields, REST's or SOAP's, once their keys are known to be documented.
fn parse_fields(f: &Fields<'_>, entity: &str) -> Result<Subscription, VendorError> {
    let legacy = webhook_entity(entity).ok_or_else(|| {
        VendorError::new(
            AT,
            "Entity",
            format!(
                "{entity:?} has no webhooks; use Company, Contact, ConfigurationItem, Ticket or TicketNote"
            ),
        )
    })?;
    let mut sub = Subscription {
        profile: AT,
        id: f.u64("id")?.unwrap_or(0),
        guid: f.string("WebhookGUID")?.unwrap_or_default(),
        name: f.required_string("Name")?,
        target_url: f.required_string("WebhookUrl")?,
        deactivation_url: f.string("DeactivationUrl")?.filter(|s| !s.is_empty()),
        notification_email: f
            .string("NotificationEmailAddress")?
            .filter(|s| !s.is_empty()),
        owner: f.id("OwnerResourceID")?,
        send_threshold_exceeded_notification: f
            .bool("SendThresholdExceededNotification")?
            .unwrap_or(false),
        ..Subscription::default()
    };
    let active = match f.bool("IsActive")? {
        Some(active) => active,
        None => f.bool("Active")?.unwrap_or(true),
    };
    sub.state = if active {
        State::Active
    } else {
        State::Stopped
    };
    let [create, update, delete] = [
        "IsSubscribedToCreateEvents",
        "IsSubscribedToUpdateEvents",
        "IsSubscribedToDeleteEvents",
    ]
    .map(|key| f.bool(key));
    sub.events = autotask_event_patterns(
        legacy,
        create?.unwrap_or(false),
        update?.unwrap_or(false),
        delete?.unwrap_or(false),
    );
    if sub.events.is_empty() {
        return Err(f.error(
            "IsSubscribedTo*Events",
            "subscribe to at least one of Create, Update or Delete events",
        ));
    }
    if let Some(key) = f.string("SecretKey")?.filter(|s| !s.is_empty()) {
        sub.secrets.push(Secret::new(key));
    }
    let mut options = EntityOptions::default();
    for (collection, id_key, name_key, prefix) in [
        ("Fields", "FieldID", "FieldName", ""),
        ("UdfFields", "UdfFieldID", "UdfFieldName", UDF_PREFIX),
    ] {
        let other_keys: &[&str] = match collection {
            "Fields" => &["UdfFieldID", "UdfFieldName"],
            _ => &["FieldID", "FieldName"],
        };
        let known: Vec<&str> = FIELD_FIELDS
            .iter()
            .copied()
            .filter(|k| !other_keys.contains(k))
            .collect();
        for (i, item) in f.array(collection)?.iter().enumerate() {
            let item = Fields::new(AT, item, &format!("{collection}[{i}]"))?;
            item.only(&known)?;
            let name = match item.id(id_key)? {
                Some(id) => id,
                None => item
                    .string(name_key)?
                    .ok_or_else(|| item.error(id_key, "is required"))?,
            };
            let path = format!("{prefix}{name}");
            if item.bool("IsSubscribedField")?.unwrap_or(false)
                && !options.on_field_change.contains(&path)
            {
                options.on_field_change.push(path.clone());
            }
            if item.bool("IsDisplayAlwaysField")?.unwrap_or(false)
                && !options.always_fields.contains(&path)
            {
                options.always_fields.push(path);
            }
        }
    }
    if options != EntityOptions::default() {
        sub.entities.insert(legacy.to_string(), options);
    }
    for (i, item) in f.array("ExcludedResources")?.iter().enumerate() {
        let item = Fields::new(AT, item, &format!("ExcludedResources[{i}]"))?;
        item.only(EXCLUDED_FIELDS)?;
        let id = item
            .id("ResourceID")?
            .ok_or_else(|| item.error("ResourceID", "is required"))?;
        sub.excluded_actors.push(id);
    }
    sub.validate()
        .map_err(|e| VendorError::invalid(AT, vendor_field(&e), e))?;
    Ok(sub)
}

/// Merges the subscribed and display-always lists into one `Fields` list that keeps the order
/// of both, so parsing the rendering gives the same two lists back.
fn merged_fields(options: &EntityOptions) -> Vec<(String, bool, bool)> {
    let (on, always) = (&options.on_field_change, &options.always_fields);
    let mut out: Vec<(String, bool, bool)> = Vec::new();
    let (mut i, mut j) = (0, 0);
    while i < on.len() || j < always.len() {
        if out.iter().any(|(f, _, _)| Some(f) == on.get(i)) {
            i += 1;
        } else if out.iter().any(|(f, _, _)| Some(f) == always.get(j)) {
            j += 1;
        } else if i < on.len() && j < always.len() && on[i] == always[j] {
            out.push((on[i].clone(), true, true));
            i += 1;
            j += 1;
        } else if i < on.len() && !always[j..].contains(&on[i]) {
            out.push((on[i].clone(), true, false));
            i += 1;
        } else if j < always.len() && !on[i..].contains(&always[j]) {
            out.push((always[j].clone(), false, true));
            j += 1;
        } else if i < on.len() {
            // The two lists disagree on order: keep the subscribed order.
            out.push((on[i].clone(), true, always.contains(&on[i])));
            i += 1;
        } else {
            j += 1;
        }
    }
    out
}

fn id_value(id: &str) -> Value {
    match id.parse::<u64>() {
        Ok(n) if n.to_string() == id => json!(n),
        _ => json!(id),
    }
}

/// A subscription in Autotask's REST shape (what `GET .../<Entity>Webhooks` returns), with its
/// child collections inline. `IsReady` is computed; `SecretKey` is included so the rendering
/// parses back to the same subscription (hide it before showing the document to people).
pub fn render_rest(sub: &Subscription) -> Value {
    let (entity, [create, update, delete]) = subscribed(sub);
    let options = entity
        .and_then(|e| {
            sub.entities
                .iter()
                .find(|(k, _)| canonical_entity(k) == canonical_entity(e))
        })
        .map(|(_, o)| Cow::Borrowed(o))
        .unwrap_or_default();
    let mut fields = Vec::new();
    let mut udf_fields = Vec::new();
    for (path, subscribed, always) in merged_fields(&options) {
        let (list, id_key, name_key, name) = match path.strip_prefix(UDF_PREFIX) {
            Some(name) => (&mut udf_fields, "UdfFieldID", "UdfFieldName", name),
            None => (&mut fields, "FieldID", "FieldName", path.as_str()),
        };
        let mut item = Map::new();
        match id_value(name) {
            Value::Number(n) => item.insert(id_key.into(), Value::Number(n)),
            other => item.insert(name_key.into(), other),
        };
        item.insert("IsSubscribedField".into(), json!(subscribed));
        item.insert("IsDisplayAlwaysField".into(), json!(always));
        list.push(Value::Object(item));
    }
    let excluded: Vec<Value> = sub
        .excluded_actors
        .iter()
        .map(|id| json!({"ResourceID": id_value(id)}))
        .collect();
    json!({
        "id": sub.id,
        "WebhookGUID": sub.guid,
        "Name": sub.name,
        "WebhookUrl": sub.target_url,
        "DeactivationUrl": sub.deactivation_url,
        "IsActive": sub.state == State::Active,
        "IsReady": is_ready(sub),
        "IsSubscribedToCreateEvents": create,
        "IsSubscribedToUpdateEvents": update,
        "IsSubscribedToDeleteEvents": delete,
        "SecretKey": sub.secrets.first().map(Secret::expose),
        "SendThresholdExceededNotification": sub.send_threshold_exceeded_notification,
        "NotificationEmailAddress": sub.notification_email,
        "OwnerResourceID": sub.owner.as_deref().map(id_value),
        "Fields": fields,
        "UdfFields": udf_fields,
        "ExcludedResources": excluded,
    })
}

/// Parses a SOAP `create` request (or just its `<Entity xsi:type="AccountWebhook">` element,
/// see `seeds/autotask-webhook-soap.txt`) into a subscription. The entity comes from the
/// `xsi:type`: `AccountWebhook`, `ContactWebhook`, `InstalledProductWebhook`, `TicketWebhook`
/// or `TicketNoteWebhook`. Child elements carry the REST fields' values as text (`Active` for
/// `IsActive`, booleans as `True`/`False`); a child element the SOAP entity does not document
/// is an error naming it. The rest of the document is not looked at.
pub fn parse_soap(xml: &str) -> Result<Subscription, VendorError> {
    parse_soap_requiring(xml, &[])
}

/// [`parse_soap`], refusing a document without one of the `required` fields.
fn parse_soap_requiring(xml: &str, required: &[&str]) -> Result<Subscription, VendorError> {
    let mut reader = Reader::from_str(xml);
    let mut xsi_type: Option<String> = None;
    let mut found = false;
    // Depth inside <Entity>: 1 in it, 2 in a field element, more in anything nested deeper.
    let mut depth = 0usize;
    let mut field: Option<String> = None;
    let mut text = String::new();
    let mut values = Map::new();
    let xml_error = |field: &Option<String>, reason: String| {
        let name = field.as_deref().unwrap_or("Entity");
        VendorError::new(AT, name, format!("bad XML: {reason}"))
    };
    loop {
        let event = reader
            .read_event()
            .map_err(|e| xml_error(&field, e.to_string()))?;
        match event {
            Xml::Start(ref start) | Xml::Empty(ref start) if depth == 0 => {
                if start.local_name().as_ref() != b"Entity" {
                    continue;
                }
                found = true;
                for attr in start.attributes() {
                    let attr = attr.map_err(|e| xml_error(&None, e.to_string()))?;
                    if attr.key.local_name().as_ref() == b"type" {
                        let value = attr
                            .normalized_value(quick_xml::XmlVersion::default())
                            .map_err(|e| xml_error(&None, e.to_string()))?;
                        xsi_type = Some(value.into_owned());
                    }
                }
                if matches!(event, Xml::Empty(_)) {
                    break;
                }
                depth = 1;
            }
            Xml::Start(start) => {
                if depth == 1 {
                    let name = String::from_utf8_lossy(start.local_name().as_ref()).into_owned();
                    field = Some(name);
                    text.clear();
                }
                depth += 1;
            }
            Xml::Empty(start) if depth == 1 => {
                let name = String::from_utf8_lossy(start.local_name().as_ref()).into_owned();
                values.insert(name, Value::String(String::new()));
            }
            Xml::Text(t) if depth == 2 => {
                let content = t
                    .xml10_content()
                    .map_err(|e| xml_error(&field, e.to_string()))?;
                text.push_str(&content);
            }
            Xml::CData(t) if depth == 2 => {
                let content = t.decode().map_err(|e| xml_error(&field, e.to_string()))?;
                text.push_str(&content);
            }
            Xml::GeneralRef(r) if depth == 2 => {
                let resolved = match r.resolve_char_ref() {
                    Ok(Some(c)) => Some(c),
                    Ok(None) => match r.decode().as_deref() {
                        Ok("amp") => Some('&'),
                        Ok("lt") => Some('<'),
                        Ok("gt") => Some('>'),
                        Ok("quot") => Some('"'),
                        Ok("apos") => Some('\''),
                        _ => None,
                    },
                    Err(_) => None,
                };
                let c = resolved
                    .ok_or_else(|| xml_error(&field, "an unknown entity reference".to_string()))?;
                text.push(c);
            }
            Xml::End(_) if depth > 0 => {
                if depth == 2 {
                    if let Some(name) = field.take() {
                        values.insert(name, Value::String(text.trim().to_string()));
                    }
                }
                depth -= 1;
                if depth == 0 {
                    break;
                }
            }
            Xml::Eof => {
                if depth > 0 {
                    return Err(xml_error(
                        &field,
                        "the document ends inside <Entity>".into(),
                    ));
                }
                break;
            }
            _ => {}
        }
    }
    if !found {
        return Err(VendorError::new(AT, "Entity", "no <Entity> element"));
    }
    let xsi_type =
        xsi_type.ok_or_else(|| VendorError::new(AT, "xsi:type", "is required on <Entity>"))?;
    let entity = xsi_type
        .rsplit(':')
        .next()
        .and_then(|t| t.strip_suffix("Webhook"))
        .filter(|e| webhook_entity(e).is_some())
        .ok_or_else(|| {
            VendorError::new(
                AT,
                "xsi:type",
                format!("{xsi_type:?} is not a webhook type such as AccountWebhook"),
            )
        })?;
    let values = Value::Object(values);
    let f = Fields::new(AT, &values, "")?;
    f.only(SOAP_FIELDS)?;
    require(&f, required)?;
    parse_fields(&f, entity)
}

fn xml_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

/// A subscription as the SOAP `<Entity xsi:type="...Webhook">` element, or `None` when it is
/// not for exactly one of Autotask's webhook entities. SOAP keeps webhook fields in separate
/// entities, so `Fields`, `UdfFields` and `ExcludedResources` are not part of it.
pub fn render_soap(sub: &Subscription) -> Option<String> {
    let (entity, [create, update, delete]) = subscribed(sub);
    let entity = entity?;
    let flag = |b: bool| if b { "True" } else { "False" };
    let mut out = format!(
        r#"<Entity xsi:type="{entity}Webhook" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">"#
    );
    let mut element = |name: &str, value: &str| {
        out.push_str(&format!("<{name}>{}</{name}>", xml_escape(value)));
    };
    if sub.id != 0 {
        element("id", &sub.id.to_string());
    }
    element("Active", flag(sub.state == State::Active));
    if let Some(url) = &sub.deactivation_url {
        element("DeactivationUrl", url);
    }
    element("IsSubscribedToCreateEvents", flag(create));
    element("IsSubscribedToUpdateEvents", flag(update));
    element("IsSubscribedToDeleteEvents", flag(delete));
    element("Name", &sub.name);
    if let Some(email) = &sub.notification_email {
        element("NotificationEmailAddress", email);
    }
    if let Some(owner) = &sub.owner {
        element("OwnerResourceID", owner);
    }
    if let Some(secret) = sub.secrets.first() {
        element("SecretKey", secret.expose());
    }
    element(
        "SendThresholdExceededNotification",
        flag(sub.send_threshold_exceeded_notification),
    );
    if !sub.guid.is_empty() {
        element("WebhookGUID", &sub.guid);
    }
    element("WebhookUrl", &sub.target_url);
    out.push_str("</Entity>");
    Some(out)
}
