//! Which keys an input document may have, and the nearest known key to suggest for a stranger.
//!
//! The model's serde types accept unknown keys on purpose: a store written by a newer callout,
//! with fields this one does not know, must still open. Input from people is another matter (a
//! `secret` where `secrets` was meant creates a webhook that sends unsigned), so the parsers at
//! the input boundary check keys here before serde sees them.

use std::cell::Cell;
use std::fmt;

use serde::de::{self, DeserializeOwned, Visitor};
use serde_json::{Map, Value};

use crate::event::{Event, Related};
use crate::filter::FieldFilter;
use crate::subscription::{EntityOptions, ExpiringSecret, Subscription};

/// A key that a document has and its type does not, with the known key it most resembles.
///
/// ```
/// use callout_core::Subscription;
/// let err = Subscription::from_json(r#"{"target_url": "https://r.example/", "secret": "x"}"#);
/// assert_eq!(
///     err.unwrap_err().to_string(),
///     r#"unknown field "secret" (did you mean "secrets"?)"#
/// );
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownField {
    /// Where the key is, as a dot path from the document's top (`entities.Contact.filtrs`).
    pub field: String,
    /// The known key at that place closest to it (ignoring case), when one is close enough to
    /// be a likely typo.
    pub suggestion: Option<String>,
}

impl fmt::Display for UnknownField {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&message(&self.field, self.suggestion.as_deref()))
    }
}

/// `unknown field "secret" (did you mean "secrets"?)`, the one wording of every unknown key.
pub(crate) fn message(field: &str, suggestion: Option<&str>) -> String {
    match suggestion {
        Some(suggestion) => format!("unknown field {field:?} (did you mean {suggestion:?}?)"),
        None => format!("unknown field {field:?}"),
    }
}

impl std::error::Error for UnknownField {}

/// The known key closest to `key`, ignoring case, if at most about a third of it differs.
pub(crate) fn suggest<'a>(key: &str, known: &[&'a str]) -> Option<&'a str> {
    // No known key is this long: a longer one is nobody's typo, and measuring it against each
    // would cost its length times theirs.
    if key.chars().count() > SUGGEST_MAX {
        return None;
    }
    let key = key.to_lowercase();
    known
        .iter()
        .map(|k| (distance(&key, &k.to_lowercase()), *k))
        .filter(|(d, k)| *d * 3 <= key.chars().count().max(k.chars().count()))
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

/// The longest unknown key a suggestion is looked for.
const SUGGEST_MAX: usize = 64;

/// Edit distance with adjacent transpositions (optimal string alignment), in characters.
fn distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut rows = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in rows.iter_mut().enumerate() {
        row[0] = i;
    }
    rows[0] = (0..=b.len()).collect();
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (rows[i - 1][j] + 1)
                .min(rows[i][j - 1] + 1)
                .min(rows[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(rows[i - 2][j - 2] + 1);
            }
            rows[i][j] = best;
        }
    }
    rows[a.len()][b.len()]
}

/// The first key of `map` not in `known` (compared exactly, as serde does), reported at `at`.
fn only(map: &Map<String, Value>, at: &str, known: &[&str]) -> Result<(), UnknownField> {
    match map.keys().find(|k| !known.contains(&k.as_str())) {
        Some(key) => Err(UnknownField {
            field: format!("{at}{key}"),
            suggestion: suggest(key, known).map(str::to_string),
        }),
        None => Ok(()),
    }
}

/// The field names `T`'s derived `Deserialize` accepts, as serde hands them to the
/// deserializer: no second list to keep in step with the struct.
fn fields_of<T: DeserializeOwned>() -> &'static [&'static str] {
    let seen = Cell::new(&[][..]);
    // The probe always stops with an error once it has the names.
    let _ = T::deserialize(Probe(&seen));
    seen.get()
}

/// A deserializer that only records the field list of the struct asked of it.
struct Probe<'a>(&'a Cell<&'static [&'static str]>);

#[derive(Debug)]
struct Stop;

impl fmt::Display for Stop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("probe")
    }
}

impl std::error::Error for Stop {}

impl de::Error for Stop {
    fn custom<T: fmt::Display>(_: T) -> Self {
        Stop
    }
}

impl<'de> de::Deserializer<'de> for Probe<'_> {
    type Error = Stop;

    fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Stop> {
        Err(Stop)
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        fields: &'static [&'static str],
        _: V,
    ) -> Result<V::Value, Stop> {
        self.0.set(fields);
        Err(Stop)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier
        ignored_any
    }
}

/// Checks the keys of callout's subscription JSON, nested options and filters included.
/// Values of the wrong type are left for serde to report.
pub(crate) fn subscription(value: &Value) -> Result<(), UnknownField> {
    let Value::Object(top) = value else {
        return Ok(());
    };
    only(top, "", fields_of::<Subscription>())?;
    if let Some(Value::Array(secrets)) = top.get("secrets") {
        for (i, secret) in secrets.iter().enumerate() {
            if let Value::Object(secret) = secret {
                only(
                    secret,
                    &format!("secrets[{i}]."),
                    fields_of::<ExpiringSecret>(),
                )?;
            }
        }
    }
    if let Some(Value::Object(entities)) = top.get("entities") {
        for (entity, options) in entities {
            entity_options(options, &format!("entities.{entity}."))?;
        }
    }
    if let Some(related) = top.get("related") {
        entity_options(related, "related.")?;
    }
    Ok(())
}

fn entity_options(value: &Value, at: &str) -> Result<(), UnknownField> {
    let Value::Object(options) = value else {
        return Ok(());
    };
    only(options, at, fields_of::<EntityOptions>())?;
    if let Some(Value::Array(filters)) = options.get("filters") {
        for (i, filter) in filters.iter().enumerate() {
            if let Value::Object(filter) = filter {
                only(
                    filter,
                    &format!("{at}filters[{i}]."),
                    fields_of::<FieldFilter>(),
                )?;
            }
        }
    }
    Ok(())
}

/// Checks the keys of an event in the engine's JSON form, its related record included; `data`
/// and `previous` are the host's own records and may hold anything.
pub(crate) fn event(value: &Value) -> Result<(), UnknownField> {
    let Value::Object(top) = value else {
        return Ok(());
    };
    only(top, "", fields_of::<Event>())?;
    if let Some(Value::Object(related)) = top.get("related") {
        only(related, "related.", fields_of::<Related>())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_probe_reads_the_derived_field_lists() {
        let subscription = fields_of::<Subscription>();
        assert!(subscription.contains(&"secrets") && subscription.contains(&"entities"));
        // What callout writes, it reads back: every serialized key is a known one.
        let written = serde_json::to_value(Subscription::default()).unwrap();
        let keys: Vec<&String> = written.as_object().unwrap().keys().collect();
        assert_eq!(keys.len(), subscription.len());
        assert!(keys.iter().all(|k| subscription.contains(&k.as_str())));
        assert_eq!(fields_of::<FieldFilter>(), ["path", "op", "value"]);
        assert_eq!(fields_of::<ExpiringSecret>(), ["secret", "expires_at"]);
        assert!(fields_of::<Event>().contains(&"occurred_at"));
        assert_eq!(fields_of::<Related>(), ["entity", "id", "data"]);
    }

    #[test]
    fn suggestions_are_close_and_ignore_case() {
        let known = ["secrets", "events", "target_url", "on_field_change"];
        assert_eq!(suggest("secret", &known), Some("secrets"));
        assert_eq!(suggest("Events", &known), Some("events"));
        assert_eq!(suggest("evnets", &known), Some("events"));
        assert_eq!(suggest("target-url", &known), Some("target_url"));
        assert_eq!(suggest("on_field_changes", &known), Some("on_field_change"));
        assert_eq!(suggest("colour", &known), None);
        assert_eq!(suggest("x", &known), None);
        assert_eq!(suggest(&"secrets".repeat(1_000_000), &known), None);
    }

    #[test]
    fn distance_counts_edits() {
        assert_eq!(distance("", "abc"), 3);
        assert_eq!(distance("abc", "abc"), 0);
        assert_eq!(distance("abc", "acb"), 1);
        assert_eq!(distance("kitten", "sitting"), 3);
    }
}
