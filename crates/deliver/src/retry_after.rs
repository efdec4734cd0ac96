//! `Retry-After` parsing: delay seconds or an HTTP date (RFC 9110 section 10.2.3).

use std::time::{Duration, SystemTime};

/// How long a `Retry-After` value asks to wait, seen from `now`.
///
/// Accepts delay seconds (`120`) and an HTTP date in any of the three forms RFC 9110 section
/// 5.6.7 tells a recipient to accept: IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`) and the
/// obsolete RFC 850 (`Sunday, 06-Nov-94 08:49:37 GMT`) and asctime (`Sun Nov  6 08:49:37 1994`)
/// forms, read by the `httpdate` crate. A date in the past means "now" (zero). Returns `None`
/// for anything else (including a date that does not exist, or whose weekday is wrong): the
/// engine then falls back to its own schedule. Never panics. The result is not capped:
/// bounding it is the engine's policy.
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
    let at = httpdate::parse_http_date(value).ok()?;
    // A date already past is `Err` here: wait no longer.
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use std::time::UNIX_EPOCH;

    use super::*;

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    /// The date as seconds after the epoch, read with the epoch as "now".
    fn date(value: &str) -> Option<u64> {
        parse_retry_after(value, at(0)).map(|wait| wait.as_secs())
    }

    #[test]
    fn parses_known_dates() {
        assert_eq!(date("Thu, 01 Jan 1970 00:00:00 GMT"), Some(0));
        assert_eq!(date("Sun, 06 Nov 1994 08:49:37 GMT"), Some(784_111_777));
        assert_eq!(date("Tue, 29 Feb 2000 12:00:00 GMT"), Some(951_825_600));
        assert_eq!(date("Wed, 21 Oct 2015 07:28:00 GMT"), Some(1_445_412_480));
        assert_eq!(date("Fri, 31 Dec 9999 23:59:59 GMT"), Some(253_402_300_799));
    }

    #[test]
    fn obsolete_date_forms_are_read_as_rfc_9110_asks() {
        // Senders may no longer write them, but a recipient must still accept them.
        assert_eq!(date("Sunday, 06-Nov-94 08:49:37 GMT"), Some(784_111_777));
        assert_eq!(date("Sun Nov  6 08:49:37 1994"), Some(784_111_777));
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
            "Sun, 06-Nov-94 08:49:37 GMT",
            "Sun Nov 06 1994 08:49:37",
            "Mon, 06 Nov 1994 08:49:37 GMT",
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
