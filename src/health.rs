//! Subscription health: failure counting, the switch-off after a 410 or too many errors, the
//! notices the host hears, the state events and deactivation calls that follow a switch-off,
//! and the pace of each subscription's attempts, which sets how many deliveries it may have in
//! flight.
//!
//! The pace rule: a subscription starts with one delivery in flight and gets one more for each
//! attempt in a row that ends within [`Pace::slow_attempt`], up to the engine's bound. An
//! attempt that times out, takes longer, or is still running past it makes the subscription
//! slow: one in flight again, and the slow subscriptions together share a quarter of the
//! workers (`limits.rs`). Two quick attempts in a row make it quick again. So a receiver that
//! hangs or drips holds at most one worker, and all such receivers together a bounded share.
//! The pace is the store's ([`callout_store::Pace`]): the bound it gives is checked against the
//! store's in-flight counts, which on a shared store are every instance's, so every instance
//! paces by the same record. An attempt that changes this instance's copy counts into the
//! store's, and the copies are read again every [`PACE_REFRESH_MS`], so an instance that has
//! sent nothing yet learns a pace it has not seen change.
//!
//! A settle never publishes or calls a receiver itself: it queues a [`HealthJob`], and the
//! health thread, which owns those jobs, drains them. So one delivery's settle never waits on
//! another publish or another receiver.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender as Tx};
use serde_json::json;

use callout_core::vendor::{self, DisableRule};
use callout_core::{CompiledSubscription, Profile, State, Subscription, VendorRules};
use callout_store::{Backend, LeaseToken};

use crate::engine::Shared;
use crate::notify::{Notice, NoticeKind, Notifier};
use crate::send;

/// When a subscription that keeps failing is switched to `too_many_errors`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailurePolicy {
    /// After this many failed attempts in a row (across its deliveries); `None`: never by count.
    pub consecutive_failures: Option<u32>,
    /// After failing without a single success for this long; `None`: never by time.
    pub failing_for: Option<Duration>,
}

impl Default for FailurePolicy {
    /// Five days of continuous failure, as the hosted webhook services do; no count.
    fn default() -> Self {
        FailurePolicy {
            consecutive_failures: None,
            failing_for: Some(Duration::from_secs(5 * 86_400)),
        }
    }
}

/// What the health thread does for a subscription that changed state.
pub(crate) enum HealthJob {
    /// Publish the state event (`webhook<id>.<started|stopped|errors>`).
    Announce(Box<Subscription>),
    /// Call the subscription's deactivation URL.
    Deactivate {
        subscription: Box<Subscription>,
        reason: &'static str,
    },
}

/// How attempts are paced (see the module documentation).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Pace {
    /// An attempt that takes longer makes its subscription slow.
    pub(crate) slow_attempt: Duration,
    /// The most deliveries of one subscription in flight at once.
    pub(crate) max_in_flight: usize,
}

impl Pace {
    /// How long a quick streak is counted: past it, one more quick attempt changes no bound.
    fn cap(&self) -> u32 {
        u32::try_from(self.max_in_flight.saturating_sub(1)).unwrap_or(u32::MAX)
    }
}

/// How often the copies of the store's paces are read again, ms.
pub(crate) const PACE_REFRESH_MS: u64 = 2_000;

/// One subscription's copy of its pace, and its unreported failures (its failure streak is in
/// the store).
#[derive(Debug, Default)]
struct Record {
    pace: callout_store::Pace,
    /// The [`Health::pace_epoch`] of this instance's last change of the copy.
    pace_epoch: u64,
    /// Dead-lettered deliveries the notifier has not heard of yet, and when it last heard.
    failed_unreported: u64,
    failures_noticed_at: Option<u64>,
}

/// The health state: the policy, each subscription's record, the notifier and the job queue.
pub(crate) struct Health {
    policy: FailurePolicy,
    pace: Pace,
    records: Mutex<HashMap<u64, Record>>,
    /// Counts this instance's changes of its pace copies, so a refresh read before a change
    /// does not undo it.
    pace_epoch: AtomicU64,
    /// Attempts under way, by lease: (subscription, started at, Unix ms).
    running: Mutex<HashMap<LeaseToken, (u64, u64)>>,
    notifier: Option<Arc<dyn Notifier>>,
    jobs: Mutex<Option<Tx<HealthJob>>>,
}

impl Health {
    /// The health state and the receiving end of its job queue, for [`run`].
    pub(crate) fn new(
        policy: FailurePolicy,
        notifier: Option<Arc<dyn Notifier>>,
        pace: Pace,
    ) -> (Health, Receiver<HealthJob>) {
        let (tx, rx) = crossbeam_channel::unbounded();
        let health = Health {
            policy,
            pace,
            records: Mutex::new(HashMap::new()),
            pace_epoch: AtomicU64::new(0),
            running: Mutex::new(HashMap::new()),
            notifier,
            jobs: Mutex::new(Some(tx)),
        };
        (health, rx)
    }

    /// Queues a job for the health thread. Once the queue is closed (a worker still settling
    /// past the shutdown deadline), the job is done here rather than lost.
    pub(crate) fn queue(&self, shared: &Shared, job: HealthJob) {
        let jobs = self.jobs.lock().ok().and_then(|j| j.clone());
        match jobs {
            Some(jobs) => {
                if let Err(crossbeam_channel::SendError(job)) = jobs.send(job) {
                    perform(shared, job);
                }
            }
            None => perform(shared, job),
        }
    }

    /// Queues the deactivation call of a subscription that was switched off or deleted.
    pub(crate) fn deactivated(
        &self,
        shared: &Shared,
        subscription: Subscription,
        reason: &'static str,
    ) {
        if subscription.deactivation_url.is_some() {
            self.queue(
                shared,
                HealthJob::Deactivate {
                    subscription: Box::new(subscription),
                    reason,
                },
            );
        }
    }

    /// Closes the job queue: the health thread drains what is queued, then stops.
    pub(crate) fn close(&self) {
        if let Ok(mut jobs) = self.jobs.lock() {
            jobs.take();
        }
    }

    /// Counts a delivery about to be dead-lettered, for the next `DeliveriesFailed` notice.
    pub(crate) fn count_failed(&self, id: u64) {
        if let Ok(mut records) = self.records.lock() {
            records.entry(id).or_default().failed_unreported += 1;
        }
    }

    /// Counts a failed attempt (and, when `dead`, a failed event) in the store, where every
    /// instance on a shared store counts into the same streak; returns the streak length when
    /// the subscription's vendor rule or the failure policy says to switch it off. A store
    /// that cannot count it leaves the subscription on (the failure is logged).
    fn count_failure(
        &self,
        store: &dyn Backend,
        sub: &Subscription,
        now: u64,
        dead: bool,
    ) -> Option<u32> {
        let streak = match store.count_failure(sub.id, now, dead) {
            Ok(streak) => streak,
            Err(error) => {
                tracing::error!(%error, subscription = sub.id, "could not count a failure");
                return None;
            }
        };
        let tripped = match VendorRules::for_profile(sub.profile).disable {
            Some(DisableRule::ConsecutiveFailedAttempts(n)) => streak.attempts >= n,
            Some(DisableRule::ConsecutiveFailedEvents(n)) => streak.events >= n,
            _ => {
                let by_count = self
                    .policy
                    .consecutive_failures
                    .is_some_and(|n| streak.attempts >= n);
                let by_time = self.policy.failing_for.is_some_and(|window| {
                    now.saturating_sub(streak.since) >= window.as_millis() as u64
                });
                by_count || by_time
            }
        };
        tripped.then_some(streak.attempts)
    }

    /// Tells the notifier, if there is one.
    pub(crate) fn notify(&self, kind: NoticeKind, sub: &Subscription) {
        if let Some(notifier) = &self.notifier {
            let emails = [&sub.errors_email, &sub.notification_email]
                .into_iter()
                .flatten()
                .cloned()
                .collect();
            notifier.notify(&Notice {
                kind,
                subscription: sub.clone(),
                emails,
            });
        }
    }
}

/// An attempt of `delivery` (of subscription `sub`) starts at `now`.
pub(crate) fn attempt_started(shared: &Shared, lease: LeaseToken, sub: u64, now: u64) {
    if let Ok(mut running) = shared.health.running.lock() {
        running.insert(lease, (sub, now));
    }
}

/// An attempt of `delivery` ended after `took`; `timed_out` when the receiver ran out of time.
/// Paces its subscription by it.
pub(crate) fn attempt_ended(
    shared: &Shared,
    lease: LeaseToken,
    sub: u64,
    took: Duration,
    timed_out: bool,
) {
    let health = &shared.health;
    if let Ok(mut running) = health.running.lock() {
        running.remove(&lease);
    }
    let quick = !(timed_out || took >= health.pace.slow_attempt);
    let unchanged = match health.records.lock() {
        Ok(mut records) => {
            let record = records.entry(sub).or_default();
            record.pace.after(quick, health.pace.cap()) == record.pace
        }
        Err(_) => return,
    };
    if unchanged {
        // Nothing this instance paces by would change, so the store is not asked.
        return;
    }
    count_pace(shared, sub, quick);
}

/// Counts an attempt of `sub` into the store's pace and takes the result as this instance's
/// copy. The store is asked outside the records lock, so a slow store delays this attempt's
/// worker only; two attempts ending at once may then apply in either order, which the next
/// change or refresh puts right.
fn count_pace(shared: &Shared, sub: u64, quick: bool) {
    let health = &shared.health;
    let cap = health.pace.cap();
    let stored = shared
        .store
        .pace_attempt(sub, quick, cap)
        .map_err(|error| {
            tracing::error!(%error, subscription = sub, "could not count an attempt's pace");
        })
        .ok();
    let Ok(mut records) = health.records.lock() else {
        return;
    };
    let record = records.entry(sub).or_default();
    let now = stored.unwrap_or_else(|| record.pace.after(quick, cap));
    record.pace_epoch = health.pace_epoch.fetch_add(1, Ordering::SeqCst) + 1;
    let before = std::mem::replace(&mut record.pace, now);
    // Under the records lock, so the limits change in the order the copies do (nothing takes
    // the records while holding the limits).
    apply_pace(shared, sub, before, now);
}

/// Sets the limits for a subscription whose pace went from `before` to `now`.
fn apply_pace(shared: &Shared, sub: u64, before: callout_store::Pace, now: callout_store::Pace) {
    let max = shared.health.pace.max_in_flight;
    if before.slow != now.slow {
        tracing::info!(
            subscription = sub,
            slow = now.slow,
            "subscription pace changed"
        );
        shared.limits.set_slow(sub, now.slow);
    }
    if before.bound(max) != now.bound(max) {
        shared.limits.set_health_bound(sub, now.bound(max));
    }
}

/// Reads the store's paces again into this instance's copies, for the ones other instances
/// changed. The dispatcher calls this every [`PACE_REFRESH_MS`].
pub(crate) fn refresh_paces(shared: &Shared) {
    // A copy this instance changed after the read began is newer than what the read returns.
    let read_from = shared.health.pace_epoch.load(Ordering::SeqCst);
    let paces = match shared.store.paces() {
        Ok(paces) => paces,
        Err(error) => {
            tracing::error!(%error, "could not read the paces");
            return;
        }
    };
    let Ok(mut records) = shared.health.records.lock() else {
        return;
    };
    for (sub, now) in paces {
        let record = records.entry(sub).or_default();
        if record.pace != now && record.pace_epoch <= read_from {
            let before = std::mem::replace(&mut record.pace, now);
            apply_pace(shared, sub, before, now);
        }
    }
}

/// Marks the subscriptions with an attempt still running past the slow limit as slow, so they
/// get no more workers while it runs. The dispatcher calls this every round.
pub(crate) fn mark_running_slow(shared: &Shared, now: u64) {
    let health = &shared.health;
    let limit = health.pace.slow_attempt.as_millis() as u64;
    let overdue: Vec<u64> = match health.running.lock() {
        Ok(running) => running
            .values()
            .filter(|(_, started)| now.saturating_sub(*started) >= limit)
            .map(|(sub, _)| *sub)
            .collect(),
        Err(_) => return,
    };
    let newly: Vec<u64> = match health.records.lock() {
        Ok(mut records) => overdue
            .into_iter()
            .filter(|sub| {
                let pace = records.entry(*sub).or_default().pace;
                !(pace.slow && pace.quick_streak == 0)
            })
            .collect(),
        Err(_) => return,
    };
    for sub in newly {
        tracing::info!(
            subscription = sub,
            "subscription slow: an attempt runs past the limit"
        );
        count_pace(shared, sub, false);
    }
}

/// Counts a failed attempt and switches the subscription off when its rule says so.
pub(crate) fn failed(shared: &Shared, sub: &Subscription, now: u64, dead: bool) {
    if let Some(consecutive_failures) = shared.health.count_failure(&*shared.store, sub, now, dead)
    {
        switch_off(
            shared,
            sub.id,
            State::TooManyErrors,
            NoticeKind::TooManyErrors {
                consecutive_failures,
            },
            "too_many_errors",
        );
    }
}

/// Stops an active subscription after a 410 or too many errors: the new state stored through
/// the registry (only the state changes; the host's edits stay), pending deliveries held, the
/// notifier told, and the state event and deactivation call queued for the health thread.
pub(crate) fn switch_off(
    shared: &Shared,
    id: u64,
    state: State,
    kind: NoticeKind,
    reason: &'static str,
) {
    let changed = shared.registry.change(id, |sub| {
        let active = sub.state == State::Active;
        sub.state = state;
        Ok(active)
    });
    // The registry holds the deliveries with the change of state.
    let stopped = match changed {
        Ok(Some(changed)) => changed.after,
        Ok(None) => return,
        Err(error) => {
            tracing::error!(%error, subscription = id, "could not switch the subscription off");
            return;
        }
    };
    if let Err(error) = shared.store.end_failure_streak(id) {
        tracing::error!(%error, subscription = id, "could not end the failure streak");
    }
    tracing::warn!(
        subscription = id,
        state = state.as_str(),
        "subscription switched off"
    );
    shared.health.notify(kind, &stopped);
    // The state event first: it is durable and quick, the deactivation call may take a while.
    shared
        .health
        .queue(shared, HealthJob::Announce(Box::new(stopped.clone())));
    shared.health.deactivated(shared, stopped, reason);
}

/// Seconds between two `DeliveriesFailed` notices of one subscription whose profile sets none.
const FAILURE_NOTICE_INTERVAL_S: u64 = 3_600;

fn failure_notice_interval_ms(sub: &Subscription) -> u64 {
    VendorRules::for_profile(sub.profile)
        .notification_interval_s
        .unwrap_or(FAILURE_NOTICE_INTERVAL_S)
        * 1000
}

/// Tells the notifier of dead-lettered deliveries not yet reported, per subscription at most
/// once per its interval (Autotask: one error email a day).
pub(crate) fn report_failures(shared: &Shared, now: u64) {
    let health = &shared.health;
    if health.notifier.is_none() {
        return;
    }
    let Ok(matcher) = shared.registry.matcher() else {
        return;
    };
    let due: Vec<(Arc<CompiledSubscription>, u64)> = {
        let Ok(mut records) = health.records.lock() else {
            return;
        };
        records
            .iter_mut()
            .filter(|(_, record)| record.failed_unreported > 0)
            .filter_map(|(id, record)| {
                let sub = matcher.get(*id)?;
                let interval = failure_notice_interval_ms(sub.subscription());
                if record
                    .failures_noticed_at
                    .is_some_and(|at| now.saturating_sub(at) < interval)
                {
                    return None;
                }
                record.failures_noticed_at = Some(now);
                Some((
                    Arc::clone(sub),
                    std::mem::take(&mut record.failed_unreported),
                ))
            })
            .collect()
    };
    drop(matcher);
    for (sub, count) in due {
        health.notify(NoticeKind::DeliveriesFailed { count }, sub.subscription());
    }
}

/// The health thread: drains the job queue until it is closed.
pub(crate) fn run(shared: &Shared, jobs: &Receiver<HealthJob>) {
    while let Ok(job) = jobs.recv() {
        perform(shared, job);
    }
}

fn perform(shared: &Shared, job: HealthJob) {
    match job {
        HealthJob::Announce(subscription) => crate::publish::announce_state(shared, &subscription),
        HealthJob::Deactivate {
            subscription,
            reason,
        } => call_deactivation_url(shared, &subscription, reason),
    }
}

/// Tells the subscription's `deactivation_url` that it was switched off: a POST signed like
/// its deliveries, body `{"type":"subscription.deactivated", ...}`. Best effort: one attempt,
/// logged.
fn call_deactivation_url(shared: &Shared, sub: &Subscription, reason: &str) {
    let Some(url) = &sub.deactivation_url else {
        return;
    };
    let now = shared.clock.now_ms();
    let body = match sub.profile {
        // Autotask's receivers get the callout shape with "Action":"Deactivated" (PROFILES.md).
        Profile::Autotask => {
            let sequence = shared.store.reserve_sequence(sub.id, 1).unwrap_or(0);
            vendor::autotask::deactivation_body(sub, sequence, now, None, Default::default())
        }
        _ => serde_json::to_vec(&json!({
            "type": "subscription.deactivated",
            "timestamp": callout_core::rfc3339(now, 3),
            "data": {"subscription_id": sub.id, "guid": sub.guid, "name": sub.name, "state": sub.state.as_str(), "reason": reason},
        }))
        .unwrap_or_default(),
    };
    let mut target = sub.clone();
    target.target_url = url.clone();
    let request = send::request(
        &target,
        &crate::ids::new_message_id(),
        0,
        body,
        now,
        shared.timeouts,
    );
    let outcome = shared.sender.send(&request);
    tracing::info!(subscription = sub.id, verdict = ?outcome.verdict, "deactivation URL called");
}
