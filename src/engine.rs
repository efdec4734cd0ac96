//! The engine: publish → match → durable enqueue → dispatcher → workers → outcome. It owns every
//! thread callout starts.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{bounded, Receiver, Sender as Tx};
use serde_json::json;

use callout_core::vendor::DisableRule;
use callout_core::{
    vendor, CompiledSubscription, Event, Matcher, Profile, State, Subscription, VendorRules,
};
use callout_deliver::{AllowList, Sender, SenderConfig, Timeouts, Verdict};
use callout_store::{Durability, Store, StoreConfig};

use crate::body::{self, Expander};
use crate::clock::{Clock, SystemClock};
use crate::error::Error;
use crate::notify::{Handler, Notice, NoticeKind, Notifier};
use crate::retry::RetryPolicy;
use crate::send::{self, AttemptResult};
use crate::threshold::Hourly;

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

/// Everything [`Engine::builder`] can set.
pub struct EngineBuilder {
    path: PathBuf,
    workers: usize,
    retry: RetryPolicy,
    failure: FailurePolicy,
    durability: Durability,
    timeouts: Timeouts,
    allow: Vec<String>,
    notifier: Option<Arc<dyn Notifier>>,
    handlers: HashMap<String, Arc<Handler>>,
    expander: Option<Arc<Expander>>,
    clock: Arc<dyn Clock>,
    max_in_flight_per_subscription: usize,
    hourly_threshold: Option<u64>,
    poll: Duration,
    pipeliner: vendor::pipeliner::PipelinerContext,
    deliver: bool,
}

impl EngineBuilder {
    /// Whether the engine leases and sends deliveries (default true). With `false` it only
    /// stores them: publishing, subscriptions and inspection work, and another opening of the
    /// store (a later run, another process) delivers them. Deactivation URLs are still called.
    pub fn deliver(mut self, deliver: bool) -> Self {
        self.deliver = deliver;
        self
    }

    /// Worker threads sending deliveries (default 4).
    pub fn workers(mut self, workers: usize) -> Self {
        self.workers = workers.max(1);
        self
    }

    /// The retry schedule for subscriptions that do not set their own.
    pub fn retry_policy(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// When a failing subscription is switched off.
    pub fn failure_policy(mut self, failure: FailurePolicy) -> Self {
        self.failure = failure;
        self
    }

    /// How durable a publish is when it returns (default: survives a process crash).
    pub fn durability(mut self, durability: Durability) -> Self {
        self.durability = durability;
        self
    }

    /// Default HTTP time limits (connect 5 s, the rest 30 s).
    pub fn timeouts(mut self, timeouts: Timeouts) -> Self {
        self.timeouts = timeouts;
        self
    }

    /// Lets deliveries reach an internal address or range (`127.0.0.1`, `10.0.0.0/8`) that the
    /// SSRF guard refuses by default.
    pub fn allow_address(mut self, entry: impl Into<String>) -> Self {
        self.allow.push(entry.into());
        self
    }

    /// Where notices about subscriptions go.
    pub fn notifier(mut self, notifier: impl Notifier) -> Self {
        self.notifier = Some(Arc::new(notifier));
        self
    }

    /// Registers the function that serves `handler(name)` subscriptions.
    pub fn handler(
        mut self,
        name: impl Into<String>,
        handler: impl Fn(&crate::HandlerCall<'_>) -> Result<(), String> + Send + Sync + 'static,
    ) -> Self {
        self.handlers.insert(name.into(), Arc::new(handler));
        self
    }

    /// Resolves `expand` paths (related records) at publish time.
    pub fn expander(
        mut self,
        expander: impl Fn(&Event, &str) -> Option<serde_json::Value> + Send + Sync + 'static,
    ) -> Self {
        self.expander = Some(Arc::new(expander));
        self
    }

    /// The clock (tests pass a [`crate::ManualClock`]).
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// Deliveries of one subscription in flight at once (default: all workers but one, at
    /// least one), so a slow receiver cannot take every worker.
    pub fn max_in_flight_per_subscription(mut self, max: usize) -> Self {
        self.max_in_flight_per_subscription = max.max(1);
        self
    }

    /// Callouts per subscription, entity and clock hour (Autotask's threshold; off by default).
    /// Past it, Autotask-profile deliveries wait for the next hour (never dropped) and the others
    /// go anyway; subscriptions with `send_threshold_exceeded_notification` have the notifier
    /// told once an hour when it is passed, and when delayed deliveries have caught up.
    pub fn hourly_threshold(mut self, threshold: u64) -> Self {
        self.hourly_threshold = Some(threshold);
        self
    }

    /// What Pipeliner bodies carry besides the subscription: the team space and application.
    pub fn pipeliner_context(mut self, context: vendor::pipeliner::PipelinerContext) -> Self {
        self.pipeliner = context;
        self
    }

    /// How often the dispatcher looks at the clock when nothing wakes it (default 50 ms).
    pub fn poll_interval(mut self, poll: Duration) -> Self {
        self.poll = poll.max(Duration::from_millis(1));
        self
    }

    /// Opens the store and starts the dispatcher and workers.
    pub fn open(self) -> Result<Engine, Error> {
        Engine::start(self)
    }
}

/// What a publish did: the ids of its events and the deliveries it stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    /// Every event's id (generated where the host gave none), in publish order.
    pub event_ids: Vec<String>,
    /// The deliveries created, durable when `publish` returned.
    pub deliveries: Vec<u64>,
    /// Host-supplied event ids seen before (not enqueued again).
    pub duplicates: Vec<String>,
}

/// A delivery's run-time bookkeeping per subscription.
#[derive(Debug, Default)]
struct SubscriptionRuntime {
    in_flight: usize,
    consecutive_failures: u32,
    consecutive_failed_events: u32,
    failing_since: Option<u64>,
    next_send_at: u64,
    /// Dead-lettered deliveries the notifier has not heard of yet, and when it last heard.
    failed_unreported: u64,
    failures_noticed_at: Option<u64>,
}

pub(crate) struct Inner {
    pub(crate) store: Store,
    pub(crate) matcher: RwLock<Matcher>,
    pub(crate) sender: Sender,
    pub(crate) clock: Arc<dyn Clock>,
    retry: RetryPolicy,
    failure: FailurePolicy,
    pub(crate) timeouts: Timeouts,
    notifier: Option<Arc<dyn Notifier>>,
    handlers: HashMap<String, Arc<Handler>>,
    expander: Option<Arc<Expander>>,
    runtime: Mutex<HashMap<u64, SubscriptionRuntime>>,
    hourly: Hourly,
    max_in_flight: usize,
    stopping: AtomicBool,
    wake: Tx<()>,
    poll: Duration,
    pipeliner: vendor::pipeliner::PipelinerContext,
}

enum Job {
    Deliver(callout_store::Delivery),
    Deactivate {
        subscription: Box<Subscription>,
        reason: &'static str,
    },
}

/// The engine a host embeds: subscriptions, publishing, and the threads that deliver.
///
/// ```no_run
/// use callout::{Engine, Event, Subscription};
/// let engine = Engine::open("callout-data")?;
/// engine.subscriptions().create(
///     Subscription::new("https://receiver.example/hooks").events(["contact.updated"]),
/// )?;
/// engine.publish(Event::updated("Contact", "42"))?;
/// engine.shutdown(std::time::Duration::from_secs(5))?;
/// # Ok::<(), callout::Error>(())
/// ```
pub struct Engine {
    pub(crate) inner: Arc<Inner>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    jobs: Mutex<Option<Tx<Job>>>,
}

impl Engine {
    /// Opens (or creates) the store at `path` with the defaults and starts delivering.
    pub fn open(path: impl AsRef<Path>) -> Result<Engine, Error> {
        Engine::builder(path).open()
    }

    /// A builder for everything beyond the defaults.
    pub fn builder(path: impl AsRef<Path>) -> EngineBuilder {
        EngineBuilder {
            path: path.as_ref().to_path_buf(),
            workers: 4,
            retry: RetryPolicy::default(),
            failure: FailurePolicy::default(),
            durability: Durability::default(),
            timeouts: Timeouts::default(),
            allow: Vec::new(),
            notifier: None,
            handlers: HashMap::new(),
            expander: None,
            clock: Arc::new(SystemClock),
            max_in_flight_per_subscription: 0,
            hourly_threshold: None,
            poll: Duration::from_millis(50),
            pipeliner: Default::default(),
            deliver: true,
        }
    }

    fn start(b: EngineBuilder) -> Result<Engine, Error> {
        let store = Store::open(
            &b.path,
            StoreConfig {
                durability: b.durability,
                ..StoreConfig::default()
            },
        )?;
        let mut matcher = Matcher::new();
        for sub in store.list_subscriptions(&Default::default())? {
            let id = sub.id;
            if let Err(error) = matcher.insert(sub) {
                // A stored subscription that no longer validates is kept out of matching
                // rather than stopping the engine; the host sees it through `get`.
                tracing::warn!(subscription = id, %error, "stored subscription is invalid; not matched");
            }
        }
        let allow = AllowList::parse(&b.allow)?;
        let sender = Sender::new(SenderConfig {
            max_idle_connections_per_host: b.workers.max(4),
            max_idle_connections: (b.workers * 4).max(16),
            timeouts: b.timeouts,
            allow,
            ..SenderConfig::default()
        })?;
        let (wake_tx, wake_rx) = bounded::<()>(1);
        let (job_tx, job_rx) = bounded::<Job>(b.workers * 2);
        // All workers but one: a busy subscription may use almost the whole pool, yet one
        // worker always stays free for the others.
        let max_in_flight = if b.max_in_flight_per_subscription == 0 {
            b.workers.saturating_sub(1).max(1)
        } else {
            b.max_in_flight_per_subscription
        };
        let inner = Arc::new(Inner {
            store,
            matcher: RwLock::new(matcher),
            sender,
            clock: b.clock,
            retry: b.retry,
            failure: b.failure,
            timeouts: b.timeouts,
            notifier: b.notifier,
            handlers: b.handlers,
            expander: b.expander,
            runtime: Mutex::new(HashMap::new()),
            hourly: Hourly::new(b.hourly_threshold),
            max_in_flight,
            stopping: AtomicBool::new(false),
            wake: wake_tx,
            poll: b.poll,
            pipeliner: b.pipeliner,
        });
        let mut threads = Vec::new();
        for n in 0..b.workers {
            let (inner, jobs) = (Arc::clone(&inner), job_rx.clone());
            threads.push(
                std::thread::Builder::new()
                    .name(format!("callout-worker-{n}"))
                    .spawn(move || worker(&inner, &jobs))
                    .map_err(Error::Thread)?,
            );
        }
        if b.deliver {
            let dispatcher_jobs = job_tx.clone();
            let dispatcher_inner = Arc::clone(&inner);
            threads.push(
                std::thread::Builder::new()
                    .name("callout-dispatcher".into())
                    .spawn(move || dispatcher(&dispatcher_inner, &dispatcher_jobs, &wake_rx))
                    .map_err(Error::Thread)?,
            );
        }
        Ok(Engine {
            inner,
            threads: Mutex::new(threads),
            jobs: Mutex::new(Some(job_tx)),
        })
    }

    /// Creates, reads, changes and lists subscriptions.
    pub fn subscriptions(&self) -> crate::Subscriptions<'_> {
        crate::Subscriptions { engine: self }
    }

    /// Publishes one event; returns once its deliveries are durable.
    pub fn publish(&self, event: Event) -> Result<Receipt, Error> {
        self.publish_batch(vec![event])
    }

    /// Publishes many events atomically: all their deliveries are stored, or none. Each
    /// subscription's matched events are grouped into requests of at most `chunk_size`
    /// events, chunk N due `N * chunk_delay` seconds later.
    pub fn publish_batch(&self, events: Vec<Event>) -> Result<Receipt, Error> {
        publish_events(&self.inner, events, |_| true)
    }

    /// Stops leasing, lets in-flight deliveries finish until `deadline`, and stops the threads.
    /// What is still in flight then is released by the store's leases (delivered again later,
    /// at least once).
    pub fn shutdown(&self, deadline: Duration) -> Result<(), Error> {
        self.inner.stopping.store(true, Ordering::SeqCst);
        let _ = self.inner.wake.try_send(());
        drop(self.jobs.lock().map_err(|_| Error::Poisoned)?.take());
        let started = std::time::Instant::now();
        let threads = std::mem::take(&mut *self.threads.lock().map_err(|_| Error::Poisoned)?);
        for thread in threads {
            // A worker stuck past the deadline is left to finish alone; its lease expires.
            while !thread.is_finished() && started.elapsed() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
            if thread.is_finished() {
                let _ = thread.join();
            }
        }
        self.inner.store.flush()?;
        Ok(())
    }

    pub(crate) fn deactivated(&self, subscription: Subscription, reason: &'static str) {
        if subscription.deactivation_url.is_none() {
            return;
        }
        let jobs = self.jobs.lock().ok().and_then(|j| j.clone());
        if let Some(jobs) = jobs {
            let _ = jobs.send(Job::Deactivate {
                subscription: Box::new(subscription),
                reason,
            });
        }
    }

    pub(crate) fn wake(&self) {
        let _ = self.inner.wake.try_send(());
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        let _ = self.shutdown(Duration::from_secs(5));
    }
}

/// Publishes events: the engine's publish, also used for the state events it raises itself.
fn publish_events(
    inner: &Inner,
    events: Vec<Event>,
    wanted: impl Fn(&CompiledSubscription) -> bool,
) -> Result<Receipt, Error> {
    let now = inner.clock.now_ms();
    let mut events = events;
    // An id repeated inside the batch is a duplicate of its first occurrence; the store
    // catches repeats across calls.
    let mut repeated = Vec::new();
    let mut seen = std::collections::HashSet::new();
    events.retain(|e| match &e.event_id {
        Some(id) if !seen.insert(id.clone()) => {
            repeated.push(id.clone());
            false
        }
        _ => true,
    });
    // Only ids the host chose can repeat; generated ones are unique and need no memory.
    let host_ids: Vec<String> = events.iter().filter_map(|e| e.event_id.clone()).collect();
    let mut new_ids = new_event_ids(events.len() - host_ids.len());
    for event in &mut events {
        if event.event_id.is_none() {
            event.event_id = new_ids.next();
        }
        event.occurred_at.get_or_insert(now);
    }
    let event_ids: Vec<String> = events.iter().filter_map(|e| e.event_id.clone()).collect();
    let span = tracing::info_span!("publish", events = events.len());
    let _guard = span.enter();
    let mut per_subscription: Vec<(Arc<CompiledSubscription>, Vec<&Event>)> = Vec::new();
    {
        let matcher = inner.matcher.read().map_err(|_| Error::Poisoned)?;
        let mut slots: HashMap<u64, usize> = HashMap::new();
        for event in &events {
            for sub in matcher.matches(event).into_iter().filter(|s| wanted(s)) {
                let slot = *slots.entry(sub.id()).or_insert_with(|| {
                    per_subscription.push((Arc::clone(sub), Vec::new()));
                    per_subscription.len() - 1
                });
                per_subscription[slot].1.push(event);
            }
        }
    }
    let expander = inner.expander.as_deref();
    let mut deliveries = Vec::new();
    for (sub, matched) in &per_subscription {
        let s = sub.subscription();
        // Autotask and SuperOffice send one event per request; the others chunk.
        let chunk_size = match s.profile {
            Profile::Autotask | Profile::Superoffice => 1,
            Profile::Standard | Profile::Pipeliner => s.chunk_size as usize,
        };
        let chunks = callout_store::chunk(matched, chunk_size, s.chunk_delay.max(0) as u64, now);
        let mut sequence = match s.profile {
            Profile::Autotask => inner.store.reserve_sequence(s.id, chunks.len() as u64)?,
            _ => 0,
        };
        for (due_at, chunk) in chunks {
            let name = chunk
                .first()
                .map(|e| e.name().to_string())
                .unwrap_or_default();
            let body = match s.profile {
                Profile::Standard => body::standard(sub, chunk, now, expander),
                Profile::Pipeliner => {
                    let events: Vec<Event> = chunk
                        .iter()
                        .map(|e| body::expanded(sub, e, expander).into_owned())
                        .collect();
                    vendor::pipeliner::chunk_body(sub, &events, &inner.pipeliner)
                }
                Profile::Autotask | Profile::Superoffice => {
                    let Some(event) = chunk.first().map(|e| body::expanded(sub, e, expander))
                    else {
                        continue;
                    };
                    if s.profile == Profile::Autotask {
                        sequence += 1;
                        vendor::autotask::callout_body(
                            sub,
                            &event,
                            sequence - 1,
                            Default::default(),
                        )
                    } else {
                        let event_id = uuid::Uuid::new_v4().to_string();
                        let ticks = event.occurred_at.unwrap_or(now).saturating_mul(10_000);
                        match state_event(&event) {
                            Some((webhook, change)) => vendor::superoffice::state_body(
                                s, webhook, change, &event_id, ticks,
                            ),
                            None => {
                                vendor::superoffice::callout_body(sub, &event, &event_id, ticks)
                            }
                        }
                    }
                }
            };
            deliveries.push(callout_store::NewDelivery {
                subscription_id: s.id,
                event_ids: chunk.iter().filter_map(|e| e.event_id.clone()).collect(),
                event_type: name,
                body,
                due_at,
                ordered: ordered(s),
            });
        }
    }
    let receipt = inner.store.enqueue(&host_ids, deliveries, now)?;
    tracing::debug!(deliveries = receipt.delivery_ids.len(), "published");
    let _ = inner.wake.try_send(());
    Ok(Receipt {
        event_ids,
        deliveries: receipt.delivery_ids,
        duplicates: {
            let mut all = receipt.duplicate_event_ids;
            all.extend(repeated);
            all
        },
    })
}

/// A state event the engine raised (`webhook<id>.started|stopped|errors`): the webhook and the
/// change, so SuperOffice receivers get their `webhook.*` body.
fn state_event(event: &Event) -> Option<(u64, vendor::superoffice::StateChange)> {
    use vendor::superoffice::StateChange;
    let webhook = event
        .canonical_entity()
        .strip_prefix("webhook")?
        .parse()
        .ok()?;
    let change = match event.action.as_str() {
        "started" => StateChange::Started,
        "stopped" => StateChange::Stopped,
        "errors" => StateChange::Errors,
        _ => return None,
    };
    Some((webhook, change))
}

/// Announces that a subscription changed state, as the event `webhook<id>.<started|stopped|
/// errors>` (SuperOffice's state events), to whatever subscriptions listen for it.
pub(crate) fn announce_state(inner: &Inner, sub: &Subscription) {
    let change = vendor::superoffice::StateChange::entering(sub.state);
    let event = Event::new(
        format!("webhook{}", sub.id),
        change.verb(),
        sub.id.to_string(),
    );
    // Only subscriptions that name this webhook's events hear them: `*` means the host's
    // events, not the engine's own.
    let entity = callout_core::Part::Name(format!("webhook{}", sub.id));
    let names_it = |s: &CompiledSubscription| {
        s.subscription()
            .patterns()
            .is_ok_and(|patterns| patterns.iter().any(|p| p.entity == entity))
    };
    if let Err(error) = publish_events(inner, vec![event], names_it) {
        tracing::error!(%error, subscription = sub.id, "could not publish the state event");
    }
}

/// `count` new event ids (`evt_` and a random UUID), from one call for OS randomness rather
/// than one per id.
fn new_event_ids(count: usize) -> impl Iterator<Item = String> {
    let mut random = vec![0u8; 16 * count];
    let drawn = getrandom::fill(&mut random).is_ok();
    (0..count).map(move |n| {
        let uuid = match random[16 * n..16 * n + 16].try_into() {
            Ok(bytes) if drawn => uuid::Builder::from_random_bytes(bytes).into_uuid(),
            // As uuid does on its own (it panics if the OS has no randomness at all).
            _ => uuid::Uuid::new_v4(),
        };
        format!("evt_{}", uuid.simple())
    })
}

/// Whether a subscription delivers one at a time: its own setting, or its vendor's (Autotask
/// delivers FIFO per webhook).
fn ordered(sub: &Subscription) -> bool {
    sub.ordered || VendorRules::for_profile(sub.profile).ordered
}

/// How often the dispatcher drops history past retention.
const PRUNE_EVERY_MS: u64 = 60_000;

/// Leases due deliveries and hands them to the workers, within each subscription's bounds.
fn dispatcher(inner: &Inner, jobs: &Tx<Job>, wake: &Receiver<()>) {
    let mut pruned_at = 0u64;
    while !inner.stopping.load(Ordering::SeqCst) {
        let now = inner.clock.now_ms();
        // Attempts past retention and remembered event ids go a bounded slice at a time, so
        // the store does not grow with history and no call stalls the queue.
        if now.saturating_sub(pruned_at) >= PRUNE_EVERY_MS {
            pruned_at = now;
            if let Err(error) = inner.store.prune(now, 10_000) {
                tracing::error!(%error, "prune failed");
            }
            expire_error_logs(inner, now);
        }
        report_failures(inner, now);
        let room = jobs.capacity().unwrap_or(1).saturating_sub(jobs.len());
        let mut sent = 0;
        for delivery in take_due(inner, now, room) {
            if jobs.send(Job::Deliver(delivery)).is_err() {
                return;
            }
            sent += 1;
        }
        if sent == 0 {
            // Due deliveries left behind belong to subscriptions at their bound: wait for a
            // worker to wake us rather than spin.
            let wait = match inner.store.next_due_at() {
                Ok(Some(due)) if due > now => Duration::from_millis(due - now).min(inner.poll),
                _ => inner.poll,
            };
            let _ = wake.recv_timeout(wait);
        }
    }
}

/// Leases up to `max` due deliveries that may go now: within each subscription's in-flight
/// bound (reserved here, so the dispatcher and workers leasing at once never exceed it), its
/// rate limit and hourly threshold. The others go back (later, or held), or to the dead
/// letters when their subscription is gone.
fn take_due(inner: &Inner, now: u64, max: usize) -> Vec<callout_store::Delivery> {
    if max == 0 || inner.stopping.load(Ordering::SeqCst) {
        return Vec::new();
    }
    // Lock order: matcher, then the store's book (subscription changes hold the matcher while
    // they write to the store). The matcher is read once, before the lease takes the book,
    // and let go before `admit` reads it again.
    let Ok(matcher) = inner.matcher.read() else {
        return Vec::new();
    };
    let reserve = |sub: u64| {
        let bound = matcher
            .get(sub)
            .map(|s| {
                if ordered(s.subscription()) {
                    1
                } else {
                    inner.max_in_flight
                }
            })
            .unwrap_or(inner.max_in_flight);
        let Ok(mut runtime) = inner.runtime.lock() else {
            return false;
        };
        let rt = runtime.entry(sub).or_default();
        let ok = rt.in_flight < bound;
        if ok {
            rt.in_flight += 1;
        }
        ok
    };
    let leased = inner.store.lease_where(now, max, reserve);
    drop(matcher);
    let leased = match leased {
        Ok(leased) => leased,
        Err(error) => {
            tracing::error!(%error, "lease failed");
            return Vec::new();
        }
    };
    let mut admitted = Vec::with_capacity(leased.len());
    for delivery in leased {
        let admit = admit(inner, &delivery, now);
        if !matches!(admit, Admit::Send) {
            in_flight_done(inner, delivery.subscription_id);
        }
        match admit {
            Admit::Send => admitted.push(delivery),
            Admit::Later(due_at) => {
                if let Err(error) = inner.store.release(delivery.id, due_at) {
                    tracing::error!(%error, delivery = delivery.id, "release failed");
                }
            }
            Admit::Hold => {
                let _ = inner.store.release(delivery.id, now);
                let _ = inner.store.hold_subscription(delivery.subscription_id);
            }
            Admit::Orphan => orphaned(inner, &delivery, now),
        }
    }
    admitted
}

/// Gives back a subscription's in-flight slot.
fn in_flight_done(inner: &Inner, sub: u64) {
    if let Ok(mut runtime) = inner.runtime.lock() {
        if let Some(rt) = runtime.get_mut(&sub) {
            rt.in_flight = rt.in_flight.saturating_sub(1);
        }
    }
}

/// Drops the dead letters of subscriptions whose vendor keeps its error log for a bounded time
/// (Autotask: 30 days) once they are older than that; other dead letters stay until purged.
fn expire_error_logs(inner: &Inner, now: u64) {
    // Once a minute, so reading the registry is cheaper than keeping another index of it.
    let subs = match inner.store.list_subscriptions(&Default::default()) {
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
        if let Err(error) = inner.store.purge_dead(Some(sub), 0, before) {
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

/// Whether a leased delivery may go now: its subscription exists and is active, is under its
/// in-flight bound, its rate limit has a slot and its hourly threshold (where its profile
/// delays) has room. A threshold notice is passed on once the locks are released, so a
/// notifier may call back into the engine.
fn admit(inner: &Inner, delivery: &callout_store::Delivery, now: u64) -> Admit {
    let (admit, notice) = decide(inner, delivery, now);
    if let Some((kind, sub)) = notice {
        notify(inner, kind, sub.subscription());
    }
    admit
}

type PendingNotice = Option<(NoticeKind, Arc<CompiledSubscription>)>;

fn decide(inner: &Inner, delivery: &callout_store::Delivery, now: u64) -> (Admit, PendingNotice) {
    let Ok(matcher) = inner.matcher.read() else {
        return (Admit::Later(now + 100), None);
    };
    let Some(compiled) = matcher.get(delivery.subscription_id) else {
        return (Admit::Orphan, None);
    };
    let sub = compiled.subscription();
    if sub.state != State::Active {
        return (Admit::Hold, None);
    }
    let Ok(mut runtime) = inner.runtime.lock() else {
        return (Admit::Later(now + 100), None);
    };
    let rt = runtime.entry(sub.id).or_default();
    if sub.rate_limit.is_some() && rt.next_send_at > now {
        return (Admit::Later(rt.next_send_at), None);
    }
    let delays = VendorRules::for_profile(sub.profile).delays_over_threshold;
    let gate = inner
        .hourly
        .admit(sub.id, &delivery.event_type, delivery.id, now, delays);
    let notice = gate
        .notice
        .filter(|_| sub.send_threshold_exceeded_notification)
        .map(|kind| (kind, Arc::clone(compiled)));
    if let Some(until) = gate.wait_until {
        return (Admit::Later(until), notice);
    }
    if let Some(rate) = sub.rate_limit {
        let spacing = 1000 / u64::from(rate.max(1));
        rt.next_send_at = now.max(rt.next_send_at) + spacing;
    }
    (Admit::Send, notice)
}

fn worker(inner: &Inner, jobs: &Receiver<Job>) {
    while let Ok(job) = jobs.recv() {
        let mut next = Some(job);
        while let Some(job) = next.take() {
            match job {
                Job::Deliver(delivery) => deliver(inner, delivery),
                Job::Deactivate {
                    subscription,
                    reason,
                } => call_deactivation_url(inner, &subscription, reason),
            }
            // Jobs handed over first (they are leased already, and a deactivation waits in
            // there too); then, while there is due work, take it here rather than through the
            // dispatcher: a hand-off costs two thread switches, which on two cores cost more
            // than a send.
            next = jobs.try_recv().ok().or_else(|| {
                take_due(inner, inner.clock.now_ms(), 1)
                    .pop()
                    .map(Job::Deliver)
            });
            if next.is_none() {
                let _ = inner.wake.try_send(());
            }
        }
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
fn orphaned(inner: &Inner, delivery: &callout_store::Delivery, now: u64) {
    let attempt = record(
        delivery,
        now,
        "subscription deleted",
        None,
        Duration::ZERO,
        "",
    );
    if let Err(error) = inner.store.dead_letter(delivery.id, attempt) {
        tracing::error!(%error, delivery = delivery.id, "could not dead-letter an orphaned delivery");
    }
}

fn deliver(inner: &Inner, mut delivery: callout_store::Delivery) {
    // The matcher's own compiled copy, shared: no per-delivery clone of the subscription.
    let compiled = inner
        .matcher
        .read()
        .ok()
        .and_then(|m| m.get(delivery.subscription_id).map(Arc::clone));
    let sub = compiled.as_ref().map(|c| c.subscription());
    let now = inner.clock.now_ms();
    let Some(sub) = sub else {
        orphaned(inner, &delivery, now);
        in_flight_done(inner, delivery.subscription_id);
        return;
    };
    let span = tracing::info_span!(
        "attempt",
        delivery = delivery.id,
        subscription = sub.id,
        attempt = delivery.attempts + 1
    );
    let _guard = span.enter();
    let handler = match &sub.kind {
        callout_core::Kind::Handler(name) => inner.handlers.get(name).map(|h| h.as_ref()),
        callout_core::Kind::Webhook => None,
    };
    // The body goes to the request; the rest of the delivery is still needed to settle it.
    let body = std::mem::take(&mut delivery.body);
    let result = send::attempt(
        &inner.sender,
        handler,
        sub,
        (delivery.id, &delivery.event_type, delivery.attempts + 1),
        body,
        now,
        inner.timeouts,
    );
    settle(inner, sub, &delivery, result);
    in_flight_done(inner, sub.id);
}

/// Records the attempt and moves the delivery on: done, retried, or dead; and the
/// subscription's state with it.
fn settle(
    inner: &Inner,
    sub: &Subscription,
    delivery: &callout_store::Delivery,
    result: AttemptResult,
) {
    let now = inner.clock.now_ms();
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
    let stored = match result.verdict {
        Verdict::Delivered => {
            succeeded(inner, sub.id);
            inner.store.complete(delivery.id, attempt)
        }
        Verdict::Gone => {
            let stored = inner.store.dead_letter(delivery.id, attempt);
            // SuperOffice sets TooManyErrors at once on 410; the others stop.
            let state = match sub.profile {
                Profile::Superoffice => State::TooManyErrors,
                _ => State::Stopped,
            };
            switch_off(inner, sub, state, NoticeKind::Gone, "gone");
            stored
        }
        _ => {
            let policy = retry_policy(inner, sub);
            let made = delivery.attempts + 1;
            let next = policy.next_delay(made, retry_after, delivery.id);
            // Count the failure (and switch the subscription off, holding its queue) before
            // this delivery leaves flight: otherwise, for an ordered subscription, the next
            // delivery could be leased in between and sent to a webhook that is already off.
            failed(inner, sub, now, next.is_none());
            match next {
                Some(delay) => {
                    inner
                        .store
                        .reschedule(delivery.id, now + delay.as_millis() as u64, attempt)
                }
                None => {
                    // Counted before the store says dead, so whoever sees it dead sees it
                    // counted for the next notice too.
                    count_failed(inner, sub.id);
                    let stored = inner.store.dead_letter(delivery.id, attempt);
                    report_failures(inner, now);
                    stored
                }
            }
        }
    };
    if let Err(error) = stored {
        tracing::error!(%error, delivery = delivery.id, "could not record the attempt; the lease will return it");
    }
}

fn succeeded(inner: &Inner, id: u64) {
    if let Ok(mut runtime) = inner.runtime.lock() {
        let rt = runtime.entry(id).or_default();
        rt.consecutive_failures = 0;
        rt.consecutive_failed_events = 0;
        rt.failing_since = None;
    }
}

/// The retry schedule of a subscription: its own, else its vendor's preset, else the engine's.
fn retry_policy(inner: &Inner, sub: &Subscription) -> RetryPolicy {
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
            ..inner.retry.clone()
        },
        None => inner.retry.clone(),
    }
}

/// Seconds a failed SuperOffice cycle waits before the next one starts.
const CYCLE_PAUSE_S: u64 = 60;
/// Attempts a SuperOffice delivery gets: three cycles of three, the point at which its
/// disable rule (nine failed attempts in a row) switches the webhook off.
const SUPEROFFICE_ATTEMPTS: usize = 9;

/// Counts a failed attempt (and, when `dead`, a failed event) and switches the subscription off
/// when its vendor's disable rule or the engine's failure policy says so.
fn failed(inner: &Inner, sub: &Subscription, now: u64, dead: bool) {
    let tripped = {
        let Ok(mut runtime) = inner.runtime.lock() else {
            return;
        };
        let rt = runtime.entry(sub.id).or_default();
        rt.consecutive_failures += 1;
        if dead {
            rt.consecutive_failed_events += 1;
        }
        let since = *rt.failing_since.get_or_insert(now);
        let tripped = match VendorRules::for_profile(sub.profile).disable {
            Some(DisableRule::ConsecutiveFailedAttempts(n)) => rt.consecutive_failures >= n,
            Some(DisableRule::ConsecutiveFailedEvents(n)) => rt.consecutive_failed_events >= n,
            _ => {
                let by_count = inner
                    .failure
                    .consecutive_failures
                    .is_some_and(|n| rt.consecutive_failures >= n);
                let by_time = inner
                    .failure
                    .failing_for
                    .is_some_and(|window| now.saturating_sub(since) >= window.as_millis() as u64);
                by_count || by_time
            }
        };
        tripped.then_some(rt.consecutive_failures)
    };
    if let Some(consecutive_failures) = tripped {
        switch_off(
            inner,
            sub,
            State::TooManyErrors,
            NoticeKind::TooManyErrors {
                consecutive_failures,
            },
            "too_many_errors",
        );
    }
}

/// Stops a subscription after a 410 or too many errors: new state stored, pending deliveries
/// held, the notifier told, the deactivation URL called.
fn switch_off(
    inner: &Inner,
    sub: &Subscription,
    state: State,
    kind: NoticeKind,
    reason: &'static str,
) {
    let current = inner
        .matcher
        .read()
        .ok()
        .and_then(|m| m.get(sub.id).map(|s| s.subscription().state));
    if current != Some(State::Active) {
        return;
    }
    let mut updated = sub.clone();
    updated.state = state;
    let now = inner.clock.now_ms();
    match inner.store.update_subscription(updated.clone(), now) {
        Ok(stored) => updated = stored,
        Err(error) => {
            tracing::error!(%error, subscription = sub.id, "could not store the new state")
        }
    }
    if let Ok(mut matcher) = inner.matcher.write() {
        let _ = matcher.insert(updated.clone());
    }
    if let Err(error) = inner.store.hold_subscription(sub.id) {
        tracing::error!(%error, subscription = sub.id, "could not hold deliveries");
    }
    if let Ok(mut runtime) = inner.runtime.lock() {
        if let Some(rt) = runtime.get_mut(&sub.id) {
            rt.consecutive_failures = 0;
            rt.consecutive_failed_events = 0;
            rt.failing_since = None;
        }
    }
    tracing::warn!(
        subscription = sub.id,
        state = state.as_str(),
        "subscription switched off"
    );
    notify(inner, kind, &updated);
    announce_state(inner, &updated);
    call_deactivation_url(inner, &updated, reason);
}

pub(crate) fn notify(inner: &Inner, kind: NoticeKind, sub: &Subscription) {
    if let Some(notifier) = &inner.notifier {
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

/// Tells the subscription's `deactivation_url` that it was switched off: a POST signed like
/// its deliveries, body `{"type":"subscription.deactivated", ...}`. Best effort: one attempt,
/// logged.
fn call_deactivation_url(inner: &Inner, sub: &Subscription, reason: &str) {
    let Some(url) = &sub.deactivation_url else {
        return;
    };
    let now = inner.clock.now_ms();
    let body = match sub.profile {
        // Autotask's receivers get the callout shape with "Action":"Deactivated" (PROFILES.md).
        Profile::Autotask => {
            let sequence = inner.store.reserve_sequence(sub.id, 1).unwrap_or(0);
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
    let request = send::request(&target, 0, 0, body, now, inner.timeouts);
    let outcome = inner.sender.send(&request);
    tracing::info!(subscription = sub.id, verdict = ?outcome.verdict, "deactivation URL called");
}

/// Seconds between two `DeliveriesFailed` notices of one subscription whose profile sets none.
const FAILURE_NOTICE_INTERVAL_S: u64 = 3_600;

fn failure_notice_interval_ms(sub: &Subscription) -> u64 {
    VendorRules::for_profile(sub.profile)
        .notification_interval_s
        .unwrap_or(FAILURE_NOTICE_INTERVAL_S)
        * 1000
}

/// Counts a delivery about to be dead-lettered, for the next `DeliveriesFailed` notice.
fn count_failed(inner: &Inner, sub: u64) {
    if let Ok(mut runtime) = inner.runtime.lock() {
        runtime.entry(sub).or_default().failed_unreported += 1;
    }
}

/// Tells the notifier of dead-lettered deliveries not yet reported, per subscription at most
/// once per its interval (Autotask: one error email a day).
fn report_failures(inner: &Inner, now: u64) {
    if inner.notifier.is_none() {
        return;
    }
    let Ok(matcher) = inner.matcher.read() else {
        return;
    };
    let due: Vec<(Arc<CompiledSubscription>, u64)> = {
        let Ok(mut runtime) = inner.runtime.lock() else {
            return;
        };
        runtime
            .iter_mut()
            .filter(|(_, rt)| rt.failed_unreported > 0)
            .filter_map(|(id, rt)| {
                let sub = matcher.get(*id)?;
                let interval = failure_notice_interval_ms(sub.subscription());
                if rt
                    .failures_noticed_at
                    .is_some_and(|at| now.saturating_sub(at) < interval)
                {
                    return None;
                }
                rt.failures_noticed_at = Some(now);
                Some((Arc::clone(sub), std::mem::take(&mut rt.failed_unreported)))
            })
            .collect()
    };
    drop(matcher);
    for (sub, count) in due {
        notify(
            inner,
            NoticeKind::DeliveriesFailed { count },
            sub.subscription(),
        );
    }
}

impl Engine {
    /// Deliveries by state, over all subscriptions.
    pub fn stats(&self) -> Result<callout_store::Counts, Error> {
        Ok(self.inner.store.counts()?)
    }

    /// Deliveries by state for one subscription.
    pub fn subscription_stats(&self, id: u64) -> Result<callout_store::Counts, Error> {
        Ok(self.inner.store.subscription_counts(id)?)
    }

    /// Every recorded attempt of a delivery, oldest first.
    pub fn attempts(&self, delivery_id: u64) -> Result<Vec<callout_store::Attempt>, Error> {
        Ok(self.inner.store.attempts_for_delivery(delivery_id)?)
    }

    /// The newest attempts of one subscription's deliveries, newest first, at most `limit`, as
    /// (delivery id, attempt).
    pub fn subscription_attempts(
        &self,
        id: u64,
        limit: usize,
    ) -> Result<Vec<(u64, callout_store::Attempt)>, Error> {
        Ok(self.inner.store.attempts_for_subscription(id, limit)?)
    }

    /// One delivery as stored, whatever its state.
    pub fn delivery(&self, id: u64) -> Result<Option<callout_store::Delivery>, Error> {
        Ok(self.inner.store.delivery(id)?)
    }

    /// The dead letters `filter` selects.
    pub fn dead_letters(&self, filter: &DeadFilter) -> Result<Vec<callout_store::Delivery>, Error> {
        let (sub, from, to) = filter.parts();
        Ok(self.inner.store.dead_letters(sub, from, to)?)
    }

    /// Puts the dead letters `filter` selects back in the queue, due now, with their attempt
    /// count reset (their history is kept); returns how many.
    pub fn replay_dead(&self, filter: &DeadFilter) -> Result<usize, Error> {
        let (sub, from, to) = filter.parts();
        let replayed = self
            .inner
            .store
            .replay_dead(sub, from, to, self.inner.clock.now_ms())?;
        self.wake();
        Ok(replayed)
    }

    /// Deletes the dead letters `filter` selects; returns how many.
    pub fn purge_dead(&self, filter: &DeadFilter) -> Result<usize, Error> {
        let (sub, from, to) = filter.parts();
        Ok(self.inner.store.purge_dead(sub, from, to)?)
    }
}

/// Which dead letters [`Engine::dead_letters`], [`Engine::replay_dead`] and
/// [`Engine::purge_dead`] mean: those of one subscription or of all, dead-lettered within
/// `[from_ms, to_ms)` (milliseconds since the Unix epoch). The default selects every one.
///
/// ```
/// let last_hour = callout::DeadFilter {
///     subscription: Some(7),
///     from_ms: 1_700_000_000_000 - 3_600_000,
///     to_ms: 1_700_000_000_000,
/// };
/// assert_eq!(callout::DeadFilter::subscription(7).to_ms, u64::MAX);
/// # let _ = last_hour;
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

    fn parts(&self) -> (Option<u64>, u64, u64) {
        (self.subscription, self.from_ms, self.to_ms)
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

/// A subscription's id and whether it wants an event, or why not.
pub type Explanation = (u64, Result<(), callout_core::Miss>);

impl Engine {
    /// For every subscription, whether it wants `event` and if not, why: "why did my webhook
    /// not fire?". A scan of all subscriptions, for diagnostics.
    pub fn explain(&self, event: &Event) -> Result<Vec<Explanation>, Error> {
        let matcher = self.inner.matcher.read().map_err(|_| Error::Poisoned)?;
        Ok(matcher.explain(event))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_event_ids_are_distinct_random_v4_uuids() {
        let ids: Vec<String> = new_event_ids(500).chain(new_event_ids(500)).collect();
        assert_eq!(ids.len(), 1000);
        let distinct: std::collections::HashSet<&String> = ids.iter().collect();
        assert_eq!(
            distinct.len(),
            ids.len(),
            "no id repeats, within or across calls"
        );
        for id in &ids {
            let hex = id.strip_prefix("evt_").expect("evt_ prefix");
            let uuid = uuid::Uuid::parse_str(hex).expect("a UUID");
            assert_eq!(uuid.get_version_num(), 4, "{id}");
            assert_eq!(uuid.get_variant(), uuid::Variant::RFC4122, "{id}");
        }
        assert_eq!(new_event_ids(0).count(), 0);
    }
}
