//! What a subscription is: who wants which events, where to send them and how, with the
//! validation that keeps a bad one out of the store.

use std::collections::{BTreeMap, HashSet};
use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::InvalidSubscription;
use crate::filter::FieldFilter;
use crate::name::Pattern;
use crate::path;
use crate::redact::{redact_url, without_userinfo, REDACTED};

/// Limits of the vendors' APIs (Autotask and SuperOffice field sizes) and sane bounds where
/// they say nothing.
pub mod limits {
    /// `name`, in characters (Autotask `Name` string(50)).
    pub const NAME: usize = 50;
    /// `target_url` and `deactivation_url`, in characters (Autotask string(500)).
    pub const URL: usize = 500;
    /// An Autotask `SecretKey`, in characters.
    pub const AUTOTASK_SECRET: usize = 64;
    /// Any other secret, in characters.
    pub const SECRET: usize = 1_024;
    /// Secrets held at once while one is rotated.
    pub const SECRETS: usize = 8;
    /// Event patterns per subscription.
    pub const EVENTS: usize = 100;
    /// Custom headers per subscription.
    pub const HEADERS: usize = 50;
    /// A custom header's value, in bytes.
    pub const HEADER_VALUE: usize = 4_096;
    /// All custom headers together, names and values, in bytes: 16 KiB. Every request carries
    /// them, and HTTP servers commonly refuse a header block much past 8-16 KiB.
    pub const HEADERS_BYTES: usize = 16 * 1_024;
    /// `properties` serialized as compact JSON, in bytes: 16 KiB. Every delivery's body
    /// carries them and the store keeps a body per delivery, so this bounds what one
    /// registrant adds to each of them.
    pub const PROPERTIES_BYTES: usize = 16 * 1_024;
    /// Notification addresses, in characters (Autotask `NotificationEmailAddress` string(150)).
    pub const EMAIL: usize = 150;
    /// Skip keys and excluded actors, each list.
    pub const KEYS: usize = 1_000;
    /// One skip key, actor, handler name or path, in characters.
    pub const KEY: usize = 200;
    /// Filters, paths and expansions per entity, each list.
    pub const PER_ENTITY: usize = 200;
    /// `chunk_size` (Pipeliner: default and maximum 100).
    pub const CHUNK_SIZE: u32 = 100;
    /// `chunk_delay`, in seconds: one day.
    pub const CHUNK_DELAY: i64 = 86_400;
    /// Attempts in a retry schedule.
    pub const RETRIES: usize = 50;
    /// One retry delay, in seconds: a week.
    pub const RETRY_DELAY: u64 = 7 * 86_400;
    /// A timeout, in milliseconds: ten minutes.
    pub const TIMEOUT_MS: u64 = 600_000;
}

/// Headers the HTTP sender (callout-deliver) writes itself, that a signature scheme writes, or
/// that HTTP framing and connection reuse own, lowercase. The sender refuses them from a
/// profile as well as from a subscription: `content-length`, `transfer-encoding` or `expect`
/// from anyone else would break the one-write request or the keep-alive connection.
pub const SENDER_HEADERS: &[&str] = &[
    // Written by the sender for every delivery.
    "content-type",
    "user-agent",
    "callout-delivery-id",
    // Framing and connection reuse (hop-by-hop headers, and what ureq sets itself).
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "upgrade",
    "te",
    "trailer",
    "expect",
    "proxy-authorization",
    "proxy-connection",
    // Signature schemes: Standard Webhooks (and Pipeliner's `WebHook-Signature`), SuperOffice,
    // Autotask.
    "webhook-id",
    "webhook-timestamp",
    "webhook-signature",
    "x-superoffice-signature",
    "x-hook-signature",
];

/// Headers a vendor profile adds when a delivery is sent, lowercase: SuperOffice's event, id
/// and retry count, and the marker of its test event.
pub const PROFILE_HEADERS: &[&str] = &[
    "x-superoffice-event",
    "x-superoffice-eventid",
    "x-superoffice-retry",
    "x-hook-test",
];

/// Every header a subscription's custom headers may not set, lowercase: [`SENDER_HEADERS`]
/// then [`PROFILE_HEADERS`]. [`Subscription::validate`] refuses them, so that none is dropped
/// silently later: the sender drops exactly these (and whatever other profile headers a
/// request carries) from a delivery's custom headers.
pub const RESERVED_HEADERS: &[&str] =
    &concat::<{ SENDER_HEADERS.len() + PROFILE_HEADERS.len() }>(SENDER_HEADERS, PROFILE_HEADERS);

/// `first` then `second`, as one array of exactly `N` names (a compile error otherwise).
const fn concat<const N: usize>(
    first: &[&'static str],
    second: &[&'static str],
) -> [&'static str; N] {
    let mut out = [""; N];
    let mut at = 0;
    while at < first.len() {
        out[at] = first[at];
        at += 1;
    }
    while at < N {
        out[at] = second[at - first.len()];
        at += 1;
    }
    out
}

/// Whether the subscription receives events (SuperOffice `State`, Autotask `IsActive`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// Events are delivered.
    #[default]
    Active,
    /// Switched off by its owner.
    Stopped,
    /// Switched off by callout after continued failures, or a 410; deliveries are held.
    TooManyErrors,
}

impl State {
    /// The name used in listings and filters: `active`, `stopped`, `too_many_errors`.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Active => "active",
            State::Stopped => "stopped",
            State::TooManyErrors => "too_many_errors",
        }
    }
}

/// How a delivery is carried out (SuperOffice `Type`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// An HTTP POST to `target_url`.
    #[default]
    Webhook,
    /// A function the host registered under this name runs in-process (SuperOffice `crmscript`).
    Handler(String),
}

/// The wire format: body shape, headers and signature a receiver expects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Profile {
    /// Standard Webhooks, callout's own envelope.
    #[default]
    Standard,
    /// Autotask's callouts.
    Autotask,
    /// SuperOffice's webhooks.
    Superoffice,
    /// Pipeliner's webhooks.
    Pipeliner,
}

/// A signing secret, with the time it stops signing when it is being rotated out. Its `Debug`
/// never shows the value, so logging a subscription is safe.
///
/// In JSON a secret without an expiry is its text, as subscriptions stored before secrets had
/// expiries hold it, and one with an expiry is `{"secret": "...", "expires_at": <Unix ms>}`.
///
/// ```
/// use callout_core::Secret;
/// let old = Secret::new("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").expiring_at(1_000);
/// assert!(old.is_live(999) && !old.is_live(1_000));
/// assert_eq!(
///     serde_json::to_string(&old).unwrap(),
///     r#"{"secret":"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw","expires_at":1000}"#
/// );
/// let stored: Secret = serde_json::from_str(r#""whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw""#).unwrap();
/// assert_eq!(stored.expires_at(), None);
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct Secret {
    value: String,
    expires_at: Option<u64>,
}

impl Secret {
    /// Wraps a secret that does not expire.
    pub fn new(secret: impl Into<String>) -> Secret {
        Secret {
            value: secret.into(),
            expires_at: None,
        }
    }

    /// The same secret, signing only until `expires_at` (Unix milliseconds).
    pub fn expiring_at(mut self, expires_at: u64) -> Secret {
        self.expires_at = Some(expires_at);
        self
    }

    /// The secret itself, for signing.
    pub fn expose(&self) -> &str {
        &self.value
    }

    /// When it stops signing (Unix milliseconds); `None` for a secret that does not expire.
    pub fn expires_at(&self) -> Option<u64> {
        self.expires_at
    }

    /// Whether it still signs at `now_ms`.
    pub fn is_live(&self, now_ms: u64) -> bool {
        self.expires_at.is_none_or(|at| now_ms < at)
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.expires_at {
            None => f.write_str("Secret(<redacted>)"),
            Some(at) => write!(f, "Secret(<redacted>, expires_at: {at})"),
        }
    }
}

/// A secret's JSON form when it expires; also the keys that `known.rs` accepts in it.
#[derive(Serialize, Deserialize)]
pub(crate) struct ExpiringSecret {
    secret: String,
    #[serde(default)]
    expires_at: Option<u64>,
}

impl Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self.expires_at {
            None => serializer.serialize_str(&self.value),
            Some(at) => ExpiringSecret {
                secret: self.value.clone(),
                expires_at: Some(at),
            }
            .serialize(serializer),
        }
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Secret, D::Error> {
        struct Form;
        impl<'de> serde::de::Visitor<'de> for Form {
            type Value = Secret;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(r#"a secret: its text, or {"secret": ..., "expires_at": ...}"#)
            }

            fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<Secret, E> {
                Ok(Secret::new(text))
            }

            fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<Secret, A::Error> {
                let form =
                    ExpiringSecret::deserialize(serde::de::value::MapAccessDeserializer::new(map))?;
                Ok(Secret {
                    value: form.secret,
                    expires_at: form.expires_at,
                })
            }
        }
        deserializer.deserialize_any(Form)
    }
}

/// Options for one entity's events (Pipeliner's `options.entity.<E>`): filters, the fields whose
/// change fires an update, and what the body carries.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct EntityOptions {
    /// Field conditions, combined with AND.
    pub filters: Vec<FieldFilter>,
    /// Updates fire only when one of these dot paths changed (empty: any change).
    pub on_field_change: Vec<String>,
    /// The fields the body carries (empty: all).
    pub load_only: Vec<String>,
    /// Fields carried whatever `load_only` says (Autotask `IsDisplayAlwaysField`).
    pub always_fields: Vec<String>,
    /// Related records the host's expander resolves at publish time.
    pub expand: Vec<String>,
}

impl EntityOptions {
    fn is_empty(&self) -> bool {
        self == &EntityOptions::default()
    }
}

/// A webhook subscription: the union of the three vendors' webhook entities.
///
/// ```
/// use callout_core::Subscription;
/// use serde_json::json;
///
/// let sub = Subscription::new("https://receiver.example/hooks")
///     .name("crm.Contact.Update")
///     .events(["contact.updated"])
///     .secret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
///     .on_field_change("Contact", ["email1"])
///     .filter("Contact", "email1", "iends", json!("@example.com"));
/// assert_eq!(sub.validate(), Ok(()));
/// assert!(!format!("{sub:?}").contains("MfKQ9r8G"), "Debug redacts secrets");
/// ```
///
/// `Debug` hides every credential, so logging a subscription is safe: secrets, the password of
/// `target_url` and `deactivation_url` (see [`crate::redact_url`]) and every custom header value
/// (any header may carry a token) show as placeholders.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Subscription {
    /// Sequential id, assigned by the store; 0 until stored.
    pub id: u64,
    /// Globally unique id (Autotask `WebhookGUID`), assigned by the store.
    pub guid: String,
    /// A name for people, 1..=50 characters; need not be unique.
    pub name: String,
    /// Event patterns: `contact.updated`, `contact.*`, `*.deleted`, `*`, in any vendor spelling.
    pub events: Vec<String>,
    /// Where HTTP deliveries go.
    pub target_url: String,
    /// HTTP webhook or in-process handler.
    pub kind: Kind,
    /// Signing secrets; more than one while a secret is rotated (see
    /// [`Subscription::rotate_secret`]), when one's expiry has not passed. The first live one
    /// signs alone for the vendor profiles; Standard Webhooks signs with each live one, `v1`
    /// for a `whsec_` secret and `v1a` for a `whsk_` ed25519 key.
    pub secrets: Vec<Secret>,
    /// Wire format.
    pub profile: Profile,
    /// Active, stopped, or too many errors.
    pub state: State,
    /// Extra HTTP headers, in order.
    pub headers: Vec<(String, String)>,
    /// Values injected into every body (SuperOffice `Properties`).
    pub properties: Map<String, Value>,
    /// Per-entity options, keyed by entity name in any spelling.
    pub entities: BTreeMap<String, EntityOptions>,
    /// Options for the related record of link events (Pipeliner `related_entity`).
    pub related: EntityOptions,
    /// An event whose skip key is listed does not fire (exact match).
    pub skip_keys: Vec<String>,
    /// Changes made by these actors do not fire (Autotask `ExcludedResources`).
    pub excluded_actors: Vec<String>,
    /// When set, only events of this tenant fire.
    pub tenant: Option<String>,
    /// Events per request when one publish carries many, 1..=100. `None`: the profile's
    /// default ([`Subscription::events_per_request`]): one per message for `standard`, as
    /// Standard Webhooks receivers expect, 100 for Pipeliner.
    pub chunk_size: Option<u32>,
    /// Chunk N of a publish is due N x this many seconds later.
    pub chunk_delay: i64,
    /// Skip TLS certificate checks for this target only (Pipeliner `insecure_ssl`).
    pub insecure_tls: bool,
    /// Deliver one at a time, in publish order.
    pub ordered: bool,
    /// Changes to one record (entity and id) go one at a time, in publish order, retries
    /// included, while other records' go on in parallel. Each request carries one event.
    pub ordered_by_record: bool,
    /// Most requests per second; excess deliveries wait, never drop.
    pub rate_limit: Option<u32>,
    /// Delays in seconds before each retry; `None` uses the engine's schedule.
    pub retry_schedule: Option<Vec<u64>>,
    /// Connect timeout in milliseconds; `None` uses the engine's.
    pub connect_timeout_ms: Option<u64>,
    /// Response timeout in milliseconds; `None` uses the engine's.
    pub timeout_ms: Option<u64>,
    /// Where the host's notifier sends alerts (Autotask `NotificationEmailAddress`).
    pub notification_email: Option<String>,
    /// Where the host's notifier sends error alerts (SuperOffice `ErrorsEmail`).
    pub errors_email: Option<String>,
    /// Called when the subscription is deleted, deactivated or auto-disabled (Autotask).
    pub deactivation_url: Option<String>,
    /// Warn when the hourly callout threshold per entity is passed (Autotask).
    pub send_threshold_exceeded_notification: bool,
    /// The owning user or resource (Autotask `OwnerResourceID`).
    pub owner: Option<String>,
    /// Created, in milliseconds since the Unix epoch; set by the store.
    pub created_at: Option<u64>,
    /// Who created it.
    pub created_by: Option<String>,
    /// Last updated, in milliseconds since the Unix epoch; set by the store.
    pub updated_at: Option<u64>,
    /// Who last updated it.
    pub updated_by: Option<String>,
}

impl Default for Subscription {
    fn default() -> Self {
        Subscription {
            id: 0,
            guid: String::new(),
            name: String::new(),
            events: Vec::new(),
            target_url: String::new(),
            kind: Kind::Webhook,
            secrets: Vec::new(),
            profile: Profile::Standard,
            state: State::Active,
            headers: Vec::new(),
            properties: Map::new(),
            entities: BTreeMap::new(),
            related: EntityOptions::default(),
            skip_keys: Vec::new(),
            excluded_actors: Vec::new(),
            tenant: None,
            chunk_size: None,
            chunk_delay: 0,
            insecure_tls: false,
            ordered: false,
            ordered_by_record: false,
            rate_limit: None,
            retry_schedule: None,
            connect_timeout_ms: None,
            timeout_ms: None,
            notification_email: None,
            errors_email: None,
            deactivation_url: None,
            send_threshold_exceeded_notification: false,
            owner: None,
            created_at: None,
            created_by: None,
            updated_at: None,
            updated_by: None,
        }
    }
}

/// The name a webhook to `target_url` has until it is named: the URL without its userinfo, so
/// that a password in it does not end up in every listing, cut to [`limits::NAME`].
pub(crate) fn default_name(target_url: &str) -> String {
    without_userinfo(target_url)
        .chars()
        .take(limits::NAME)
        .collect()
}

impl fmt::Debug for Subscription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Destructured without `..`, so that a new field cannot be added without deciding here
        // whether it needs hiding.
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
        } = self;
        let headers: Vec<(&str, &str)> = headers
            .iter()
            .map(|(n, _)| (n.as_str(), REDACTED))
            .collect();
        f.debug_struct("Subscription")
            .field("id", id)
            .field("guid", guid)
            // A subscription stored before names dropped the userinfo may be named after a URL
            // with its password.
            .field("name", &redact_url(name))
            .field("events", events)
            .field("target_url", &redact_url(target_url))
            .field("kind", kind)
            .field("secrets", secrets)
            .field("profile", profile)
            .field("state", state)
            .field("headers", &headers)
            .field("properties", properties)
            .field("entities", entities)
            .field("related", related)
            .field("skip_keys", skip_keys)
            .field("excluded_actors", excluded_actors)
            .field("tenant", tenant)
            .field("chunk_size", chunk_size)
            .field("chunk_delay", chunk_delay)
            .field("insecure_tls", insecure_tls)
            .field("ordered", ordered)
            .field("ordered_by_record", ordered_by_record)
            .field("rate_limit", rate_limit)
            .field("retry_schedule", retry_schedule)
            .field("connect_timeout_ms", connect_timeout_ms)
            .field("timeout_ms", timeout_ms)
            .field("notification_email", notification_email)
            .field("errors_email", errors_email)
            .field(
                "deactivation_url",
                &deactivation_url.as_deref().map(redact_url),
            )
            .field(
                "send_threshold_exceeded_notification",
                send_threshold_exceeded_notification,
            )
            .field("owner", owner)
            .field("created_at", created_at)
            .field("created_by", created_by)
            .field("updated_at", updated_at)
            .field("updated_by", updated_by)
            .finish()
    }
}

impl Subscription {
    /// Parses callout's JSON form of a subscription as a person or client wrote it: any key
    /// the subscription does not have, at the top or in nested options and filters, is an
    /// error naming it (and the field probably meant), where serde alone would ignore it.
    /// Absent fields take their defaults; the result is not validated (see
    /// [`Subscription::validate`]).
    ///
    /// Stored subscriptions are read with serde directly, so that a store written by a newer
    /// callout, with fields this one does not know, still opens.
    pub fn from_json(json: &str) -> Result<Subscription, InvalidSubscription> {
        let value: Value =
            serde_json::from_str(json).map_err(|e| InvalidSubscription::Malformed {
                reason: crate::redact::without_quoted(&e.to_string()),
            })?;
        Subscription::from_value(value)
    }

    /// [`Subscription::from_json`] for an already parsed JSON document.
    pub fn from_value(value: Value) -> Result<Subscription, InvalidSubscription> {
        Subscription::check_fields(&value)?;
        serde_json::from_value(value).map_err(|e| InvalidSubscription::Malformed {
            reason: crate::redact::without_quoted(&e.to_string()),
        })
    }

    /// Refuses a key of `document` that callout's subscription JSON does not have, nested
    /// options and filters included; for a partial document such as a merge patch.
    pub fn check_fields(document: &Value) -> Result<(), InvalidSubscription> {
        crate::known::subscription(document).map_err(InvalidSubscription::from)
    }

    /// An HTTP webhook to `target_url`, named after it (without user name and password) until
    /// [`Subscription::name`] is called.
    pub fn new(target_url: impl Into<String>) -> Subscription {
        let target_url = target_url.into();
        Subscription {
            name: default_name(&target_url),
            target_url,
            ..Subscription::default()
        }
    }

    /// A subscription served by the host's handler registered as `handler`.
    pub fn handler(handler: impl Into<String>) -> Subscription {
        let handler = handler.into();
        Subscription {
            name: handler.chars().take(limits::NAME).collect(),
            kind: Kind::Handler(handler),
            ..Subscription::default()
        }
    }

    /// Sets the name.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Sets the event patterns.
    pub fn events<I, S>(mut self, patterns: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.events = patterns.into_iter().map(Into::into).collect();
        self
    }

    /// Adds a signing secret (call again to hold a second one during rotation, or for a
    /// Standard Webhooks `whsk_` key beside a `whsec_` secret).
    pub fn secret(mut self, secret: impl Into<String>) -> Self {
        self.secrets.push(Secret::new(secret));
        self
    }

    /// The secrets that sign at `now_ms` (Unix milliseconds), in order: those that do not
    /// expire and those whose rotation grace has not ended.
    pub fn live_secrets(&self, now_ms: u64) -> impl Iterator<Item = &Secret> {
        self.secrets.iter().filter(move |s| s.is_live(now_ms))
    }

    /// Drops the secrets expired at `now_ms`; whether there were any.
    pub fn drop_expired_secrets(&mut self, now_ms: u64) -> bool {
        let before = self.secrets.len();
        self.secrets.retain(|s| s.is_live(now_ms));
        self.secrets.len() != before
    }

    /// When the first of the expiring secrets expires (Unix milliseconds).
    pub fn next_secret_expiry(&self) -> Option<u64> {
        self.secrets.iter().filter_map(Secret::expires_at).min()
    }

    /// Rotates in `secret`: it signs from now on, and the secrets of its kind signing until
    /// now keep signing beside it for `grace_ms` more (none, with 0), then expire. A Standard
    /// Webhooks `whsk_` key replaces `whsk_` keys and a `whsec_` secret `whsec_` secrets, so a
    /// subscription signing both `v1` and `v1a` keeps the other kind. A secret that already
    /// expires sooner keeps its expiry; expired ones are dropped. Refuses a secret the
    /// subscription already has; the result is not validated (see [`Subscription::validate`]).
    ///
    /// The vendor profiles sign with one secret, the first live one: there the new secret
    /// takes over when the grace ends, the time a receiver has to switch.
    ///
    /// ```
    /// use callout_core::Subscription;
    /// let mut sub = Subscription::new("https://receiver.example/hooks")
    ///     .events(["contact.*"])
    ///     .secret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw");
    /// sub.rotate_secret("whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD", 1_000, 60_000).unwrap();
    /// assert_eq!(sub.live_secrets(60_999).count(), 2);
    /// assert_eq!(sub.live_secrets(61_000).count(), 1);
    /// assert_eq!(sub.next_secret_expiry(), Some(61_000));
    /// ```
    pub fn rotate_secret(
        &mut self,
        secret: impl Into<String>,
        now_ms: u64,
        grace_ms: u64,
    ) -> Result<(), InvalidSubscription> {
        let secret = Secret::new(secret);
        self.drop_expired_secrets(now_ms);
        if self.secrets.iter().any(|s| s.value == secret.value) {
            return Err(InvalidSubscription::BadSecret {
                reason: "the new secret is already one of the subscription's".into(),
            });
        }
        let ends = now_ms.saturating_add(grace_ms);
        let signing_key = is_signing_key(&secret.value);
        for old in &mut self.secrets {
            let same_kind = match self.profile {
                Profile::Standard => is_signing_key(&old.value) == signing_key,
                _ => true,
            };
            if same_kind {
                old.expires_at = Some(old.expires_at.map_or(ends, |at| at.min(ends)));
            }
        }
        self.drop_expired_secrets(now_ms);
        self.secrets.push(secret);
        Ok(())
    }

    /// Sets the wire profile.
    pub fn profile(mut self, profile: Profile) -> Self {
        self.profile = profile;
        self
    }

    /// Sets the state.
    pub fn state(mut self, state: State) -> Self {
        self.state = state;
        self
    }

    /// Adds a custom HTTP header.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Adds a value injected into every body.
    pub fn property(mut self, key: impl Into<String>, value: Value) -> Self {
        self.properties.insert(key.into(), value);
        self
    }

    fn entity(&mut self, entity: &str) -> &mut EntityOptions {
        self.entities.entry(entity.to_string()).or_default()
    }

    /// Adds a field condition on `entity`'s events.
    pub fn filter(
        mut self,
        entity: &str,
        path: impl Into<String>,
        op: impl Into<String>,
        value: Value,
    ) -> Self {
        self.entity(entity)
            .filters
            .push(FieldFilter::new(path, op, value));
        self
    }

    /// Updates of `entity` fire only when one of these fields changed.
    pub fn on_field_change<I, S>(mut self, entity: &str, fields: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.entity(entity)
            .on_field_change
            .extend(fields.into_iter().map(Into::into));
        self
    }

    /// The body carries only these fields of `entity`'s records.
    pub fn load_only<I, S>(mut self, entity: &str, fields: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.entity(entity)
            .load_only
            .extend(fields.into_iter().map(Into::into));
        self
    }

    /// The body always carries these fields of `entity`'s records.
    pub fn always_fields<I, S>(mut self, entity: &str, fields: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.entity(entity)
            .always_fields
            .extend(fields.into_iter().map(Into::into));
        self
    }

    /// Related records of `entity` the host's expander resolves into the body.
    pub fn expand<I, S>(mut self, entity: &str, paths: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.entity(entity)
            .expand
            .extend(paths.into_iter().map(Into::into));
        self
    }

    /// Events carrying one of these skip keys do not fire.
    pub fn skip_keys<I, S>(mut self, keys: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.skip_keys.extend(keys.into_iter().map(Into::into));
        self
    }

    /// Changes by these actors do not fire.
    pub fn excluded_actors<I, S>(mut self, actors: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.excluded_actors
            .extend(actors.into_iter().map(Into::into));
        self
    }

    /// Only events of this tenant fire.
    pub fn tenant(mut self, tenant: impl Into<String>) -> Self {
        self.tenant = Some(tenant.into());
        self
    }

    /// Events per request, 1..=100: batches them (see [`Subscription::chunk_size`](field@Subscription::chunk_size)).
    pub fn chunk_size(mut self, size: u32) -> Self {
        self.chunk_size = Some(size);
        self
    }

    /// How many events one request carries at most: Autotask and SuperOffice send one event
    /// per request; `standard` one unless `chunk_size` is set (then the batch envelope, `data`
    /// a list); Pipeliner `chunk_size`, 100 by default.
    pub fn events_per_request(&self) -> u32 {
        if self.ordered_by_record {
            // A request of several records could not wait for each of them alone.
            return 1;
        }
        match self.profile {
            Profile::Autotask | Profile::Superoffice => 1,
            Profile::Standard => self.chunk_size.unwrap_or(1),
            Profile::Pipeliner => self.chunk_size.unwrap_or(limits::CHUNK_SIZE),
        }
    }

    /// Seconds between chunks of one publish.
    pub fn chunk_delay(mut self, seconds: i64) -> Self {
        self.chunk_delay = seconds;
        self
    }

    /// Deliver one at a time, in publish order.
    pub fn ordered(mut self, ordered: bool) -> Self {
        self.ordered = ordered;
        self
    }

    /// Deliver each record's changes one at a time, in publish order (see
    /// [`Subscription::ordered_by_record`](field@Subscription::ordered_by_record)).
    pub fn ordered_by_record(mut self, ordered: bool) -> Self {
        self.ordered_by_record = ordered;
        self
    }

    /// Sets the deactivation URL.
    pub fn deactivation_url(mut self, url: impl Into<String>) -> Self {
        self.deactivation_url = Some(url.into());
        self
    }

    /// The parsed event patterns.
    pub fn patterns(&self) -> Result<Vec<Pattern>, InvalidSubscription> {
        self.events.iter().map(|p| p.parse()).collect()
    }

    /// Checks every field; the error names the first bad one. [`crate::Matcher`] and the store
    /// refuse a subscription that fails this.
    pub fn validate(&self) -> Result<(), InvalidSubscription> {
        crate::matcher::CompiledSubscription::compile(self.clone()).map(drop)
    }

    /// The field checks that need no compilation; filters and patterns are checked where they
    /// are compiled.
    pub(crate) fn validate_fields(&self) -> Result<(), InvalidSubscription> {
        use InvalidSubscription as E;
        let name_len = self.name.chars().count();
        if self.name.trim().is_empty() {
            return Err(E::EmptyName);
        }
        if name_len > limits::NAME {
            return Err(E::NameTooLong {
                len: name_len,
                max: limits::NAME,
            });
        }
        match &self.kind {
            Kind::Webhook => check_url("target_url", &self.target_url)?,
            Kind::Handler(name) if name.trim().is_empty() => return Err(E::EmptyHandler),
            Kind::Handler(name) => max_len("kind", name, limits::KEY)?,
        }
        if let Some(url) = &self.deactivation_url {
            check_url("deactivation_url", url)?;
        }
        self.check_secrets()?;
        if self.events.is_empty() {
            return Err(E::NoEvents);
        }
        max_count("events", self.events.len(), limits::EVENTS)?;
        self.check_headers()?;
        check_properties(&self.properties)?;
        if let Some(size) = self
            .chunk_size
            .filter(|s| !(1..=limits::CHUNK_SIZE).contains(s))
        {
            return Err(E::ChunkSize { value: size });
        }
        if !(0..=limits::CHUNK_DELAY).contains(&self.chunk_delay) {
            return Err(E::ChunkDelay {
                value: self.chunk_delay,
            });
        }
        for (field, list) in [
            ("skip_keys", &self.skip_keys),
            ("excluded_actors", &self.excluded_actors),
        ] {
            max_count(field, list.len(), limits::KEYS)?;
            for key in list {
                max_len(field, key, limits::KEY)?;
            }
        }
        if let Some(tenant) = &self.tenant {
            max_len("tenant", tenant, limits::KEY)?;
        }
        for (field, email) in [
            ("notification_email", &self.notification_email),
            ("errors_email", &self.errors_email),
        ] {
            if let Some(email) = email {
                max_len(field, email, limits::EMAIL)?;
            }
        }
        if self.rate_limit == Some(0) {
            return Err(E::ZeroRateLimit);
        }
        if let Some(schedule) = &self.retry_schedule {
            max_count("retry_schedule", schedule.len(), limits::RETRIES)?;
            if let Some(delay) = schedule.iter().find(|d| **d > limits::RETRY_DELAY) {
                return Err(E::BadRetrySchedule {
                    reason: format!(
                        "a delay of {delay} s is over the {} s maximum",
                        limits::RETRY_DELAY
                    ),
                });
            }
        }
        for (field, timeout) in [
            ("connect_timeout_ms", self.connect_timeout_ms),
            ("timeout_ms", self.timeout_ms),
        ] {
            if let Some(value) = timeout.filter(|t| !(1..=limits::TIMEOUT_MS).contains(t)) {
                return Err(E::BadTimeout {
                    field,
                    value,
                    max: limits::TIMEOUT_MS,
                });
            }
        }
        let related = std::iter::once(("related", &self.related));
        for (entity, options) in self
            .entities
            .iter()
            .map(|(e, o)| (e.as_str(), o))
            .chain(related)
        {
            check_entity_options(entity, options)?;
        }
        Ok(())
    }

    fn check_secrets(&self) -> Result<(), InvalidSubscription> {
        let bad = |reason: String| InvalidSubscription::BadSecret { reason };
        max_count("secrets", self.secrets.len(), limits::SECRETS)?;
        for secret in &self.secrets {
            let text = secret.expose();
            let len = text.chars().count();
            if text.is_empty() {
                return Err(bad("must not be empty".into()));
            }
            let max = match self.profile {
                Profile::Autotask => limits::AUTOTASK_SECRET,
                _ => limits::SECRET,
            };
            if len > max {
                return Err(bad(format!("{len} characters, at most {max} allowed")));
            }
            match self.profile {
                Profile::Standard if text.starts_with(PUBLIC_KEY_PREFIX) => {
                    return Err(bad(format!(
                        "a `{PUBLIC_KEY_PREFIX}` key is public: receivers verify with it; sign with its `{SIGNING_KEY_PREFIX}` signing key"
                    )));
                }
                Profile::Standard if is_signing_key(text) => {
                    let key = &text[SIGNING_KEY_PREFIX.len()..];
                    // Base64 of 64 bytes is 88 characters, the last two padding.
                    if key.len() != 88 || !key.ends_with("==") || !is_base64(key) {
                        return Err(bad(format!(
                            "a Standard Webhooks `{SIGNING_KEY_PREFIX}` key is base64 of 64 bytes: the ed25519 secret key, then its public key"
                        )));
                    }
                }
                Profile::Standard => {
                    let key = text.strip_prefix("whsec_").unwrap_or(text);
                    if !is_base64(key) {
                        return Err(bad(
                            "a Standard Webhooks secret is `whsec_` followed by base64".into(),
                        ));
                    }
                }
                Profile::Pipeliner if !is_uuid(text) => {
                    return Err(bad("a Pipeliner signature must be a UUID".into()));
                }
                _ => {}
            }
        }
        Ok(())
    }

    fn check_headers(&self) -> Result<(), InvalidSubscription> {
        max_count("headers", self.headers.len(), limits::HEADERS)?;
        let size = self
            .headers
            .iter()
            .map(|(name, value)| name.len() + value.len())
            .sum();
        if size > limits::HEADERS_BYTES {
            return Err(InvalidSubscription::TooLarge {
                field: "headers",
                size,
                max: limits::HEADERS_BYTES,
            });
        }
        let mut seen = HashSet::new();
        for (name, value) in &self.headers {
            let lower = name.to_ascii_lowercase();
            let token = !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
            let clean_value = value.len() <= limits::HEADER_VALUE
                && value
                    .bytes()
                    .all(|b| b == b'\t' || (b >= 0x20 && b != 0x7f));
            if !token || !clean_value {
                return Err(InvalidSubscription::BadHeader { name: name.clone() });
            }
            if RESERVED_HEADERS.contains(&lower.as_str()) {
                return Err(InvalidSubscription::ReservedHeader { name: name.clone() });
            }
            if !seen.insert(lower) {
                return Err(InvalidSubscription::DuplicateHeader { name: name.clone() });
            }
        }
        Ok(())
    }
}

/// Refuses properties over [`limits::PROPERTIES_BYTES`] as compact JSON, counted without
/// copying them (`size.rs`), so that a 10 MB property is not copied to be measured.
fn check_properties(properties: &Map<String, Value>) -> Result<(), InvalidSubscription> {
    crate::size::json_len_within(properties, limits::PROPERTIES_BYTES)
        .map(drop)
        .map_err(|size| InvalidSubscription::TooLarge {
            field: "properties",
            size,
            max: limits::PROPERTIES_BYTES,
        })
}

fn check_entity_options(entity: &str, options: &EntityOptions) -> Result<(), InvalidSubscription> {
    if entity.trim().is_empty() || entity.contains('.') || entity.contains('*') {
        return Err(InvalidSubscription::BadEntity {
            entity: entity.to_string(),
        });
    }
    if options.is_empty() {
        return Ok(());
    }
    max_count("filters", options.filters.len(), limits::PER_ENTITY)?;
    let lists = [
        ("on_field_change", &options.on_field_change),
        ("load_only", &options.load_only),
        ("always_fields", &options.always_fields),
        ("expand", &options.expand),
    ];
    for (field, paths) in lists {
        max_count(field, paths.len(), limits::PER_ENTITY)?;
        for p in paths {
            if !path::is_valid(p) || p.len() > limits::KEY {
                return Err(InvalidSubscription::BadPath {
                    field: format!("{field}.{entity}"),
                    path: p.clone(),
                });
            }
        }
    }
    Ok(())
}

fn max_len(field: &'static str, value: &str, max: usize) -> Result<(), InvalidSubscription> {
    let len = value.chars().count();
    if len > max {
        return Err(InvalidSubscription::TooLong { field, len, max });
    }
    Ok(())
}

fn max_count(field: &'static str, len: usize, max: usize) -> Result<(), InvalidSubscription> {
    if len > max {
        return Err(InvalidSubscription::TooMany { field, len, max });
    }
    Ok(())
}

/// Accepts what an HTTP client can send to: `http://` or `https://`, a host, an optional port,
/// no white space or control characters, at most 500 characters.
fn check_url(field: &'static str, url: &str) -> Result<(), InvalidSubscription> {
    let len = url.chars().count();
    if len > limits::URL {
        return Err(InvalidSubscription::TooLong {
            field,
            len,
            max: limits::URL,
        });
    }
    let bad = || InvalidSubscription::BadUrl {
        field,
        url: redact_url(url).into_owned(),
    };
    let lower = url.to_ascii_lowercase();
    let rest = lower
        .strip_prefix("https://")
        .or_else(|| lower.strip_prefix("http://"))
        .ok_or_else(bad)?;
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(bad());
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host_port = authority.rsplit('@').next().unwrap_or_default();
    let (host, port) = if let Some(v6) = host_port.strip_prefix('[') {
        let (host, after) = v6.split_once(']').ok_or_else(bad)?;
        (host, after.strip_prefix(':'))
    } else {
        match host_port.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (host_port, None),
        }
    };
    let host_ok = !host.is_empty()
        && host
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '.' | '-' | '_' | ':'));
    let port_ok = port.is_none_or(|p| p.parse::<u16>().is_ok_and(|p| p > 0));
    if host_ok && port_ok {
        Ok(())
    } else {
        Err(bad())
    }
}

/// The prefix of a Standard Webhooks ed25519 signing key.
const SIGNING_KEY_PREFIX: &str = "whsk_";
/// The prefix of a Standard Webhooks ed25519 public key, which verifies and cannot sign.
const PUBLIC_KEY_PREFIX: &str = "whpk_";

fn is_signing_key(secret: &str) -> bool {
    secret.starts_with(SIGNING_KEY_PREFIX)
}

/// Standard base64 with its padding: callout-deliver decodes it when signing.
fn is_base64(text: &str) -> bool {
    !text.is_empty()
        && text.len().is_multiple_of(4)
        && text
            .trim_end_matches('=')
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/')
}

fn is_uuid(text: &str) -> bool {
    let groups: Vec<&str> = text.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, len)| g.len() == len && g.bytes().all(|b| b.is_ascii_hexdigit()))
}
