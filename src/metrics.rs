//! The engine's metrics, recorded through the `metrics` facade so the host picks the exporter
//! (`callout serve` renders them for Prometheus). Without a recorder installed every call here
//! is a no-op. Names and labels (README lists them):
//!
//! - `callout_deliveries_total{outcome}`: attempts settled, by `delivered`, `retried`, `dead`
//!   (no attempt left) and `gone` (410);
//! - `callout_delivery_duration_seconds{outcome}`: how long each attempt took;
//! - `callout_attempts_in_flight`: attempts being made now;
//! - `callout_queue_deliveries{state}`: deliveries by `due`, `retrying`, `in_flight`, `held`,
//!   `dead`, and `callout_delivered_total`, the store's running count of delivered ones;
//! - `callout_oldest_due_age_seconds`: how late the most overdue delivery is (0 when none is);
//! - `callout_subscriptions{state}`: subscriptions by `active`, `stopped`, `too_many_errors`.
//!
//! The gauges of the queue and the subscriptions are read by the dispatcher, at most once per
//! [`QUEUE_EVERY_MS`] and [`SUBSCRIPTIONS_EVERY_MS`]: counts are cheap, a subscription listing
//! reads every subscription.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use callout_core::State;

use crate::engine::Shared;

/// How often the queue gauges are read.
pub(crate) const QUEUE_EVERY_MS: u64 = 1_000;
/// How often the subscription gauges are read.
pub(crate) const SUBSCRIPTIONS_EVERY_MS: u64 = 15_000;

/// When the gauges were last read.
#[derive(Default)]
pub(crate) struct Gauges {
    queue_at: AtomicU64,
    subscriptions_at: AtomicU64,
}

/// How an attempt was settled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    Delivered,
    Retried,
    Dead,
    Gone,
}

impl Outcome {
    fn label(self) -> &'static str {
        match self {
            Outcome::Delivered => "delivered",
            Outcome::Retried => "retried",
            Outcome::Dead => "dead",
            Outcome::Gone => "gone",
        }
    }
}

/// An attempt begins.
pub(crate) fn attempt_started() {
    metrics::gauge!("callout_attempts_in_flight").increment(1.0);
}

/// An attempt that took `duration` was settled as `outcome`.
pub(crate) fn attempt_settled(outcome: Outcome, duration: Duration) {
    metrics::gauge!("callout_attempts_in_flight").decrement(1.0);
    let label = outcome.label();
    metrics::counter!("callout_deliveries_total", "outcome" => label).increment(1);
    metrics::histogram!("callout_delivery_duration_seconds", "outcome" => label)
        .record(duration.as_secs_f64());
}

/// Reads the queue and subscription gauges when they are due to be read.
pub(crate) fn report(shared: &Shared, now: u64) {
    let gauges = &shared.gauges;
    if due(&gauges.queue_at, now, QUEUE_EVERY_MS) {
        if let Ok(counts) = shared.store.counts() {
            for (state, n) in [
                ("due", counts.due),
                ("retrying", counts.retrying),
                ("in_flight", counts.in_flight),
                ("held", counts.held),
                ("dead", counts.dead),
            ] {
                metrics::gauge!("callout_queue_deliveries", "state" => state).set(n as f64);
            }
            metrics::gauge!("callout_delivered_total").set(counts.delivered as f64);
        }
        if let Ok(next) = shared.store.next_due_at() {
            let late_ms = next.map_or(0, |due| now.saturating_sub(due));
            metrics::gauge!("callout_oldest_due_age_seconds").set(late_ms as f64 / 1000.0);
        }
    }
    if due(&gauges.subscriptions_at, now, SUBSCRIPTIONS_EVERY_MS) {
        if let Ok(subs) = shared.registry.list(&Default::default()) {
            for state in [State::Active, State::Stopped, State::TooManyErrors] {
                let n = subs.iter().filter(|s| s.state == state).count();
                metrics::gauge!("callout_subscriptions", "state" => state.as_str()).set(n as f64);
            }
        }
    }
}

/// Whether `every` ms passed since `last` (then set to `now`).
fn due(last: &AtomicU64, now: u64, every: u64) -> bool {
    let then = last.load(Ordering::Relaxed);
    (then == 0 || now.saturating_sub(then) >= every)
        && last
            .compare_exchange(then, now.max(1), Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
}
