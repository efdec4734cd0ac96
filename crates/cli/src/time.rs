//! Times and durations as people type them: `30s`, `2h`, `2025-01-31T12:00:00Z`, `2025-01-31`,
//! Unix milliseconds. No date crate: the engine's own RFC 3339 formatter is the other half.

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

fn parse_rfc3339(text: &str) -> Option<u64> {
    let (date, rest) = match text.find(['T', 't', ' ']) {
        Some(at) => (&text[..at], Some(&text[at + 1..])),
        None => (text, None),
    };
    let mut parts = date.splitn(3, '-');
    let year: i64 = number(parts.next()?, 4)?;
    let month: i64 = number(parts.next()?, 2)?;
    let day: i64 = number(parts.next()?, 2)?;
    if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
        return None;
    }
    let mut millis = days_from_civil(year, month, day) * 86_400_000;
    if let Some(rest) = rest {
        let zone_at = rest.find(['Z', 'z', '+', '-']).unwrap_or(rest.len());
        let (clock, zone) = rest.split_at(zone_at);
        millis += clock_millis(clock)?;
        millis -= zone_offset_millis(zone)?;
    }
    u64::try_from(millis).ok()
}

/// `HH:MM`, `HH:MM:SS` or `HH:MM:SS.fff...` as milliseconds after midnight.
fn clock_millis(clock: &str) -> Option<i64> {
    let (whole, fraction) = clock.split_once('.').unwrap_or((clock, ""));
    let mut parts = whole.split(':');
    let hours: i64 = number(parts.next()?, 2)?;
    let minutes: i64 = number(parts.next()?, 2)?;
    let seconds: i64 = match parts.next() {
        Some(s) => number(s, 2)?,
        None => 0,
    };
    if parts.next().is_some() || hours > 23 || minutes > 59 || seconds > 60 {
        return None;
    }
    if !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    // Digits past milliseconds are dropped, as the store keeps milliseconds.
    let millis = format!("{fraction:0<3}")[..3].parse::<i64>().ok()?;
    Some(((hours * 60 + minutes) * 60 + seconds) * 1_000 + millis)
}

/// `Z`, `+HH:MM`, `-HH:MM` (or nothing: UTC) as milliseconds east of UTC.
fn zone_offset_millis(zone: &str) -> Option<i64> {
    match zone {
        "" | "Z" | "z" => Some(0),
        _ => {
            let sign = if zone.starts_with('-') { -1 } else { 1 };
            let (hours, minutes) = zone.get(1..)?.split_once(':')?;
            let hours: i64 = number(hours, 2)?;
            let minutes: i64 = number(minutes, 2)?;
            (hours <= 23 && minutes <= 59).then_some(sign * (hours * 60 + minutes) * 60_000)
        }
    }
}

/// Exactly `width` ASCII digits.
fn number(text: &str, width: usize) -> Option<i64> {
    (text.len() == width && text.bytes().all(|b| b.is_ascii_digit()))
        .then(|| text.parse().ok())
        .flatten()
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm, the inverse
/// of the one behind `callout::core::rfc3339`).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let yoe = year - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
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
        ] {
            assert!(parse_instant(bad, 0).is_err(), "{bad:?}");
        }
    }
}
