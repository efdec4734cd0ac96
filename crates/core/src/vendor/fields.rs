//! Reading the vendors' webhook documents: case-insensitive field access with typed errors in
//! the vendor's terms, the lenient scalars .NET APIs accept, and timestamps with offsets.

use serde_json::{Map, Value};

use super::VendorError;
use crate::error::InvalidSubscription;
use crate::known::suggest;
use crate::subscription::Profile;
use crate::time::parse_rfc3339;

/// A JSON object of one vendor's document. Keys are found case-insensitively, as .NET model
/// binding does (Autotask's own table spells `Deactivationurl`, its sample `DeactivationUrl`).
pub(crate) struct Fields<'a> {
    pub(crate) vendor: Profile,
    /// Prefix of error field names (`options.`), empty at the top level.
    pub(crate) prefix: String,
    pub(crate) map: &'a Map<String, Value>,
}

impl<'a> Fields<'a> {
    pub(crate) fn new(vendor: Profile, value: &'a Value, what: &str) -> Result<Self, VendorError> {
        match value {
            Value::Object(map) => Ok(Fields {
                vendor,
                prefix: if what.is_empty() {
                    String::new()
                } else {
                    format!("{what}.")
                },
                map,
            }),
            _ => Err(VendorError::new(vendor, what, "must be a JSON object")),
        }
    }

    pub(crate) fn name(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }

    pub(crate) fn error(&self, key: &str, reason: impl Into<String>) -> VendorError {
        VendorError::new(self.vendor, self.name(key), reason)
    }

    /// The value under `key`, ignoring case; null counts as absent.
    pub(crate) fn get(&self, key: &str) -> Option<&'a Value> {
        self.map
            .get(key)
            .or_else(|| {
                self.map
                    .iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case(key))
                    .map(|(_, v)| v)
            })
            .filter(|v| !v.is_null())
    }

    pub(crate) fn string(&self, key: &str) -> Result<Option<String>, VendorError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(self.error(key, "must be a string")),
        }
    }

    pub(crate) fn required_string(&self, key: &str) -> Result<String, VendorError> {
        match self.string(key)? {
            Some(s) if !s.trim().is_empty() => Ok(s),
            _ => Err(self.error(key, "is required")),
        }
    }

    /// A boolean: JSON `true`/`false`, or the text SOAP and form posts carry (`True`, `0`...).
    pub(crate) fn bool(&self, key: &str) -> Result<Option<bool>, VendorError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(Value::String(s)) => match s.trim().to_ascii_lowercase().as_str() {
                "true" | "1" => Ok(Some(true)),
                "false" | "0" => Ok(Some(false)),
                _ => Err(self.error(key, format!("{s:?} is not true or false"))),
            },
            Some(_) => Err(self.error(key, "must be true or false")),
        }
    }

    /// A non-negative integer, as a JSON number or decimal text.
    pub(crate) fn u64(&self, key: &str) -> Result<Option<u64>, VendorError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Number(n)) => n
                .as_u64()
                .map(Some)
                .ok_or_else(|| self.error(key, format!("{n} is not a non-negative integer"))),
            Some(Value::String(s)) => s
                .trim()
                .parse()
                .map(Some)
                .map_err(|_| self.error(key, format!("{s:?} is not a non-negative integer"))),
            Some(_) => Err(self.error(key, "must be an integer")),
        }
    }

    /// An id that may be a number or a string, kept as text.
    pub(crate) fn id(&self, key: &str) -> Result<Option<String>, VendorError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Number(n)) => Ok(Some(n.to_string())),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(self.error(key, "must be a number or a string")),
        }
    }

    pub(crate) fn strings(&self, key: &str) -> Result<Option<Vec<String>>, VendorError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| v.as_str().map(str::to_string))
                .collect::<Option<Vec<_>>>()
                .map(Some)
                .ok_or_else(|| self.error(key, "must be a list of strings")),
            Some(_) => Err(self.error(key, "must be a list of strings")),
        }
    }

    pub(crate) fn array(&self, key: &str) -> Result<&'a [Value], VendorError> {
        match self.get(key) {
            None => Ok(&[]),
            Some(Value::Array(items)) => Ok(items),
            Some(_) => Err(self.error(key, "must be a list")),
        }
    }

    pub(crate) fn object(&self, key: &str) -> Result<Option<&'a Map<String, Value>>, VendorError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Object(map)) => Ok(Some(map)),
            Some(_) => Err(self.error(key, "must be an object")),
        }
    }

    /// A date-time (RFC 3339, with or without an offset) as Unix milliseconds.
    pub(crate) fn time(&self, key: &str) -> Result<Option<u64>, VendorError> {
        match self.string(key)? {
            None => Ok(None),
            Some(text) => parse_time(&text)
                .map(Some)
                .ok_or_else(|| self.error(key, format!("{text:?} is not a date-time"))),
        }
    }

    /// Refuses keys outside `known` (ignoring case, as the vendors' APIs do), naming the first
    /// stranger and the known key it most resembles.
    pub(crate) fn only(&self, known: &[&str]) -> Result<(), VendorError> {
        let Some(key) = self
            .map
            .keys()
            .find(|k| !known.iter().any(|n| n.eq_ignore_ascii_case(k)))
        else {
            return Ok(());
        };
        let suggestion = suggest(key, known);
        let reason = match suggestion {
            Some(meant) => format!("is not a known field (did you mean {meant:?}?)"),
            None => "is not a known field".to_string(),
        };
        let mut error = self.error(key, reason);
        error.source = Some(Box::new(InvalidSubscription::UnknownField {
            field: self.name(key),
            suggestion: suggestion.map(str::to_string),
        }));
        Err(error)
    }
}

/// Parses `2024-04-18T14:34:02.9242705+02:00`, `...Z` or `2019-01-01T00:00:00` (taken as UTC)
/// into Unix milliseconds, blanks around it ignored: [`parse_rfc3339`] says the rest.
pub(crate) fn parse_time(text: &str) -> Option<u64> {
    parse_rfc3339(text.trim())
}

/// Splits a comma-separated list, trimming blanks away.
pub(crate) fn comma_list(text: &str) -> Vec<String> {
    text.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::rfc3339;

    #[test]
    fn times_with_offsets_and_fractions() {
        assert_eq!(parse_time("2025-09-15T15:10:00Z"), Some(1_757_949_000_000));
        assert_eq!(
            parse_time("2025-09-15T17:10:00+02:00"),
            Some(1_757_949_000_000)
        );
        assert_eq!(
            parse_time("2025-09-15T14:10:00.5-01:00"),
            Some(1_757_949_000_500)
        );
        let ms = parse_time("2024-04-18T14:34:02.9242705+02:00").unwrap();
        assert_eq!(rfc3339(ms, 7), "2024-04-18T12:34:02.9240000Z");
        assert_eq!(parse_time("2019-01-01T00:00:00"), Some(1_546_300_800_000));
        assert_eq!(parse_time("2000-02-29T00:00:00Z"), Some(951_782_400_000));
        assert_eq!(
            parse_time(" 2019-01-01T00:00:00Z\n"),
            Some(1_546_300_800_000)
        );
        for bad in [
            "",
            // Once read as March 3rd: the calendar now refuses days a month does not have.
            "2023-02-31T00:00:00Z",
            "2023-02-29T00:00:00Z",
            "2019-04-31T00:00:00",
            "2019-01-01",
            "2019-13-01T00:00:00",
            "2019-01-01T00:00:00+2",
            "x",
        ] {
            assert_eq!(parse_time(bad), None, "{bad}");
        }
        assert_eq!(parse_time("1969-12-31T23:59:59Z"), None);
    }

    #[test]
    fn an_impossible_date_is_an_error_naming_the_field() {
        let doc = serde_json::json!({"Created": "2023-02-31T10:00:00Z"});
        let fields = Fields::new(Profile::Superoffice, &doc, "").unwrap();
        let err = fields.time("Created").unwrap_err();
        assert_eq!(
            err,
            VendorError::new(
                Profile::Superoffice,
                "Created",
                "\"2023-02-31T10:00:00Z\" is not a date-time"
            )
        );
    }
}
