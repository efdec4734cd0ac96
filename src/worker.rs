//! The workers: each takes a leased delivery from the dispatcher, makes one attempt (HTTP or
//! the host's handler) and settles it: delivered, retried on the schedule, or dead-lettered,
//! with the subscription's health told of the outcome.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::Receiver;

use callout_core::{Profile, State, Subscription, VendorRules};
use callout_deliver::{ErrorClass, Verdict};
use callout_store::Leased;

use crate::dispatcher;
use crate::engine::Shared;
use crate::health;
use crate::metrics::Outcome;
use crate::notify::{Handler, NoticeKind};
use crate::retry::RetryPolicy;
use crate::send::{self, AttemptResult};

/// What the workers need besides the shared parts: the default retry schedule and the host's
/// handlers.
pub(crate) struct Work {
    pub(crate) retry: RetryPolicy,
    pub(crate) handlers: HashMap<String, Arc<Handler>>,
}

/// A worker thread: one attempt per leased delivery, until the dispatcher's queue closes. A
/// worker that has just finished asks the dispatcher for its next delivery itself
/// ([`dispatcher::lease_for_free_worker`]): a hand-off through the dispatcher thread costs two
/// thread switches, which on two cores cost more than a send. With nothing due it tells the
/// dispatcher it is free and waits for a hand-off.
pub(crate) fn run(shared: &Shared, jobs: &Receiver<Leased>) {
    let mut next = dispatcher::wait_for_work(shared, jobs);
    while let Some(leased) = next.take() {
        deliver(shared, leased);
        next = jobs
            .try_recv()
            .ok()
            .or_else(|| dispatcher::lease_for_free_worker(shared))
            .or_else(|| dispatcher::wait_for_work(shared, jobs));
    }
}

fn record(
    delivery: &callout_store::Delivery,
    now: u64,
    outcome: &str,
    status: Option<u16>,
    duration: Duration,
    excerpt: &str,
) -> callout_store::Attempt {
    callout_store::Attempt {
        number: delivery.attempts + 1,
        at: now,
        duration_ms: duration.as_millis() as u64,
        status,
        outcome: outcome.to_string(),
        excerpt: excerpt.chars().take(1024).collect(),
    }
}

/// Dead-letters a delivery whose subscription was deleted: kept, with the reason recorded.
pub(crate) fn orphaned(shared: &Shared, leased: &Leased, now: u64) {
    let delivery = &leased.delivery;
    let attempt = record(
        delivery,
        now,
        "subscription deleted",
        None,
        Duration::ZERO,
        "",
    );
    if let Err(error) = shared.store.dead_letter(leased.token, attempt) {
        tracing::error!(%error, delivery = delivery.id, "could not dead-letter an orphaned delivery");
    }
}

fn deliver(shared: &Shared, mut leased: Leased) {
    // The matcher's own compiled copy, shared: no per-delivery clone of the subscription.
    let compiled = shared.registry.compiled(leased.delivery.subscription_id);
    let sub = compiled.as_ref().map(|c| c.subscription());
    let now = shared.clock.now_ms();
    let Some(sub) = sub else {
        orphaned(shared, &leased, now);
        return;
    };
    let delivery = &mut leased.delivery;
    let span = tracing::info_span!(
        "attempt",
        delivery = delivery.id,
        subscription = sub.id,
        attempt = delivery.attempts + 1
    );
    let _guard = span.enter();
    let handler = match &sub.kind {
        callout_core::Kind::Handler(name) => shared.work.handlers.get(name).map(|h| h.as_ref()),
        callout_core::Kind::Webhook => None,
    };
    // The body goes to the request; the rest of the delivery is still needed to settle it.
    let body = std::mem::take(&mut delivery.body);
    health::attempt_started(shared, leased.token, sub.id, now);
    crate::metrics::attempt_started();
    let result = send::attempt(
        &shared.sender,
        handler,
        sub,
        send::Call {
            delivery_id: delivery.id,
            message_id: &delivery.message_id,
            event_type: &delivery.event_type,
            attempt: delivery.attempts + 1,
        },
        body,
        now,
        shared.timeouts,
    );
    let timed_out = matches!(
        result.verdict,
        Verdict::Failed {
            class: ErrorClass::Timeout,
            ..
        }
    );
    health::attempt_ended(shared, leased.token, sub.id, result.duration, timed_out);
    settle(shared, sub, &leased, result);
}

/// Records the attempt and moves the delivery on: done, retried, or dead; and the
/// subscription's state with it.
fn settle(shared: &Shared, sub: &Subscription, leased: &Leased, result: AttemptResult) {
    let delivery = &leased.delivery;
    let now = shared.clock.now_ms();
    let label = result.verdict.to_string();
    let retry_after = match &result.verdict {
        Verdict::Throttled { retry_after } => *retry_after,
        _ => None,
    };
    tracing::info!(outcome = %label, status = ?result.status, ms = result.duration.as_millis() as u64, "attempt");
    let attempt = record(
        delivery,
        now,
        &label,
        result.status,
        result.duration,
        &result.excerpt,
    );
    let duration = result.duration;
    let (outcome, stored) = match result.verdict {
        // The store ends the subscription's failure streak with the delivery.
        Verdict::Delivered => (
            Outcome::Delivered,
            shared.store.complete(leased.token, attempt),
        ),
        Verdict::Gone => {
            let stored = shared.store.dead_letter(leased.token, attempt);
            // SuperOffice sets TooManyErrors at once on 410; the others stop.
            let state = match sub.profile {
                Profile::Superoffice => State::TooManyErrors,
                _ => State::Stopped,
            };
            health::switch_off(shared, sub.id, state, NoticeKind::Gone, "gone");
            (Outcome::Gone, stored)
        }
        _ => {
            let policy = retry_policy(&shared.work.retry, sub);
            let made = delivery.attempts + 1;
            let next = policy.next_delay(made, retry_after, delivery.id);
            // Count the failure (and switch the subscription off, holding its queue) before
            // this delivery leaves flight: otherwise, for an ordered subscription, the next
            // delivery could be leased in between and sent to a webhook that is already off.
            health::failed(shared, sub, now, next.is_none());
            match next {
                Some(delay) => (
                    Outcome::Retried,
                    shared
                        .store
                        .reschedule(leased.token, now + delay.as_millis() as u64, attempt),
                ),
                None => {
                    // Counted before the store says dead, so whoever sees it dead sees it
                    // counted for the next notice too.
                    shared.health.count_failed(sub.id);
                    let stored = shared.store.dead_letter(leased.token, attempt);
                    health::report_failures(shared, now);
                    (Outcome::Dead, stored)
                }
            }
        }
    };
    crate::metrics::attempt_settled(outcome, duration);
    if let Err(error) = stored {
        tracing::error!(%error, delivery = delivery.id, "could not record the attempt; unless its lease expired and was leased again, the lease returns it");
    }
}

/// The retry schedule of a subscription: its own, else its vendor's preset, else the engine's.
fn retry_policy(default: &RetryPolicy, sub: &Subscription) -> RetryPolicy {
    let rules = VendorRules::for_profile(sub.profile);
    let delays: Option<Vec<u64>> = match (&sub.retry_schedule, &rules.cycle) {
        (Some(own), _) => Some(own.clone()),
        // SuperOffice: cycles of three attempts (1 s, 4 s apart); a failed cycle waits at the
        // back of the queue (a minute here) and starts again, until the disable rule trips.
        (None, Some(cycle)) => {
            let per_cycle = std::iter::once(&CYCLE_PAUSE_S).chain(&cycle.delays_s);
            let three: Vec<u64> = per_cycle.copied().collect();
            Some(
                three
                    .iter()
                    .copied()
                    .cycle()
                    .skip(1)
                    .take(SUPEROFFICE_ATTEMPTS - 1)
                    .collect(),
            )
        }
        (None, None) if rules.attempts.is_some() => Some(rules.retry_delays_s.clone()),
        (None, None) => None,
    };
    match delays {
        Some(delays) => RetryPolicy {
            schedule: std::iter::once(Duration::ZERO)
                .chain(delays.iter().map(|d| Duration::from_secs(*d)))
                .collect(),
            ..default.clone()
        },
        None => default.clone(),
    }
}

/// Seconds a failed SuperOffice cycle waits before the next one starts.
const CYCLE_PAUSE_S: u64 = 60;
/// Attempts a SuperOffice delivery gets: three cycles of three, the point at which its
/// disable rule (nine failed attempts in a row) switches the webhook off.
const SUPEROFFICE_ATTEMPTS: usize = 9;
