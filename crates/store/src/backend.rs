//! The storage contract: what the engine needs of any backend, in four traits, with the model
//! of `model.rs` and the one [`StoreError`]. sled implements it in this crate; another backend
//! implements the same traits and passes the same conformance suite.

use std::sync::Arc;

use callout_core::Subscription;

use crate::error::StoreError;
use crate::model::{
    Attempt, CalloutCount, Counts, DeadFilter, Delivery, EnqueueReceipt, FailureStreak,
    LeaseLimits, LeaseToken, Leased, NewDelivery, Pace, SubscriptionFilter,
};

/// The subscription registry: subscriptions and the per-subscription counters the vendors
/// number their callouts with.
pub trait Registry: Send + Sync {
    /// Validates and stores a new subscription: assigns the next id (never reused), a GUID if it
    /// has none, and the creation time. Durable when it returns.
    fn create_subscription(
        &self,
        sub: Subscription,
        now_ms: u64,
    ) -> Result<Subscription, StoreError>;

    /// The subscription with this id.
    fn get_subscription(&self, id: u64) -> Result<Option<Subscription>, StoreError>;

    /// Replaces a stored subscription (by `id`), keeping its GUID, creation time and creator.
    /// Durable when it returns.
    fn update_subscription(
        &self,
        sub: Subscription,
        now_ms: u64,
    ) -> Result<Subscription, StoreError>;

    /// Deletes a subscription; returns it if it existed. Its deliveries stay until the engine
    /// dead-letters them.
    fn delete_subscription(&self, id: u64) -> Result<Option<Subscription>, StoreError>;

    /// Subscriptions by name (contains, ignoring case), event (a pattern matches the event
    /// name, or equals the given pattern) and state, in id order.
    fn list_subscriptions(
        &self,
        filter: &SubscriptionFilter,
    ) -> Result<Vec<Subscription>, StoreError>;

    /// Reserves `count` numbers of a subscription's own counter (Autotask's `SequenceNumber`
    /// counts up per webhook) and returns the first. Durable with the enqueue that follows.
    fn reserve_sequence(&self, sub: u64, count: u64) -> Result<u64, StoreError>;

    /// Asks to be told of changes other users of a shared store make (another instance on
    /// the same database): `on_change` is called, on a thread of the backend's, for each
    /// [`Change`] it learns of, soon after it was committed. Returns whether the backend
    /// tells of changes at all; one that does not (the default, and sled, which one process
    /// owns) returns `false` and never calls it. `on_change` must return quickly: it holds up
    /// the notices after it.
    fn watch_changes(&self, on_change: ChangeHandler) -> Result<bool, StoreError> {
        let _ = on_change;
        Ok(false)
    }
}

/// What [`Registry::watch_changes`] calls with each [`Change`].
pub type ChangeHandler = Arc<dyn Fn(Change) + Send + Sync>;

/// A change made through another handle on a shared store, as [`Registry::watch_changes`]
/// tells of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Change {
    /// The subscription with this id was created, changed or deleted: read it again.
    Subscription(u64),
    /// Changes may have gone untold (the backend lost its feed and has it again): read every
    /// subscription again, and look for due deliveries.
    Everything,
    /// Deliveries were enqueued or made due again (a resume, a replay): some may be due now.
    Due,
}

/// The delivery queue: enqueue, lease, settle, hold, and counts.
///
/// A delivery is due, in flight (leased), held (its subscription is switched off) or dead.
/// Settles name the lease they settle by its [`LeaseToken`]: a lease that expired and was
/// given to another worker cannot be settled by the first.
pub trait Queue: Send + Sync {
    /// Stores every delivery of a publish atomically (all or none) and returns once they are
    /// durable. `dedup_event_ids` are host-supplied event ids: one seen before within the
    /// retention window is reported as a duplicate, and the deliveries that carry it are
    /// skipped.
    fn enqueue(
        &self,
        dedup_event_ids: &[String],
        deliveries: Vec<NewDelivery>,
        now_ms: u64,
    ) -> Result<EnqueueReceipt, StoreError>;

    /// Leases up to `max` deliveries due at `now_ms` within `limits`: no subscription gets more
    /// in flight than its bound, an ordered subscription never has two in flight, and its
    /// deliveries go in publish order. A delivery with an order key goes only when no earlier
    /// one of its subscription and key is due, in flight or held (dead ones no longer count;
    /// the checks `order_keys_hold_through_*`). Subscriptions take turns: each delivery goes to the
    /// subscription with one due that was leased from least recently since the backend was
    /// opened (one never leased from first; between those, the one whose next delivery is due
    /// earliest), and within a subscription deliveries go in due order (the conformance check
    /// `leases_take_turns_across_subscriptions`). Expired leases return first. A backend may
    /// serve concurrent calls with the same limits as one lease at the latest of their clocks
    /// when those read within 10 ms of each other, so a call may get a delivery due up to 10 ms
    /// after its own `now_ms`, never later (`concurrent_leases_go_by_their_own_clock`).
    fn lease_within(
        &self,
        now_ms: u64,
        max: usize,
        limits: &LeaseLimits,
    ) -> Result<Vec<Leased>, StoreError>;

    /// [`Queue::lease_within`] with no per-subscription bound.
    fn lease(&self, now_ms: u64, max: usize) -> Result<Vec<Leased>, StoreError> {
        self.lease_within(now_ms, max, &LeaseLimits::default())
    }

    /// The delivery was delivered: it leaves the queue; its attempt stays for the retention,
    /// and its subscription's failure streak ([`Tallies::count_failure`]) ends. Fails with
    /// [`StoreError::UnknownDelivery`] when the lease is not current (never leased, settled
    /// already, or expired and voided by a later lease).
    fn complete(&self, lease: LeaseToken, attempt: Attempt) -> Result<(), StoreError>;

    /// The attempt failed; the delivery is due again at `due_at` (held, if its subscription
    /// is).
    fn reschedule(
        &self,
        lease: LeaseToken,
        due_at: u64,
        attempt: Attempt,
    ) -> Result<(), StoreError>;

    /// Returns a leased delivery unattempted, due at `due_at` (its subscription is at its rate
    /// limit, say).
    fn release(&self, lease: LeaseToken, due_at: u64) -> Result<(), StoreError>;

    /// The delivery will not be tried again; it is kept as a dead letter.
    fn dead_letter(&self, lease: LeaseToken, attempt: Attempt) -> Result<(), StoreError>;

    /// Holds a subscription's deliveries: due ones move to held and are not leased until
    /// [`Queue::resume_subscription`]; ones in flight are held when they come back.
    fn hold_subscription(&self, sub: u64) -> Result<(), StoreError>;

    /// Releases a held subscription's deliveries, due at `now_ms` at the latest; returns how
    /// many.
    fn resume_subscription(&self, sub: u64, now_ms: u64) -> Result<u64, StoreError>;

    /// When the next delivery is due or the next lease expires, if any.
    fn next_due_at(&self) -> Result<Option<u64>, StoreError>;

    /// Deliveries by state over all subscriptions, without scanning the queue.
    fn counts(&self) -> Result<Counts, StoreError>;

    /// Deliveries by state of one subscription, without scanning the queue.
    fn subscription_counts(&self, sub: u64) -> Result<Counts, StoreError>;

    /// Makes everything written so far durable now (settles included).
    fn flush(&self) -> Result<(), StoreError>;

    /// How long a lease lasts, when the backend wants the engine to check it against its
    /// request timeouts (a lease that ends while its request runs lets another worker, maybe
    /// in another instance, send the delivery again). `None` (the default): not checked.
    fn lease_duration(&self) -> Option<std::time::Duration> {
        None
    }

    /// How many workers an engine on this backend runs when the host does not say: `None`
    /// (the default) leaves it to the engine. A backend whose every lease and settle is a
    /// round trip wants more, so that workers that finish together share statements.
    fn preferred_workers(&self) -> Option<usize> {
        None
    }
}

/// What happened to deliveries: single deliveries, attempts, dead letters, and the pruning of
/// history past retention.
pub trait History: Send + Sync {
    /// A delivery by id, in any state but delivered (delivered ones leave the queue; their
    /// attempts stay).
    fn delivery(&self, id: u64) -> Result<Option<Delivery>, StoreError>;

    /// Every recorded attempt of a delivery, oldest first.
    fn attempts_for_delivery(&self, id: u64) -> Result<Vec<Attempt>, StoreError>;

    /// The newest attempts of a subscription's deliveries, newest first, at most `limit`, as
    /// (delivery id, attempt).
    fn attempts_for_subscription(
        &self,
        sub: u64,
        limit: usize,
    ) -> Result<Vec<(u64, Attempt)>, StoreError>;

    /// The dead letters `filter` selects.
    fn dead_letters(&self, filter: &DeadFilter) -> Result<Vec<Delivery>, StoreError>;

    /// Puts the dead letters `filter` selects back in the queue, due at `now_ms`, with their
    /// attempt count reset (their history is kept); returns how many.
    fn replay_dead(&self, filter: &DeadFilter, now_ms: u64) -> Result<usize, StoreError>;

    /// Deletes the dead letters `filter` selects; returns how many.
    fn purge_dead(&self, filter: &DeadFilter) -> Result<usize, StoreError>;

    /// Drops what is past retention (attempts, remembered event ids), at most about `max`
    /// records per call so it never stalls writers; a call goes on where the last stopped.
    /// Returns how many were removed.
    fn prune(&self, now_ms: u64, max: usize) -> Result<usize, StoreError>;
}

/// The counters the engine switches subscriptions off and paces them by, kept in the store so
/// that every instance on a shared store counts into and reads the same ones: failure
/// streaks, callouts per clock hour, and rate-limit slots. Each call is atomic against every
/// other user of the store.
pub trait Tallies: Send + Sync {
    /// Counts a failed attempt of subscription `sub` at `at_ms` (one that failed for good too
    /// when `event_failed`: the delivery's last) and returns the streak it is now in. A
    /// [`Queue::complete`] of one of its deliveries ends the streak, as does
    /// [`Tallies::end_failure_streak`]. Kept across a reopen.
    fn count_failure(
        &self,
        sub: u64,
        at_ms: u64,
        event_failed: bool,
    ) -> Result<FailureStreak, StoreError>;

    /// Ends subscription `sub`'s failure streak (it was switched off, or resumed).
    fn end_failure_streak(&self, sub: u64) -> Result<(), StoreError>;

    /// Counts a callout of subscription `sub` to `entity` at `now_ms` against `threshold`
    /// callouts per clock hour, by [`CalloutWindow::count`](crate::CalloutWindow::count).
    fn count_callout(
        &self,
        sub: u64,
        entity: &str,
        now_ms: u64,
        threshold: u64,
        delays: bool,
    ) -> Result<CalloutCount, StoreError>;

    /// Takes subscription `sub`'s send slot at `now_ms` for a rate limit of one send per
    /// `spacing_ms`: `None` when the send may go now (the next slot opens `spacing_ms` later),
    /// or when the next slot opens, Unix ms.
    fn take_send_slot(
        &self,
        sub: u64,
        now_ms: u64,
        spacing_ms: u64,
    ) -> Result<Option<u64>, StoreError>;

    /// Counts an attempt of subscription `sub` (`quick`: it ended within the slow limit) into
    /// its pace by [`Pace::after`](crate::Pace::after) with `cap`, and returns the pace now.
    /// Every instance on the store paces by the same record, because the bound it gives is
    /// checked against in-flight counts that are the store's too.
    fn pace_attempt(&self, sub: u64, quick: bool, cap: u32) -> Result<Pace, StoreError>;

    /// The paces of the subscriptions that have one (an attempt counted), in id order.
    fn paces(&self) -> Result<Vec<(u64, Pace)>, StoreError>;
}

/// Everything the engine needs of a store: a [`Registry`], a [`Queue`], a [`History`] and
/// [`Tallies`]. Implemented for every type that is all four.
pub trait Backend: Registry + Queue + History + Tallies + 'static {}

impl<T: Registry + Queue + History + Tallies + 'static> Backend for T {}
