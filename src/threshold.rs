//! The hourly callout threshold (Autotask's): callouts counted per subscription, entity and
//! clock hour, in the store, so that instances sharing one count into the same hour. Past the
//! threshold a subscription whose profile delays (Autotask) has its deliveries wait for the
//! next hour, never dropped; the others send anyway. Either way the host hears once per hour
//! that it was passed (once in all, on a shared store), and, where deliveries were delayed,
//! once when the ones this instance delayed have all gone out.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use callout_store::Tallies;

use crate::notify::NoticeKind;

/// The threshold, and the deliveries this instance delayed past it.
pub(crate) struct Hourly {
    threshold: Option<u64>,
    /// Deliveries sent to a later hour and not yet sent, by subscription and entity.
    delayed: Mutex<HashMap<(u64, String), HashSet<u64>>>,
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
            delayed: Mutex::new(HashMap::new()),
        }
    }

    /// Counts one callout of `delivery` (of `event_type`, `entity.action`) to `sub` at `now`
    /// in `store`, unless it must wait: `delays` says whether its profile delays past the
    /// threshold. A store that cannot count lets it go (logged): never held for good.
    pub(crate) fn admit<S: Tallies + ?Sized>(
        &self,
        store: &S,
        sub: u64,
        event_type: &str,
        delivery: u64,
        now: u64,
        delays: bool,
    ) -> Gate {
        let Some(threshold) = self.threshold else {
            return OPEN;
        };
        let entity = event_type.split('.').next().unwrap_or_default();
        let counted = match store.count_callout(sub, entity, now, threshold, delays) {
            Ok(counted) => counted,
            Err(error) => {
                tracing::error!(%error, subscription = sub, "could not count a callout");
                return OPEN;
            }
        };
        let notice = counted.over.filter(|_| counted.first_over).map(|count| {
            NoticeKind::ThresholdExceeded {
                entity: entity.to_string(),
                count,
                threshold,
            }
        });
        // This instance's delayed deliveries: the one going now may be the last of them.
        let key = (sub, entity.to_string());
        let caught_up = match self.delayed.lock() {
            Ok(mut delayed) if !counted.goes_now => {
                delayed.entry(key).or_default().insert(delivery);
                false
            }
            Ok(mut delayed) => {
                let done = delayed
                    .get_mut(&key)
                    .is_some_and(|waiting| waiting.remove(&delivery) && waiting.is_empty());
                if done {
                    delayed.remove(&key);
                }
                done
            }
            Err(_) => false,
        };
        Gate {
            wait_until: (!counted.goes_now).then_some(counted.next_hour_at),
            notice: notice.or_else(|| {
                caught_up.then(|| NoticeKind::ThresholdCaughtUp {
                    entity: entity.to_string(),
                })
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use callout_store::{SledStore, StoreConfig};

    const HOUR_MS: u64 = 3_600_000;

    fn store() -> (tempfile::TempDir, SledStore) {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = SledStore::open(dir.path(), StoreConfig::default()).expect("open");
        (dir, store)
    }

    const T0: u64 = 1_700_000_000_000 / HOUR_MS * HOUR_MS;

    #[test]
    fn without_a_threshold_everything_goes() {
        let (_dir, store) = store();
        let hourly = Hourly::new(None);
        for id in 0..100 {
            assert_eq!(
                hourly.admit(&store, 1, "ticket.created", id, T0, true),
                OPEN
            );
        }
    }

    #[test]
    fn a_delaying_profile_waits_for_the_next_hour_and_hears_once_each_way() {
        let (_dir, store) = store();
        let hourly = Hourly::new(Some(2));
        assert_eq!(hourly.admit(&store, 1, "ticket.created", 1, T0, true), OPEN);
        assert_eq!(
            hourly.admit(&store, 1, "ticket.updated", 2, T0 + 1, true),
            OPEN
        );
        let third = hourly.admit(&store, 1, "ticket.created", 3, T0 + 2, true);
        assert_eq!(third.wait_until, Some(T0 + HOUR_MS));
        assert_eq!(
            third.notice,
            Some(NoticeKind::ThresholdExceeded {
                entity: "ticket".into(),
                count: 3,
                threshold: 2
            })
        );
        let fourth = hourly.admit(&store, 1, "ticket.created", 4, T0 + 3, true);
        assert_eq!(fourth.wait_until, Some(T0 + HOUR_MS));
        assert_eq!(fourth.notice, None, "one warning per hour");
        // Another entity and another subscription have their own counts.
        assert_eq!(
            hourly.admit(&store, 1, "contact.created", 5, T0 + 4, true),
            OPEN
        );
        assert_eq!(
            hourly.admit(&store, 2, "ticket.created", 6, T0 + 4, true),
            OPEN
        );
        // Next hour: the delayed ones go; the last of them brings the catch-up notice.
        let next = T0 + HOUR_MS;
        assert_eq!(
            hourly.admit(&store, 1, "ticket.created", 3, next, true),
            OPEN
        );
        assert_eq!(
            hourly
                .admit(&store, 1, "ticket.created", 4, next + 1, true)
                .notice,
            Some(NoticeKind::ThresholdCaughtUp {
                entity: "ticket".into()
            })
        );
    }

    #[test]
    fn a_profile_that_does_not_delay_sends_and_only_warns() {
        let (_dir, store) = store();
        let hourly = Hourly::new(Some(1));
        assert_eq!(
            hourly.admit(&store, 1, "ticket.created", 1, T0, false),
            OPEN
        );
        let second = hourly.admit(&store, 1, "ticket.created", 2, T0, false);
        assert_eq!(second.wait_until, None);
        assert!(matches!(
            second.notice,
            Some(NoticeKind::ThresholdExceeded { count: 2, .. })
        ));
        assert_eq!(
            hourly.admit(&store, 1, "ticket.created", 3, T0, false),
            OPEN
        );
        assert!(hourly
            .admit(&store, 1, "ticket.created", 4, T0 + HOUR_MS + 5, false)
            .notice
            .is_none());
        assert!(hourly
            .admit(&store, 1, "ticket.created", 5, T0 + HOUR_MS + 6, false)
            .notice
            .is_some());
    }
}
