//! Event names and subscription patterns, and the vendor spellings that normalise to them.
//!
//! Every vendor spells the same event differently: Pipeliner `Account.Update`, SuperOffice
//! `contact.changed`, callout `contact.updated`, Autotask an entity plus create/update/delete flags.
//! They all reduce to one canonical `entity.action`, so that matching compares plain strings.

use std::borrow::Cow;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::InvalidSubscription;

/// Entity names that two vendors use for the same record type. Autotask's legacy names win
/// because they are what its receivers see in `EntityType`.
const ENTITY_ALIASES: &[(&str, &str)] = &[
    ("company", "account"),
    ("companies", "account"),
    ("configurationitem", "installedproduct"),
    ("asset", "installedproduct"),
];

/// Verbs that mean one of the three standard actions, in the spellings the vendors use.
const ACTION_ALIASES: &[(&str, &str)] = &[
    ("create", "created"),
    ("created", "created"),
    ("new", "created"),
    ("update", "updated"),
    ("updated", "updated"),
    ("changed", "updated"),
    ("change", "updated"),
    ("modify", "updated"),
    ("modified", "updated"),
    ("delete", "deleted"),
    ("deleted", "deleted"),
    ("remove", "deleted"),
    ("removed", "deleted"),
];

/// Folds a name part: lowercase ASCII, without `_`, `-` and spaces, so that `TicketNote`,
/// `ticket_note` and `ticketnote` are one name (SPEC: entities compare case-insensitively).
fn fold(part: &str) -> Cow<'_, str> {
    let clean = part
        .bytes()
        .all(|b| !b.is_ascii_uppercase() && b != b'_' && b != b'-' && b != b' ');
    if clean {
        Cow::Borrowed(part)
    } else {
        let mut folded = String::with_capacity(part.len());
        folded.extend(
            part.chars()
                .filter(|c| !matches!(c, '_' | '-' | ' '))
                .map(|c| c.to_ascii_lowercase()),
        );
        Cow::Owned(folded)
    }
}

/// The canonical form of an entity name: folded, with vendor aliases resolved
/// (`Company` is `account`, `ConfigurationItem` is `installedproduct`).
///
/// ```
/// assert_eq!(callout_core::canonical_entity("Company"), "account");
/// assert_eq!(callout_core::canonical_entity("Ticket_Note"), "ticketnote");
/// ```
pub fn canonical_entity(entity: &str) -> Cow<'_, str> {
    let folded = fold(entity.trim());
    match ENTITY_ALIASES.iter().find(|(alias, _)| *alias == folded) {
        Some((_, canonical)) => Cow::Borrowed(canonical),
        None => folded,
    }
}

/// [`canonical_entity`] for the matcher's hot path: folds an ASCII name into `buf` instead of
/// allocating, which is most of the cost of matching an event with few candidates.
pub(crate) fn canonical_entity_in<'a>(entity: &'a str, buf: &'a mut [u8; 64]) -> Cow<'a, str> {
    let entity = entity.trim();
    if !entity.is_ascii() || entity.len() > buf.len() {
        return canonical_entity(entity);
    }
    let mut len = 0;
    for b in entity.bytes().filter(|b| !matches!(b, b'_' | b'-' | b' ')) {
        buf[len] = b.to_ascii_lowercase();
        len += 1;
    }
    // Only ASCII bytes were copied, so this cannot fail; the fallback keeps it panic-free.
    let Ok(folded) = std::str::from_utf8(&buf[..len]) else {
        return canonical_entity(entity);
    };
    match ENTITY_ALIASES.iter().find(|(alias, _)| *alias == folded) {
        Some((_, canonical)) => Cow::Borrowed(canonical),
        None => Cow::Borrowed(folded),
    }
}

/// The canonical form of an action: `created`, `updated`, `deleted`, or the folded custom verb.
///
/// ```
/// assert_eq!(callout_core::canonical_action("Update"), "updated");
/// assert_eq!(callout_core::canonical_action("changed"), "updated");
/// assert_eq!(callout_core::canonical_action("LinkedDocument"), "linkeddocument");
/// ```
pub fn canonical_action(action: &str) -> Cow<'_, str> {
    let folded = fold(action.trim());
    match ACTION_ALIASES.iter().find(|(alias, _)| *alias == folded) {
        Some((_, canonical)) => Cow::Borrowed(canonical),
        None => folded,
    }
}

/// One part of a [`Pattern`]: a name, or `*` for any.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Part {
    /// Matches every name.
    Any,
    /// Matches this canonical name only.
    Name(String),
}

impl Part {
    fn parse(raw: &str, canonical: fn(&str) -> Cow<'_, str>) -> Option<Part> {
        let raw = raw.trim();
        if raw == "*" {
            return Some(Part::Any);
        }
        let name = canonical(raw);
        let valid = !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_alphanumeric() || matches!(c, '/' | ':' | '+'));
        valid.then(|| Part::Name(name.into_owned()))
    }

    fn matches(&self, name: &str) -> bool {
        match self {
            Part::Any => true,
            Part::Name(n) => n == name,
        }
    }
}

impl fmt::Display for Part {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Part::Any => f.write_str("*"),
            Part::Name(n) => f.write_str(n),
        }
    }
}

/// A parsed event pattern: `contact.updated`, `contact.*`, `*.deleted` or `*`.
///
/// ```
/// use callout_core::Pattern;
/// let p: Pattern = "Account.*".parse().unwrap();
/// assert!(p.matches("account", "updated"));
/// assert!(p.matches("company", "created")); // Autotask: Account = Company
/// assert!(!p.matches("contact", "updated"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Pattern {
    /// The entity part.
    pub entity: Part,
    /// The action part.
    pub action: Part,
}

impl Pattern {
    /// Whether an event of this entity and action matches; both are canonicalised first.
    pub fn matches(&self, entity: &str, action: &str) -> bool {
        self.entity.matches(&canonical_entity(entity))
            && self.action.matches(&canonical_action(action))
    }

    /// Like [`Pattern::matches`], for names already in canonical form (the matcher's hot path).
    pub(crate) fn matches_canonical(&self, entity: &str, action: &str) -> bool {
        self.entity.matches(entity) && self.action.matches(action)
    }
}

impl std::str::FromStr for Pattern {
    type Err = InvalidSubscription;

    fn from_str(raw: &str) -> Result<Self, Self::Err> {
        let invalid = || InvalidSubscription::BadEventPattern {
            pattern: raw.to_string(),
        };
        let trimmed = raw.trim();
        if trimmed == "*" {
            return Ok(Pattern {
                entity: Part::Any,
                action: Part::Any,
            });
        }
        let (entity, action) = trimmed.split_once('.').ok_or_else(invalid)?;
        Ok(Pattern {
            entity: Part::parse(entity, canonical_entity).ok_or_else(invalid)?,
            action: Part::parse(action, canonical_action).ok_or_else(invalid)?,
        })
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.entity, &self.action) {
            (Part::Any, Part::Any) => f.write_str("*"),
            (e, a) => write!(f, "{e}.{a}"),
        }
    }
}

/// An event's canonical name, `entity.action`, lowercase.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct EventName {
    /// Canonical entity, see [`canonical_entity`].
    pub entity: String,
    /// Canonical action, see [`canonical_action`].
    pub action: String,
}

impl fmt::Display for EventName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.entity, self.action)
    }
}

/// The event patterns of an Autotask webhook: its entity and its `IsSubscribedTo*Events` flags.
///
/// ```
/// let events = callout_core::autotask_event_patterns("Account", false, true, false);
/// assert_eq!(events, vec!["account.updated".to_string()]);
/// ```
pub fn autotask_event_patterns(
    entity: &str,
    create: bool,
    update: bool,
    delete: bool,
) -> Vec<String> {
    let entity = canonical_entity(entity);
    [
        (create, "created"),
        (update, "updated"),
        (delete, "deleted"),
    ]
    .into_iter()
    .filter(|(on, _)| *on)
    .map(|(_, action)| format!("{entity}.{action}"))
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(p: &str) -> String {
        p.parse::<Pattern>().unwrap().to_string()
    }

    #[test]
    fn vendor_spellings_normalise_to_one_name() {
        assert_eq!(name("Account.Create"), "account.created");
        assert_eq!(name("contact.created"), "contact.created");
        assert_eq!(name("sale.changed"), "sale.updated");
        assert_eq!(name("Contact.Update"), "contact.updated");
        assert_eq!(name("Company.Delete"), "account.deleted");
        assert_eq!(name("Account.LinkedDocument"), "account.linkeddocument");
        assert_eq!(name("account.linked_document"), "account.linkeddocument");
        let mut buf = [0u8; 64];
        for name in [
            "TicketNote",
            "ticket_note",
            "Company",
            "x",
            &"Long".repeat(20),
            "Café",
        ] {
            assert_eq!(
                canonical_entity_in(name, &mut buf),
                canonical_entity(name),
                "{name}"
            );
        }
        assert_eq!(
            autotask_event_patterns("Company", true, true, true),
            ["account.created", "account.updated", "account.deleted"]
        );
    }

    #[test]
    fn wildcards_parse_and_match() {
        let all: Pattern = "*".parse().unwrap();
        assert!(all.matches("x", "y"));
        let deleted: Pattern = "*.deleted".parse().unwrap();
        assert!(deleted.matches("Ticket", "Delete"));
        assert!(!deleted.matches("Ticket", "Update"));
        let contact: Pattern = "contact.*".parse().unwrap();
        assert!(contact.matches("Contact", "Won"));
        assert_eq!(all.to_string(), "*");
        assert_eq!("*.*".parse::<Pattern>().unwrap().to_string(), "*");
    }

    #[test]
    fn malformed_patterns_are_refused() {
        for bad in [
            "",
            "contact",
            ".created",
            "contact.",
            "con*tact.created",
            "a.b c!",
            "**.x",
        ] {
            assert!(
                matches!(
                    bad.parse::<Pattern>(),
                    Err(InvalidSubscription::BadEventPattern { .. })
                ),
                "{bad:?} parsed"
            );
        }
    }
}
