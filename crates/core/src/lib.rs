//! The model and matching of callout: what an event is, what a webhook subscription is, and
//! which subscriptions want a given event.
//!
//! This crate owns the data model ([`Event`], [`Subscription`]), the vendor spellings of event
//! names ([`Pattern`]), field filters ([`FieldFilter`]), payload projection, and the [`Matcher`],
//! which answers "who wants this event?" from an index, without doing any I/O. Storage, HTTP
//! and threads live in the other crates.
//!
//! ```
//! use callout_core::{Event, Matcher, Subscription};
//! use serde_json::json;
//!
//! let mut sub = Subscription::new("https://receiver.example/hooks")
//!     .events(["Contact.Update"]) // Pipeliner's spelling of contact.updated
//!     .on_field_change("Contact", ["email1"])
//!     .skip_keys(["gmail_sync"]);
//! sub.id = 1;
//! let matcher = Matcher::from_subscriptions([sub]).unwrap();
//!
//! let email_changed = Event::updated("Contact", "42")
//!     .data(json!({"email1": "new@example.com"}))
//!     .previous(json!({"email1": "old@example.com"}));
//! assert_eq!(matcher.matches(&email_changed).len(), 1);
//!
//! // The same change made by the sync job that set the skip key does not fire.
//! assert!(matcher.matches(&email_changed.clone().skip_key("gmail_sync")).is_empty());
//! ```
#![deny(missing_docs)]

mod error;
mod event;
mod filter;
mod known;
mod matcher;
mod name;
mod path;
mod redact;
mod size;
mod subscription;
mod time;
pub mod vendor;

pub use crate::error::InvalidSubscription;
pub use crate::event::{Action, Event, Related};
pub use crate::filter::{CompiledFilter, FieldFilter, FilterOp, MAX_PATTERN_LEN};
pub use crate::known::UnknownField;
pub use crate::matcher::{project, CompiledSubscription, Matcher, Miss};
pub use crate::name::{
    autotask_event_patterns, canonical_action, canonical_entity, EventName, Part, Pattern,
};
pub use crate::path::{changed_paths, lookup};
pub use crate::redact::{redact_url, REDACTED};
pub use crate::size::json_len_within;
pub use crate::subscription::{
    limits, EntityOptions, Kind, Profile, Secret, State, Subscription, PROFILE_HEADERS,
    RESERVED_HEADERS, SENDER_HEADERS,
};
pub use crate::time::{parse_rfc3339, rfc3339, Rfc3339};
pub use crate::vendor::{VendorError, VendorRules};
