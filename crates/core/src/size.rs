//! How big a value is as compact JSON, counted without writing it anywhere: the one measure of
//! the size bounds on what registrants and publishers hand in.

use serde::Serialize;

/// The length of `value` as compact JSON: `Ok(len)` when it is at most `max` bytes, else
/// `Err(counted)`, at least `max + 1`: counting stops as soon as it passes `max`, so a 10 MB
/// value is neither copied nor walked to its end to be refused.
///
/// ```
/// use serde_json::json;
/// assert_eq!(callout_core::json_len_within(&json!({"a": [1, 2]}), 100), Ok(11));
/// assert!(callout_core::json_len_within(&json!("x".repeat(1_000)), 100).is_err());
/// ```
pub fn json_len_within(value: &impl Serialize, max: usize) -> Result<usize, usize> {
    struct Counter {
        counted: usize,
        max: usize,
    }
    impl std::io::Write for Counter {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.counted += bytes.len();
            if self.counted > self.max {
                // Stops the serializer: nothing past the limit needs counting.
                return Err(std::io::Error::other("over the limit"));
            }
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut counter = Counter { counted: 0, max };
    match serde_json::to_writer(&mut counter, value) {
        Ok(()) => Ok(counter.counted),
        // Either the counter stopped it, or the value does not serialize (a map with non-string
        // keys): neither may pass as within the limit.
        Err(_) => Err(counter.counted.max(max.saturating_add(1))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn counts_compact_json_and_stops_past_the_limit() {
        let value = json!({"name": "Acme", "tags": ["a", "b"], "n": 12.5, "ok": true});
        let exact = serde_json::to_vec(&value).unwrap().len();
        assert_eq!(json_len_within(&value, exact), Ok(exact));
        assert_eq!(json_len_within(&value, exact - 1), Err(exact));
        let huge = json!("x".repeat(10_000_000));
        let counted = json_len_within(&huge, 1_000).unwrap_err();
        assert!(counted > 1_000);
        assert_eq!(json_len_within(&json!(null), 0), Err(4));
        assert_eq!(json_len_within(&json!(null), 4), Ok(4));
    }
}
