//! The vendors' delivery rules as data: retries, timeouts, ordering, when a webhook is switched
//! off, how long errors are kept and how often people are told. The engine applies them to the
//! subscriptions of each profile; nothing here runs anything.

use crate::subscription::Profile;

/// SuperOffice's retries: a cycle of quick attempts with the same EventId; a failed cycle goes
/// to the back of the queue and is retried later as a new cycle, with a new EventId (the engine
/// derives it when it sends the SuperOffice profile, so no flag says so here).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryCycle {
    /// Attempts in one cycle (3).
    pub attempts: u32,
    /// Seconds before each further attempt of a cycle: `[1, 4]`.
    pub delays_s: Vec<u64>,
}

/// When a webhook is switched off for failing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DisableRule {
    /// After this many consecutive events that failed all their attempts (Autotask: 25); the
    /// webhook is deactivated and its DeactivationUrl called.
    ConsecutiveFailedEvents(u32),
    /// After this many consecutive failed attempts (SuperOffice: 9, older versions 7); the
    /// state becomes `TooManyErrors` and ErrorsEmail is told.
    ConsecutiveFailedAttempts(u32),
}

/// One vendor's delivery rules. `None` and empty mean "the engine's default" (SPEC section 4).
///
/// ```
/// use callout_core::vendor::{DisableRule, VendorRules};
/// use callout_core::Profile;
///
/// let autotask = VendorRules::for_profile(Profile::Autotask);
/// assert!(autotask.ordered);
/// assert_eq!(autotask.disable, Some(DisableRule::ConsecutiveFailedEvents(25)));
/// assert_eq!(autotask.retry_delays_s, [30, 30, 30, 30]);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VendorRules {
    /// The profile these rules belong to.
    pub profile: Profile,
    /// Whole-request timeout in milliseconds; `None`: the engine's.
    pub timeout_ms: Option<u64>,
    /// Seconds before each retry after the first attempt; empty: the engine's schedule.
    pub retry_delays_s: Vec<u64>,
    /// Attempts in all, the first included; `None`: the engine's.
    pub attempts: Option<u32>,
    /// Retries in cycles (SuperOffice) instead of one schedule.
    pub cycle: Option<RetryCycle>,
    /// Deliveries of one webhook go one at a time, in order (Autotask: per webhook and callout
    /// type, FIFO).
    pub ordered: bool,
    /// When failures switch the webhook off; `None`: the engine's rule.
    pub disable: Option<DisableRule>,
    /// How long failed deliveries stay in the error log, in seconds (Autotask: 30 days, with
    /// SequenceNumber, payload, error message and time); `None`: the engine's.
    pub error_log_retention_s: Option<u64>,
    /// At most one error notification per this many seconds (Autotask: one a day).
    pub notification_interval_s: Option<u64>,
    /// Past the hourly callout threshold, deliveries wait for the next hour (Autotask) rather
    /// than only raising a warning. Autotask does not publish its number, so the threshold
    /// itself is the host's (`Engine::builder(..).hourly_threshold(n)`), not a rule here.
    pub delays_over_threshold: bool,
}

impl VendorRules {
    /// The rules a receiver written for this profile was built against. `Standard` and
    /// `Pipeliner` (which documents no retry policy) leave everything to the engine.
    pub fn for_profile(profile: Profile) -> VendorRules {
        match profile {
            Profile::Autotask => VendorRules::autotask(),
            Profile::Superoffice => VendorRules::superoffice(),
            Profile::Standard | Profile::Pipeliner => VendorRules::engine_defaults(profile),
        }
    }

    fn engine_defaults(profile: Profile) -> VendorRules {
        VendorRules {
            profile,
            timeout_ms: None,
            retry_delays_s: Vec::new(),
            attempts: None,
            cycle: None,
            ordered: false,
            disable: None,
            error_log_retention_s: None,
            notification_interval_s: None,
            delays_over_threshold: false,
        }
    }

    /// Autotask: any 2xx within 10 s; 5 attempts 30 s apart (about 2 minutes), then the error
    /// log (30 days); FIFO per webhook; deactivated after 25 consecutive failed events; at most
    /// one error email a day.
    pub fn autotask() -> VendorRules {
        VendorRules {
            timeout_ms: Some(10_000),
            retry_delays_s: vec![30; 4],
            attempts: Some(5),
            ordered: true,
            disable: Some(DisableRule::ConsecutiveFailedEvents(25)),
            error_log_retention_s: Some(30 * 86_400),
            notification_interval_s: Some(86_400),
            delays_over_threshold: true,
            ..VendorRules::engine_defaults(Profile::Autotask)
        }
    }

    /// SuperOffice: cycles of 3 attempts 1 s and 4 s apart with one EventId, a failed cycle
    /// requeued at the back with a new EventId; `TooManyErrors` after 9 consecutive failed
    /// attempts. What the engine does for every profile is not repeated here: a 410 switches
    /// the webhook off at once, and a host may send a `test` event before saving one
    /// (`create_tested`).
    pub fn superoffice() -> VendorRules {
        VendorRules {
            retry_delays_s: vec![1, 4],
            attempts: Some(3),
            cycle: Some(RetryCycle {
                attempts: 3,
                delays_s: vec![1, 4],
            }),
            disable: Some(DisableRule::ConsecutiveFailedAttempts(9)),
            ..VendorRules::engine_defaults(Profile::Superoffice)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_say_what_profiles_md_says() {
        let so = VendorRules::for_profile(Profile::Superoffice);
        assert_eq!(so.disable, Some(DisableRule::ConsecutiveFailedAttempts(9)));
        let cycle = so.cycle.unwrap();
        assert_eq!((cycle.attempts, cycle.delays_s), (3, vec![1, 4]));
        let at = VendorRules::for_profile(Profile::Autotask);
        assert_eq!(at.timeout_ms, Some(10_000));
        assert_eq!(at.attempts, Some(5));
        assert_eq!(at.retry_delays_s.iter().sum::<u64>(), 120);
        assert_eq!(at.error_log_retention_s, Some(2_592_000));
        assert_eq!(at.notification_interval_s, Some(86_400));
        let pl = VendorRules::for_profile(Profile::Pipeliner);
        assert!(pl.retry_delays_s.is_empty() && pl.attempts.is_none() && !pl.ordered);
    }
}
