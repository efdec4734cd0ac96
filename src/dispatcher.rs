//! The dispatcher: the only place that leases. It leases due deliveries within each
//! subscription's bounds, admits each (rate limit, hourly threshold, state), hands the admitted
//! ones to the workers, and runs the periodic chores (retention, expired error logs, failure
//! notices).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender as Tx};

use callout_core::{CompiledSubscription, State, VendorRules};
use callout_store::{DeadFilter, LeaseLimits, Leased};

use crate::engine::Shared;
use crate::notify::NoticeKind;
use crate::threshold::Hourly;

/// How often the dispatcher drops history past retention.
const PRUNE_EVERY_MS: u64 = 60_000;

/// The dispatcher's state: its wake-up, the bounds it leases within, and each subscription's
/// rate-limit slot.
pub(crate) struct Dispatch {
    stopping: AtomicBool,
    wake: Tx<()>,
    poll: Duration,
    limits: LeaseLimits,
    hourly: Hourly,
    /// When each rate-limited subscription may send next (Unix ms).
    next_send_at: Mutex<HashMap<u64, u64>>,
}

impl Dispatch {
    /// The dispatcher's state and the receiving end of its wake-up, for [`run`].
    pub(crate) fn new(
        poll: Duration,
        max_in_flight: usize,
        hourly_threshold: Option<u64>,
    ) -> (Dispatch, Receiver<()>) {
        let (wake, woken) = crossbeam_channel::bounded(1);
        let dispatch = Dispatch {
            stopping: AtomicBool::new(false),
            wake,
            poll,
            limits: LeaseLimits::new(max_in_flight),
            hourly: Hourly::new(hourly_threshold),
            next_send_at: Mutex::new(HashMap::new()),
        };
        (dispatch, woken)
    }

    /// Wakes the dispatcher: new work may be due, or a worker wants more.
    pub(crate) fn wake(&self) {
        let _ = self.wake.try_send(());
    }

    /// Stops leasing.
    pub(crate) fn stop(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        self.wake();
    }

    fn stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }
}

/// The dispatcher thread: leases as many deliveries as the workers' queue has room for.
pub(crate) fn run(shared: &Shared, jobs: &Tx<Leased>, woken: &Receiver<()>) {
    let dispatch = &shared.dispatch;
    let mut pruned_at = 0u64;
    while !dispatch.stopping() {
        let now = shared.clock.now_ms();
        // Attempts past retention and remembered event ids go a bounded slice at a time, so
        // the store does not grow with history and no call stalls the queue.
        if now.saturating_sub(pruned_at) >= PRUNE_EVERY_MS {
            pruned_at = now;
            if let Err(error) = shared.store.prune(now, 10_000) {
                tracing::error!(%error, "prune failed");
            }
            expire_error_logs(shared, now);
        }
        crate::health::report_failures(shared, now);
        let room = jobs.capacity().unwrap_or(1).saturating_sub(jobs.len());
        let mut sent = 0;
        for leased in take_due(shared, now, room) {
            if jobs.send(leased).is_err() {
                return;
            }
            sent += 1;
        }
        if sent == 0 {
            // Due deliveries left behind belong to subscriptions at their bound, or the
            // workers' queue is full: wait for a worker to wake us rather than spin.
            let wait = match shared.store.next_due_at() {
                Ok(Some(due)) if due > now => Duration::from_millis(due - now).min(dispatch.poll),
                _ => dispatch.poll,
            };
            let _ = woken.recv_timeout(wait);
        }
    }
}

/// Leases up to `max` due deliveries that may go now: within each subscription's in-flight
/// bound (ordered ones one at a time), its rate limit and hourly threshold. The others go back
/// (later, or held), or to the dead letters when their subscription is gone.
fn take_due(shared: &Shared, now: u64, max: usize) -> Vec<Leased> {
    if max == 0 || shared.dispatch.stopping() {
        return Vec::new();
    }
    let leased = match shared.store.lease_within(now, max, &shared.dispatch.limits) {
        Ok(leased) => leased,
        Err(error) => {
            tracing::error!(%error, "lease failed");
            return Vec::new();
        }
    };
    let mut admitted = Vec::with_capacity(leased.len());
    for leased in leased {
        match admit(shared, &leased, now) {
            Admit::Send => admitted.push(leased),
            Admit::Later(due_at) => {
                if let Err(error) = shared.store.release(leased.token, due_at) {
                    tracing::error!(%error, delivery = leased.delivery.id, "release failed");
                }
            }
            Admit::Hold => {
                let _ = shared.store.release(leased.token, now);
                let _ = shared
                    .store
                    .hold_subscription(leased.delivery.subscription_id);
            }
            Admit::Orphan => crate::worker::orphaned(shared, &leased, now),
        }
    }
    admitted
}

/// Drops the dead letters of subscriptions whose vendor keeps its error log for a bounded time
/// (Autotask: 30 days) once they are older than that; other dead letters stay until purged.
fn expire_error_logs(shared: &Shared, now: u64) {
    // Once a minute, so reading the registry is cheaper than keeping another index of it.
    let subs = match shared.registry.list(&Default::default()) {
        Ok(subs) => subs,
        Err(error) => {
            tracing::error!(%error, "could not list subscriptions to expire error logs");
            return;
        }
    };
    let expiring = subs.iter().filter_map(|sub| {
        let keep_s = VendorRules::for_profile(sub.profile).error_log_retention_s?;
        Some((sub.id, now.saturating_sub(keep_s * 1000)))
    });
    for (sub, before) in expiring {
        let filter = DeadFilter {
            subscription: Some(sub),
            from_ms: 0,
            to_ms: before,
        };
        if let Err(error) = shared.store.purge_dead(&filter) {
            tracing::error!(%error, subscription = sub, "could not expire the error log");
        }
    }
}

enum Admit {
    Send,
    Later(u64),
    Hold,
    Orphan,
}

/// Whether a leased delivery may go now: its subscription exists and is active, its rate limit
/// has a slot and its hourly threshold (where its profile delays) has room. A threshold notice
/// is passed on once the locks are released, so a notifier may call back into the engine.
fn admit(shared: &Shared, leased: &Leased, now: u64) -> Admit {
    let (admit, notice) = decide(shared, leased, now);
    if let Some((kind, sub)) = notice {
        shared.health.notify(kind, sub.subscription());
    }
    admit
}

type PendingNotice = Option<(NoticeKind, Arc<CompiledSubscription>)>;

fn decide(shared: &Shared, leased: &Leased, now: u64) -> (Admit, PendingNotice) {
    let delivery = &leased.delivery;
    let Some(compiled) = shared.registry.compiled(delivery.subscription_id) else {
        return (Admit::Orphan, None);
    };
    let sub = compiled.subscription();
    if sub.state != State::Active {
        return (Admit::Hold, None);
    }
    let dispatch = &shared.dispatch;
    let Ok(mut next_send_at) = dispatch.next_send_at.lock() else {
        return (Admit::Later(now + 100), None);
    };
    let slot = next_send_at.entry(sub.id).or_default();
    if sub.rate_limit.is_some() && *slot > now {
        return (Admit::Later(*slot), None);
    }
    let delays = VendorRules::for_profile(sub.profile).delays_over_threshold;
    let gate = dispatch
        .hourly
        .admit(sub.id, &delivery.event_type, delivery.id, now, delays);
    let notice = gate
        .notice
        .filter(|_| sub.send_threshold_exceeded_notification)
        .map(|kind| (kind, Arc::clone(&compiled)));
    if let Some(until) = gate.wait_until {
        return (Admit::Later(until), notice);
    }
    if let Some(rate) = sub.rate_limit {
        let spacing = 1000 / u64::from(rate.max(1));
        *slot = now.max(*slot) + spacing;
    }
    (Admit::Send, notice)
}
