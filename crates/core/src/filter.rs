//! Field filters: Pipeliner's `filter` / `filter-op` operators, plus `regex` and `like`.
//!
//! A filter is written as data ([`FieldFilter`]) and compiled once, when its subscription is
//! loaded, into a [`CompiledFilter`] whose regexes are ready, so matching an event never
//! compiles anything.

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

use regex::{Regex, RegexBuilder};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::InvalidSubscription;
use crate::path::{self, Path};

/// Bounds a user-supplied pattern: its source length and the compiled program's size, so a
/// subscription cannot make the matcher slow or large.
pub const MAX_PATTERN_LEN: usize = 1_000;
const REGEX_SIZE_LIMIT: usize = 256 * 1024;

/// A filter operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FilterOp {
    /// Equal (numbers as numbers, strings as strings).
    Eq,
    /// Equal, ignoring case.
    IEq,
    /// Not equal.
    NotEq,
    /// Not equal, ignoring case.
    NotIEq,
    /// The string contains the value, or the array contains it as an element.
    Contains,
    /// The string starts with the value.
    Starts,
    /// The string ends with the value.
    Ends,
    /// [`FilterOp::Contains`], ignoring case.
    IContains,
    /// [`FilterOp::Starts`], ignoring case.
    IStarts,
    /// [`FilterOp::Ends`], ignoring case.
    IEnds,
    /// The field is absent or null.
    Null,
    /// The field is present and not null.
    NotNull,
    /// The field is absent, null, `""`, `[]` or `{}`.
    Empty,
    /// The opposite of [`FilterOp::Empty`].
    NotEmpty,
    /// Greater than.
    Gt,
    /// Greater than or equal.
    Gte,
    /// Less than.
    Lt,
    /// Less than or equal.
    Lte,
    /// Within `[lo, hi]`, inclusive.
    Between,
    /// The string matches a regular expression (unanchored).
    Regex,
    /// The string matches an SQL `LIKE` pattern: `%` any run, `_` one character; case-sensitive.
    Like,
}

const OPS: &[(&str, FilterOp)] = &[
    ("eq", FilterOp::Eq),
    ("ieq", FilterOp::IEq),
    ("not-eq", FilterOp::NotEq),
    ("not-ieq", FilterOp::NotIEq),
    ("contains", FilterOp::Contains),
    ("starts", FilterOp::Starts),
    ("ends", FilterOp::Ends),
    ("icontains", FilterOp::IContains),
    ("istarts", FilterOp::IStarts),
    ("iends", FilterOp::IEnds),
    ("null", FilterOp::Null),
    ("not-null", FilterOp::NotNull),
    ("empty", FilterOp::Empty),
    ("not-empty", FilterOp::NotEmpty),
    ("gt", FilterOp::Gt),
    ("gte", FilterOp::Gte),
    ("lt", FilterOp::Lt),
    ("lte", FilterOp::Lte),
    ("between", FilterOp::Between),
    ("regex", FilterOp::Regex),
    ("like", FilterOp::Like),
];

impl FilterOp {
    /// The operator's name as written in `filter-op`.
    pub fn as_str(self) -> &'static str {
        OPS.iter()
            .find(|(_, op)| *op == self)
            .map_or("eq", |(name, _)| name)
    }
}

impl FromStr for FilterOp {
    type Err = ();

    /// Parses an operator name; `not_eq` and `NOT-EQ` are accepted for `not-eq`.
    fn from_str(raw: &str) -> Result<Self, ()> {
        let name = raw.trim().to_ascii_lowercase().replace('_', "-");
        OPS.iter()
            .find(|(n, _)| *n == name)
            .map(|(_, op)| *op)
            .ok_or(())
    }
}

impl fmt::Display for FilterOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One field condition as written by a user: a dot path, an operator name, and a value (a list
/// value means "any of").
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FieldFilter {
    /// Dot path into the record's data (`address.city`).
    pub path: String,
    /// Operator name (`eq`, `not-eq`, `between`...); default `eq`.
    #[serde(default = "default_op")]
    pub op: String,
    /// The value to compare with; a list means any of.
    #[serde(default)]
    pub value: Value,
}

fn default_op() -> String {
    "eq".to_string()
}

impl FieldFilter {
    /// A filter on `path` with operator `op` (validated when the subscription is).
    pub fn new(path: impl Into<String>, op: impl Into<String>, value: Value) -> FieldFilter {
        FieldFilter {
            path: path.into(),
            op: op.into(),
            value,
        }
    }
}

/// The value side of a compiled filter. Kept small, and a single value inline, because the
/// matcher's index lays a bucket's filters end to end and reads them for every candidate.
#[derive(Debug, Clone)]
enum Operand {
    /// One value to compare with: the common case.
    One(Value),
    /// Values to compare with; the filter passes when any does.
    Values(Box<[Value]>),
    /// Lowercased strings, for the case-insensitive operators.
    Folded(Folded),
    /// `between`: inclusive bounds of one type.
    Range(Box<(Value, Value)>),
    /// `regex` / `like`: compiled patterns, any of.
    Patterns(Box<[Regex]>),
    /// `null`, `empty` and their negations look at the field alone.
    None,
}

/// What a filter asks of the one field it reads, apart from where that field is, so that the
/// matcher can look a field up once for every candidate that reads it.
#[derive(Debug, Clone)]
pub(crate) struct Test {
    op: FilterOp,
    operand: Operand,
}

/// A filter ready to evaluate: operator parsed, regexes compiled.
#[derive(Debug, Clone)]
pub struct CompiledFilter {
    path: Path,
    test: Test,
}

impl CompiledFilter {
    /// Compiles a filter of `entity`'s options, or says what is wrong with it.
    pub fn compile(
        entity: &str,
        filter: &FieldFilter,
    ) -> Result<CompiledFilter, InvalidSubscription> {
        if !path::is_valid(&filter.path) {
            return Err(InvalidSubscription::BadPath {
                field: format!("filters.{entity}"),
                path: filter.path.clone(),
            });
        }
        let op =
            FilterOp::from_str(&filter.op).map_err(|()| InvalidSubscription::UnknownOperator {
                entity: entity.to_string(),
                field: filter.path.clone(),
                op: filter.op.clone(),
            })?;
        let bad = |reason: &str| InvalidSubscription::BadFilterValue {
            entity: entity.to_string(),
            field: filter.path.clone(),
            op: op.to_string(),
            reason: reason.to_string(),
        };
        let values: Vec<Value> = match &filter.value {
            Value::Array(items) if op != FilterOp::Between => items.clone(),
            other => vec![other.clone()],
        };
        let strings = || -> Result<Vec<String>, InvalidSubscription> {
            values
                .iter()
                .map(|v| v.as_str().map(str::to_string))
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| bad("takes a string or a list of strings"))
        };
        let operand = match op {
            FilterOp::Null | FilterOp::NotNull | FilterOp::Empty | FilterOp::NotEmpty => {
                Operand::None
            }
            FilterOp::Eq | FilterOp::NotEq => {
                if values.is_empty() {
                    return Err(bad("needs at least one value"));
                }
                Operand::values(values)
            }
            FilterOp::Starts | FilterOp::Ends => {
                Operand::values(strings()?.into_iter().map(Value::String).collect())
            }
            // Any value: a string field looks for a substring, an array field for an element.
            FilterOp::Contains => {
                if values.is_empty() {
                    return Err(bad("needs at least one value"));
                }
                Operand::values(values)
            }
            FilterOp::IEq
            | FilterOp::NotIEq
            | FilterOp::IContains
            | FilterOp::IStarts
            | FilterOp::IEnds => {
                Operand::Folded(Folded::new(strings()?.iter().map(|s| s.to_lowercase())))
            }
            FilterOp::Gt | FilterOp::Gte | FilterOp::Lt | FilterOp::Lte => {
                if values.is_empty() || !values.iter().all(|v| v.is_number() || v.is_string()) {
                    return Err(bad("takes numbers or strings"));
                }
                Operand::values(values)
            }
            FilterOp::Between => match &filter.value {
                Value::Array(bounds)
                    if bounds.len() == 2
                        && compare(&bounds[0], &bounds[1])
                            .is_some_and(|o| o != Ordering::Greater) =>
                {
                    Operand::Range(Box::new((bounds[0].clone(), bounds[1].clone())))
                }
                _ => return Err(bad("takes [lo, hi]: two numbers or two strings, lo <= hi")),
            },
            FilterOp::Regex | FilterOp::Like => {
                let sources = strings()?;
                let mut patterns = Vec::with_capacity(sources.len());
                for source in &sources {
                    let bad_regex = |reason: String| InvalidSubscription::BadRegex {
                        entity: entity.to_string(),
                        field: filter.path.clone(),
                        pattern: source.clone(),
                        reason,
                    };
                    if source.len() > MAX_PATTERN_LEN {
                        return Err(bad_regex(format!("longer than {MAX_PATTERN_LEN} bytes")));
                    }
                    let regex_source = if op == FilterOp::Like {
                        like_to_regex(source)
                    } else {
                        source.clone()
                    };
                    let regex = RegexBuilder::new(&regex_source)
                        .size_limit(REGEX_SIZE_LIMIT)
                        .dfa_size_limit(REGEX_SIZE_LIMIT)
                        .build()
                        .map_err(|e| bad_regex(e.to_string()))?;
                    patterns.push(regex);
                }
                if patterns.is_empty() {
                    return Err(bad("needs at least one pattern"));
                }
                Operand::Patterns(patterns.into())
            }
        };
        Ok(CompiledFilter {
            path: Path::new(&filter.path),
            test: Test { op, operand },
        })
    }

    /// The operator.
    pub fn op(&self) -> FilterOp {
        self.test.op
    }

    /// The field path this filter reads.
    pub fn path(&self) -> &str {
        self.path.as_str()
    }

    /// Whether the record's data passes. Mismatched types never pass, whatever the operator.
    pub fn passes(&self, data: &Value) -> bool {
        self.test.passes(self.path.lookup(data))
    }

    /// The filter as the matcher's index keeps it: the path, and the test on what it finds.
    pub(crate) fn parts(&self) -> (&Path, &Test) {
        (&self.path, &self.test)
    }
}

/// Lowercased strings in one allocation, not one per string plus a list: the matcher reads
/// them for every candidate, and each allocation is a cache line to fetch.
#[derive(Debug, Clone)]
struct Folded {
    /// The strings joined by `sep`; `None` for no strings, which `""` could not tell apart
    /// from one empty string.
    joined: Option<Box<str>>,
    /// A character none of the strings contains.
    sep: char,
}

impl Folded {
    fn new(values: impl Iterator<Item = String>) -> Folded {
        let values: Vec<String> = values.collect();
        let sep = ('\0'..=char::MAX)
            .find(|c| values.iter().all(|v| !v.contains(*c)))
            .unwrap_or('\0');
        Folded {
            joined: (!values.is_empty()).then(|| values.join(sep.encode_utf8(&mut [0; 4])).into()),
            sep,
        }
    }

    fn iter(&self) -> impl Iterator<Item = &str> {
        let mut rest = self.joined.as_deref();
        std::iter::from_fn(move || {
            let text = rest?;
            // `sep` is ASCII but for strings that use every ASCII character. A byte search is
            // then exact (no longer character contains an ASCII byte) and, on strings this
            // short, far cheaper than `str::split`'s.
            let at = if self.sep.is_ascii() {
                text.bytes()
                    .position(|b| u32::from(b) == u32::from(self.sep))
            } else {
                text.find(self.sep)
            };
            rest = at.map(|at| &text[at + self.sep.len_utf8()..]);
            Some(at.map_or(text, |at| &text[..at]))
        })
    }
}

impl Operand {
    fn values(mut values: Vec<Value>) -> Operand {
        match values.len() {
            1 => Operand::One(values.pop().unwrap_or_default()),
            _ => Operand::Values(values.into()),
        }
    }
}

impl Test {
    /// Whether the field found at the filter's path (`None`: absent) passes.
    pub(crate) fn passes(&self, field: Option<&Value>) -> bool {
        match (self.op, &self.operand) {
            (FilterOp::Null, _) => field.is_none_or(Value::is_null),
            (FilterOp::NotNull, _) => field.is_some_and(|v| !v.is_null()),
            (FilterOp::Empty, _) => field.is_none_or(is_empty),
            (FilterOp::NotEmpty, _) => field.is_some_and(|v| !is_empty(v)),
            (op, operand) => field.is_some_and(|field| compare_field(op, operand, field)),
        }
    }
}

fn is_empty(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
        _ => false,
    }
}

fn compare_field(op: FilterOp, operand: &Operand, field: &Value) -> bool {
    match operand {
        Operand::One(value) => compare_values(op, std::slice::from_ref(value), field),
        Operand::Values(values) => compare_values(op, values, field),
        Operand::Folded(values) => compare_folded(op, values.iter(), field),
        Operand::Range(bounds) => {
            let (lo, hi) = &**bounds;
            compare(field, lo).is_some_and(|o| o != Ordering::Less)
                && compare(field, hi).is_some_and(|o| o != Ordering::Greater)
        }
        Operand::Patterns(patterns) => field
            .as_str()
            .is_some_and(|f| patterns.iter().any(|p| p.is_match(f))),
        Operand::None => false,
    }
}

fn compare_values(op: FilterOp, values: &[Value], field: &Value) -> bool {
    match op {
        FilterOp::Eq => values
            .iter()
            .any(|v| compare(field, v) == Some(Ordering::Equal)),
        // Not equal to any of the values, and of a comparable type.
        FilterOp::NotEq => values
            .iter()
            .all(|v| compare(field, v).is_some_and(|o| o != Ordering::Equal)),
        FilterOp::Contains => values.iter().any(|v| match (field, v) {
            (Value::String(f), Value::String(v)) => f.contains(v.as_str()),
            (Value::Array(items), v) => {
                items.iter().any(|i| compare(i, v) == Some(Ordering::Equal))
            }
            _ => false,
        }),
        FilterOp::Starts | FilterOp::Ends => {
            let Some(f) = field.as_str() else {
                return false;
            };
            values.iter().filter_map(Value::as_str).any(|v| {
                if op == FilterOp::Starts {
                    f.starts_with(v)
                } else {
                    f.ends_with(v)
                }
            })
        }
        FilterOp::Gt => values
            .iter()
            .any(|v| compare(field, v) == Some(Ordering::Greater)),
        FilterOp::Gte => values
            .iter()
            .any(|v| compare(field, v).is_some_and(|o| o != Ordering::Less)),
        FilterOp::Lt => values
            .iter()
            .any(|v| compare(field, v) == Some(Ordering::Less)),
        FilterOp::Lte => values
            .iter()
            .any(|v| compare(field, v).is_some_and(|o| o != Ordering::Greater)),
        _ => false,
    }
}

fn compare_folded<'a>(
    op: FilterOp,
    mut values: impl Iterator<Item = &'a str>,
    field: &Value,
) -> bool {
    let Some(f) = field.as_str() else {
        return false;
    };
    if f.is_ascii() {
        // The common case needs no lowercased copy of the field.
        let starts = |v: &str| {
            f.len() >= v.len() && f.as_bytes()[..v.len()].eq_ignore_ascii_case(v.as_bytes())
        };
        let ends = |v: &str| {
            f.len() >= v.len()
                && f.as_bytes()[f.len() - v.len()..].eq_ignore_ascii_case(v.as_bytes())
        };
        match op {
            FilterOp::IEq => return values.any(|v| f.eq_ignore_ascii_case(v)),
            FilterOp::NotIEq => return values.all(|v| !f.eq_ignore_ascii_case(v)),
            FilterOp::IStarts => return values.any(starts),
            FilterOp::IEnds => return values.any(ends),
            _ => {}
        }
    }
    let f = f.to_lowercase();
    match op {
        FilterOp::IEq => values.any(|v| v == f),
        FilterOp::NotIEq => values.all(|v| v != f),
        FilterOp::IContains => values.any(|v| f.contains(v)),
        FilterOp::IStarts => values.any(|v| f.starts_with(v)),
        FilterOp::IEnds => values.any(|v| f.ends_with(v)),
        _ => false,
    }
}

/// Orders two JSON values of the same kind: numbers as numbers (exactly for integers), strings
/// bytewise, booleans false < true, null = null. Anything else is incomparable.
pub(crate) fn compare(a: &Value, b: &Value) -> Option<Ordering> {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            if let (Some(x), Some(y)) = (x.as_i64(), y.as_i64()) {
                Some(x.cmp(&y))
            } else if let (Some(x), Some(y)) = (x.as_u64(), y.as_u64()) {
                Some(x.cmp(&y))
            } else {
                x.as_f64()?.partial_cmp(&y.as_f64()?)
            }
        }
        (Value::String(x), Value::String(y)) => Some(x.cmp(y)),
        (Value::Bool(x), Value::Bool(y)) => Some(x.cmp(y)),
        (Value::Null, Value::Null) => Some(Ordering::Equal),
        (Value::Array(_), Value::Array(_)) | (Value::Object(_), Value::Object(_)) => {
            (a == b).then_some(Ordering::Equal)
        }
        _ => None,
    }
}

/// Turns an SQL `LIKE` pattern into an anchored regex: `%` is any run, `_` one character, all
/// else literal.
fn like_to_regex(like: &str) -> String {
    let mut out = String::with_capacity(like.len() + 8);
    out.push_str("(?s)^");
    let mut literal = [0u8; 4];
    for c in like.chars() {
        match c {
            '%' => out.push_str(".*"),
            '_' => out.push('.'),
            c => out.push_str(&regex::escape(c.encode_utf8(&mut literal))),
        }
    }
    out.push('$');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn passes(path: &str, op: &str, value: Value, data: Value) -> bool {
        CompiledFilter::compile("Contact", &FieldFilter::new(path, op, value))
            .unwrap()
            .passes(&data)
    }

    fn rejects(op: &str, value: Value) -> InvalidSubscription {
        CompiledFilter::compile("Contact", &FieldFilter::new("f", op, value)).unwrap_err()
    }

    #[test]
    fn every_operator_name_parses_and_prints_back() {
        for (name, op) in OPS {
            assert_eq!(FilterOp::from_str(name), Ok(*op));
            assert_eq!(op.as_str(), *name);
        }
        assert_eq!(FilterOp::from_str("NOT_EQ"), Ok(FilterOp::NotEq));
        assert!(FilterOp::from_str("approx").is_err());
    }

    #[test]
    fn equality_operators() {
        let d = json!({"email": "A@x.com", "n": 5, "f": 5.0, "big": u64::MAX, "s": "5"});
        assert!(passes("email", "eq", json!("A@x.com"), d.clone()));
        assert!(!passes("email", "eq", json!("a@x.com"), d.clone()));
        assert!(passes("email", "ieq", json!("a@X.COM"), d.clone()));
        assert!(passes(
            "email",
            "eq",
            json!(["b@x.com", "A@x.com"]),
            d.clone()
        ));
        assert!(
            passes("n", "eq", json!(5.0), d.clone()),
            "numbers compare as numbers"
        );
        assert!(passes("big", "eq", json!(u64::MAX), d.clone()));
        assert!(
            !passes("s", "eq", json!(5), d.clone()),
            "a string never equals a number"
        );
        assert!(!passes("n", "eq", json!("5"), d.clone()));
        assert!(passes("email", "not-eq", json!(["b", "c"]), d.clone()));
        assert!(!passes(
            "email",
            "not-eq",
            json!(["b", "A@x.com"]),
            d.clone()
        ));
        assert!(
            !passes("n", "not-eq", json!("x"), d.clone()),
            "mismatched types never pass"
        );
        assert!(!passes("missing", "not-eq", json!("x"), d.clone()));
        assert!(passes("email", "not-ieq", json!("b@x.com"), d.clone()));
        assert!(!passes("email", "not-ieq", json!("a@x.com"), d.clone()));
    }

    #[test]
    fn case_insensitive_lists_keep_every_value() {
        let d = json!({"s": "B", "empty": "", "nul": "a\u{0}b", "x": "x"});
        assert!(passes("s", "ieq", json!(["a", "b", "c"]), d.clone()));
        assert!(!passes("s", "ieq", json!([]), d.clone()));
        assert!(passes("s", "not-ieq", json!([]), d.clone()));
        assert!(passes("empty", "ieq", json!([""]), d.clone()));
        assert!(!passes("empty", "ieq", json!(["x"]), d.clone()));
        assert!(passes("nul", "ieq", json!(["x", "A\u{0}B"]), d.clone()));
        assert!(!passes("nul", "ieq", json!(["a", "b"]), d.clone()));
        // Every ASCII character is taken, so the values are joined by a longer one.
        let ascii: Vec<String> = (0..128u8).map(|b| char::from(b).to_string()).collect();
        assert!(passes("x", "ieq", json!(ascii), d.clone()));
        assert!(passes("nul", "not-ieq", json!(ascii), d.clone()));
        assert!(passes("x", "ieq", json!(["a\u{80}b", "x"]), d.clone()));
    }

    #[test]
    fn string_operators() {
        let d = json!({"name": "Acme Corp", "tags": ["vip", "eu"], "n": 1});
        assert!(passes("name", "contains", json!("me C"), d.clone()));
        assert!(!passes("name", "contains", json!("acme"), d.clone()));
        assert!(passes("name", "icontains", json!("ACME"), d.clone()));
        assert!(
            passes("tags", "contains", json!("vip"), d.clone()),
            "arrays contain elements"
        );
        assert!(!passes("tags", "contains", json!("vi"), d.clone()));
        assert!(passes("name", "starts", json!("Acme"), d.clone()));
        assert!(!passes("name", "starts", json!("acme"), d.clone()));
        assert!(passes("name", "istarts", json!("acme"), d.clone()));
        assert!(passes("name", "ends", json!("Corp"), d.clone()));
        assert!(passes("name", "iends", json!("CORP"), d.clone()));
        assert!(!passes("n", "starts", json!("1"), d.clone()));
        assert!(!passes("n", "icontains", json!("1"), d.clone()));
    }

    #[test]
    fn presence_operators() {
        let d = json!({"null": null, "blank": "", "list": [], "obj": {}, "zero": 0, "text": "x"});
        for f in ["null", "missing"] {
            assert!(passes(f, "null", Value::Null, d.clone()), "{f}");
            assert!(!passes(f, "not-null", Value::Null, d.clone()), "{f}");
        }
        for f in ["null", "missing", "blank", "list", "obj"] {
            assert!(passes(f, "empty", Value::Null, d.clone()), "{f}");
            assert!(!passes(f, "not-empty", Value::Null, d.clone()), "{f}");
        }
        for f in ["zero", "text"] {
            assert!(passes(f, "not-null", Value::Null, d.clone()), "{f}");
            assert!(passes(f, "not-empty", Value::Null, d.clone()), "{f}");
            assert!(!passes(f, "empty", Value::Null, d.clone()), "{f}");
        }
    }

    #[test]
    fn ordering_operators() {
        let d = json!({"amount": 100, "price": 9.5, "date": "2024-05-01", "flag": true});
        assert!(passes("amount", "gt", json!(99), d.clone()));
        assert!(!passes("amount", "gt", json!(100), d.clone()));
        assert!(passes("amount", "gte", json!(100), d.clone()));
        assert!(passes("amount", "lt", json!(100.5), d.clone()));
        assert!(passes("amount", "lte", json!(100), d.clone()));
        assert!(
            !passes("amount", "lt", json!("200"), d.clone()),
            "mismatched types"
        );
        assert!(
            passes("date", "gt", json!("2024-01-01"), d.clone()),
            "strings compare as strings"
        );
        assert!(passes("price", "between", json!([9, 10]), d.clone()));
        assert!(passes("amount", "between", json!([100, 100]), d.clone()));
        assert!(!passes("amount", "between", json!([101, 200]), d.clone()));
        assert!(passes(
            "date",
            "between",
            json!(["2024-01-01", "2024-12-31"]),
            d.clone()
        ));
        assert!(!passes("flag", "between", json!([0, 1]), d.clone()));
        assert!(!passes("missing", "gt", json!(1), d.clone()));
    }

    #[test]
    fn regex_and_like() {
        let d = json!({"email": "ada@example.com", "n": 3});
        assert!(passes(
            "email",
            "regex",
            json!("@example\\.(com|org)$"),
            d.clone()
        ));
        assert!(!passes("email", "regex", json!("^bob"), d.clone()));
        assert!(passes("email", "regex", json!(["^bob", "^ada"]), d.clone()));
        assert!(passes("email", "like", json!("%@example.com"), d.clone()));
        assert!(passes("email", "like", json!("ad_@%"), d.clone()));
        assert!(
            !passes("email", "like", json!("ada@example"), d.clone()),
            "like is anchored"
        );
        assert!(!passes(
            "email",
            "like",
            json!("ada@example_com%x"),
            d.clone()
        ));
        assert!(
            !passes("email", "like", json!("%.COM"), d.clone()),
            "like is case-sensitive"
        );
        assert!(
            passes("email", "like", json!("ada@example.c%"), d.clone()),
            "dot is literal"
        );
        assert!(!passes("n", "regex", json!("3"), d.clone()));
    }

    #[test]
    fn nested_paths() {
        let d = json!({"address": {"city": "Oslo"}});
        assert!(passes("address.city", "eq", json!("Oslo"), d.clone()));
        assert!(!passes("address.zip", "eq", json!("Oslo"), d.clone()));
    }

    #[test]
    fn bad_filters_are_typed_errors() {
        assert!(
            matches!(rejects("approx", json!(1)), InvalidSubscription::UnknownOperator { op, .. } if op == "approx")
        );
        assert!(matches!(
            rejects("between", json!([1])),
            InvalidSubscription::BadFilterValue { .. }
        ));
        assert!(matches!(
            rejects("between", json!([5, 1])),
            InvalidSubscription::BadFilterValue { .. }
        ));
        assert!(matches!(
            rejects("between", json!([1, "a"])),
            InvalidSubscription::BadFilterValue { .. }
        ));
        assert!(matches!(
            rejects("gt", json!(true)),
            InvalidSubscription::BadFilterValue { .. }
        ));
        assert!(matches!(
            rejects("ieq", json!(3)),
            InvalidSubscription::BadFilterValue { .. }
        ));
        assert!(matches!(
            rejects("starts", json!([1])),
            InvalidSubscription::BadFilterValue { .. }
        ));
        assert!(matches!(
            rejects("eq", json!([])),
            InvalidSubscription::BadFilterValue { .. }
        ));
        assert!(matches!(
            rejects("regex", json!("(unclosed")),
            InvalidSubscription::BadRegex { .. }
        ));
        assert!(matches!(
            rejects("regex", json!("a".repeat(MAX_PATTERN_LEN + 1))),
            InvalidSubscription::BadRegex { .. }
        ));
        // Small source, huge program: bounded by the size limit.
        assert!(matches!(
            rejects("regex", json!("\\w{1000}\\w{1000}")),
            InvalidSubscription::BadRegex { .. }
        ));
        assert!(matches!(
            CompiledFilter::compile("Contact", &FieldFilter::new("a..b", "eq", json!(1))),
            Err(InvalidSubscription::BadPath { .. })
        ));
    }
}
