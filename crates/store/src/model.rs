//! What the store keeps: deliveries, attempts, counts, and the inputs that create them.

use serde::{Deserialize, Serialize};

/// A delivery to store: one request's worth of events for one subscription.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewDelivery {
    /// The subscription it goes to.
    pub subscription_id: u64,
    /// The events it carries.
    pub event_ids: Vec<String>,
    /// The canonical `entity.action` (of the first event, for a chunk).
    pub event_type: String,
    /// The body, exactly as it will be sent.
    pub body: Vec<u8>,
    /// When it may first be sent, in Unix milliseconds.
    pub due_at: u64,
    /// Whether its subscription delivers one at a time, in publish order.
    pub ordered: bool,
    /// The id receivers deduplicate on (Standard Webhooks' `webhook-id`): unique across every
    /// store and host, and the same for every attempt of the delivery. The engine makes it
    /// (`msg_` and a time-ordered UUID); the store keeps it as given.
    pub message_id: String,
    /// Deliveries of one subscription with the same key go one at a time, in enqueue order,
    /// retries included (the engine keys a record's changes by entity and id); `None` for no
    /// such order. [`NewDelivery::ordered`] orders the whole subscription instead.
    pub order_key: Option<String>,
}

/// Where a delivery is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum DeliveryState {
    /// Waiting for its due time.
    Due,
    /// Leased to a worker until the deadline (Unix ms).
    InFlight {
        /// When the lease expires and the delivery returns to the due queue.
        until: u64,
    },
    /// Its subscription is switched off; kept until it is switched back on.
    Held,
    /// All attempts failed, or the receiver said 410 Gone. Kept until replayed or purged.
    Dead {
        /// When it was dead-lettered (Unix ms).
        at: u64,
    },
}

/// A stored delivery.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivery {
    /// Sequential id, stable across retries.
    pub id: u64,
    /// The subscription it goes to.
    pub subscription_id: u64,
    /// The events it carries.
    pub event_ids: Vec<String>,
    /// The canonical `entity.action` of its (first) event.
    pub event_type: String,
    /// The body, exactly as it will be sent. Encoded as one byte string (the same bincode bytes
    /// as a sequence of u8, written and read at once).
    #[serde(with = "serde_bytes")]
    pub body: Vec<u8>,
    /// Attempts made so far.
    pub attempts: u32,
    /// When it is due next (Unix ms).
    pub due_at: u64,
    /// When it was enqueued (Unix ms).
    pub created_at: u64,
    /// Whether its subscription delivers in order.
    pub ordered: bool,
    /// Where it is.
    pub state: DeliveryState,
    /// The id receivers deduplicate on, as [`NewDelivery::message_id`] gave it.
    pub message_id: String,
    /// As [`NewDelivery::order_key`] gave it.
    pub order_key: Option<String>,
}

/// One recorded attempt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attempt {
    /// 1 for the first attempt.
    pub number: u32,
    /// When it started (Unix ms).
    pub at: u64,
    /// How long it took.
    pub duration_ms: u64,
    /// The HTTP status, when a response arrived.
    pub status: Option<u16>,
    /// `delivered`, `gone`, `throttled`, or the error class and detail.
    pub outcome: String,
    /// The start of the response body (bounded by the caller; the store cuts at 1 KiB too).
    pub excerpt: String,
}

/// What an enqueue stored.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct EnqueueReceipt {
    /// The new deliveries' ids, in the order given.
    pub delivery_ids: Vec<u64>,
    /// Event ids seen before within the retention window; deliveries carrying them were skipped.
    pub duplicate_event_ids: Vec<String>,
}

/// Deliveries by state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Counts {
    /// Waiting for their due time.
    pub due: u64,
    /// Of the due ones, those that failed at least once and wait for a retry.
    pub retrying: u64,
    /// Leased to a worker.
    pub in_flight: u64,
    /// Held while their subscription is switched off.
    pub held: u64,
    /// Delivered (ever; a running total).
    pub delivered: u64,
    /// Dead-lettered and not yet replayed or purged.
    pub dead: u64,
}

/// Which subscriptions a listing returns (SuperOffice `GetAllWebhooks`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SubscriptionFilter {
    /// Name contains this, ignoring case.
    pub name: Option<String>,
    /// One of the subscription's patterns matches this event name, or equals this pattern.
    pub event: Option<String>,
    /// In this state.
    pub state: Option<callout_core::State>,
}

impl SubscriptionFilter {
    /// Whether `sub` is one the filter selects: its name contains `name` (ignoring case), it
    /// is in `state`, and for `event`: an event name one of its patterns receives, a wildcard
    /// pattern it holds, or (free text, SuperOffice's `EventFilter`) text one of its patterns
    /// contains.
    ///
    /// ```
    /// use callout_store::SubscriptionFilter;
    /// let sub = callout_core::Subscription::new("https://r.example/h")
    ///     .name("CRM sync")
    ///     .events(["contact.*"]);
    /// let by_event = SubscriptionFilter { event: Some("contact.created".into()), ..Default::default() };
    /// let by_name = SubscriptionFilter { name: Some("crm".into()), ..Default::default() };
    /// assert!(by_event.selects(&sub) && by_name.selects(&sub));
    /// ```
    pub fn selects(&self, sub: &callout_core::Subscription) -> bool {
        use callout_core::{Part, Pattern};
        if self
            .name
            .as_ref()
            .is_some_and(|n| !sub.name.to_lowercase().contains(&n.to_lowercase()))
        {
            return false;
        }
        if self.state.is_some_and(|s| s != sub.state) {
            return false;
        }
        let Some(raw) = &self.event else {
            return true;
        };
        let patterns = sub.patterns().unwrap_or_default();
        match raw.parse::<Pattern>().ok() {
            // An event name: any pattern that would receive it.
            Some(Pattern {
                entity: Part::Name(e),
                action: Part::Name(a),
            }) => patterns.iter().any(|p| p.matches(&e, &a)),
            // A wildcard pattern: subscriptions that hold that very pattern.
            Some(given) => patterns.contains(&given),
            // Free text: a pattern containing it.
            None => sub
                .events
                .iter()
                .any(|s| s.to_lowercase().contains(&raw.to_lowercase())),
        }
    }
}

/// Names one lease of one delivery: settles pass it back, so a settle of a lease that expired
/// (and whose delivery was leased again, maybe to another worker) is refused rather than
/// settling the newer lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LeaseToken {
    delivery: u64,
    lease: u64,
}

impl LeaseToken {
    /// A backend's token for `lease` (its own number, unique among the delivery's leases) of
    /// delivery `delivery`.
    pub fn new(delivery: u64, lease: u64) -> LeaseToken {
        LeaseToken { delivery, lease }
    }

    /// The leased delivery's id.
    pub fn delivery_id(&self) -> u64 {
        self.delivery
    }

    /// The backend's number for this lease.
    pub fn lease(&self) -> u64 {
        self.lease
    }
}

/// A leased delivery and the token that settles it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leased {
    /// Names this lease in the settle.
    pub token: LeaseToken,
    /// The delivery, in state [`DeliveryState::InFlight`].
    pub delivery: Delivery,
}

/// How many deliveries may be in flight at once when leasing: data the engine passes in,
/// applied by the backend where it counts leases. Each subscription has a bound (its own, or
/// the default); the members of the shared group (the engine's slow subscriptions) also have
/// one bound together. Ordered deliveries are bounded to one in flight per subscription
/// whatever this says.
///
/// ```
/// let mut limits = callout_store::LeaseLimits::new(3).subscription(7, 1);
/// assert_eq!(limits.bound(7), 1);
/// assert_eq!(limits.bound(8), 3);
/// assert_eq!(callout_store::LeaseLimits::default().bound(8), usize::MAX);
/// limits.set_shared_bound(1);
/// limits.share(8, true);
/// assert!(limits.shares(8) && !limits.shares(7));
/// assert_eq!(limits.shared_bound(), 1);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseLimits {
    max_in_flight: usize,
    subscriptions: std::collections::HashMap<u64, usize>,
    shared: std::collections::BTreeSet<u64>,
    shared_bound: usize,
}

impl LeaseLimits {
    /// At most `max_in_flight` per subscription (0 leases nothing), and no shared group.
    pub fn new(max_in_flight: usize) -> LeaseLimits {
        LeaseLimits {
            max_in_flight,
            subscriptions: Default::default(),
            shared: Default::default(),
            shared_bound: usize::MAX,
        }
    }

    /// Puts subscription `id` in the shared group (`true`) or takes it out.
    pub fn share(&mut self, id: u64, member: bool) {
        if member {
            self.shared.insert(id);
        } else {
            self.shared.remove(&id);
        }
    }

    /// How many deliveries the shared group's members may have in flight together.
    pub fn set_shared_bound(&mut self, max_in_flight: usize) {
        self.shared_bound = max_in_flight;
    }

    /// Whether subscription `id` is in the shared group.
    pub fn shares(&self, id: u64) -> bool {
        self.shared.contains(&id)
    }

    /// The shared group's members, in id order.
    pub fn shared_members(&self) -> impl Iterator<Item = u64> + '_ {
        self.shared.iter().copied()
    }

    /// The shared group's bound.
    pub fn shared_bound(&self) -> usize {
        self.shared_bound
    }

    /// Subscription `id` gets its own bound instead.
    pub fn subscription(mut self, id: u64, max_in_flight: usize) -> LeaseLimits {
        self.subscriptions.insert(id, max_in_flight);
        self
    }

    /// Gives subscription `id` its own bound, or (`None`) the default again.
    pub fn set(&mut self, id: u64, max_in_flight: Option<usize>) {
        match max_in_flight {
            Some(max) => self.subscriptions.insert(id, max),
            None => self.subscriptions.remove(&id),
        };
    }

    /// The bound of subscription `id`.
    pub fn bound(&self, id: u64) -> usize {
        self.subscriptions
            .get(&id)
            .copied()
            .unwrap_or(self.max_in_flight)
    }
}

impl Default for LeaseLimits {
    /// No bound.
    fn default() -> LeaseLimits {
        LeaseLimits::new(usize::MAX)
    }
}

/// Which dead letters a listing, replay or purge means: those of one subscription or of all,
/// dead-lettered within `[from_ms, to_ms)` (milliseconds since the Unix epoch). The default
/// selects every one.
///
/// ```
/// let last_hour = callout_store::DeadFilter {
///     subscription: Some(7),
///     from_ms: 1_700_000_000_000 - 3_600_000,
///     to_ms: 1_700_000_000_000,
/// };
/// assert_eq!(callout_store::DeadFilter::subscription(7).to_ms, u64::MAX);
/// assert!(last_hour.selects(7, 1_700_000_000_000 - 1));
/// assert!(!last_hour.selects(7, 1_700_000_000_000));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeadFilter {
    /// Only this subscription's dead letters; `None` for all.
    pub subscription: Option<u64>,
    /// Dead-lettered at or after this time.
    pub from_ms: u64,
    /// Dead-lettered before this time.
    pub to_ms: u64,
}

impl DeadFilter {
    /// Every dead letter of one subscription.
    pub fn subscription(id: u64) -> DeadFilter {
        DeadFilter {
            subscription: Some(id),
            ..DeadFilter::default()
        }
    }

    /// Whether a dead letter of subscription `sub`, dead-lettered at `at`, is selected.
    pub fn selects(&self, sub: u64, at: u64) -> bool {
        self.subscription.is_none_or(|s| s == sub) && at >= self.from_ms && at < self.to_ms
    }
}

impl Default for DeadFilter {
    fn default() -> DeadFilter {
        DeadFilter {
            subscription: None,
            from_ms: 0,
            to_ms: u64::MAX,
        }
    }
}

/// A subscription's run of failed attempts with no success between them, as
/// [`Tallies::count_failure`](crate::Tallies::count_failure) returns it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FailureStreak {
    /// Failed attempts in a row.
    pub attempts: u32,
    /// Deliveries in a row that failed for good (their last attempt failed).
    pub events: u32,
    /// When the first of them failed, Unix ms.
    pub since: u64,
}

impl FailureStreak {
    /// The streak after one more failed attempt at `at_ms`, the delivery's last when
    /// `event_failed`.
    pub(crate) fn and_one_more(self, at_ms: u64, event_failed: bool) -> FailureStreak {
        FailureStreak {
            attempts: self.attempts.saturating_add(1),
            events: self.events.saturating_add(u32::from(event_failed)),
            since: if self.attempts == 0 {
                at_ms
            } else {
                self.since
            },
        }
    }
}

/// One milliseconds-long clock hour.
const HOUR_MS: u64 = 3_600_000;

/// One subscription's callouts of one entity in the current clock hour, against a threshold
/// (Autotask's): the record [`Tallies::count_callout`](crate::Tallies::count_callout) keeps,
/// and the rule it counts by, which every backend applies the same way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CalloutWindow {
    /// The clock hour counted (Unix ms / 3,600,000).
    pub hour: u64,
    /// Callouts counted in it.
    pub count: u64,
    /// The hour in which the first callout over the threshold was reported.
    pub warned_hour: Option<u64>,
}

/// What counting one callout against the hourly threshold decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CalloutCount {
    /// The callout goes now and was counted; `false`: it waits for the next hour
    /// ([`CalloutCount::next_hour_at`]) and was not counted.
    pub goes_now: bool,
    /// The callout is over the threshold (the count with it included).
    pub over: Option<u64>,
    /// It is the first over the threshold this hour: the host is told of this one only.
    pub first_over: bool,
    /// When the next clock hour starts, Unix ms.
    pub next_hour_at: u64,
}

impl CalloutWindow {
    /// Counts a callout at `now_ms` against `threshold`: over it, one that `delays` waits for
    /// the next hour uncounted, the others go and count. The window starts afresh each hour;
    /// a callout from an hour already past (an instance whose clock is behind) counts in the
    /// current one, so clocks a little apart do not start the window afresh back and forth.
    pub fn count(&mut self, now_ms: u64, threshold: u64, delays: bool) -> CalloutCount {
        let hour = (now_ms / HOUR_MS).max(self.hour);
        if self.hour != hour {
            self.hour = hour;
            self.count = 0;
        }
        let next_hour_at = (hour + 1) * HOUR_MS;
        if self.count < threshold {
            self.count += 1;
            return CalloutCount {
                goes_now: true,
                over: None,
                first_over: false,
                next_hour_at,
            };
        }
        let first_over = self.warned_hour != Some(hour);
        self.warned_hour = Some(hour);
        let over = Some(self.count + 1);
        if !delays {
            self.count += 1;
        }
        CalloutCount {
            goes_now: !delays,
            over,
            first_over,
            next_hour_at,
        }
    }
}

/// When a rate-limited subscription may send: its next slot, and the rule that takes one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct SendSlot {
    /// The next slot, Unix ms.
    pub(crate) next_at: u64,
}

impl SendSlot {
    /// Takes the slot at `now_ms` (`None`: the send goes now; the next is `spacing_ms` on), or
    /// says when it opens.
    pub(crate) fn take(&mut self, now_ms: u64, spacing_ms: u64) -> Option<u64> {
        if self.next_at > now_ms {
            return Some(self.next_at);
        }
        self.next_at = now_ms.saturating_add(spacing_ms);
        None
    }
}

/// How a subscription's attempts have gone lately, which paces how many of its deliveries go at
/// once: the record [`Tallies::pace_attempt`](crate::Tallies::pace_attempt) keeps for every
/// instance on the store, and the rule it changes by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Pace {
    /// Attempts in a row that ended within the slow limit, up to the cap they were counted
    /// with.
    pub quick_streak: u32,
    /// An attempt was slow, and fewer than two quick ones came after it.
    pub slow: bool,
}

impl Pace {
    /// The pace after one more attempt: a slow one makes the subscription slow and starts the
    /// streak again; a quick one lengthens the streak (to at most `cap`), and the second in a
    /// row ends slowness.
    pub fn after(self, quick: bool, cap: u32) -> Pace {
        if !quick {
            return Pace {
                quick_streak: 0,
                slow: true,
            };
        }
        let quick_streak = self.quick_streak.saturating_add(1).min(cap.max(2));
        Pace {
            quick_streak,
            slow: self.slow && quick_streak < 2,
        }
    }

    /// How many deliveries may be in flight at once with this pace, within `max_in_flight`:
    /// one while slow, else one more than the streak.
    pub fn bound(self, max_in_flight: usize) -> usize {
        if self.slow {
            1
        } else {
            (1 + self.quick_streak as usize).min(max_in_flight.max(1))
        }
    }
}

#[cfg(test)]
mod tally_tests {
    use super::*;

    const T0: u64 = 1_700_000_000_000 / HOUR_MS * HOUR_MS;

    #[test]
    fn a_pace_widens_per_quick_attempt_to_its_cap_and_a_slow_one_narrows_it() {
        let quick = |pace: Pace, n: usize| (0..n).fold(pace, |p, _| p.after(true, 4));
        let fast = quick(Pace::default(), 10);
        assert_eq!((fast.quick_streak, fast.bound(8)), (4, 5));
        assert_eq!(fast.bound(3), 3);
        let slow = fast.after(false, 4);
        assert_eq!(
            (slow, slow.bound(8)),
            (
                Pace {
                    quick_streak: 0,
                    slow: true
                },
                1
            )
        );
        assert!(
            quick(slow, 1).slow,
            "one quick attempt does not end slowness"
        );
        let recovered = quick(slow, 2);
        assert_eq!((recovered.slow, recovered.bound(8)), (false, 3));
    }

    #[test]
    fn a_callout_from_a_clock_behind_counts_in_the_current_hour() {
        let mut window = CalloutWindow::default();
        assert!(window.count(T0 + HOUR_MS, 2, true).goes_now);
        assert!(window.count(T0 + HOUR_MS - 5, 2, true).goes_now);
        let third = window.count(T0 + HOUR_MS + 1, 2, true);
        assert!(
            !third.goes_now,
            "the late one was counted in the current hour"
        );
        assert_eq!(third.next_hour_at, T0 + 2 * HOUR_MS);
    }

    #[test]
    fn a_streak_counts_attempts_and_failed_events_from_its_first_failure() {
        let streak = FailureStreak::default()
            .and_one_more(10, false)
            .and_one_more(20, true)
            .and_one_more(30, false);
        assert_eq!(
            streak,
            FailureStreak {
                attempts: 3,
                events: 1,
                since: 10
            }
        );
    }

    #[test]
    fn a_delaying_window_holds_the_ones_over_until_the_next_hour_and_warns_once() {
        let mut window = CalloutWindow::default();
        assert!(window.count(T0, 2, true).goes_now);
        assert!(window.count(T0 + 1, 2, true).goes_now);
        let third = window.count(T0 + 2, 2, true);
        assert_eq!(
            (
                third.goes_now,
                third.over,
                third.first_over,
                third.next_hour_at
            ),
            (false, Some(3), true, T0 + HOUR_MS)
        );
        let fourth = window.count(T0 + 3, 2, true);
        assert_eq!((fourth.goes_now, fourth.first_over), (false, false));
        assert_eq!(window.count, 2, "held ones are not counted");
        let next = window.count(T0 + HOUR_MS, 2, true);
        assert_eq!((next.goes_now, next.over), (true, None), "a new hour");
    }

    #[test]
    fn a_window_that_does_not_delay_counts_on_and_warns_once_an_hour() {
        let mut window = CalloutWindow::default();
        assert_eq!(window.count(T0, 1, false).over, None);
        let second = window.count(T0, 1, false);
        assert_eq!(
            (second.goes_now, second.over, second.first_over),
            (true, Some(2), true)
        );
        let third = window.count(T0, 1, false);
        assert_eq!((third.over, third.first_over), (Some(3), false));
        assert!(window.count(T0 + HOUR_MS + 5, 1, false).over.is_none());
        assert!(window.count(T0 + HOUR_MS + 6, 1, false).first_over);
    }

    #[test]
    fn a_slot_opens_spacing_after_the_last_send() {
        let mut slot = SendSlot::default();
        assert_eq!(slot.take(1_000, 200), None);
        assert_eq!(slot.take(1_100, 200), Some(1_200));
        assert_eq!(slot.take(1_200, 200), None);
        assert_eq!(
            slot.take(5_000, 200),
            None,
            "an idle spell saves no slots up"
        );
        assert_eq!(slot.take(5_100, 200), Some(5_200));
    }
}
