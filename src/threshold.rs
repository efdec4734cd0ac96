//! The hourly callout threshold (Autotask's): callouts counted per subscription, entity and
//! clock hour. Past the threshold a subscription whose profile delays (Autotask) has its
//! deliveries wait for the next hour, never dropped; the others send anyway. Either way the
//! host hears once per hour that it was passed, and, where deliveries were delayed, once when
//! they have all gone out.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use crate::notify::NoticeKind;

const HOUR_MS: u64 = 3_600_000;

/// The counters of every subscription and entity; in memory, so a restart starts the hour
/// afresh (at worst one hour's extra callouts, never a lost one).
pub(crate) struct Hourly {
    threshold: Option<u64>,
    windows: Mutex<HashMap<(u64, String), Window>>,
}

#[derive(Default)]
struct Window {
    hour: u64,
    count: u64,
    warned_hour: Option<u64>,
    /// Deliveries sent to a later hour and not yet sent.
    delayed: HashSet<u64>,
}

/// Whether a delivery may go now, and what the host should hear about it.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Gate {
    /// `Some(t)`: the delivery waits until `t` (the next hour).
    pub(crate) wait_until: Option<u64>,
    /// A threshold notice to pass on (if the subscription asked for them).
    pub(crate) notice: Option<NoticeKind>,
}

const OPEN: Gate = Gate {
    wait_until: None,
    notice: None,
};

impl Hourly {
    pub(crate) fn new(threshold: Option<u64>) -> Hourly {
        Hourly {
            threshold,
            windows: Mutex::new(HashMap::new()),
        }
    }

    /// Counts one callout of `delivery` (of `event_type`, `entity.action`) to `sub` at `now`,
    /// unless it must wait: `delays` says whether its profile delays past the threshold.
    pub(crate) fn admit(
        &self,
        sub: u64,
        event_type: &str,
        delivery: u64,
        now: u64,
        delays: bool,
    ) -> Gate {
        let Some(threshold) = self.threshold else {
            return OPEN;
        };
        let Ok(mut windows) = self.windows.lock() else {
            return OPEN;
        };
        let entity = event_type.split('.').next().unwrap_or_default();
        let hour = now / HOUR_MS;
        let window = windows.entry((sub, entity.to_string())).or_default();
        if window.hour != hour {
            window.hour = hour;
            window.count = 0;
        }
        if window.count >= threshold {
            let notice = (window.warned_hour != Some(hour)).then(|| {
                window.warned_hour = Some(hour);
                NoticeKind::ThresholdExceeded {
                    entity: entity.to_string(),
                    count: window.count + 1,
                    threshold,
                }
            });
            if delays {
                window.delayed.insert(delivery);
                return Gate {
                    wait_until: Some((hour + 1) * HOUR_MS),
                    notice,
                };
            }
            window.count += 1;
            return Gate {
                wait_until: None,
                notice,
            };
        }
        window.count += 1;
        let caught_up = window.delayed.remove(&delivery) && window.delayed.is_empty();
        Gate {
            wait_until: None,
            notice: caught_up.then(|| NoticeKind::ThresholdCaughtUp {
                entity: entity.to_string(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: u64 = 1_700_000_000_000 / HOUR_MS * HOUR_MS;

    #[test]
    fn without_a_threshold_everything_goes() {
        let hourly = Hourly::new(None);
        for id in 0..100 {
            assert_eq!(hourly.admit(1, "ticket.created", id, T0, true), OPEN);
        }
    }

    #[test]
    fn a_delaying_profile_waits_for_the_next_hour_and_hears_once_each_way() {
        let hourly = Hourly::new(Some(2));
        assert_eq!(hourly.admit(1, "ticket.created", 1, T0, true), OPEN);
        assert_eq!(hourly.admit(1, "ticket.updated", 2, T0 + 1, true), OPEN);
        let third = hourly.admit(1, "ticket.created", 3, T0 + 2, true);
        assert_eq!(third.wait_until, Some(T0 + HOUR_MS));
        assert_eq!(
            third.notice,
            Some(NoticeKind::ThresholdExceeded {
                entity: "ticket".into(),
                count: 3,
                threshold: 2
            })
        );
        let fourth = hourly.admit(1, "ticket.created", 4, T0 + 3, true);
        assert_eq!(fourth.wait_until, Some(T0 + HOUR_MS));
        assert_eq!(fourth.notice, None, "one warning per hour");
        // Another entity and another subscription have their own counts.
        assert_eq!(hourly.admit(1, "contact.created", 5, T0 + 4, true), OPEN);
        assert_eq!(hourly.admit(2, "ticket.created", 6, T0 + 4, true), OPEN);
        // Next hour: the delayed ones go; the last of them brings the catch-up notice.
        let next = T0 + HOUR_MS;
        assert_eq!(hourly.admit(1, "ticket.created", 3, next, true), OPEN);
        assert_eq!(
            hourly.admit(1, "ticket.created", 4, next + 1, true).notice,
            Some(NoticeKind::ThresholdCaughtUp {
                entity: "ticket".into()
            })
        );
    }

    #[test]
    fn a_profile_that_does_not_delay_sends_and_only_warns() {
        let hourly = Hourly::new(Some(1));
        assert_eq!(hourly.admit(1, "ticket.created", 1, T0, false), OPEN);
        let second = hourly.admit(1, "ticket.created", 2, T0, false);
        assert_eq!(second.wait_until, None);
        assert!(matches!(
            second.notice,
            Some(NoticeKind::ThresholdExceeded { count: 2, .. })
        ));
        assert_eq!(hourly.admit(1, "ticket.created", 3, T0, false), OPEN);
        assert!(hourly
            .admit(1, "ticket.created", 4, T0 + HOUR_MS + 5, false)
            .notice
            .is_none());
        assert!(hourly
            .admit(1, "ticket.created", 5, T0 + HOUR_MS + 6, false)
            .notice
            .is_some());
    }
}
