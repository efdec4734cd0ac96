//! `Retry-After` parsing never panics and round-trips dates formatted independently.

use std::time::{Duration, UNIX_EPOCH};

use callout_deliver::parse_retry_after;
use proptest::prelude::*;

use crate::support::imf_fixdate;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn never_panics_on_any_string(value in ".{0,40}") {
        let _ = parse_retry_after(&value, UNIX_EPOCH);
    }

    #[test]
    fn never_panics_on_date_shaped_strings(value in "[A-Za-z]{3}, [0-9]{2} [A-Za-z]{3} [0-9]{4} [0-9]{2}:[0-9]{2}:[0-9]{2} [A-Z]{3}") {
        let _ = parse_retry_after(&value, UNIX_EPOCH);
    }

    #[test]
    fn formatted_dates_parse_back(at in 0u64..253_402_300_799, now in 0u64..253_402_300_799) {
        let wait = parse_retry_after(&imf_fixdate(at), UNIX_EPOCH + Duration::from_secs(now));
        prop_assert_eq!(wait, Some(Duration::from_secs(at.saturating_sub(now))));
    }
}
