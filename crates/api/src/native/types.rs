//! The documents of callout's REST API. Each is a Rust type the API really reads or writes,
//! and the OpenAPI document is generated from these same types, so the two cannot drift.
//! Conversions to and from the engine's model name every field (no `..`), so a field added to
//! the model does not compile here until the API decides what to do with it.

use std::collections::BTreeMap;

use callout::core::{EntityOptions, FieldFilter, Kind, Profile, Secret, State};
use callout::store::{Attempt, Counts, Delivery, DeliveryState};
use callout::{Event, Receipt, Subscription};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;

use crate::problem::Problem;

/// A webhook subscription. Secrets are write-only: `secrets` is read from requests and never
/// returned; responses say how many there are in `secret_count`. Fields the store assigns
/// (`id`, `guid`, `tenant`, times and authors) are returned, and ignored when sent.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(default, deny_unknown_fields)]
#[schema(as = Subscription)]
pub(crate) struct SubscriptionDoc {
    /// Sequential id, assigned by the store.
    #[schema(read_only)]
    pub(crate) id: u64,
    /// Globally unique id (Autotask `WebhookGUID`), assigned by the store.
    #[schema(read_only)]
    pub(crate) guid: String,
    /// A name for people, 1..=50 characters; defaults to the target URL.
    #[schema(max_length = 50)]
    pub(crate) name: String,
    /// Event patterns: `contact.updated`, `contact.*`, `*.deleted`, `*`, in any vendor
    /// spelling (`Contact.Update`, `sale.changed`).
    pub(crate) events: Vec<String>,
    /// Where deliveries are POSTed (absolute http or https URL, at most 500 characters).
    #[schema(max_length = 500)]
    pub(crate) target_url: String,
    /// An HTTP webhook, or a handler the host registered.
    pub(crate) kind: KindDoc,
    /// Signing secrets (`whsec_...` for the standard profile); write-only.
    #[schema(write_only, value_type = Vec<String>)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) secrets: Option<Vec<String>>,
    /// How many secrets sign this subscription's deliveries.
    #[schema(read_only)]
    pub(crate) secret_count: usize,
    /// A secret callout made, returned once: by the create of a standard webhook sent without
    /// one, and by a rotation that was given none. Keep it; it is never shown again.
    #[schema(read_only)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) new_secret: Option<String>,
    /// Wire format of the deliveries.
    pub(crate) profile: ProfileDoc,
    /// Whether events are delivered.
    pub(crate) state: StateDoc,
    /// Extra HTTP headers, as `[name, value]` pairs in order.
    #[schema(value_type = Vec<Vec<String>>)]
    pub(crate) headers: Vec<(String, String)>,
    /// Values merged into every body.
    #[schema(value_type = Object)]
    pub(crate) properties: Map<String, Value>,
    /// Per-entity options, keyed by entity name.
    pub(crate) entities: BTreeMap<String, EntityOptionsDoc>,
    /// Options for the related record of link events.
    pub(crate) related: EntityOptionsDoc,
    /// An event whose skip key is listed does not fire.
    pub(crate) skip_keys: Vec<String>,
    /// Changes made by these actors do not fire.
    pub(crate) excluded_actors: Vec<String>,
    /// The tenant the subscription belongs to: the caller's.
    #[schema(read_only)]
    pub(crate) tenant: Option<String>,
    /// Events per request when one publish carries many, 1..=100.
    pub(crate) chunk_size: Option<u32>,
    /// Chunk N of a publish is due N x this many seconds later.
    pub(crate) chunk_delay: i64,
    /// Skip TLS certificate checks for this target only.
    pub(crate) insecure_tls: bool,
    /// Deliver one at a time, in publish order.
    pub(crate) ordered: bool,
    /// Changes to one record (entity and id) go one at a time, in publish order, while other
    /// records' go on in parallel; each request carries one event.
    pub(crate) ordered_by_record: bool,
    /// Most requests per second.
    pub(crate) rate_limit: Option<u32>,
    /// Delays in seconds before each retry; `null` for the engine's schedule.
    pub(crate) retry_schedule: Option<Vec<u64>>,
    /// Connect timeout in milliseconds.
    pub(crate) connect_timeout_ms: Option<u64>,
    /// Response timeout in milliseconds.
    pub(crate) timeout_ms: Option<u64>,
    /// Where the host's notifier sends alerts.
    pub(crate) notification_email: Option<String>,
    /// Where the host's notifier sends error alerts.
    pub(crate) errors_email: Option<String>,
    /// Called when the subscription is deleted, deactivated or switched off.
    pub(crate) deactivation_url: Option<String>,
    /// Warn when the hourly callout threshold is passed.
    pub(crate) send_threshold_exceeded_notification: bool,
    /// The owning user or resource.
    pub(crate) owner: Option<String>,
    /// Created, Unix milliseconds.
    #[schema(read_only)]
    pub(crate) created_at: Option<u64>,
    /// Who created it.
    #[schema(read_only)]
    pub(crate) created_by: Option<String>,
    /// Last updated, Unix milliseconds.
    #[schema(read_only)]
    pub(crate) updated_at: Option<u64>,
    /// Who last updated it.
    #[schema(read_only)]
    pub(crate) updated_by: Option<String>,
}

/// How a delivery is carried out.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(as = Kind)]
pub(crate) enum KindDoc {
    /// An HTTP POST to `target_url`.
    #[default]
    Webhook,
    /// The host's handler of this name runs in-process.
    Handler(String),
}

/// The wire format a receiver expects.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(as = Profile)]
pub(crate) enum ProfileDoc {
    /// Standard Webhooks.
    #[default]
    Standard,
    /// Autotask's callouts.
    Autotask,
    /// SuperOffice's webhooks.
    Superoffice,
    /// Pipeliner's webhooks.
    Pipeliner,
}

/// Whether a subscription receives events.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(as = State)]
pub(crate) enum StateDoc {
    /// Events are delivered.
    #[default]
    Active,
    /// Switched off by its owner; deliveries are held.
    Stopped,
    /// Switched off by callout after continued failures; deliveries are held.
    TooManyErrors,
}

/// Options for one entity's events.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default, deny_unknown_fields)]
#[schema(as = EntityOptions)]
pub(crate) struct EntityOptionsDoc {
    /// Field conditions, combined with AND.
    pub(crate) filters: Vec<FieldFilterDoc>,
    /// Updates fire only when one of these dot paths changed.
    pub(crate) on_field_change: Vec<String>,
    /// The fields the body carries (empty: all).
    pub(crate) load_only: Vec<String>,
    /// Fields carried whatever `load_only` says.
    pub(crate) always_fields: Vec<String>,
    /// Related records resolved at publish time.
    pub(crate) expand: Vec<String>,
}

/// One field condition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = FieldFilter)]
pub(crate) struct FieldFilterDoc {
    /// Dot path into the record's data.
    pub(crate) path: String,
    /// Operator: `eq ieq not-eq not-ieq contains starts ends icontains istarts iends null
    /// not-null empty not-empty gt gte lt lte between regex like`.
    #[serde(default = "eq")]
    pub(crate) op: String,
    /// The value to compare with; a list means any of.
    #[serde(default)]
    pub(crate) value: Value,
}

fn eq() -> String {
    "eq".into()
}

impl From<&Subscription> for SubscriptionDoc {
    fn from(sub: &Subscription) -> SubscriptionDoc {
        let Subscription {
            id,
            guid,
            name,
            events,
            target_url,
            kind,
            secrets,
            profile,
            state,
            headers,
            properties,
            entities,
            related,
            skip_keys,
            excluded_actors,
            tenant,
            chunk_size,
            chunk_delay,
            insecure_tls,
            ordered,
            ordered_by_record,
            rate_limit,
            retry_schedule,
            connect_timeout_ms,
            timeout_ms,
            notification_email,
            errors_email,
            deactivation_url,
            send_threshold_exceeded_notification,
            owner,
            created_at,
            created_by,
            updated_at,
            updated_by,
        } = sub.clone();
        SubscriptionDoc {
            id,
            guid,
            name,
            events,
            target_url,
            kind: match kind {
                Kind::Webhook => KindDoc::Webhook,
                Kind::Handler(name) => KindDoc::Handler(name),
            },
            secrets: None,
            secret_count: secrets.len(),
            new_secret: None,
            profile: match profile {
                Profile::Standard => ProfileDoc::Standard,
                Profile::Autotask => ProfileDoc::Autotask,
                Profile::Superoffice => ProfileDoc::Superoffice,
                Profile::Pipeliner => ProfileDoc::Pipeliner,
            },
            state: state.into(),
            headers,
            properties,
            entities: entities
                .into_iter()
                .map(|(k, v)| (k, EntityOptionsDoc::from(v)))
                .collect(),
            related: related.into(),
            skip_keys,
            excluded_actors,
            tenant,
            chunk_size,
            chunk_delay,
            insecure_tls,
            ordered,
            ordered_by_record,
            rate_limit,
            retry_schedule,
            connect_timeout_ms,
            timeout_ms,
            notification_email,
            errors_email,
            deactivation_url,
            send_threshold_exceeded_notification,
            owner,
            created_at,
            created_by,
            updated_at,
            updated_by,
        }
    }
}

impl SubscriptionDoc {
    /// The engine's subscription this document describes, signed by `secrets`.
    pub(crate) fn into_subscription(self, secrets: Vec<Secret>) -> Subscription {
        let SubscriptionDoc {
            id,
            guid,
            name,
            events,
            target_url,
            kind,
            secrets: _,
            secret_count: _,
            new_secret: _,
            profile,
            state,
            headers,
            properties,
            entities,
            related,
            skip_keys,
            excluded_actors,
            tenant,
            chunk_size,
            chunk_delay,
            insecure_tls,
            ordered,
            ordered_by_record,
            rate_limit,
            retry_schedule,
            connect_timeout_ms,
            timeout_ms,
            notification_email,
            errors_email,
            deactivation_url,
            send_threshold_exceeded_notification,
            owner,
            created_at,
            created_by,
            updated_at,
            updated_by,
        } = self;
        // The name defaults to the URL, as callout's JSON does everywhere.
        let named = Subscription::new(target_url.clone());
        Subscription {
            id,
            guid,
            name: if name.is_empty() { named.name } else { name },
            events,
            target_url,
            kind: match kind {
                KindDoc::Webhook => Kind::Webhook,
                KindDoc::Handler(name) => Kind::Handler(name),
            },
            secrets,
            profile: match profile {
                ProfileDoc::Standard => Profile::Standard,
                ProfileDoc::Autotask => Profile::Autotask,
                ProfileDoc::Superoffice => Profile::Superoffice,
                ProfileDoc::Pipeliner => Profile::Pipeliner,
            },
            state: state.into(),
            headers,
            properties,
            entities: entities.into_iter().map(|(k, v)| (k, v.into())).collect(),
            related: related.into(),
            skip_keys,
            excluded_actors,
            tenant,
            chunk_size,
            chunk_delay,
            insecure_tls,
            ordered,
            ordered_by_record,
            rate_limit,
            retry_schedule,
            connect_timeout_ms,
            timeout_ms,
            notification_email,
            errors_email,
            deactivation_url,
            send_threshold_exceeded_notification,
            owner,
            created_at,
            created_by,
            updated_at,
            updated_by,
        }
    }
}

impl From<State> for StateDoc {
    fn from(state: State) -> StateDoc {
        match state {
            State::Active => StateDoc::Active,
            State::Stopped => StateDoc::Stopped,
            State::TooManyErrors => StateDoc::TooManyErrors,
        }
    }
}

impl From<StateDoc> for State {
    fn from(state: StateDoc) -> State {
        match state {
            StateDoc::Active => State::Active,
            StateDoc::Stopped => State::Stopped,
            StateDoc::TooManyErrors => State::TooManyErrors,
        }
    }
}

impl From<EntityOptions> for EntityOptionsDoc {
    fn from(options: EntityOptions) -> EntityOptionsDoc {
        let EntityOptions {
            filters,
            on_field_change,
            load_only,
            always_fields,
            expand,
        } = options;
        EntityOptionsDoc {
            filters: filters
                .into_iter()
                .map(|FieldFilter { path, op, value }| FieldFilterDoc { path, op, value })
                .collect(),
            on_field_change,
            load_only,
            always_fields,
            expand,
        }
    }
}

impl From<EntityOptionsDoc> for EntityOptions {
    fn from(options: EntityOptionsDoc) -> EntityOptions {
        let EntityOptionsDoc {
            filters,
            on_field_change,
            load_only,
            always_fields,
            expand,
        } = options;
        EntityOptions {
            filters: filters
                .into_iter()
                .map(|FieldFilterDoc { path, op, value }| FieldFilter::new(path, op, value))
                .collect(),
            on_field_change,
            load_only,
            always_fields,
            expand,
        }
    }
}

/// What a rotation rotates in.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct RotationDoc {
    /// The new secret; callout makes one of the profile's form when absent (and returns it
    /// once, as `new_secret`).
    #[schema(write_only)]
    pub(crate) secret: Option<String>,
    /// How long the current secrets keep signing beside the new one, in seconds (default a
    /// day).
    #[schema(maximum = 31_536_000)]
    pub(crate) grace_seconds: Option<u64>,
}

/// A page of subscriptions, in id order.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct SubscriptionPage {
    /// The subscriptions.
    pub(crate) data: Vec<SubscriptionDoc>,
    /// Pass as `after` for the next page; `null` on the last.
    pub(crate) next_after: Option<u64>,
}

/// A change to one of the host's records.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = Event)]
pub(crate) struct EventDoc {
    /// The record's type (`Contact`, `sale`...).
    #[schema(min_length = 1)]
    pub(crate) entity: String,
    /// `created`, `updated`, `deleted` or a custom verb, in any vendor spelling.
    #[schema(min_length = 1)]
    pub(crate) action: String,
    /// The record's key.
    pub(crate) id: String,
    /// The record's fields after the change.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub(crate) data: Value,
    /// The fields before the change, for updates.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub(crate) previous: Option<Value>,
    /// The dot paths that changed; derived from `data` and `previous` when absent.
    #[serde(default)]
    pub(crate) changed: Option<Vec<String>>,
    /// Who made the change.
    #[serde(default)]
    pub(crate) actor: Option<String>,
    /// The `Webhook-Skip-Key` of the request that caused the change.
    #[serde(default)]
    pub(crate) skip_key: Option<String>,
    /// The caller's tenant, or absent (it is set to the caller's).
    #[serde(default)]
    pub(crate) tenant: Option<String>,
    /// The second record, for events about a link.
    #[serde(default)]
    pub(crate) related: Option<RelatedDoc>,
    /// A unique id, for idempotency (the `Idempotency-Key` header sets it).
    #[serde(default)]
    pub(crate) event_id: Option<String>,
    /// When the change happened, Unix milliseconds.
    #[serde(default)]
    pub(crate) occurred_at: Option<u64>,
}

/// The second record of an event about a link.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = Related)]
pub(crate) struct RelatedDoc {
    /// Its type.
    pub(crate) entity: String,
    /// Its key.
    pub(crate) id: String,
    /// Its fields.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub(crate) data: Value,
}

impl From<EventDoc> for Event {
    fn from(doc: EventDoc) -> Event {
        let EventDoc {
            entity,
            action,
            id,
            data,
            previous,
            changed,
            actor,
            skip_key,
            tenant,
            related,
            event_id,
            occurred_at,
        } = doc;
        let mut event = Event::new(entity, &action, id).data(data);
        event.previous = previous;
        event.changed = changed;
        event.actor = actor;
        event.skip_key = skip_key;
        event.tenant = tenant;
        event.related = related.map(|r| callout::core::Related {
            entity: r.entity,
            id: r.id,
            data: r.data,
        });
        event.event_id = event_id;
        event.occurred_at = occurred_at;
        event
    }
}

/// One event, or several published atomically.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(untagged)]
pub(crate) enum Publish {
    /// One event.
    One(Box<EventDoc>),
    /// Several, all stored or none.
    Many(Vec<EventDoc>),
}

impl Publish {
    /// Reads a publish body, each event checked key by key first (an unknown key is refused
    /// with the one probably meant, and its place in a batch).
    pub(crate) fn from_value(body: Value) -> Result<Publish, Problem> {
        let read = |document: Value, n: usize, place: &str| -> Result<EventDoc, Problem> {
            Event::check_fields(&document).map_err(|e| {
                Problem::invalid(format!("{place}{}", e.field), format!("event {n}: {e}"))
            })?;
            // Whether `data` and `related.data` were given (serde makes an absent one null).
            let given = (
                document.get("data").is_some(),
                document
                    .get("related")
                    .and_then(|r| r.get("data"))
                    .is_some(),
            );
            let event: EventDoc = serde_json::from_value(document)
                .map_err(|e| Problem::malformed(format!("event {n}: malformed event: {e}")))?;
            // Records are objects, as the document says (the engine itself takes any JSON);
            // `previous` may be null.
            let records = [
                ("data", event.data.is_object() || !given.0),
                (
                    "previous",
                    event.previous.as_ref().is_none_or(Value::is_object),
                ),
                (
                    "related.data",
                    event
                        .related
                        .as_ref()
                        .is_none_or(|r| r.data.is_object() || !given.1),
                ),
            ];
            for (field, fine) in records {
                if !fine {
                    return Err(Problem::invalid(
                        format!("{place}{field}"),
                        format!("event {n}: {field} must be a JSON object"),
                    ));
                }
            }
            // The document's integers are int64.
            if event.occurred_at.is_some_and(|t| t > i64::MAX as u64) {
                return Err(Problem::invalid(
                    format!("{place}occurred_at"),
                    format!("event {n}: occurred_at is outside the int64 range"),
                ));
            }
            Ok(event)
        };
        match body {
            Value::Array(items) if items.is_empty() => {
                Err(Problem::invalid("events", "no events to publish"))
            }
            Value::Array(items) => items
                .into_iter()
                .enumerate()
                .map(|(n, item)| read(item, n, &format!("[{n}].")))
                .collect::<Result<Vec<_>, _>>()
                .map(Publish::Many),
            single => read(single, 0, "").map(|event| Publish::One(Box::new(event))),
        }
    }

    /// The events, in order.
    pub(crate) fn events(self) -> Vec<EventDoc> {
        match self {
            Publish::One(event) => vec![*event],
            Publish::Many(events) => events,
        }
    }
}

/// What a publish stored.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ReceiptDoc {
    /// Every event's id, in publish order.
    pub(crate) event_ids: Vec<String>,
    /// The deliveries created, durable when the response was sent.
    pub(crate) deliveries: Vec<u64>,
    /// Event ids seen before: not enqueued again.
    pub(crate) duplicates: Vec<String>,
}

impl From<Receipt> for ReceiptDoc {
    fn from(receipt: Receipt) -> ReceiptDoc {
        let Receipt {
            event_ids,
            deliveries,
            duplicates,
        } = receipt;
        ReceiptDoc {
            event_ids,
            deliveries,
            duplicates,
        }
    }
}

/// Where a delivery is.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum DeliveryStateDoc {
    /// Waiting for its due time.
    Due,
    /// Being sent.
    InFlight,
    /// Held while its subscription is switched off.
    Held,
    /// Dead-lettered.
    Dead,
}

/// A stored delivery: one request's worth of events for one subscription.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct DeliveryDoc {
    /// Sequential id, stable across retries.
    pub(crate) id: u64,
    /// The subscription it goes to.
    pub(crate) subscription_id: u64,
    /// The events it carries.
    pub(crate) event_ids: Vec<String>,
    /// The canonical `entity.action` of its (first) event.
    pub(crate) event_type: String,
    /// The body as sent: JSON, or text when it is not JSON.
    pub(crate) body: Value,
    /// Attempts made so far.
    pub(crate) attempts: u32,
    /// When it is due next, Unix milliseconds.
    pub(crate) due_at: u64,
    /// When it was enqueued, Unix milliseconds.
    pub(crate) created_at: u64,
    /// Whether its subscription delivers in order.
    pub(crate) ordered: bool,
    /// Where it is.
    pub(crate) state: DeliveryStateDoc,
    /// When it was dead-lettered, for a dead letter.
    pub(crate) dead_at: Option<u64>,
    /// The id receivers deduplicate on (`webhook-id`).
    pub(crate) message_id: String,
    /// Deliveries of the subscription with the same key go one at a time, in order.
    pub(crate) order_key: Option<String>,
}

impl From<Delivery> for DeliveryDoc {
    fn from(delivery: Delivery) -> DeliveryDoc {
        let Delivery {
            id,
            subscription_id,
            event_ids,
            event_type,
            body,
            attempts,
            due_at,
            created_at,
            ordered,
            state,
            message_id,
            order_key,
        } = delivery;
        let (state, dead_at) = match state {
            DeliveryState::Due => (DeliveryStateDoc::Due, None),
            DeliveryState::InFlight { .. } => (DeliveryStateDoc::InFlight, None),
            DeliveryState::Held => (DeliveryStateDoc::Held, None),
            DeliveryState::Dead { at } => (DeliveryStateDoc::Dead, Some(at)),
        };
        let body = serde_json::from_slice(&body)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).into_owned()));
        DeliveryDoc {
            id,
            subscription_id,
            event_ids,
            event_type,
            body,
            attempts,
            due_at,
            created_at,
            ordered,
            state,
            dead_at,
            message_id,
            order_key,
        }
    }
}

/// One recorded attempt.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct AttemptDoc {
    /// The delivery it was made for.
    pub(crate) delivery_id: u64,
    /// 1 for the first attempt.
    pub(crate) number: u32,
    /// When it started, Unix milliseconds.
    pub(crate) at: u64,
    /// How long it took.
    pub(crate) duration_ms: u64,
    /// The HTTP status, when a response arrived.
    pub(crate) status: Option<u16>,
    /// `delivered`, `gone`, `throttled`, or the error class and detail.
    pub(crate) outcome: String,
    /// The start of the response body.
    pub(crate) excerpt: String,
}

impl AttemptDoc {
    pub(crate) fn new(delivery_id: u64, attempt: Attempt) -> AttemptDoc {
        let Attempt {
            number,
            at,
            duration_ms,
            status,
            outcome,
            excerpt,
        } = attempt;
        AttemptDoc {
            delivery_id,
            number,
            at,
            duration_ms,
            status,
            outcome,
            excerpt,
        }
    }
}

/// Deliveries by state.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct CountsDoc {
    /// Waiting for their due time.
    pub(crate) due: u64,
    /// Of the due ones, those waiting for a retry.
    pub(crate) retrying: u64,
    /// Being sent.
    pub(crate) in_flight: u64,
    /// Held while their subscription is switched off.
    pub(crate) held: u64,
    /// Delivered (a running total).
    pub(crate) delivered: u64,
    /// Dead-lettered and not replayed or purged.
    pub(crate) dead: u64,
}

impl From<Counts> for CountsDoc {
    fn from(counts: Counts) -> CountsDoc {
        let Counts {
            due,
            retrying,
            in_flight,
            held,
            delivered,
            dead,
        } = counts;
        CountsDoc {
            due,
            retrying,
            in_flight,
            held,
            delivered,
            dead,
        }
    }
}

/// How many dead letters a replay or purge reached.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct CountDoc {
    /// How many.
    pub(crate) count: usize,
}

/// The outcome of a test send: the target answered 200.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct TestDoc {
    /// Always 200: any other answer is a `test_failed` error.
    pub(crate) status: u16,
}

/// An error: `{"error": {"code", "message", "field"}}`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ErrorDoc {
    /// What went wrong.
    pub(crate) error: ErrorDetail,
}

/// What went wrong.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ErrorDetail {
    /// `invalid`, `malformed`, `not_found`, `unauthorized`, `too_large`, `test_failed`,
    /// `method_not_allowed` or `internal`.
    pub(crate) code: String,
    /// For people.
    pub(crate) message: String,
    /// The field at fault, as a dot path, when one is.
    pub(crate) field: Option<String>,
}
