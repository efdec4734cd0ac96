//! The three vendors' formats, so that their receivers and their clients work against callout
//! unchanged: wire bodies and headers ([`autotask`], [`superoffice`], [`pipeliner`]), their
//! delivery rules as data ([`VendorRules`]), and their webhook registration formats, parsed
//! into a [`Subscription`](crate::Subscription) and rendered back.
//!
//! Everything here is pure: ids, counters and times come in as arguments.
//!
//! ```
//! use callout_core::vendor::autotask;
//! use callout_core::{CompiledSubscription, Event};
//! use serde_json::json;
//!
//! let sub = autotask::parse_rest(
//!     r#"{"IsActive": true, "IsSubscribedToUpdateEvents": true, "Name": "crm.Ticket.Update",
//!         "WebhookUrl": "https://receiver.example/autotask", "WebhookGUID": "g-1",
//!         "Fields": [{"FieldName": "Title", "IsSubscribedField": true}]}"#,
//!     "Ticket",
//! )
//! .unwrap();
//! assert!(autotask::is_ready(&sub));
//! let compiled = CompiledSubscription::compile(sub).unwrap();
//! let event = Event::updated("Ticket", "7")
//!     .data(json!({"Title": "A & B"}))
//!     .changed(["Title"])
//!     .occurred_at(1_757_949_000_000);
//! let body = autotask::callout_body(&compiled, &event, 1, autotask::PersonIdCasing::default());
//! assert_eq!(
//!     String::from_utf8(body).unwrap(),
//!     r#"{"Action":"Update","Guid":"g-1","EntityType":"Ticket","Id":7,"Fields":{"Title":"A \u0026 B"},"EventTime":"2025-09-15T15:10:00Z","SequenceNumber":1,"PersonID":null}"#
//! );
//! ```

pub mod autotask;
mod fields;
mod json;
pub mod pipeliner;
mod rules;
pub mod superoffice;

use std::fmt;

use crate::error::InvalidSubscription;
use crate::subscription::Profile;

pub use self::rules::{DisableRule, RetryCycle, VendorRules};

/// Why a vendor's webhook definition was refused, in the vendor's own terms: `field` is the
/// name the vendor's API uses (`WebhookUrl`, `State`, `options.chunk_size`...), so a host can
/// hand the error to a client written for that API unchanged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VendorError {
    /// Whose format: [`Profile::Autotask`], [`Profile::Superoffice`] or [`Profile::Pipeliner`].
    pub vendor: Profile,
    /// The vendor's name of the offending field; empty for the document as a whole.
    pub field: String,
    /// What is wrong with it.
    pub reason: String,
    /// The model's own complaint: why the subscription did not validate once the fields
    /// parsed, or [`InvalidSubscription::UnknownField`] for a key the vendor does not document.
    pub source: Option<Box<InvalidSubscription>>,
}

impl VendorError {
    pub(crate) fn new(
        vendor: Profile,
        field: impl Into<String>,
        reason: impl Into<String>,
    ) -> Self {
        VendorError {
            vendor,
            field: field.into(),
            reason: reason.into(),
            source: None,
        }
    }

    /// Wraps a validation error, naming the vendor's field for callout's.
    pub(crate) fn invalid(vendor: Profile, field: String, error: InvalidSubscription) -> Self {
        // InvalidSubscription messages read "<callout field>: <reason>"; keep the reason only,
        // since the field is now named the vendor's way.
        let message = error.to_string();
        let reason = message
            .split_once(": ")
            .map_or(message.as_str(), |(_, reason)| reason)
            .to_string();
        VendorError {
            vendor,
            field,
            reason,
            source: Some(Box::new(error)),
        }
    }
}

impl fmt::Display for VendorError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let vendor = match self.vendor {
            Profile::Autotask => "Autotask",
            Profile::Superoffice => "SuperOffice",
            Profile::Pipeliner => "Pipeliner",
            Profile::Standard => "callout",
        };
        if self.field.is_empty() {
            write!(f, "{vendor} webhook: {}", self.reason)
        } else {
            write!(f, "{vendor} webhook {}: {}", self.field, self.reason)
        }
    }
}

impl std::error::Error for VendorError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_ref()
            .map(|e| &**e as &(dyn std::error::Error + 'static))
    }
}
