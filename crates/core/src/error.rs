//! The one error type of callout-core: why a subscription was rejected.

/// Why a subscription was rejected. Each variant names the offending field and value, so a
/// host can show it to its user unchanged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InvalidSubscription {
    /// `name` is empty.
    #[error("name: must not be empty")]
    EmptyName,
    /// `name` is longer than the 50 characters the vendors allow.
    #[error("name: {len} characters, at most {max} allowed")]
    NameTooLong {
        /// Its length in characters.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A URL field is not an absolute http(s) URL.
    #[error("{field}: {url:?} is not an absolute http or https URL")]
    BadUrl {
        /// `target_url` or `deactivation_url`.
        field: &'static str,
        /// The value given, its password (if any) replaced by `***` ([`crate::redact_url`]):
        /// the error is meant to be shown.
        url: String,
    },
    /// A text field is longer than allowed.
    #[error("{field}: {len} characters, at most {max} allowed")]
    TooLong {
        /// The field.
        field: &'static str,
        /// Its length in characters.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A list field has more entries than allowed.
    #[error("{field}: {len} entries, at most {max} allowed")]
    TooMany {
        /// The field.
        field: &'static str,
        /// How many were given.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A handler subscription names no handler.
    #[error("kind: a handler subscription needs a handler name")]
    EmptyHandler,
    /// `secret` is empty, or not of the form its profile signs with.
    #[error("secret: {reason}")]
    BadSecret {
        /// What is wrong with it (the secret itself is never echoed).
        reason: String,
    },
    /// `events` is empty.
    #[error("events: at least one event pattern is required")]
    NoEvents,
    /// An event pattern does not parse.
    #[error("events: {pattern:?} is not `entity.action`, `entity.*`, `*.action` or `*`")]
    BadEventPattern {
        /// The pattern given.
        pattern: String,
    },
    /// `chunk_size` is outside 1..=100.
    #[error("chunk_size: {value} is outside 1..=100")]
    ChunkSize {
        /// The value given.
        value: u32,
    },
    /// `chunk_delay` is negative or longer than a day.
    #[error("chunk_delay: {value} seconds is outside 0..=86400")]
    ChunkDelay {
        /// The value given, in seconds.
        value: i64,
    },
    /// A filter names an operator that does not exist.
    #[error("filters.{entity}.{field}: unknown operator {op:?}")]
    UnknownOperator {
        /// The entity the filter belongs to.
        entity: String,
        /// The field path.
        field: String,
        /// The operator given.
        op: String,
    },
    /// A filter's value does not suit its operator (e.g. `between` without two bounds).
    #[error("filters.{entity}.{field}: operator {op} {reason}")]
    BadFilterValue {
        /// The entity the filter belongs to.
        entity: String,
        /// The field path.
        field: String,
        /// The operator.
        op: String,
        /// What the operator needs.
        reason: String,
    },
    /// A `regex` or `like` filter does not compile, or compiles too large.
    #[error("filters.{entity}.{field}: bad pattern {pattern:?}: {reason}")]
    BadRegex {
        /// The entity the filter belongs to.
        entity: String,
        /// The field path.
        field: String,
        /// The pattern given.
        pattern: String,
        /// The compiler's complaint.
        reason: String,
    },
    /// A field path (filter, on_field_change, load_only...) is empty or has an empty segment.
    #[error("{field}: {path:?} is not a dot path")]
    BadPath {
        /// The option the path belongs to.
        field: String,
        /// The path given.
        path: String,
    },
    /// An entity key in the per-entity options is empty or not a name.
    #[error("filters: {entity:?} is not an entity name")]
    BadEntity {
        /// The key given.
        entity: String,
    },
    /// A header name appears twice (names compare case-insensitively).
    #[error("headers: {name:?} appears more than once")]
    DuplicateHeader {
        /// The header name.
        name: String,
    },
    /// A custom header would override one callout sets itself (signature, content, framing).
    #[error("headers: {name:?} is set by callout and may not be overridden")]
    ReservedHeader {
        /// The header name.
        name: String,
    },
    /// A header name or value has characters HTTP does not allow.
    #[error("headers: {name:?} is not a valid header")]
    BadHeader {
        /// The header name.
        name: String,
    },
    /// A rate limit of zero would never deliver.
    #[error("rate_limit: must be at least 1 request per second")]
    ZeroRateLimit,
    /// A retry schedule that is empty or has an absurd delay.
    #[error("retry_schedule: {reason}")]
    BadRetrySchedule {
        /// What is wrong with it.
        reason: String,
    },
    /// A timeout of zero or over the maximum.
    #[error("{field}: {value} ms is outside 1..={max}")]
    BadTimeout {
        /// The field.
        field: &'static str,
        /// The value given.
        value: u64,
        /// The limit.
        max: u64,
    },
    /// A serialized field is larger than allowed (custom data a registrant attaches and every
    /// delivery carries).
    #[error("{field}: {size} bytes, at most {max} allowed")]
    TooLarge {
        /// The field.
        field: &'static str,
        /// Its size in bytes.
        size: usize,
        /// The limit, in bytes.
        max: usize,
    },
    /// The document has a key the subscription does not (a typo, or a field of another
    /// format): refused rather than ignored, so `secret` for `secrets` cannot create a webhook
    /// that sends unsigned.
    #[error("{}", crate::known::message(.field, .suggestion.as_deref()))]
    UnknownField {
        /// Where the key is, as a dot path (`entities.Contact.filtrs`).
        field: String,
        /// The known key there that it most resembles, if one is close.
        suggestion: Option<String>,
    },
    /// The document is not JSON, or a field has the wrong type.
    #[error("malformed subscription JSON: {reason}")]
    Malformed {
        /// The parser's complaint.
        reason: String,
    },
}

impl From<crate::known::UnknownField> for InvalidSubscription {
    fn from(unknown: crate::known::UnknownField) -> Self {
        InvalidSubscription::UnknownField {
            field: unknown.field,
            suggestion: unknown.suggestion,
        }
    }
}
