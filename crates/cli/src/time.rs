//! Times and durations as people type them: `30s`, `2h`, `2025-01-31T12:00:00Z`, `2025-01-31`,
//! Unix milliseconds. No date crate and no calendar of our own: RFC 3339 is read by the engine's
//! parser ([`callout::core::parse_rfc3339`]), the other half of its formatter.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Parses `500ms`, `30s`, `5m`, `2h`, `7d`, or a bare number of seconds.
pub(crate) fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let bad = || format!("`{text}` is not a duration such as 500ms, 30s, 5m, 2h or 7d");
    let amount: u64 = digits.parse().map_err(|_| bad())?;
    let millis_per_unit: u64 = match unit.trim() {
        "ms" => 1,
        "" | "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return Err(bad()),
    };
    amount
        .checked_mul(millis_per_unit)
        .map(Duration::from_millis)
        .ok_or_else(bad)
}

/// Parses an instant into Unix milliseconds: RFC 3339 (`2025-01-31T12:00:00Z`, offsets and
/// fractions allowed; without a zone it is UTC), a date (`2025-01-31`, midnight UTC), Unix
/// milliseconds (digits only), or a duration ago (`30m`, `2h`, `7d`) counted back from `now_ms`.
pub(crate) fn parse_instant(text: &str, now_ms: u64) -> Result<u64, String> {
    let text = text.trim();
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        return text
            .parse()
            .map_err(|_| format!("`{text}` is too large for Unix milliseconds"));
    }
    if let Ok(ago) = parse_duration(text) {
        let ago = u64::try_from(ago.as_millis()).unwrap_or(u64::MAX);
        return Ok(now_ms.saturating_sub(ago));
    }
    parse_rfc3339(text).ok_or_else(|| {
        format!(
            "`{text}` is not a time: use RFC 3339 (2025-01-31T12:00:00Z), a date (2025-01-31), \
             Unix milliseconds, or a duration ago (30m, 2h, 7d)"
        )
    })
}

/// Now, in Unix milliseconds.
pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The RFC 3339 forms people type, widened to what the engine's strict parser reads: a date
/// alone is midnight UTC, and a clock without seconds (`12:00`) is on the minute.
fn parse_rfc3339(text: &str) -> Option<u64> {
    let full = match text.len() {
        // `2025-01-31`
        10 => format!("{text}T00:00:00"),
        // `2025-01-31T12:00`, then perhaps a zone or a fraction: seconds go in at byte 16.
        16.. if text.is_char_boundary(16) && !text[16..].starts_with(':') => {
            format!("{}:00{}", &text[..16], &text[16..])
        }
        _ => text.to_string(),
    };
    callout::core::parse_rfc3339(&full)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_with_units() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("30"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7_200)));
        assert_eq!(parse_duration("7d"), Ok(Duration::from_secs(604_800)));
        for bad in ["", "s", "5 weeks", "-1s", "1.5h", "99999999999999999999d"] {
            assert!(parse_duration(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn instants_round_trip_through_the_engine_formatter() {
        for ms in [0, 951_782_400_000, 1_709_164_800_123, 4_102_444_799_999] {
            let text = callout::core::rfc3339(ms, 3);
            assert_eq!(parse_instant(&text, 0), Ok(ms), "{text}");
        }
    }

    #[test]
    fn instants_in_every_accepted_form() {
        let now = 1_000_000_000;
        assert_eq!(parse_instant("1700000000000", now), Ok(1_700_000_000_000));
        assert_eq!(parse_instant("2h", now), Ok(now - 7_200_000));
        assert_eq!(parse_instant("2024-02-29", now), Ok(1_709_164_800_000));
        assert_eq!(
            parse_instant("2024-02-29T01:30:00+01:30", now),
            Ok(1_709_164_800_000)
        );
        assert_eq!(
            parse_instant("2024-02-28T23:00:00-01:00", now),
            Ok(1_709_164_800_000)
        );
        assert_eq!(
            parse_instant("2024-02-29 00:00:00.5", now),
            Ok(1_709_164_800_500)
        );
        assert_eq!(
            parse_instant("2024-02-29T01:30+01:30", now),
            Ok(1_709_164_800_000)
        );
        assert_eq!(
            parse_instant(" 2024-02-29T00:00Z ", now),
            Ok(1_709_164_800_000)
        );
    }

    #[test]
    fn impossible_instants_are_refused() {
        for bad in [
            "2023-02-29",
            "2024-13-01",
            "2024-01-01T24:00:00Z",
            "2024-01-01T10:00:00+1",
            "yesterday",
            "24-01-01",
            "1969-12-31",
            // Once accepted where a month's length was not checked everywhere; never again.
            "2023-02-31",
            "2023-02-31T12:00:00Z",
            "2024-04-31T12:00",
        ] {
            assert!(parse_instant(bad, 0).is_err(), "{bad:?}");
        }
    }
}
