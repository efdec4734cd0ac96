//! `Retry-After` parsing: delay seconds or an HTTP date (RFC 9110 section 10.2.3).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How long a `Retry-After` value asks to wait, seen from `now`.
///
/// Accepts delay seconds (`120`) and the IMF-fixdate form of an HTTP date
/// (`Sun, 06 Nov 1994 08:49:37 GMT`); a date in the past means "now" (zero). Returns `None` for
/// anything else, including the obsolete RFC 850 and asctime date forms, which senders have
/// not been allowed to produce since RFC 7231: the engine then falls back to its own schedule.
/// Never panics. The result is not capped: bounding it is the engine's policy.
///
/// ```
/// use std::time::{Duration, UNIX_EPOCH};
/// use callout_deliver::parse_retry_after;
/// let now = UNIX_EPOCH + Duration::from_secs(784111717); // 08:48:37
/// assert_eq!(parse_retry_after("120", now), Some(Duration::from_secs(120)));
/// assert_eq!(parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", now), Some(Duration::from_secs(60)));
/// assert_eq!(parse_retry_after("soon", now), None);
/// ```
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        // More digits than a u64 holds is still "a very long time", not garbage.
        return Some(Duration::from_secs(value.parse().unwrap_or(u64::MAX)));
    }
    let at = parse_imf_fixdate(value)?;
    let now = now.duration_since(UNIX_EPOCH).ok()?.as_secs();
    Some(Duration::from_secs(at.saturating_sub(now)))
}

/// Parses `Sun, 06 Nov 1994 08:49:37 GMT` into unix seconds.
fn parse_imf_fixdate(text: &str) -> Option<u64> {
    const DAYS: [&[u8]; 7] = [b"Mon", b"Tue", b"Wed", b"Thu", b"Fri", b"Sat", b"Sun"];
    const MONTHS: [&[u8]; 12] = [
        b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov",
        b"Dec",
    ];
    // Fixed layout: "Www, DD Mmm YYYY HH:MM:SS GMT", 29 bytes. Working on bytes with `get`
    // keeps every slice in bounds whatever the input.
    let b = text.as_bytes();
    if b.len() != 29 {
        return None;
    }
    let literal = |at: usize, expected: &[u8]| b.get(at..at + expected.len()) == Some(expected);
    let number = |at: usize, len: usize| -> Option<u64> {
        let digits = b.get(at..at + len)?;
        digits.iter().try_fold(0u64, |acc, &d| {
            d.is_ascii_digit().then(|| acc * 10 + u64::from(d - b'0'))
        })
    };
    if !DAYS.iter().any(|day| literal(0, day))
        || !literal(3, b", ")
        || !literal(7, b" ")
        || !literal(11, b" ")
        || !literal(16, b" ")
        || !literal(19, b":")
        || !literal(22, b":")
        || !literal(25, b" GMT")
    {
        return None;
    }
    let day = number(5, 2)?;
    let month = MONTHS.iter().position(|m| literal(8, m))? as u64 + 1;
    let year = number(12, 4)?;
    let (hour, minute, second) = (number(17, 2)?, number(20, 2)?, number(23, 2)?);
    // 60 is a leap second; it lands on the next minute's first second, which is close enough.
    if year < 1970
        || day == 0
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    let days = days_from_civil(year, month, day);
    Some(days * 86_400 + hour * 3_600 + minute * 60 + second)
}

fn is_leap(year: u64) -> bool {
    year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
}

fn days_in_month(year: u64, month: u64) -> u64 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a date in the proleptic Gregorian calendar, year >= 1970
/// (Howard Hinnant's `days_from_civil`, restricted to unsigned arithmetic).
fn days_from_civil(year: u64, month: u64, day: u64) -> u64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year / 400;
    let year_of_era = year - era * 400;
    let month_index = (month + 9) % 12; // March = 0
    let day_of_year = (153 * month_index + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn parses_known_dates() {
        assert_eq!(parse_imf_fixdate("Thu, 01 Jan 1970 00:00:00 GMT"), Some(0));
        assert_eq!(
            parse_imf_fixdate("Sun, 06 Nov 1994 08:49:37 GMT"),
            Some(784_111_777)
        );
        assert_eq!(
            parse_imf_fixdate("Tue, 29 Feb 2000 12:00:00 GMT"),
            Some(951_825_600)
        );
        assert_eq!(
            parse_imf_fixdate("Wed, 21 Oct 2015 07:28:00 GMT"),
            Some(1_445_412_480)
        );
        assert_eq!(
            parse_imf_fixdate("Fri, 31 Dec 9999 23:59:59 GMT"),
            Some(253_402_300_799)
        );
    }

    #[test]
    fn past_dates_mean_now() {
        let value = "Sun, 06 Nov 1994 08:49:37 GMT";
        assert_eq!(
            parse_retry_after(value, at(784_111_777 + 5)),
            Some(Duration::ZERO)
        );
    }

    #[test]
    fn seconds_are_seconds() {
        assert_eq!(parse_retry_after(" 0 ", at(0)), Some(Duration::ZERO));
        assert_eq!(
            parse_retry_after("3600", at(0)),
            Some(Duration::from_secs(3600))
        );
        assert_eq!(
            parse_retry_after("99999999999999999999999", at(0)),
            Some(Duration::from_secs(u64::MAX))
        );
    }

    #[test]
    fn garbage_is_none() {
        for value in [
            "",
            "-1",
            "1.5",
            "+5",
            "soon",
            "Sun, 06 Nov 1994 08:49:37 UTC",
            "Sun, 06 Nov 1994 08:49:37 GMTX",
            "Sunday, 06-Nov-94 08:49:37 GMT",
            "Sun Nov  6 08:49:37 1994",
            "Sun, 31 Feb 1994 08:49:37 GMT",
            "Sun, 29 Feb 1900 08:49:37 GMT",
            "Sun, 00 Nov 1994 08:49:37 GMT",
            "Sun, 06 Nov 1994 24:00:00 GMT",
            "Sun, 06 Nov 1994 08:60:00 GMT",
            "Sun, 06 Xyz 1994 08:49:37 GMT",
            "Sun, 06 Nov 1969 08:49:37 GMT",
            "Sun, 0a Nov 1994 08:49:37 GMT",
            "Sun, 06 Nov 1994 08:49:3é GMT",
            "Sün, 06 Nov 1994 08:49:37 GM",
        ] {
            assert_eq!(parse_retry_after(value, at(0)), None, "{value:?}");
        }
    }

    #[test]
    fn never_panics_on_arbitrary_input() {
        // A bounded deterministic sweep (a proptest lives in the integration tests): every
        // prefix and byte mutation of a valid date.
        let valid = "Sun, 06 Nov 1994 08:49:37 GMT";
        for cut in 0..=valid.len() {
            let _ = parse_retry_after(&valid[..cut], at(0));
        }
        for index in 0..valid.len() {
            for replacement in ['0', '9', ' ', ':', 'é', '\u{0}', 'Z'] {
                let mut mutated: Vec<char> = valid.chars().collect();
                mutated[index] = replacement;
                let mutated: String = mutated.into_iter().collect();
                let _ = parse_retry_after(&mutated, at(0));
            }
        }
    }
}
