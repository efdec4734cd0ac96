//! Timestamps as the wire formats write them: RFC 3339 in UTC, from milliseconds since the
//! Unix epoch. Pure arithmetic, no clock: the caller says what time it is.

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
    let secs = unix_ms / 1000;
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (year, month, day) = civil_from_days(days);
    // Written digit by digit rather than with `format!`: it runs for every event published.
    let mut out = String::with_capacity(32);
    push_digits(&mut out, year, 4);
    out.push('-');
    push_digits(&mut out, month, 2);
    out.push('-');
    push_digits(&mut out, day, 2);
    out.push('T');
    push_digits(&mut out, rem / 3600, 2);
    out.push(':');
    push_digits(&mut out, rem % 3600 / 60, 2);
    out.push(':');
    push_digits(&mut out, rem % 60, 2);
    let digits = u32::from(fraction_digits.min(7));
    if digits > 0 {
        out.push('.');
        // Milliseconds, then zeros: 7 digits are 100 ns ticks.
        let fraction = (unix_ms % 1000) * 10_000;
        push_digits(&mut out, fraction / 10u64.pow(7 - digits), digits as usize);
    }
    out.push('Z');
    out
}

/// Appends `value` in decimal, zero-padded to at least `width` digits.
fn push_digits(out: &mut String, value: u64, width: usize) {
    let mut digits = [b'0'; 20];
    let mut rest = value;
    let mut used = 0;
    while rest > 0 || used < width {
        digits[19 - used] = b'0' + (rest % 10) as u8;
        rest /= 10;
        used += 1;
    }
    out.extend(digits[20 - used..].iter().map(|&d| char::from(d)));
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

    proptest::proptest! {
        #[test]
        fn writes_what_format_wrote(unix_ms in 0u64..253_402_300_800_000, digits in 0u8..10) {
            proptest::prop_assert_eq!(rfc3339(unix_ms, digits), by_format(unix_ms, digits));
        }
    }
}
