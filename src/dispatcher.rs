//! The dispatcher: the only place that leases, and only for a worker that is free. It leases
//! due deliveries within each subscription's bounds and admits each (rate limit, hourly
//! threshold, state). Its thread hands deliveries to workers that wait for work, and runs the
//! periodic chores (retention, expired error logs, secrets past their rotation grace, failure
//! notices); a worker that has just finished a delivery takes its next one through
//! [`lease_for_free_worker`], without a hand-off.
//! An engine that does not deliver has no dispatcher thread and no workers: nothing leases.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender as Tx};

use callout_core::{CompiledSubscription, State, VendorRules};
use callout_store::{DeadFilter, Leased};

use crate::engine::Shared;
use crate::notify::NoticeKind;
use crate::threshold::Hourly;

/// How often the dispatcher drops history past retention (attempts past their age or past a
/// subscription's count, remembered event ids) when the last call found little to drop.
const PRUNE_EVERY_MS: u64 = 1_000;

/// The most a prune call removes, so that no call holds the store for long. A call that removes
/// this many is followed by another at the next turn of the loop: a busy engine records more
/// attempts a second than one slice a minute could ever drop.
const PRUNE_SLICE: usize = 2_000;

/// How often the chores that scan the registry run (expired error logs, secrets past their
/// rotation grace).
const CHORES_EVERY_MS: u64 = 60_000;

/// How long a delivery waits when the store could not give it a send slot.
const RETRY_SLOT_MS: u64 = 100;
/// How long a brief wait is (see [`run`]).
const BRIEF_WAIT: Duration = Duration::from_millis(2);
/// How many brief waits in a row before the full poll interval.
const BRIEF_WAITS: u32 = 4;

/// The dispatcher's state: its wake-up, how many workers wait for work, and the hourly
/// threshold (the counts and the rate-limit slots are the store's tallies). The bounds it
/// leases within are the registry's.
pub(crate) struct Dispatch {
    stopping: AtomicBool,
    /// Workers waiting for a hand-off: the dispatcher thread leases no more than this.
    free_workers: AtomicUsize,
    wake: Tx<()>,
    poll: Duration,
    hourly: Hourly,
    /// The store is shared with other instances: their leases and paces change under us.
    shared_store: bool,
}

impl Dispatch {
    /// The dispatcher's state and the receiving end of its wake-up, for [`run`].
    pub(crate) fn new(
        poll: Duration,
        hourly_threshold: Option<u64>,
        shared_store: bool,
    ) -> (Dispatch, Receiver<()>) {
        let (wake, woken) = crossbeam_channel::bounded(1);
        let dispatch = Dispatch {
            stopping: AtomicBool::new(false),
            free_workers: AtomicUsize::new(0),
            wake,
            poll,
            hourly: Hourly::new(hourly_threshold),
            shared_store,
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
    let (mut prune_at, mut chores_at, mut paces_at) = (0u64, 0u64, 0u64);
    // Brief waits in a row since the last round that leased (see below).
    let mut brief_waits = 0;
    while !dispatch.stopping() {
        let now = shared.clock.now_ms();
        // History past retention goes a bounded slice at a time, so the store does not grow
        // with history and no call stalls the queue; slices follow each other while full.
        if now >= prune_at {
            let removed = shared
                .store
                .prune(now, PRUNE_SLICE)
                .unwrap_or_else(|error| {
                    tracing::error!(%error, "prune failed");
                    0
                });
            prune_at = if removed >= PRUNE_SLICE {
                now
            } else {
                now.saturating_add(PRUNE_EVERY_MS)
            };
        }
        if now >= chores_at {
            chores_at = now.saturating_add(CHORES_EVERY_MS);
            expire_error_logs(shared, now);
            shared.registry.drop_expired_secrets(now);
        }
        // Only another instance changes a pace behind this one's back.
        if dispatch.shared_store && now >= paces_at {
            paces_at = now.saturating_add(crate::health::PACE_REFRESH_MS);
            crate::health::refresh_paces(shared);
        }
        crate::health::report_failures(shared, now);
        crate::health::mark_running_slow(shared, now);
        crate::metrics::report(shared, now);
        // Only for workers that are free: a delivery leased for a busy worker would wait in
        // the queue, in flight, behind whatever that worker is sending.
        let free = dispatch.free_workers.load(Ordering::SeqCst);
        let room = free.saturating_sub(jobs.len());
        let mut sent = 0;
        for leased in take_due(shared, now, room) {
            if jobs.send(leased).is_err() {
                return;
            }
            sent += 1;
        }
        if sent > 0 {
            brief_waits = 0;
        }
        // A full prune slice goes on at once rather than after a wait.
        if sent == 0 && prune_at > now {
            // Due deliveries left behind belong to subscriptions at their bound, or the
            // workers' queue is full: wait for a worker to wake us rather than spin. On a
            // shared store they may also belong to subscriptions another instance or a settle
            // held locked for a moment: with workers free, a few brief waits first.
            let wait = match shared.store.next_due_at() {
                Ok(Some(due)) if due > now => Duration::from_millis(due - now).min(dispatch.poll),
                Ok(Some(_)) if dispatch.shared_store && room > 0 && brief_waits < BRIEF_WAITS => {
                    brief_waits += 1;
                    BRIEF_WAIT.min(dispatch.poll)
                }
                _ => dispatch.poll,
            };
            let _ = woken.recv_timeout(wait);
        }
    }
}

/// The next delivery for a worker that has just finished one, if one may go now.
pub(crate) fn lease_for_free_worker(shared: &Shared) -> Option<Leased> {
    take_due(shared, shared.clock.now_ms(), 1).pop()
}

/// Waits, as a free worker, for the dispatcher thread to hand over a delivery; `None` once the
/// engine shuts down.
pub(crate) fn wait_for_work(shared: &Shared, jobs: &Receiver<Leased>) -> Option<Leased> {
    let dispatch = &shared.dispatch;
    dispatch.free_workers.fetch_add(1, Ordering::SeqCst);
    dispatch.wake();
    let job = jobs.recv().ok();
    dispatch.free_workers.fetch_sub(1, Ordering::SeqCst);
    job
}

/// Leases up to `max` due deliveries that may go now: within each subscription's in-flight
/// bound (ordered ones one at a time), its rate limit and hourly threshold. The others go back
/// (later, or held), or to the dead letters when their subscription is gone.
fn take_due(shared: &Shared, now: u64, max: usize) -> Vec<Leased> {
    if max == 0 || shared.dispatch.stopping() {
        return Vec::new();
    }
    // The limits are read for the call: a change of them waits for it.
    let leased = match shared.limits.read() {
        Ok(limits) => shared.store.lease_within(now, max, limits.lease()),
        Err(error) => {
            tracing::error!(%error, "lease limits unreadable");
            return Vec::new();
        }
    };
    let leased = match leased {
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
    // The slot first: one taken by a delivery the threshold then delays only spaces the next
    // send by one slot, where the other order would count a callout twice.
    if let Some(rate) = sub.rate_limit {
        let spacing = 1000 / u64::from(rate.max(1));
        match shared.store.take_send_slot(sub.id, now, spacing) {
            Ok(None) => {}
            Ok(Some(opens_at)) => return (Admit::Later(opens_at), None),
            Err(error) => {
                tracing::error!(%error, subscription = sub.id, "could not take a send slot");
                return (Admit::Later(now + RETRY_SLOT_MS), None);
            }
        }
    }
    let delays = VendorRules::for_profile(sub.profile).delays_over_threshold;
    let gate = shared.dispatch.hourly.admit(
        &*shared.store,
        sub.id,
        &delivery.event_type,
        delivery.id,
        now,
        delays,
    );
    let notice = gate
        .notice
        .filter(|_| sub.send_threshold_exceeded_notification)
        .map(|kind| (kind, Arc::clone(&compiled)));
    if let Some(until) = gate.wait_until {
        return (Admit::Later(until), notice);
    }
    (Admit::Send, notice)
}
