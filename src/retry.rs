//! When to try a failed delivery again.

use std::time::Duration;

/// The delays before each attempt and how much jitter to add to them.
///
/// The default is SPEC.md's schedule: immediately, then 5 s, 5 min, 30 min, 2 h, 5 h, 10 h and
/// 10 h (eight attempts), each retry delay varied by up to 10% so that many failed deliveries
/// do not come back at the same instant.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// Delay before attempt n+1 (the first entry is the first attempt's, normally zero).
    pub schedule: Vec<Duration>,
    /// Fraction of a delay added or removed at random, 0.0..=1.0.
    pub jitter: f64,
    /// Bounds for a receiver's `Retry-After`: shorter asks are raised, longer ones cut.
    pub retry_after_min: Duration,
    /// See `retry_after_min`.
    pub retry_after_max: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        let secs = [
            0,
            5,
            5 * 60,
            30 * 60,
            2 * 3600,
            5 * 3600,
            10 * 3600,
            10 * 3600,
        ];
        RetryPolicy {
            schedule: secs.iter().map(|s| Duration::from_secs(*s)).collect(),
            jitter: 0.1,
            retry_after_min: Duration::from_secs(1),
            retry_after_max: Duration::from_secs(3600),
        }
    }
}

impl RetryPolicy {
    /// A schedule of delays in seconds, without jitter (tests, vendor presets).
    pub fn from_secs(delays: &[u64]) -> RetryPolicy {
        RetryPolicy {
            schedule: delays.iter().map(|s| Duration::from_secs(*s)).collect(),
            jitter: 0.0,
            ..RetryPolicy::default()
        }
    }

    /// How many attempts a delivery gets in all.
    pub fn max_attempts(&self) -> u32 {
        self.schedule.len().max(1) as u32
    }

    /// The delay before the next attempt, after `attempts_made` failed ones; `None` when the
    /// delivery has had all its attempts. `seed` varies the jitter per delivery, deterministically.
    pub fn next_delay(
        &self,
        attempts_made: u32,
        retry_after: Option<Duration>,
        seed: u64,
    ) -> Option<Duration> {
        let base = *self.schedule.get(attempts_made as usize)?;
        if let Some(asked) = retry_after {
            return Some(
                asked
                    .clamp(self.retry_after_min, self.retry_after_max)
                    .max(base),
            );
        }
        let jitter = self.jitter.clamp(0.0, 1.0);
        if jitter == 0.0 || base.is_zero() {
            return Some(base);
        }
        // A splitmix64 step turns the seed into a uniform fraction in [-1, 1).
        let mut z = seed
            .wrapping_add(u64::from(attempts_made))
            .wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        let unit = (z >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0;
        Some(base.mul_f64(1.0 + jitter * unit))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_schedule_is_the_specs() {
        let policy = RetryPolicy::default();
        assert_eq!(policy.max_attempts(), 8);
        assert_eq!(policy.next_delay(0, None, 1), Some(Duration::ZERO));
        for (made, secs) in [
            (1, 5.0),
            (2, 300.0),
            (3, 1800.0),
            (4, 7200.0),
            (5, 18000.0),
            (6, 36000.0),
            (7, 36000.0),
        ] {
            let delay = policy.next_delay(made, None, 42).unwrap().as_secs_f64();
            assert!(
                (secs * 0.9..=secs * 1.1).contains(&delay),
                "attempt {made}: {delay}"
            );
        }
        assert_eq!(policy.next_delay(8, None, 1), None);
    }

    #[test]
    fn jitter_varies_by_seed_and_stays_in_bounds() {
        let policy = RetryPolicy::default();
        let delays: Vec<_> = (0..50)
            .map(|seed| policy.next_delay(2, None, seed).unwrap())
            .collect();
        assert!(delays.iter().all(|d| (270..=330).contains(&d.as_secs())));
        assert!(delays.windows(2).any(|w| w[0] != w[1]), "jitter varies");
    }

    #[test]
    fn retry_after_is_honoured_within_bounds() {
        let policy = RetryPolicy::from_secs(&[0, 5, 10]);
        assert_eq!(
            policy.next_delay(1, Some(Duration::from_secs(30)), 0),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            policy.next_delay(1, Some(Duration::ZERO), 0),
            Some(Duration::from_secs(5))
        );
        assert_eq!(
            policy.next_delay(1, Some(Duration::from_secs(86_400)), 0),
            Some(Duration::from_secs(3600))
        );
        assert_eq!(
            policy.next_delay(3, Some(Duration::from_secs(1)), 0),
            None,
            "no attempts left"
        );
    }
}
