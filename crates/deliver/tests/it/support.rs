//! What the integration tests share besides the receiver (which is `callout_testkit`'s): a
//! sender that may reach 127.0.0.1, and an independent date formatter.

use std::time::Duration;

use callout_deliver::{AllowList, Sender, SenderConfig, Timeouts};

/// A sender allowed to reach 127.0.0.1, with short timeouts so failing tests fail fast.
pub fn sender() -> Sender {
    sender_with(Timeouts::all(Duration::from_secs(3)))
}

pub fn sender_with(timeouts: Timeouts) -> Sender {
    Sender::new(SenderConfig {
        allow: AllowList::parse(["127.0.0.1"]).unwrap(),
        timeouts,
        ..SenderConfig::default()
    })
    .unwrap()
}

/// Formats unix seconds as an IMF-fixdate, independently of the crate's parser.
pub fn imf_fixdate(unix: u64) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let days = unix / 86_400;
    let secs = unix % 86_400;
    // Walk the calendar: slow but obviously right for the few dates the tests format.
    let (mut year, mut remaining) = (1970u64, days);
    loop {
        let length = if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) {
            366
        } else {
            365
        };
        if remaining < length {
            break;
        }
        remaining -= length;
        year += 1;
    }
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let lengths = [
        31,
        if leap { 29 } else { 28 },
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ];
    let mut month = 0;
    while remaining >= lengths[month] {
        remaining -= lengths[month];
        month += 1;
    }
    format!(
        "{}, {:02} {} {} {:02}:{:02}:{:02} GMT",
        DAYS[(days % 7) as usize],
        remaining + 1,
        MONTHS[month],
        year,
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

#[test]
fn imf_fixdate_formats_the_rfc_example() {
    assert_eq!(imf_fixdate(784_111_777), "Sun, 06 Nov 1994 08:49:37 GMT");
}
