//! The engine: it ties the owners of each job together and owns every thread callout starts:
//! the dispatcher (`dispatcher.rs`), the workers (`worker.rs`) and the health thread
//! (`health.rs`). Publishing is `publish.rs`, subscription state `registry.rs`, inspection
//! `inspect.rs`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, Receiver, Sender as Tx};

use callout_core::{vendor, Event};
use callout_deliver::{AllowList, Sender, SenderConfig, Timeouts};
use callout_store::{Backend, Durability, Leased, SledStore, StoreConfig};

use crate::body::Expander;
use crate::clock::{Clock, SystemClock};
use crate::dispatcher::Dispatch;
use crate::error::Error;
use crate::health::{FailurePolicy, Health, Pace};
use crate::limits::Limits;
use crate::notify::{Handler, Notifier};
use crate::publish::{PublishLimits, Publisher};
use crate::registry::Registry;
use crate::retry::RetryPolicy;
use crate::worker::Work;

/// Where an engine keeps its subscriptions and queue: a sled directory, opened with the
/// builder's store settings, or a backend the host opened itself. [`Engine::builder`] takes
/// anything that converts into one: a path (`&str`, `String`, `&Path`, `PathBuf`), a
/// [`SledStore`], or an `Arc` of any [`Backend`].
pub struct Storage(StorageKind);

enum StorageKind {
    Sled(PathBuf),
    Backend(Arc<dyn Backend>),
}

impl From<&str> for Storage {
    fn from(path: &str) -> Storage {
        Storage(StorageKind::Sled(PathBuf::from(path)))
    }
}

impl From<String> for Storage {
    fn from(path: String) -> Storage {
        Storage(StorageKind::Sled(PathBuf::from(path)))
    }
}

impl From<&Path> for Storage {
    fn from(path: &Path) -> Storage {
        Storage(StorageKind::Sled(path.to_path_buf()))
    }
}

impl From<PathBuf> for Storage {
    fn from(path: PathBuf) -> Storage {
        Storage(StorageKind::Sled(path))
    }
}

impl From<&PathBuf> for Storage {
    fn from(path: &PathBuf) -> Storage {
        Storage(StorageKind::Sled(path.clone()))
    }
}

impl From<SledStore> for Storage {
    fn from(store: SledStore) -> Storage {
        Storage(StorageKind::Backend(Arc::new(store)))
    }
}

impl<B: Backend> From<Arc<B>> for Storage {
    fn from(backend: Arc<B>) -> Storage {
        Storage(StorageKind::Backend(backend))
    }
}

impl From<Arc<dyn Backend>> for Storage {
    fn from(backend: Arc<dyn Backend>) -> Storage {
        Storage(StorageKind::Backend(backend))
    }
}

/// Workers an engine runs when neither the host nor the backend says.
const DEFAULT_WORKERS: usize = 4;

/// Everything [`Engine::builder`] can set.
pub struct EngineBuilder {
    storage: Storage,
    store_config: StoreConfig,
    /// `None`: the backend's preference, else [`DEFAULT_WORKERS`].
    workers: Option<usize>,
    retry: RetryPolicy,
    failure: FailurePolicy,
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
    slow_attempt: Duration,
    publish_limits: PublishLimits,
}

impl EngineBuilder {
    /// Whether the engine leases and sends deliveries (default true). With `false` it only
    /// stores them: no delivery is leased or sent; publishing, subscriptions and inspection
    /// work, and another opening of the store (a later run, another process) delivers them.
    /// Deactivation URLs are still called.
    pub fn deliver(mut self, deliver: bool) -> Self {
        self.deliver = deliver;
        self
    }

    /// Worker threads sending deliveries (default 4, or what the backend prefers: 32 on
    /// PostgreSQL, where workers that finish together share a statement).
    pub fn workers(mut self, workers: usize) -> Self {
        self.workers = Some(workers.max(1));
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

    /// How durable a publish is when it returns, when the engine opens a sled store (default:
    /// survives a process crash). A backend given to [`Engine::builder`] has its own.
    pub fn durability(mut self, durability: Durability) -> Self {
        self.store_config.durability = durability;
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
    /// least one: 3 with the 4 workers of sled, 31 with the 32 of PostgreSQL), so a slow
    /// receiver cannot take every worker. A subscription starts at one and widens with quick
    /// attempts up to this bound (its pace). Ordered subscriptions have one.
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

    /// How long an attempt may take before its subscription counts as slow (default 5 s). A
    /// subscription starts with one delivery in flight and gets one more per attempt that
    /// ends sooner, up to [`EngineBuilder::max_in_flight_per_subscription`]; an attempt that
    /// times out, takes longer, or is still running past this makes it slow: one delivery in
    /// flight, and all slow subscriptions together at most a quarter of the workers (at least
    /// one), so with two workers or more the others always have some. Two quicker attempts in a
    /// row end it.
    pub fn slow_attempt(mut self, limit: Duration) -> Self {
        self.slow_attempt = limit.max(Duration::from_millis(1));
        self
    }

    /// How much one publish may carry (see [`PublishLimits`] for the defaults).
    pub fn publish_limits(mut self, limits: PublishLimits) -> Self {
        self.publish_limits = limits;
        self
    }

    /// How often the dispatcher looks at the clock when nothing wakes it (default 50 ms).
    pub fn poll_interval(mut self, poll: Duration) -> Self {
        self.poll = poll.max(Duration::from_millis(1));
        self
    }

    /// sled's page cache, in bytes, when the engine opens a sled store (default 8 MiB; see
    /// [`StoreConfig::cache_capacity`](callout_store::StoreConfig::cache_capacity)).
    pub fn cache_capacity(mut self, bytes: u64) -> Self {
        self.store_config.cache_capacity = bytes;
        self
    }

    /// How many bytes of just-published deliveries a sled store the engine opens keeps in
    /// memory until their first attempt, so that sending them needs no read back from sled
    /// (default 1 MiB; 0 keeps none and every lease reads from sled). With
    /// [`EngineBuilder::cache_capacity`] it is most of what the store holds in memory.
    pub fn fresh_capacity(mut self, bytes: usize) -> Self {
        self.store_config.fresh_capacity = bytes;
        self
    }

    /// When a sled store the engine opens compacts itself into a fresh directory, giving back
    /// the space sled keeps for removed records: once its files are more than four times what
    /// is live plus `headroom` bytes (default 256 MiB; 0 never), while at most
    /// `max_queued` deliveries are queued (default 100,000) and the queue is not shrinking
    /// fast (a draining backlog is copied once it settles), since publishes and sends wait
    /// while the records are copied. See
    /// [`StoreConfig::compact_headroom`](callout_store::StoreConfig::compact_headroom).
    pub fn compaction(mut self, headroom: u64, max_queued: u64) -> Self {
        self.store_config.compact_headroom = headroom;
        self.store_config.compact_max_queued = max_queued;
        self
    }

    /// Opens the store (a sled directory, unless a backend was given) and starts the
    /// dispatcher, the workers and the health thread.
    pub fn open(self) -> Result<Engine, Error> {
        Engine::start(self)
    }
}

/// Refuses a backend whose leases end before a request with the engine's timeouts may: the
/// delivery would be leased again (by another instance, on a shared backend) and sent twice
/// while its first request still runs. Every phase at its limit is the longest a request
/// takes: connect, head and body written (each within `send`), response, body read.
fn check_lease(store: &dyn Backend, timeouts: &Timeouts) -> Result<(), Error> {
    let Some(lease) = store.lease_duration() else {
        return Ok(());
    };
    let request = timeouts.connect + timeouts.send * 2 + timeouts.response + timeouts.body;
    if lease <= request {
        return Err(Error::Store(callout_store::StoreError::LeaseTooShort {
            lease,
            request,
        }));
    }
    Ok(())
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

/// The parts of a running engine, each the owner of its job's state.
pub(crate) struct Shared {
    pub(crate) store: Arc<dyn Backend>,
    pub(crate) registry: Registry,
    pub(crate) limits: Arc<Limits>,
    pub(crate) sender: Sender,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) timeouts: Timeouts,
    pub(crate) publisher: Publisher,
    pub(crate) dispatch: Dispatch,
    pub(crate) work: Work,
    pub(crate) health: Health,
    pub(crate) gauges: crate::metrics::Gauges,
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
    pub(crate) shared: Arc<Shared>,
    /// The dispatcher and the workers, stopped first.
    delivering: Mutex<Vec<JoinHandle<()>>>,
    /// The health thread, stopped once the workers can queue no more jobs.
    health: Mutex<Option<JoinHandle<()>>>,
    jobs: Mutex<Option<Tx<Leased>>>,
    /// On a shared store, the thread following other instances' changes, and what stops it.
    changes: Mutex<Option<(Tx<()>, JoinHandle<()>)>>,
}

impl Engine {
    /// Opens (or creates) the sled store at `path` with the defaults and starts delivering.
    pub fn open(path: impl AsRef<Path>) -> Result<Engine, Error> {
        Engine::builder(path.as_ref()).open()
    }

    /// A builder for everything beyond the defaults, on `storage`: a sled directory's path, or
    /// a backend (see [`Storage`]).
    ///
    /// ```
    /// use std::sync::Arc;
    /// use callout::store::{SledStore, StoreConfig};
    /// let dir = tempfile::tempdir()?;
    /// let backend = Arc::new(SledStore::open(dir.path(), StoreConfig::default())?);
    /// let engine = callout::Engine::builder(backend).deliver(false).open()?;
    /// assert_eq!(engine.stats()?.due, 0);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn builder(storage: impl Into<Storage>) -> EngineBuilder {
        EngineBuilder {
            storage: storage.into(),
            store_config: StoreConfig::default(),
            workers: None,
            retry: RetryPolicy::default(),
            failure: FailurePolicy::default(),
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
            slow_attempt: Duration::from_secs(5),
            publish_limits: PublishLimits::default(),
        }
    }

    fn start(b: EngineBuilder) -> Result<Engine, Error> {
        let store: Arc<dyn Backend> = match b.storage.0 {
            StorageKind::Sled(path) => Arc::new(SledStore::open(&path, b.store_config)?),
            StorageKind::Backend(backend) => backend,
        };
        check_lease(store.as_ref(), &b.timeouts)?;
        let workers = b
            .workers
            .or_else(|| store.preferred_workers())
            .unwrap_or(DEFAULT_WORKERS)
            .max(1);
        let allow = AllowList::parse(&b.allow)?;
        let sender = Sender::new(SenderConfig {
            max_idle_connections_per_host: workers.max(4),
            max_idle_connections: (workers * 4).max(16),
            timeouts: b.timeouts,
            allow,
            ..SenderConfig::default()
        })?;
        // All workers but one: a busy subscription may use almost the whole pool, yet one
        // worker always stays free for the others.
        let max_in_flight = if b.max_in_flight_per_subscription == 0 {
            workers.saturating_sub(1).max(1)
        } else {
            b.max_in_flight_per_subscription
        };
        // Slow subscriptions together hold at most a quarter of the workers (at least one), so
        // healthy ones always have the rest.
        let slow_share = (workers / 4).max(1);
        let limits = Arc::new(Limits::new(slow_share));
        // Watched before the subscriptions are read, so a change another instance makes
        // meanwhile is not missed (at worst it is read twice).
        let (change_tx, changes) = crossbeam_channel::unbounded();
        let watched = store.watch_changes(Arc::new(move |change| {
            let _ = change_tx.send(change);
        }))?;
        let registry = Registry::load(
            Arc::clone(&store),
            Arc::clone(&b.clock),
            Arc::clone(&limits),
        )?;
        let (dispatch, woken) = Dispatch::new(b.poll, b.hourly_threshold, watched);
        let (health, health_jobs) = Health::new(
            b.failure,
            b.notifier,
            Pace {
                slow_attempt: b.slow_attempt,
                max_in_flight,
            },
        );
        let shared = Arc::new(Shared {
            store,
            registry,
            limits,
            sender,
            clock: b.clock,
            timeouts: b.timeouts,
            publisher: Publisher {
                expander: b.expander,
                pipeliner: b.pipeliner,
                limits: b.publish_limits,
            },
            dispatch,
            work: Work {
                retry: b.retry,
                handlers: b.handlers,
            },
            health,
            gauges: Default::default(),
        });
        let engine = Engine {
            shared: Arc::clone(&shared),
            delivering: Mutex::new(Vec::new()),
            health: Mutex::new(None),
            jobs: Mutex::new(None),
            changes: Mutex::new(None),
        };
        // On a failed start, dropping `engine` shuts down what was started.
        engine.start_threads(b.deliver, workers, health_jobs, woken)?;
        if watched {
            engine.follow_changes(changes)?;
        }
        Ok(engine)
    }

    fn start_threads(
        &self,
        deliver: bool,
        workers: usize,
        health_jobs: Receiver<crate::health::HealthJob>,
        woken: Receiver<()>,
    ) -> Result<(), Error> {
        let spawn = |name: String, run: Box<dyn FnOnce() + Send>| {
            std::thread::Builder::new()
                .name(name)
                .spawn(run)
                .map_err(Error::Thread)
        };
        let shared = Arc::clone(&self.shared);
        let health = spawn(
            "callout-health".into(),
            Box::new(move || crate::health::run(&shared, &health_jobs)),
        )?;
        *self.health.lock().map_err(|_| Error::Poisoned)? = Some(health);
        if !deliver {
            return Ok(());
        }
        let (job_tx, job_rx) = bounded::<Leased>(workers);
        *self.jobs.lock().map_err(|_| Error::Poisoned)? = Some(job_tx.clone());
        let mut delivering = self.delivering.lock().map_err(|_| Error::Poisoned)?;
        for n in 0..workers {
            let (shared, job_rx) = (Arc::clone(&self.shared), job_rx.clone());
            delivering.push(spawn(
                format!("callout-worker-{n}"),
                Box::new(move || crate::worker::run(&shared, &job_rx)),
            )?);
        }
        let shared = Arc::clone(&self.shared);
        delivering.push(spawn(
            "callout-dispatcher".into(),
            Box::new(move || crate::dispatcher::run(&shared, &job_tx, &woken)),
        )?);
        Ok(())
    }

    /// Starts the thread that follows other instances' changes to a shared store.
    fn follow_changes(&self, changes: Receiver<callout_store::Change>) -> Result<(), Error> {
        let (stop, stopped) = bounded::<()>(0);
        let shared = Arc::clone(&self.shared);
        let thread = std::thread::Builder::new()
            .name("callout-changes".into())
            .spawn(move || crate::registry::follow_changes(&shared, &changes, &stopped))
            .map_err(Error::Thread)?;
        *self.changes.lock().map_err(|_| Error::Poisoned)? = Some((stop, thread));
        Ok(())
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
        crate::publish::publish_events(&self.shared, events, |_| true)
    }

    /// Stops leasing, lets in-flight deliveries finish until `deadline`, then gives the state
    /// events and deactivation calls still queued up to `deadline` more, and stops the threads.
    /// What is still in flight then is released by the store's leases (delivered again later,
    /// at least once); a worker left behind does its own switch-off's jobs.
    pub fn shutdown(&self, deadline: Duration) -> Result<(), Error> {
        self.shared.dispatch.stop();
        if let Some((stop, thread)) = self.changes.lock().map_err(|_| Error::Poisoned)?.take() {
            drop(stop);
            join_by(thread, Instant::now(), deadline);
        }
        drop(self.jobs.lock().map_err(|_| Error::Poisoned)?.take());
        let delivering = std::mem::take(&mut *self.delivering.lock().map_err(|_| Error::Poisoned)?);
        let started = Instant::now();
        for thread in delivering {
            join_by(thread, started, deadline);
        }
        // Jobs queued by the settles above are drained; a later one is done by its worker.
        self.shared.health.close();
        if let Some(thread) = self.health.lock().map_err(|_| Error::Poisoned)?.take() {
            join_by(thread, Instant::now(), deadline);
        }
        self.shared.store.flush()?;
        Ok(())
    }
}

/// Joins `thread` if it finishes before `deadline` after `started`; a thread stuck past it is
/// left to finish alone (a worker's lease then expires).
fn join_by(thread: JoinHandle<()>, started: Instant, deadline: Duration) {
    while !thread.is_finished() && started.elapsed() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    if thread.is_finished() {
        let _ = thread.join();
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        let _ = self.shutdown(Duration::from_secs(5));
    }
}
