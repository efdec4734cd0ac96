//! Timestamps as the wire formats write them: RFC 3339, written in UTC from milliseconds since
//! the Unix epoch and read back with any offset. The one calendar of the workspace lives here.
//! Pure arithmetic, no clock: the caller says what time it is.

/// Formats Unix milliseconds as RFC 3339 UTC with `fraction_digits` (0..=7) digits after the
/// second: 0 gives `2025-09-15T15:10:00Z` (Autotask), 7 gives `2018-04-05T08:28:01.5730000Z`
/// (SuperOffice's .NET ticks). Digits past milliseconds are zero.
///
/// ```
/// use callout_core::rfc3339;
/// assert_eq!(rfc3339(1_757_949_000_000, 0), "2025-09-15T15:10:00Z");
/// assert_eq!(rfc3339(1_522_916_881_573, 7), "2018-04-05T08:28:01.5730000Z");
/// assert_eq!(rfc3339(0, 3), "1970-01-01T00:00:00.000Z");
/// ```
pub fn rfc3339(unix_ms: u64, fraction_digits: u8) -> String {
    Rfc3339::new(unix_ms, fraction_digits).to_string()
}

/// [`rfc3339`] without a `String`: it displays (and serializes, as a string) the same text,
/// written straight into the formatter or serializer, for the paths that write one per event.
///
/// ```
/// use callout_core::Rfc3339;
/// assert_eq!(Rfc3339::new(1_757_949_000_000, 0).to_string(), "2025-09-15T15:10:00Z");
/// assert_eq!(serde_json::to_string(&Rfc3339::new(0, 3)).unwrap(), r#""1970-01-01T00:00:00.000Z""#);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rfc3339 {
    unix_ms: u64,
    fraction_digits: u8,
}

impl Rfc3339 {
    /// The time `unix_ms` with `fraction_digits` (0..=7) digits after the second.
    pub fn new(unix_ms: u64, fraction_digits: u8) -> Rfc3339 {
        Rfc3339 {
            unix_ms,
            fraction_digits: fraction_digits.min(7),
        }
    }

    /// Writes the text into `out`; returns its length (at most 44 bytes: a year of up to 20
    /// digits, then 24).
    fn write(&self, out: &mut [u8; 48]) -> usize {
        let secs = self.unix_ms / 1000;
        let (days, rem) = (secs / 86_400, secs % 86_400);
        let (year, month, day) = civil_from_days(days);
        let mut at = 0;
        let mut put = |bytes: &[u8]| {
            out[at..at + bytes.len()].copy_from_slice(bytes);
            at += bytes.len();
        };
        let mut digits = [0u8; 20];
        put(decimal(&mut digits, year, 4));
        put(b"-");
        put(decimal(&mut digits, month, 2));
        put(b"-");
        put(decimal(&mut digits, day, 2));
        put(b"T");
        put(decimal(&mut digits, rem / 3600, 2));
        put(b":");
        put(decimal(&mut digits, rem % 3600 / 60, 2));
        put(b":");
        put(decimal(&mut digits, rem % 60, 2));
        let fraction_digits = u32::from(self.fraction_digits);
        if fraction_digits > 0 {
            put(b".");
            // Milliseconds, then zeros: 7 digits are 100 ns ticks.
            let fraction = (self.unix_ms % 1000) * 10_000;
            let scaled = fraction / 10u64.pow(7 - fraction_digits);
            put(decimal(&mut digits, scaled, fraction_digits as usize));
        }
        put(b"Z");
        at
    }
}

impl std::fmt::Display for Rfc3339 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut text = [0u8; 48];
        let len = self.write(&mut text);
        // Only ASCII digits and separators were written.
        f.write_str(std::str::from_utf8(&text[..len]).map_err(|_| std::fmt::Error)?)
    }
}

impl serde::Serialize for Rfc3339 {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// `value` in decimal, zero-padded to at least `width` digits (at most 20), in `digits`.
fn decimal(digits: &mut [u8; 20], value: u64, width: usize) -> &[u8] {
    let mut rest = value;
    let mut used = 0;
    while (rest > 0 || used < width) && used < digits.len() {
        digits[19 - used] = b'0' + (rest % 10) as u8;
        rest /= 10;
        used += 1;
    }
    &digits[20 - used..]
}

/// Parses an RFC 3339 date-time into Unix milliseconds: `2024-04-18T14:34:02.9242705+02:00`,
/// `2024-04-18T12:34:02Z`, or without an offset (`2019-01-01T00:00:00`, taken as UTC, as .NET
/// writes its unspecified times). The separator may also be `t` or a space (RFC 3339 section
/// 5.6 allows both). Digits past the millisecond are dropped; a leap second (`:60`) counts as
/// the next minute's first second.
///
/// Strict otherwise: every field has exactly its digits, the date must exist (no February 31,
/// no February 29 outside leap years), the offset is at most `23:59`, and nothing may follow.
/// `None` for anything else, and for an instant before 1970, which Unix milliseconds cannot
/// hold. Never panics.
///
/// ```
/// use callout_core::parse_rfc3339;
/// assert_eq!(parse_rfc3339("2025-09-15T15:10:00Z"), Some(1_757_949_000_000));
/// assert_eq!(parse_rfc3339("2025-09-15T17:10:00.5+02:00"), Some(1_757_949_000_500));
/// assert_eq!(parse_rfc3339("2024-02-29T00:00:00Z"), Some(1_709_164_800_000));
/// assert_eq!(parse_rfc3339("2023-02-29T00:00:00Z"), None);
/// assert_eq!(parse_rfc3339("2023-02-31T00:00:00Z"), None);
/// ```
pub fn parse_rfc3339(text: &str) -> Option<u64> {
    let b = text.as_bytes();
    // Bytes and `get`: every slice stays in bounds whatever the input, and no byte of a
    // multi-byte character is an ASCII digit or separator.
    let number = |at: usize, len: usize| -> Option<u64> {
        let digits = b.get(at..at + len)?;
        digits.iter().try_fold(0u64, |acc, &d| {
            d.is_ascii_digit().then(|| acc * 10 + u64::from(d - b'0'))
        })
    };
    let literal = |at: usize, expected: u8| b.get(at) == Some(&expected);
    if !literal(4, b'-')
        || !literal(7, b'-')
        || !matches!(b.get(10), Some(b'T' | b't' | b' '))
        || !literal(13, b':')
        || !literal(16, b':')
    {
        return None;
    }
    let (year, month, day) = (number(0, 4)?, number(5, 2)?, number(8, 2)?);
    let (hour, minute, second) = (number(11, 2)?, number(14, 2)?, number(17, 2)?);
    if hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let days = days_from_civil(year, month, day)?;
    let mut rest = &b[19..];
    let mut millis = 0;
    if let Some(fraction) = rest.strip_prefix(b".") {
        let digits = fraction.iter().take_while(|d| d.is_ascii_digit()).count();
        if digits == 0 {
            return None;
        }
        // The first three digits, padded: `.5` is 500 ms, `.9242705` is 924 ms.
        millis = (0..3).fold(0, |acc, i| {
            acc * 10
                + fraction
                    .get(i)
                    .filter(|_| i < digits)
                    .map_or(0, |d| u64::from(d - b'0'))
        });
        rest = &fraction[digits..];
    }
    let east_minutes: i64 = match rest {
        b"" | b"Z" | b"z" => 0,
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            let two = |a: u8, b: u8| {
                (a.is_ascii_digit() && b.is_ascii_digit())
                    .then(|| i64::from(a - b'0') * 10 + i64::from(b - b'0'))
            };
            let (hours, minutes) = (two(*h1, *h2)?, two(*m1, *m2)?);
            if hours > 23 || minutes > 59 {
                return None;
            }
            let east = hours * 60 + minutes;
            if *sign == b'-' {
                -east
            } else {
                east
            }
        }
        _ => return None,
    };
    // At most four-digit years: no overflow in i64 milliseconds.
    let clock_ms = i64::try_from((hour * 3_600 + minute * 60 + second) * 1000 + millis).ok()?;
    let utc_ms = days * 86_400_000 + clock_ms - east_minutes * 60_000;
    u64::try_from(utc_ms).ok()
}

/// Whether `year` has a February 29 (proleptic Gregorian).
fn is_leap_year(year: u64) -> bool {
    year.is_multiple_of(4) && (!year.is_multiple_of(100) || year.is_multiple_of(400))
}

/// The days of `month` (1..=12) in `year`.
fn days_in_month(year: u64, month: u64) -> u64 {
    match month {
        2 if is_leap_year(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 (negative before) of a proleptic Gregorian date (Howard Hinnant's
/// algorithm, the inverse of [`civil_from_days`]); `None` for a date that does not exist.
fn days_from_civil(year: u64, month: u64, day: u64) -> Option<i64> {
    if !(1..=12).contains(&month) || day == 0 || day > days_in_month(year, month) {
        return None;
    }
    let (year, month, day) = (
        i64::try_from(year).ok()?,
        i64::try_from(month).ok()?,
        i64::try_from(day).ok()?,
    );
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month_index = (month + 9) % 12; // March = 0
    let day_of_year = (153 * month_index + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    Some(era * 146_097 + day_of_era - 719_468)
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's algorithm), so no
/// date crate is needed for the one thing we format.
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_dates() {
        assert_eq!(rfc3339(951_782_400_000, 0), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_709_164_800_123, 3), "2024-02-29T00:00:00.123Z");
        assert_eq!(rfc3339(1_614_265_330_000, 1), "2021-02-25T15:02:10.0Z");
        assert_eq!(
            rfc3339(4_102_444_799_999, 9),
            "2099-12-31T23:59:59.9990000Z"
        );
    }

    /// The formatting this module had before it wrote digits itself.
    fn by_format(unix_ms: u64, fraction_digits: u8) -> String {
        let secs = unix_ms / 1000;
        let (days, rem) = (secs / 86_400, secs % 86_400);
        let (year, month, day) = civil_from_days(days);
        let mut out = format!(
            "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}",
            rem / 3600,
            rem % 3600 / 60,
            rem % 60
        );
        let digits = usize::from(fraction_digits.min(7));
        if digits > 0 {
            out.push('.');
            out.push_str(&format!("{:03}0000", unix_ms % 1000)[..digits]);
        }
        out.push('Z');
        out
    }

    #[test]
    fn parses_offsets_fractions_and_separators() {
        let noon = 1_757_937_600_000; // 2025-09-15T12:00:00Z
        for (text, expected) in [
            ("2025-09-15T12:00:00Z", noon),
            ("2025-09-15t12:00:00z", noon),
            ("2025-09-15 12:00:00", noon),
            ("2025-09-15T14:30:00+02:30", noon),
            ("2025-09-15T00:00:00-12:00", noon),
            ("2025-09-15T12:00:00.1Z", noon + 100),
            ("2025-09-15T12:00:00.12Z", noon + 120),
            ("2025-09-15T12:00:00.9242705Z", noon + 924),
            ("2025-09-15T11:59:60Z", noon),
            ("1970-01-01T00:00:00Z", 0),
            ("1969-12-31T23:00:00-01:00", 0),
            ("9999-12-31T23:59:59.999Z", 253_402_300_799_999),
        ] {
            assert_eq!(parse_rfc3339(text), Some(expected), "{text}");
        }
    }

    #[test]
    fn refuses_impossible_dates_and_loose_text() {
        for bad in [
            "2023-02-31T00:00:00Z",
            "2023-02-29T00:00:00Z",
            "1900-02-29T00:00:00Z",
            "2024-04-31T00:00:00Z",
            "2024-00-01T00:00:00Z",
            "2024-13-01T00:00:00Z",
            "2024-01-00T00:00:00Z",
            "2024-01-01T24:00:00Z",
            "2024-01-01T00:60:00Z",
            "2024-01-01T00:00:61Z",
            "2024-01-01T00:00:00+24:00",
            "2024-01-01T00:00:00+01:60",
            "2024-01-01T00:00:00+1",
            "2024-01-01T00:00:00+0100",
            "2024-01-01T00:00:00.Z",
            "2024-01-01T00:00:00Zjunk",
            "2024-01-01T00:00",
            "2024-01-01",
            "+024-01-01T00:00:00Z",
            "2024-01-01T0é:00:00Z",
            "1969-12-31T23:59:59Z",
            "1970-01-01T00:00:00+00:01",
            "",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn calendar_agrees_with_itself_every_day() {
        // Four centuries cover every leap rule; each day must survive days -> date -> days.
        for days in 0..146_097 * 2 {
            let (year, month, day) = civil_from_days(days);
            let expected = i64::try_from(days).unwrap();
            assert_eq!(
                days_from_civil(year, month, day),
                Some(expected),
                "{year}-{month}-{day}"
            );
        }
    }

    proptest::proptest! {
        #[test]
        fn reads_what_the_writer_writes(unix_ms in 0u64..253_402_300_800_000, digits in 0u8..8) {
            let text = rfc3339(unix_ms, digits);
            let kept = 10u64.pow(3 - u32::from(digits.min(3)));
            proptest::prop_assert_eq!(parse_rfc3339(&text), Some(unix_ms / kept * kept), "{}", text);
        }

        #[test]
        fn never_panics_on_arbitrary_text(text in "\\PC{0,40}") {
            let _ = parse_rfc3339(&text);
        }

        #[test]
        fn writes_what_format_wrote(unix_ms in 0u64..253_402_300_800_000, digits in 0u8..10) {
            proptest::prop_assert_eq!(rfc3339(unix_ms, digits), by_format(unix_ms, digits));
        }
    }
}
