//! The store: a sled database with four trees. `meta` holds the on-disk layout version; `subs`
//! holds subscriptions (JSON, so their format can grow) and the subscription id counter (in the
//! same tree, so an id and its record commit in one batch); `queue` holds every delivery, its
//! indexes, attempts and counters under one-byte key prefixes, so that each state change is one
//! atomic write; `corrupt` holds records that failed to decode, moved aside.
//!
//! A state change is one `apply_batch`, except a group commit of enqueues, the one write a
//! caller waits on: it is one journal record (`j`), one flush, then plain inserts, because sled
//! makes every `apply_batch` pay a log write of its own (FACTS.md). A journal a crash left
//! behind is written out on open.
//!
//! A delivery is one record, filed under the key of its state: due (`q`, by due time), held
//! (`h`) or dead (`x`). sled's cost is per operation, nearly whatever the size (FACTS.md), so
//! one record per delivery, not a record plus index entries, is what makes enqueue cost about
//! one raw sled write, and a delivered delivery two (in, out) and a share of the record that
//! holds its settle batch's attempts (`attempts.rs`).

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use callout_core::{Part, Pattern, Subscription};
use sled::{Batch, Db, IVec, Tree};

use crate::attempts::{self, Filed, BY_SUB};
use crate::codec::{self, key, part};
use crate::due::{DueIndex, Entry};
use crate::error::StoreError;
use crate::ids::{IdMap, IdSet};
use crate::model::{
    Attempt, Counts, Delivery, DeliveryState, EnqueueReceipt, NewDelivery, SubscriptionFilter,
};

// Key prefixes of the `queue` tree. Big-endian parts after the tag.
//
// A due delivery's value starts with its subscription and whether it is ordered (`due_value`).
// Leases live in memory only (`Book::leased`): a crash voids every lease anyway (they return
// to due on open); a delivery in flight stays under its due key.
//
// Layout 1 (earlier builds) kept each delivery under `d id` with value-less index entries,
// leases under `f`, and ordered subscriptions' publish order under `p`; opening such a store
// moves them into this layout. The in-memory due index (`due.rs`) keeps publish order now.
const DUE: u8 = b'q'; // q due_at id -> sub, ordered, Delivery
const HELD: u8 = b'h'; // h sub id -> Delivery
const DEAD: u8 = b'x'; // x sub id -> Delivery
const LEGACY_DELIVERY: u8 = b'd'; // d id -> Delivery (layout 1)
const LEGACY_LEASED: u8 = b'f'; // f until id -> () (layout 1)
const LEGACY_PENDING: u8 = b'p'; // p sub id -> () (layout 1 and early layout 2)

// Attempts are named by time as well as number: a replayed dead letter starts again at attempt
// 1, and its new attempts must add to the history, not overwrite it. A settle batch's attempts
// of one subscription are one record, `A sub at id n` (see `attempts.rs`); older builds kept
// each under `a id at n`, which still reads and is pruned.
const ATTEMPT: u8 = b'a'; // a id at n -> Attempt (older builds)
const DELIVERED: u8 = b'n'; // n sub -> u64 delivered count
const HELD_SUB: u8 = b'H'; // H sub -> ()
const SEEN: u8 = b'e'; // e event_id -> at
/// One expiry record per group commit, not per id: it names the first id in its key and the
/// others in its value (`expiry_record`), so a publish's event ids cost one write each plus a
/// share of one.
const SEEN_AT: u8 = b't'; // t at event_id -> further event ids
const NEXT_DELIVERY: &[u8] = b"N"; // N -> the next id not yet reserved
/// A group commit's writes as one record (`Ops::encode`), flushed, then written out as plain
/// inserts and removed (`Store::write_out`); one a crash left is written out on open.
const JOURNAL: u8 = b'j'; // j ticket -> Ops
/// Delivery ids are reserved in blocks: `N` is written once per block, not once per enqueue. A
/// crash skips at most the rest of a block; an id is never reused.
const ID_BLOCK: u64 = 1024;
// Keys of the `subs` tree.
const SUB: u8 = b'S';
const NEXT_SUB: &[u8] = b"#";
const SEQUENCE: u8 = b'Q'; // Q sub -> next sequence number

// Keys of the `meta` tree.
const FORMAT_KEY: &[u8] = b"format";
/// The key layout this build writes: 3, one record per delivery under the key of its state, and
/// a settle batch's attempts in their index records (`attempts.rs`). Layout 2 differs only in
/// keeping a record per attempt, which still reads: it opens as it is. Layout 1 is migrated on
/// open. A newer one is refused, so that an older build never misreads this one's records.
const LAYOUT: u8 = 3;

/// How durable a write is when the call returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// After sled's flush: survives a crash of the process (not a power loss: sled 0.34 flushes
    /// with `sync_file_range`). Concurrent writers share flushes.
    #[default]
    Flush,
    /// Also fsyncs the store's files: survives a power loss, at the disk's fsync rate.
    Sync,
    /// No flush in the call: sled writes in the background every 500 ms, so a crash can lose
    /// the last half second of publishes.
    Relaxed,
}

/// How a store is opened.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// sled's page cache, in bytes (default 64 MiB; sled's own default of 1 GiB is too much for
    /// a library inside someone else's process).
    pub cache_capacity: u64,
    /// See [`Durability`].
    pub durability: Durability,
    /// How long a leased delivery may stay in flight before it returns to the queue.
    pub lease: Duration,
    /// How long a host-supplied event id is remembered for de-duplication.
    pub dedup_retention: Duration,
    /// How long an attempt is kept after it was made, by [`Store::prune`] (for every delivery:
    /// a dead letter older than this keeps its record but loses its attempt history).
    pub attempt_retention: Duration,
    /// How many bytes of enqueued deliveries are also kept in memory until their first lease,
    /// so leasing them need not read them back from sled (default 16 MiB; 0 keeps none). Past
    /// it, leases read records from disk as usual.
    pub fresh_capacity: usize,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            cache_capacity: 64 * 1024 * 1024,
            durability: Durability::Flush,
            lease: Duration::from_secs(300),
            dedup_retention: Duration::from_secs(86_400),
            attempt_retention: Duration::from_secs(30 * 86_400),
            fresh_capacity: 16 * 1024 * 1024,
        }
    }
}

/// In-memory state, kept in step with the `queue` tree by the one writer.
#[derive(Default)]
struct Book {
    counts: IdMap<Counts>,
    held: IdSet,
    ordered_in_flight: IdSet,
    /// The due deliveries not in flight, as on disk once the write-behind buffer is applied.
    due: DueIndex,
    next_delivery: u64,
    /// Ids below this are reserved on disk (`N`).
    reserved_until: u64,
    /// Host event ids enqueued but not yet applied (see `FlushState::pending`).
    pending_seen: HashSet<String>,
    /// Write-behind buffer of settles (complete, reschedule, release, dead letter), applied as
    /// one batch by the next read or flush, by a lease that takes a delivery it holds, or once
    /// it holds [`BEHIND_MAX`] settles or is [`BEHIND_AGE`] old (checked by settles, which
    /// hand it off to be applied outside the book lock, and by leases). sled pays a log write
    /// per `apply_batch` (about 50-100 us here), which made one settle cost more than leasing
    /// and enqueueing its delivery together.
    /// Settles were never flushed by the call (see [`Store::complete`]), so buffering them
    /// changes no promise: a crash before they reach disk leaves their deliveries in flight,
    /// and reopening makes them due again (at least once).
    behind: Ops,
    /// Deliveries with a settle in `behind`: a second settle of one applies the buffer first,
    /// so it sees the first.
    behind_ids: IdSet,
    /// When the oldest settle in `behind` was buffered.
    behind_since: Option<Instant>,
    /// The attempts of the settles in `behind`: they go into the per-subscription index as
    /// one record per subscription (see `attempts.rs`) when the buffer is taken.
    behind_attempts: Vec<Filed>,
    /// Deliveries whose settles were last handed off to be applied outside the book lock
    /// (see [`Store::hand_off_behind`]); maybe not on disk yet, until the gate is taken.
    handed_off_ids: IdSet,
    /// Deliveries in flight, by id. On disk they stay as they were when due (due-index entry
    /// included); leasing skips the ones in here.
    leased: IdMap<Lease>,
    /// The same leases by deadline, for `reclaim_expired` and `next_due_at`.
    deadlines: BTreeSet<(u64, u64)>,
    /// Where the next `prune` goes on in the attempt index (empty: from the start).
    prune_cursor: Vec<u8>,
    /// Records of deliveries enqueued by this process and not yet leased, so a lease need not
    /// read them back (see [`Fresh`]).
    fresh: Fresh,
}

/// Due records kept in memory from their group commit to their first lease, up to
/// [`StoreConfig::fresh_capacity`] bytes (past that, leases read records from sled). A due
/// record is never changed under its key: it is rewritten under another (reschedule, release,
/// hold, replay) only after a lease or a hold has taken it from here, so what is kept is what
/// is on disk. Reading it back cost a lease a sled read that waits behind every batch being
/// applied (the bare path in docs/BENCHMARKS.md: 23.7k deliveries/s with it, 30.0k without).
#[derive(Default)]
struct Fresh {
    records: IdMap<Delivery>,
    bytes: usize,
    capacity: usize,
}

impl Fresh {
    /// About what a kept record takes: its parts of variable size and a share for the rest.
    fn size(delivery: &Delivery) -> usize {
        let ids: usize = delivery.event_ids.iter().map(String::len).sum();
        delivery.body.len() + delivery.event_type.len() + ids + 128
    }

    /// Keeps `delivery` (due, as on disk), if there is room.
    fn keep(&mut self, delivery: Delivery) {
        let size = Fresh::size(&delivery);
        if self.bytes + size <= self.capacity {
            self.bytes += size;
            if let Some(old) = self.records.insert(delivery.id, delivery) {
                self.bytes -= Fresh::size(&old);
            }
        }
    }

    /// The record of the due `entry`, if kept; it is kept no more.
    fn take(&mut self, entry: &Entry) -> Option<Delivery> {
        let delivery = self.records.remove(&entry.id)?;
        self.bytes -= Fresh::size(&delivery);
        (delivery.due_at == entry.due_at).then_some(delivery)
    }
}

/// A delivery in flight.
struct Lease {
    until: u64,
    /// Attempts made before this lease.
    attempts: u32,
    /// Its due key, where its record stays on disk while it is in flight.
    due_key: IVec,
    sub: u64,
    ordered: bool,
}

/// How a settle moves a delivery on.
enum Finish {
    Delivered,
    Due(u64),
    Dead(u64),
}

impl Book {
    fn counts(&mut self, sub: u64) -> &mut Counts {
        self.counts.entry(sub).or_default()
    }

    /// Whether a settle of delivery `id` may not be on disk yet: buffered, or handed off.
    fn buffered(&self, id: u64) -> bool {
        self.behind_ids.contains(&id) || self.handed_off_ids.contains(&id)
    }

    /// Takes the write-behind buffer to be applied, with the attempt records of the
    /// subscriptions that have attempts in it (see `attempts.rs`).
    fn take_behind(&mut self) -> Ops {
        let mut ops = std::mem::take(&mut self.behind);
        for (k, v) in attempts::records(std::mem::take(&mut self.behind_attempts)) {
            ops.insert(k, v);
        }
        self.behind_since = None;
        ops
    }

    fn leave(&mut self, sub: u64, state: DeliveryState) {
        let c = self.counts(sub);
        match state {
            DeliveryState::Due => c.due = c.due.saturating_sub(1),
            DeliveryState::InFlight { .. } => c.in_flight = c.in_flight.saturating_sub(1),
            DeliveryState::Held => c.held = c.held.saturating_sub(1),
            DeliveryState::Dead { .. } => c.dead = c.dead.saturating_sub(1),
        }
    }

    /// Counts a due delivery that failed before in or out of `retrying`.
    fn retrying(&mut self, sub: u64, attempts: u32, entering: bool) {
        if attempts == 0 {
            return;
        }
        let c = self.counts(sub);
        c.retrying = if entering {
            c.retrying + 1
        } else {
            c.retrying.saturating_sub(1)
        };
    }

    fn enter(&mut self, sub: u64, state: DeliveryState) {
        let c = self.counts(sub);
        match state {
            DeliveryState::Due => c.due += 1,
            DeliveryState::InFlight { .. } => c.in_flight += 1,
            DeliveryState::Held => c.held += 1,
            DeliveryState::Dead { .. } => c.dead += 1,
        }
    }
}

/// Group commit: writers apply their batch, take a ticket, and wait until a flush that started
/// after their write has finished; one of them flushes for all who wait.
#[derive(Default)]
struct Flusher {
    state: Mutex<FlushState>,
    done: Condvar,
    /// Signalled when a write joins `pending`, for a leader gathering its group.
    arrived: Condvar,
}

#[derive(Default)]
struct FlushState {
    /// Durable writers that have started but not yet taken their ticket.
    writing: u64,
    /// Enqueued writes not yet applied: the next flusher applies them all as one batch, since
    /// sled pays a log write per `apply_batch` (FACTS.md: about 50 us each).
    pending: Vec<Ops>,
    /// Host event ids in `pending`, so a concurrent duplicate is caught before it is applied.
    pending_ids: Vec<(String, u64)>,
    /// Due deliveries in `pending`: they enter the due index once applied, never before, so
    /// a lease never looks for a record that is not there yet.
    pending_due: Vec<Delivery>,
    /// Groups whose commit failed, as (last ticket before the group, last ticket in it, how
    /// many of its writers have yet to hear): a range per group, not a high-water mark, since
    /// a later group that commits raises `flushed` past tickets that failed, and a writer of
    /// the failed group woken late must still hear of its failure.
    failed: Vec<(u64, u64, u64)>,
    /// The last ticket a leader has taken into a group.
    taken: u64,
    written: u64,
    flushed: u64,
    flushing: bool,
    flushes: u64,
    /// How many writes the last group commit carried: about how many writers are active.
    last_group: usize,
}

impl FlushState {
    /// Whether a leader gathering its group has it: nobody is still writing, and as many
    /// writes wait as the last group carried (about how many writers are active).
    fn gathered(&self) -> bool {
        self.writing == 0 && self.pending.len() >= self.last_group.max(1)
    }
}

/// A durable writer counted in [`FlushState::writing`] until it takes its ticket: dropped on
/// an early return, it counts the writer out, or every later leader would wait the whole
/// [`GATHER`] for a writer that never comes.
struct Writing<'a>(Option<&'a Flusher>);

impl Drop for Writing<'_> {
    fn drop(&mut self) {
        if let Some(flusher) = self.0 {
            if let Ok(mut state) = flusher.state.lock() {
                state.writing = state.writing.saturating_sub(1);
                if state.gathered() {
                    flusher.arrived.notify_one();
                }
            }
        }
    }
}

/// Writes of one state change, in order, before they become one sled batch: an enqueue's wait
/// for the group commit, a settle's in the write-behind buffer (see [`Book::behind`]), or any
/// other change's until it is applied. Unlike `sled::Batch`, two of these can be merged.
#[derive(Default)]
struct Ops {
    writes: Vec<(IVec, Option<IVec>)>,
}

impl Ops {
    fn insert(&mut self, key: impl Into<IVec>, value: impl AsRef<[u8]>) {
        self.writes
            .push((key.into(), Some(IVec::from(value.as_ref()))));
    }

    fn remove(&mut self, key: impl Into<IVec>) {
        self.writes.push((key.into(), None));
    }

    fn is_empty(&self) -> bool {
        self.writes.is_empty()
    }

    fn append(&mut self, other: Ops) {
        self.writes.extend(other.writes);
    }

    /// The writes as one journal record: the format byte, the number of writes (big-endian
    /// u32), then per write a u32 key length, the key, and for an insert `1`, a u32 value
    /// length and the value (`0` for a remove).
    fn encode(&self) -> Vec<u8> {
        let size: usize = self
            .writes
            .iter()
            .map(|(k, v)| 9 + k.len() + v.as_ref().map_or(0, |v| v.len()))
            .sum();
        let mut out = Vec::with_capacity(5 + size);
        out.push(codec::FORMAT);
        out.extend_from_slice(&(self.writes.len() as u32).to_be_bytes());
        for (k, v) in &self.writes {
            out.extend_from_slice(&(k.len() as u32).to_be_bytes());
            out.extend_from_slice(k);
            match v {
                Some(v) => {
                    out.push(1);
                    out.extend_from_slice(&(v.len() as u32).to_be_bytes());
                    out.extend_from_slice(v);
                }
                None => out.push(0),
            }
        }
        out
    }

    /// Reads a journal record written by [`Ops::encode`].
    fn decode(key: &[u8], bytes: &[u8]) -> Result<Ops, StoreError> {
        let corrupt = |reason: &str| StoreError::Corrupt {
            key: codec::hex(key),
            reason: reason.into(),
        };
        let mut rest = match bytes.split_first() {
            Some((&codec::FORMAT, rest)) => rest,
            Some(_) => return Err(corrupt("unknown journal version")),
            None => return Err(corrupt("empty journal")),
        };
        let cut = || corrupt("journal cut short");
        let count = take(&mut rest, 4).map(part_u32).ok_or_else(cut)?;
        let mut ops = Ops::default();
        for _ in 0..count {
            let len = take(&mut rest, 4).map(part_u32).ok_or_else(cut)?;
            let k = take(&mut rest, len).ok_or_else(cut)?.to_vec();
            match take(&mut rest, 1).ok_or_else(cut)? {
                [1] => {
                    let len = take(&mut rest, 4).map(part_u32).ok_or_else(cut)?;
                    ops.insert(k, take(&mut rest, len).ok_or_else(cut)?);
                }
                [0] => ops.remove(k),
                _ => return Err(corrupt("unknown journal write")),
            }
        }
        if !rest.is_empty() {
            return Err(corrupt("journal longer than its writes"));
        }
        Ok(ops)
    }

    fn into_batch(self, batch: &mut Batch) {
        for (key, value) in self.writes {
            match value {
                Some(value) => batch.insert(key, value),
                None => batch.remove(key),
            }
        }
    }
}

/// Settles the write-behind buffer holds before it applies them.
const BEHIND_MAX: usize = 256;
/// The longest a settle waits in the write-behind buffer when the store is in use.
const BEHIND_AGE: Duration = Duration::from_millis(50);

/// The most writes a group commit sends through a journal record (see [`Store::commit`]);
/// more go as one `apply_batch`, whose log write is then worth it.
const JOURNAL_MAX: usize = 32;

/// The longest a flushing writer waits for others to join its group commit.
const GATHER: Duration = Duration::from_micros(200);

/// Paths open in this process: sled's file lock stops a second process, this stops a second
/// handle in the same one.
static OPEN: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

/// Paths this process has closed. sled lets go of its file lock only once its background
/// threads have dropped the database, a moment after the last handle: reopening one of these
/// waits for that instead of failing with `Locked`.
static CLOSED: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

/// How long a reopen of a path this process closed waits for sled's lock.
const REOPEN_WAIT: Duration = Duration::from_secs(2);

/// The durable queue and subscription registry.
///
/// ```
/// use callout_store::{NewDelivery, Store, StoreConfig};
/// let dir = tempfile::tempdir()?;
/// let store = Store::open(dir.path(), StoreConfig::default())?;
/// let receipt = store.enqueue(&[], vec![NewDelivery {
///     subscription_id: 1, event_ids: vec!["e1".into()], event_type: "contact.created".into(),
///     body: b"{}".to_vec(), due_at: 1_000, ordered: false,
/// }], 1_000)?;
/// let leased = store.lease(1_000, 10)?;
/// assert_eq!(leased[0].id, receipt.delivery_ids[0]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Store {
    path: PathBuf,
    db: Db,
    subs: Tree,
    queue: Tree,
    corrupt: Tree,
    config: StoreConfig,
    book: Mutex<Book>,
    /// Held while a handed-off write-behind buffer is applied, and taken by every other
    /// apply of it: taken under the book lock, it orders the applies and lets a reader wait
    /// for the settles it must see.
    behind_gate: Mutex<()>,
    flusher: Flusher,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Opens the store at `path`, creating it if absent. Deliveries a dead process had in
    /// flight return to the due queue (at-least-once).
    pub fn open(path: impl AsRef<Path>, config: StoreConfig) -> Result<Store, StoreError> {
        let path = path.as_ref().to_path_buf();
        std::fs::create_dir_all(&path)?;
        let canonical = path.canonicalize()?;
        {
            let mut open = OPEN.lock().map_err(|_| StoreError::Poisoned)?;
            if open.contains(&canonical) {
                return Err(StoreError::Locked { path });
            }
            open.push(canonical.clone());
        }
        let mut opened = Store::open_unregistered(&path, config.clone());
        let closed_here = CLOSED.lock().is_ok_and(|c| c.contains(&canonical));
        let deadline = std::time::Instant::now() + REOPEN_WAIT;
        while closed_here
            && matches!(opened, Err(StoreError::Locked { .. }))
            && std::time::Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(5));
            opened = Store::open_unregistered(&path, config.clone());
        }
        if opened.is_err() {
            if let Ok(mut open) = OPEN.lock() {
                open.retain(|p| *p != canonical);
            }
        }
        opened
    }

    fn open_unregistered(path: &Path, config: StoreConfig) -> Result<Store, StoreError> {
        let db = sled::Config::new()
            .path(path)
            .cache_capacity(config.cache_capacity)
            .flush_every_ms(Some(500))
            .open()
            .map_err(|e| match e {
                sled::Error::Io(io) if io.to_string().contains("could not acquire lock") => {
                    StoreError::Locked {
                        path: path.to_path_buf(),
                    }
                }
                other => StoreError::Sled(other),
            })?;
        let subs = db.open_tree("subs")?;
        let meta = db.open_tree("meta")?;
        let layout = match meta.get(FORMAT_KEY)?.as_deref() {
            None => LAYOUT,
            Some([found]) if *found <= LAYOUT => *found,
            Some(found) => {
                return Err(StoreError::NewerFormat {
                    path: path.to_path_buf(),
                    found: found.first().copied().unwrap_or(u8::MAX),
                    supported: LAYOUT,
                })
            }
        };
        let store = Store {
            path: path.to_path_buf(),
            queue: db.open_tree("queue")?,
            corrupt: db.open_tree("corrupt")?,
            subs,
            db,
            book: Mutex::new(Book {
                fresh: Fresh {
                    capacity: config.fresh_capacity,
                    ..Fresh::default()
                },
                ..Book::default()
            }),
            config,
            behind_gate: Mutex::new(()),
            flusher: Flusher::default(),
        };
        if layout < 2 {
            store.migrate_layout_1()?;
        }
        meta.insert(FORMAT_KEY, &[LAYOUT])?;
        store.recover()?;
        Ok(store)
    }

    /// Moves a layout-1 store's deliveries (`d id` records with value-less index entries) into
    /// this layout, in one batch: each record goes under the key of its state, replacing its
    /// index entry; a lease of layout 1 returns the delivery to due.
    fn migrate_layout_1(&self) -> Result<(), StoreError> {
        let mut batch = Ops::default();
        for item in self.queue.scan_prefix([LEGACY_LEASED]) {
            batch.remove(item?.0);
        }
        for item in self.queue.scan_prefix([LEGACY_DELIVERY]) {
            let (k, v) = item?;
            let Some(mut delivery) = self.record(&k, &v)? else {
                continue;
            };
            batch.remove(k);
            let (sub, id) = (delivery.subscription_id, delivery.id);
            match delivery.state {
                DeliveryState::Held => {
                    batch.insert(key(HELD, &[sub, id]), codec::encode(&delivery))
                }
                DeliveryState::Dead { .. } => {
                    batch.insert(key(DEAD, &[sub, id]), codec::encode(&delivery))
                }
                DeliveryState::Due | DeliveryState::InFlight { .. } => {
                    delivery.state = DeliveryState::Due;
                    batch.insert(key(DUE, &[delivery.due_at, id]), due_value(&delivery));
                }
            }
        }
        self.apply(batch)?;
        self.queue.flush()?;
        Ok(())
    }

    /// Rebuilds the in-memory counts and the next id, checks every delivery record (moving
    /// corrupt ones aside), and files due deliveries of held subscriptions as held: a delivery
    /// a dead process had in flight (still under its due key) comes back as `reschedule` would
    /// have put it.
    fn recover(&self) -> Result<(), StoreError> {
        for item in self.queue.scan_prefix([JOURNAL]) {
            let (k, v) = item?;
            match Ops::decode(&k, &v) {
                Ok(ops) => self.write_out(&k, ops)?,
                Err(error) => self.move_aside(&k, &v, &error)?,
            }
        }
        let mut book = self.book()?;
        book.next_delivery = match self.queue.get(NEXT_DELIVERY)? {
            Some(v) => part(&v, 0),
            None => 1,
        };
        for item in self.queue.scan_prefix([HELD_SUB]) {
            let (k, _) = item?;
            book.held.insert(part(&k, 1));
        }
        let mut batch = Ops::default();
        for tag in [DUE, HELD, DEAD] {
            for item in self.queue.scan_prefix([tag]) {
                let (k, v) = item?;
                let Some(mut delivery) = self.record(&k, &v)? else {
                    continue;
                };
                book.next_delivery = book.next_delivery.max(delivery.id + 1);
                if tag == DUE && book.held.contains(&delivery.subscription_id) {
                    batch.remove(k);
                    let due_at = delivery.due_at;
                    self.requeue(&mut batch, &mut delivery, &mut book, due_at);
                } else if tag == DUE {
                    book.due
                        .insert(delivery.subscription_id, entry_of(&delivery));
                    book.retrying(delivery.subscription_id, delivery.attempts, true);
                }
                book.enter(delivery.subscription_id, delivery.state);
            }
        }
        for item in self.queue.scan_prefix([DELIVERED]) {
            let (k, v) = item?;
            book.counts(part(&k, 1)).delivered = part(&v, 0);
        }
        for item in self.queue.scan_prefix([LEGACY_PENDING]) {
            batch.remove(item?.0);
        }
        book.reserved_until = book.next_delivery;
        self.apply(batch)?;
        self.queue.flush()?;
        Ok(())
    }

    fn book(&self) -> Result<MutexGuard<'_, Book>, StoreError> {
        self.book.lock().map_err(|_| StoreError::Poisoned)
    }

    /// Applies one state change's writes as one atomic sled batch.
    fn apply(&self, ops: Ops) -> Result<(), StoreError> {
        if ops.is_empty() {
            return Ok(());
        }
        let mut batch = Batch::default();
        ops.into_batch(&mut batch);
        self.queue.apply_batch(batch)?;
        Ok(())
    }

    /// Applies the buffered settles (see [`Book::behind`]) as one batch. Every path that reads
    /// the queue tree or writes to it outside the group commit calls this first, under the
    /// book lock, so it sees every settle and orders its writes after them.
    fn apply_behind(&self, book: &mut Book) -> Result<(), StoreError> {
        // Any buffer handed off before is on disk once the gate is ours.
        let _gate = self.behind_gate.lock().map_err(|_| StoreError::Poisoned)?;
        book.handed_off_ids.clear();
        if book.behind.is_empty() {
            return Ok(());
        }
        let ops = book.take_behind();
        book.behind_ids.clear();
        self.apply(ops)
    }

    /// Applies the write-behind buffer after letting go of the book lock: an apply of a full
    /// buffer holds sled's write lock for milliseconds, and under the book lock it stalled
    /// every lease and settle meanwhile. The gate, taken before the book lock goes, keeps the
    /// applies in order; a reader that needs a handed-off settle takes it too
    /// ([`Book::buffered`]).
    fn hand_off_behind(&self, mut book: MutexGuard<'_, Book>) -> Result<(), StoreError> {
        let gate = self.behind_gate.lock().map_err(|_| StoreError::Poisoned)?;
        let ops = book.take_behind();
        book.handed_off_ids = std::mem::take(&mut book.behind_ids);
        drop(book);
        let applied = self.apply(ops);
        drop(gate);
        applied
    }

    /// [`Store::apply_behind`] for callers that do not hold the book lock.
    fn catch_up(&self) -> Result<(), StoreError> {
        let mut book = self.book()?;
        self.apply_behind(&mut book)
    }

    fn move_aside(&self, k: &[u8], v: &[u8], error: &StoreError) -> Result<(), StoreError> {
        tracing::error!(%error, "corrupt record moved aside");
        self.corrupt.insert(k, v)?;
        self.queue.remove(k)?;
        Ok(())
    }

    /// Records that failed to decode and were moved aside, by key (hex).
    pub fn corrupt_keys(&self) -> Result<Vec<String>, StoreError> {
        self.corrupt
            .iter()
            .keys()
            .map(|k| Ok(codec::hex(&k?)))
            .collect()
    }

    /// How many flushes the store has made for durable writes (group commit makes this smaller
    /// than the number of writes).
    pub fn flush_count(&self) -> u64 {
        self.flusher.state.lock().map(|s| s.flushes).unwrap_or(0)
    }

    /// Makes everything written so far durable now.
    pub fn flush(&self) -> Result<(), StoreError> {
        self.catch_up()?;
        self.db.flush()?;
        Ok(())
    }

    /// Waits until write `ticket` is durable, flushing for every writer waiting with it.
    fn durable(&self, ticket: u64) -> Result<(), StoreError> {
        if self.config.durability == Durability::Relaxed {
            return Ok(());
        }
        let mut state = self
            .flusher
            .state
            .lock()
            .map_err(|_| StoreError::Poisoned)?;
        loop {
            if let Some(group) = state
                .failed
                .iter()
                .position(|&(after, last, _)| after < ticket && ticket <= last)
            {
                state.failed[group].2 -= 1;
                if state.failed[group].2 == 0 {
                    state.failed.swap_remove(group);
                }
                return Err(StoreError::Io(std::io::Error::other(
                    "the group commit carrying this write failed",
                )));
            }
            if state.flushed >= ticket {
                return Ok(());
            }
            if !state.flushing {
                state.flushing = true;
                // Writers inside `enqueue`, and as many as joined the last group (they are
                // likely busy preparing their next write), will want a flush in a moment: wait
                // up to GATHER for them to join this one instead of paying for the next. A
                // lone writer (last group of one, nobody writing) does not wait at all. On 2
                // cores, woken writers need a few hundred microseconds to get back here, so a
                // bare `writing > 0` check gathered only about half of 8 publishers.
                let gather = Instant::now();
                loop {
                    let left = GATHER.saturating_sub(gather.elapsed());
                    if state.gathered() || left.is_zero() {
                        break;
                    }
                    state = self
                        .flusher
                        .arrived
                        .wait_timeout(state, left)
                        .map_err(|_| StoreError::Poisoned)?
                        .0;
                }
                state.last_group = state.pending.len();
                let after = state.taken;
                let target = state.written;
                state.taken = target;
                let pending = std::mem::take(&mut state.pending);
                let applied_ids = std::mem::take(&mut state.pending_ids);
                let applied_due = std::mem::take(&mut state.pending_due);
                drop(state);
                let mut ops = Ops::default();
                for writes in pending {
                    ops.append(writes);
                }
                if let Some((k, v)) = expiry_record(&applied_ids) {
                    ops.insert(k, v);
                }
                let result = self.commit(target, ops);
                if let Ok(mut book) = self.book() {
                    for (id, _) in &applied_ids {
                        book.pending_seen.remove(id);
                    }
                    if result.is_ok() {
                        self.file_applied(&mut book, applied_due);
                    } else {
                        // The id block it may have reserved may not be on disk: the next
                        // enqueue reserves anew, so no id handed out later can be reused.
                        book.reserved_until = 0;
                        // Counted due when they were enqueued; never stored.
                        for delivery in applied_due {
                            book.leave(delivery.subscription_id, DeliveryState::Due);
                        }
                    }
                }
                state = self
                    .flusher
                    .state
                    .lock()
                    .map_err(|_| StoreError::Poisoned)?;
                state.flushing = false;
                state.flushes += 1;
                if result.is_ok() {
                    state.flushed = state.flushed.max(target);
                } else {
                    // Counted without the leader: it hears here.
                    state.failed.push((after, target, target - after - 1));
                    state.failed.retain(|&(_, _, waiting)| waiting > 0);
                }
                self.flusher.done.notify_all();
                result?;
            } else {
                state = self
                    .flusher
                    .done
                    .wait(state)
                    .map_err(|_| StoreError::Poisoned)?;
            }
        }
    }

    /// Makes a group commit's writes durable, all or none. Up to [`JOURNAL_MAX`] writes go to
    /// disk as one journal record and one flush, then out as plain inserts (`write_out`):
    /// sled pays a log write for every `apply_batch` (FACTS.md), so this costs about 110 us
    /// where apply_batch + flush cost 175-220 us. More writes go as one batch and a flush.
    fn commit(&self, ticket: u64, ops: Ops) -> Result<(), StoreError> {
        if ops.writes.len() > JOURNAL_MAX {
            self.apply(ops)?;
            return self.flush_files();
        }
        let journal = key(JOURNAL, &[ticket]);
        self.queue.insert(&journal, ops.encode())?;
        if let Err(error) = self.flush_files() {
            // Its writers hear that it failed: take the journal back, or the next flush would
            // keep it and a reopen write out what they were told was not stored. (A crash
            // before that flush can still bring it back, if sled had it on disk already.)
            if let Err(error) = self.queue.remove(&journal) {
                tracing::error!(%error, "could not take back the journal of a failed group commit");
            }
            return Err(error);
        }
        self.write_out(&journal, ops)
    }

    /// Writes a flushed journal record's writes out as plain inserts, then removes it. sled
    /// recovers a prefix of its log, so once the removal is on disk all the writes are, and
    /// until then reopening writes them out again: the same values, harmless, since nothing
    /// else touches them before they are filed, which is after the removal.
    fn write_out(&self, journal: &[u8], ops: Ops) -> Result<(), StoreError> {
        for (k, v) in ops.writes {
            match v {
                // Id blocks only grow, whichever journal is written out last.
                Some(v) if k == NEXT_DELIVERY => {
                    let on_disk = self.queue.get(NEXT_DELIVERY)?.map_or(0, |n| part(&n, 0));
                    if part(&v, 0) > on_disk {
                        self.queue.insert(k, v)?;
                    }
                }
                Some(v) => {
                    self.queue.insert(k, v)?;
                }
                None => {
                    self.queue.remove(k)?;
                }
            }
        }
        self.queue.remove(journal)?;
        Ok(())
    }

    fn flush_files(&self) -> Result<(), StoreError> {
        self.db.flush()?;
        if self.config.durability == Durability::Sync {
            // sled 0.34 flushes with sync_file_range, which a power loss can undo: fsync its files.
            sync_dir(&self.path)?;
        }
        Ok(())
    }

    // ---- registry ----

    /// Validates and stores a new subscription: assigns the next id (never reused), a GUID, and
    /// the creation time.
    pub fn create_subscription(
        &self,
        mut sub: Subscription,
        now_ms: u64,
    ) -> Result<Subscription, StoreError> {
        sub.validate()?;
        let _book = self.book()?;
        let id = self.subs.get(NEXT_SUB)?.map_or(1, |v| part(&v, 0));
        sub.id = id;
        if sub.guid.is_empty() {
            sub.guid = uuid::Uuid::new_v4().to_string();
        }
        sub.created_at = Some(now_ms);
        sub.updated_at = Some(now_ms);
        let mut batch = Batch::default();
        batch.insert(key(SUB, &[id]), codec::encode_json(&sub));
        batch.insert(NEXT_SUB, &(id + 1).to_be_bytes());
        self.subs.apply_batch(batch)?;
        self.subs.flush()?;
        Ok(sub)
    }

    /// Reserves `count` numbers of a subscription's own counter (Autotask's `SequenceNumber`
    /// counts up per webhook) and returns the first. Made durable by the enqueue that follows.
    pub fn reserve_sequence(&self, sub: u64, count: u64) -> Result<u64, StoreError> {
        let _book = self.book()?;
        let k = key(SEQUENCE, &[sub]);
        let first = self.subs.get(&k)?.map_or(1, |v| part(&v, 0));
        self.subs
            .insert(k, &first.saturating_add(count).to_be_bytes())?;
        Ok(first)
    }

    /// The subscription with this id.
    pub fn get_subscription(&self, id: u64) -> Result<Option<Subscription>, StoreError> {
        let k = key(SUB, &[id]);
        self.subs
            .get(&k)?
            .map(|v| codec::decode_json(&k, &v))
            .transpose()
    }

    /// Replaces a stored subscription (by `id`), keeping its GUID and creation time.
    pub fn update_subscription(
        &self,
        mut sub: Subscription,
        now_ms: u64,
    ) -> Result<Subscription, StoreError> {
        sub.validate()?;
        let _book = self.book()?;
        let old = self
            .get_subscription(sub.id)?
            .ok_or(StoreError::UnknownSubscription(sub.id))?;
        sub.guid = old.guid;
        sub.created_at = old.created_at;
        sub.created_by = old.created_by;
        sub.updated_at = Some(now_ms);
        self.subs
            .insert(key(SUB, &[sub.id]), codec::encode_json(&sub))?;
        self.subs.flush()?;
        Ok(sub)
    }

    /// Deletes a subscription; returns it if it existed. Its deliveries stay until the engine
    /// dead-letters them.
    pub fn delete_subscription(&self, id: u64) -> Result<Option<Subscription>, StoreError> {
        let _book = self.book()?;
        let k = key(SUB, &[id]);
        let old = self.subs.remove(&k)?;
        self.subs.flush()?;
        old.map(|v| codec::decode_json(&k, &v)).transpose()
    }

    /// Subscriptions by name (contains, ignoring case), event (a pattern matches the event name,
    /// or equals the given pattern) and state, in id order. Corrupt records are moved aside.
    pub fn list_subscriptions(
        &self,
        filter: &SubscriptionFilter,
    ) -> Result<Vec<Subscription>, StoreError> {
        let name = filter.name.as_ref().map(|n| n.to_lowercase());
        let event: Option<(Option<Pattern>, String)> =
            filter.event.as_ref().map(|e| (e.parse().ok(), e.clone()));
        let mut out = Vec::new();
        for item in self.subs.scan_prefix([SUB]) {
            let (k, v) = item?;
            let sub: Subscription = match codec::decode_json(&k, &v) {
                Ok(sub) => sub,
                Err(error) => {
                    tracing::error!(%error, "corrupt subscription moved aside");
                    self.corrupt.insert(&k, &v)?;
                    self.subs.remove(&k)?;
                    continue;
                }
            };
            if name
                .as_ref()
                .is_some_and(|n| !sub.name.to_lowercase().contains(n))
            {
                continue;
            }
            if filter.state.is_some_and(|s| s != sub.state) {
                continue;
            }
            if let Some((pattern, raw)) = &event {
                let patterns = sub.patterns().unwrap_or_default();
                let wanted = match pattern {
                    // An event name: any pattern that would receive it.
                    Some(Pattern {
                        entity: Part::Name(e),
                        action: Part::Name(a),
                    }) => patterns.iter().any(|p| p.matches(e, a)),
                    // A wildcard pattern: subscriptions that hold that very pattern.
                    Some(given) => patterns.contains(given),
                    // Free text (SuperOffice's EventFilter): a pattern containing it.
                    None => sub
                        .events
                        .iter()
                        .any(|s| s.to_lowercase().contains(&raw.to_lowercase())),
                };
                if !wanted {
                    continue;
                }
            }
            out.push(sub);
        }
        Ok(out)
    }

    // ---- queue ----

    /// Stores every delivery of a publish atomically (all or none) and returns once they are
    /// durable (see [`Durability`]). `dedup_event_ids` are host-supplied event ids: one seen
    /// before within the retention window is reported as a duplicate, and the deliveries that
    /// carry it are skipped.
    pub fn enqueue(
        &self,
        dedup_event_ids: &[String],
        deliveries: Vec<NewDelivery>,
        now_ms: u64,
    ) -> Result<EnqueueReceipt, StoreError> {
        let mut receipt = EnqueueReceipt::default();
        let mut writing = Writing(None);
        if self.config.durability != Durability::Relaxed {
            self.flusher
                .state
                .lock()
                .map_err(|_| StoreError::Poisoned)?
                .writing += 1;
            writing.0 = Some(&self.flusher);
        }
        let ticket = {
            let mut book = self.book()?;
            let mut batch = Ops::default();
            let mut duplicates = HashSet::new();
            let mut fresh_ids = Vec::new();
            for event_id in dedup_event_ids {
                let seen = key_str(SEEN, event_id);
                if book.pending_seen.contains(event_id) {
                    duplicates.insert(event_id.clone());
                    continue;
                }
                match self.queue.get(&seen)? {
                    Some(at)
                        if part(&at, 0) + (self.config.dedup_retention.as_millis() as u64)
                            > now_ms =>
                    {
                        duplicates.insert(event_id.clone());
                    }
                    _ => {
                        batch.insert(seen, now_ms.to_be_bytes());
                        fresh_ids.push((event_id.clone(), now_ms));
                    }
                }
            }
            let mut entered = Vec::new();
            let mut due = Vec::new();
            for new in deliveries {
                if new.event_ids.iter().any(|e| duplicates.contains(e)) {
                    continue;
                }
                let id = book.next_delivery;
                book.next_delivery += 1;
                let delivery = Delivery {
                    id,
                    subscription_id: new.subscription_id,
                    event_ids: new.event_ids,
                    event_type: new.event_type,
                    body: new.body,
                    attempts: 0,
                    due_at: new.due_at,
                    created_at: now_ms,
                    ordered: new.ordered,
                    // Filed as due even for a held subscription: whether it is held is decided
                    // once the batch is applied (`file_applied`), since a hold or resume can
                    // come in between.
                    state: DeliveryState::Due,
                };
                batch.insert(key(DUE, &[delivery.due_at, id]), due_value(&delivery));
                entered.push((delivery.subscription_id, delivery.state));
                receipt.delivery_ids.push(id);
                due.push(delivery);
            }
            if book.next_delivery > book.reserved_until {
                book.reserved_until = book.next_delivery + ID_BLOCK;
                batch.insert(NEXT_DELIVERY, book.reserved_until.to_be_bytes());
            }
            for (sub, state) in entered {
                book.enter(sub, state);
            }
            let mut dups: Vec<String> = duplicates.into_iter().collect();
            dups.sort();
            receipt.duplicate_event_ids = dups;
            if self.config.durability == Durability::Relaxed {
                if let Some((k, v)) = expiry_record(&fresh_ids) {
                    batch.insert(k, v);
                }
                let mut sled_batch = Batch::default();
                batch.into_batch(&mut sled_batch);
                if let Err(error) = self.queue.apply_batch(sled_batch) {
                    book.reserved_until = 0;
                    for delivery in due {
                        book.leave(delivery.subscription_id, DeliveryState::Due);
                    }
                    return Err(error.into());
                }
                self.file_applied(&mut book, due);
                return Ok(receipt);
            }
            // Queued under the book lock, so batches apply in id order.
            book.pending_seen
                .extend(fresh_ids.iter().map(|(id, _)| id.clone()));
            let mut state = self
                .flusher
                .state
                .lock()
                .map_err(|_| StoreError::Poisoned)?;
            state.pending.push(batch);
            state.pending_ids.extend(fresh_ids);
            state.pending_due.extend(due);
            state.written += 1;
            state.writing = state.writing.saturating_sub(1);
            writing.0 = None;
            // Only once the group is whole: a leader woken per arrival went back to sleep as
            // often as there were writers (a thread switch each, on 2 cores).
            if state.gathered() {
                self.flusher.arrived.notify_one();
            }
            state.written
        };
        self.durable(ticket)?;
        Ok(receipt)
    }

    /// Leases up to `max` due deliveries (due at or before `now_ms`), in due order, until
    /// `now_ms` plus the lease duration. Expired leases return to the queue first. An ordered
    /// subscription never has two deliveries in flight, and its deliveries go in publish order.
    pub fn lease(&self, now_ms: u64, max: usize) -> Result<Vec<Delivery>, StoreError> {
        self.lease_where(now_ms, max, |_| true)
    }

    /// Like [`Store::lease`], taking only deliveries whose subscription `wanted` accepts; the
    /// others stay due, untouched (e.g. a subscription already at its in-flight bound).
    /// `wanted` is asked once per delivery about to be leased, so it can count them.
    pub fn lease_where(
        &self,
        now_ms: u64,
        max: usize,
        mut wanted: impl FnMut(u64) -> bool,
    ) -> Result<Vec<Delivery>, StoreError> {
        let mut book = self.book()?;
        // The due index is in memory, so leasing reads sled only for the records it takes: the
        // write-behind buffer is applied when one of them is in it, or when it is due by age.
        if book
            .behind_since
            .is_some_and(|since| since.elapsed() >= BEHIND_AGE)
        {
            self.apply_behind(&mut book)?;
        }
        self.reclaim_expired(&mut book, now_ms)?;
        let until = now_ms.saturating_add(self.config.lease.as_millis() as u64);
        let mut leased = Vec::new();
        // The earliest next delivery of any subscription, one at a time, so leases go in due
        // order across subscriptions; a subscription that may not give one more (at its bound,
        // or its ordered head in flight) is passed over for the rest of the call, whatever
        // its backlog.
        let mut passed = IdSet::default();
        while leased.len() < max {
            let Some(sub) = book.due.next_subscription(now_ms, &passed) else {
                break;
            };
            let ordered_may_go = !book.ordered_in_flight.contains(&sub);
            let Some(entry) = book.due.next_for(sub, now_ms, ordered_may_go) else {
                passed.insert(sub);
                continue;
            };
            // The record is read before `wanted` is asked, since the caller counts what it
            // accepts (the engine reserves an in-flight slot): a delivery that turns out to
            // be unreadable must not take one. A read error ends the call with what it has
            // leased so far, which would otherwise stay in flight, unseen, until the lease ends.
            let due_key = IVec::from(key(DUE, &[entry.due_at, entry.id]));
            let read = if let Some(delivery) = book.fresh.take(&entry) {
                Ok(Some(delivery))
            } else if book.buffered(entry.id) {
                // Rescheduled or released a moment ago: its new record is still buffered.
                self.apply_behind(&mut book)
                    .and_then(|()| self.stored_due(&due_key))
            } else {
                self.stored_due(&due_key)
            };
            let mut delivery = match read {
                Ok(Some(delivery)) => delivery,
                Ok(None) => {
                    // Moved aside as corrupt, or gone: nothing to send.
                    book.due.remove(sub, entry);
                    book.leave(sub, DeliveryState::Due);
                    continue;
                }
                Err(error) if leased.is_empty() => return Err(error),
                Err(error) => {
                    tracing::error!(%error, "lease stopped early");
                    break;
                }
            };
            if !wanted(sub) {
                book.fresh.keep(delivery);
                passed.insert(sub);
                continue;
            }
            book.due.remove(sub, entry);
            if delivery.ordered {
                book.ordered_in_flight.insert(sub);
            }
            // Nothing is written: the lease lives in memory (see `DUE`).
            delivery.state = DeliveryState::InFlight { until };
            book.deadlines.insert((until, entry.id));
            book.leased.insert(
                entry.id,
                Lease {
                    until,
                    attempts: delivery.attempts,
                    due_key,
                    sub,
                    ordered: delivery.ordered,
                },
            );
            book.leave(sub, DeliveryState::Due);
            book.retrying(sub, delivery.attempts, false);
            book.enter(sub, delivery.state);
            leased.push(delivery);
        }
        Ok(leased)
    }

    /// Voids leases whose deadline has passed: their deliveries are due again (still in the due
    /// index on disk), or held when their subscription was held meanwhile.
    fn reclaim_expired(&self, book: &mut Book, now_ms: u64) -> Result<(), StoreError> {
        let mut batch = Ops::default();
        while let Some(&(until, id)) = book.deadlines.first() {
            if until > now_ms {
                break;
            }
            book.deadlines.remove(&(until, id));
            let Some(lease) = book.leased.remove(&id) else {
                continue;
            };
            tracing::warn!(
                subscription = lease.sub,
                delivery = id,
                "lease expired; delivery returns to the queue"
            );
            book.leave(lease.sub, DeliveryState::InFlight { until });
            if lease.ordered {
                book.ordered_in_flight.remove(&lease.sub);
            }
            if !book.held.contains(&lease.sub) {
                // Its record never left its due key.
                let entry = Entry {
                    due_at: part(&lease.due_key, 1),
                    id,
                    ordered: lease.ordered,
                };
                book.due.insert(lease.sub, entry);
                book.enter(lease.sub, DeliveryState::Due);
                book.retrying(lease.sub, lease.attempts, true);
                continue;
            }
            let Some(mut delivery) = self.stored_due(&lease.due_key)? else {
                continue;
            };
            batch.remove(lease.due_key);
            let due_at = delivery.due_at;
            let target = self.requeue(&mut batch, &mut delivery, book, due_at);
            book.enter(lease.sub, target);
        }
        self.apply(batch)
    }

    /// Files a delivery (its old key already removed) as due at `due_at`, or held when its
    /// subscription is held; returns the new state.
    fn requeue(
        &self,
        batch: &mut Ops,
        delivery: &mut Delivery,
        book: &mut Book,
        due_at: u64,
    ) -> DeliveryState {
        delivery.due_at = due_at;
        if book.held.contains(&delivery.subscription_id) {
            delivery.state = DeliveryState::Held;
            batch.insert(
                key(HELD, &[delivery.subscription_id, delivery.id]),
                codec::encode(delivery),
            );
        } else {
            delivery.state = DeliveryState::Due;
            batch.insert(key(DUE, &[due_at, delivery.id]), due_value(delivery));
            // Every reader of the index applies the write-behind buffer first, so it may know
            // of this before sled does.
            book.due
                .insert(delivery.subscription_id, entry_of(delivery));
            book.retrying(delivery.subscription_id, delivery.attempts, true);
        }
        delivery.state
    }

    /// Takes a delivery out of flight and files it as `finish` says, with its attempt.
    fn settle(&self, id: u64, attempt: Option<Attempt>, finish: Finish) -> Result<(), StoreError> {
        {
            let mut book = self.book()?;
            if book.buffered(id) {
                self.apply_behind(&mut book)?;
            }
            // An attempt that started before this lease did belongs to an earlier lease that
            // expired (its worker was stuck past it): it must not settle the delivery's new
            // lease, which another worker holds. Leases are keyed by id; their start time
            // tells them apart.
            let lease_ms = self.config.lease.as_millis() as u64;
            let current = book.leased.get(&id).is_some_and(|lease| {
                attempt
                    .as_ref()
                    .is_none_or(|a| a.at >= lease.until.saturating_sub(lease_ms))
            });
            if !current {
                return Err(StoreError::UnknownDelivery(id));
            }
            let lease = book
                .leased
                .remove(&id)
                .ok_or(StoreError::UnknownDelivery(id))?;
            book.deadlines.remove(&(lease.until, id));
            let sub = lease.sub;
            // A delivered one needs no read: its record just goes. The others are filed anew
            // from their record, which stays under the due key while in flight.
            let record = match finish {
                Finish::Delivered => None,
                Finish::Due(_) | Finish::Dead(_) => match self.stored_due(&lease.due_key) {
                    Ok(Some(delivery)) => Some(delivery),
                    Ok(None) => None,
                    Err(error) => {
                        book.deadlines.insert((lease.until, id));
                        book.leased.insert(id, lease);
                        return Err(error);
                    }
                },
            };
            let mut batch = Ops::default();
            batch.remove(lease.due_key.clone());
            let mut number = 0;
            if let Some(mut attempt) = attempt {
                // Within 1,024 bytes, it is within 1,024 characters.
                if attempt.excerpt.len() > 1024 {
                    attempt.excerpt = attempt.excerpt.chars().take(1024).collect();
                }
                number = attempt.number;
                book.behind_attempts.push(Filed {
                    sub,
                    at: attempt.at,
                    id,
                    n: u64::from(attempt.number),
                    bytes: codec::encode(&attempt),
                });
            }
            let next = match (finish, record) {
                (Finish::Delivered, _) => {
                    let counts = book.counts(sub);
                    counts.delivered += 1;
                    batch.insert(key(DELIVERED, &[sub]), counts.delivered.to_be_bytes());
                    None
                }
                // The record vanished (moved aside as corrupt): nothing to file.
                (_, None) => None,
                (Finish::Due(due_at), Some(mut delivery)) => {
                    delivery.attempts = delivery.attempts.max(number);
                    Some(self.requeue(&mut batch, &mut delivery, &mut book, due_at))
                }
                (Finish::Dead(at), Some(mut delivery)) => {
                    delivery.attempts = delivery.attempts.max(number);
                    delivery.state = DeliveryState::Dead { at };
                    batch.insert(key(DEAD, &[sub, id]), codec::encode(&delivery));
                    Some(delivery.state)
                }
            };
            book.behind.append(batch);
            book.behind_ids.insert(id);
            let since = *book.behind_since.get_or_insert_with(Instant::now);
            book.leave(sub, DeliveryState::InFlight { until: lease.until });
            if let Some(state) = next {
                book.enter(sub, state);
            }
            if lease.ordered {
                book.ordered_in_flight.remove(&sub);
            }
            if book.behind_ids.len() >= BEHIND_MAX || since.elapsed() >= BEHIND_AGE {
                self.hand_off_behind(book)?;
            }
        }
        // Not flushed here, and only buffered (see `Book::behind`): an outcome lost in a crash
        // leaves the delivery in flight, and reopening returns it to the queue, so it is sent
        // again (at least once). Waiting for a flush per attempt would make the workers, not
        // the receivers, the bottleneck.
        Ok(())
    }

    /// The delivery was delivered: it leaves the queue; its attempts stay for the retention time.
    ///
    /// Like every settle, this fails with [`StoreError::UnknownDelivery`] when `id` is not in
    /// flight (never leased, settled already, or its lease expired and was voided by a later
    /// [`Store::lease`]), and is buffered, not yet on disk, when it returns (see the crate
    /// documentation).
    pub fn complete(&self, id: u64, attempt: Attempt) -> Result<(), StoreError> {
        self.settle(id, Some(attempt), Finish::Delivered)
    }

    /// The attempt failed; the delivery is due again at `due_at` (held, if its subscription is).
    pub fn reschedule(&self, id: u64, due_at: u64, attempt: Attempt) -> Result<(), StoreError> {
        self.settle(id, Some(attempt), Finish::Due(due_at))
    }

    /// Returns a leased delivery unattempted, due at `due_at` (e.g. its subscription is at its
    /// in-flight bound or rate limit).
    pub fn release(&self, id: u64, due_at: u64) -> Result<(), StoreError> {
        self.settle(id, None, Finish::Due(due_at))
    }

    /// The delivery will not be tried again; it is kept as a dead letter.
    pub fn dead_letter(&self, id: u64, attempt: Attempt) -> Result<(), StoreError> {
        let at = attempt.at;
        self.settle(id, Some(attempt), Finish::Dead(at))
    }

    /// Holds a subscription's deliveries: due ones move to held and are not leased until
    /// [`Store::resume_subscription`]; ones in flight are held when they come back.
    pub fn hold_subscription(&self, sub: u64) -> Result<(), StoreError> {
        let mut book = self.book()?;
        self.apply_behind(&mut book)?;
        book.held.insert(sub);
        let mut batch = Ops::default();
        batch.insert(key(HELD_SUB, &[sub]), []);
        let mut failed = None;
        for entry in book.due.take_subscription(sub) {
            if let Err(error) = self.move_to_held(&mut batch, &mut book, sub, entry) {
                // Left due (the engine holds what it leases for a held subscription); the
                // caller hears of the first error.
                book.due.insert(sub, entry);
                failed.get_or_insert(error);
            }
        }
        self.apply(batch)?;
        drop(book);
        match failed {
            Some(error) => Err(error),
            None => self.flush(),
        }
    }

    /// Files enqueued deliveries once their batch is applied: into the due index, or held when
    /// their subscription is held now (whatever it was when they were enqueued).
    fn file_applied(&self, book: &mut Book, applied: Vec<Delivery>) {
        let mut moves = Ops::default();
        for delivery in applied {
            let (sub, entry) = (delivery.subscription_id, entry_of(&delivery));
            if !book.held.contains(&sub) {
                book.due.insert(sub, entry);
                book.fresh.keep(delivery);
            } else if let Err(error) = self.move_to_held(&mut moves, book, sub, entry) {
                // Left due: the engine holds what it leases for a switched-off subscription.
                tracing::error!(%error, subscription = sub, "could not hold an enqueued delivery");
                book.due.insert(sub, entry);
            }
        }
        if let Err(error) = self.apply(moves) {
            tracing::error!(%error, "could not hold deliveries enqueued meanwhile");
        }
    }

    /// Writes the moves of a due delivery (out of the due index already) to held into `batch`,
    /// and counts it held.
    fn move_to_held(
        &self,
        batch: &mut Ops,
        book: &mut Book,
        sub: u64,
        entry: Entry,
    ) -> Result<(), StoreError> {
        let due_key = key(DUE, &[entry.due_at, entry.id]);
        book.fresh.take(&entry);
        let Some(mut d) = self.stored_due(&due_key)? else {
            book.leave(sub, DeliveryState::Due);
            return Ok(());
        };
        batch.remove(due_key);
        book.leave(sub, DeliveryState::Due);
        book.retrying(sub, d.attempts, false);
        d.state = DeliveryState::Held;
        batch.insert(key(HELD, &[sub, entry.id]), codec::encode(&d));
        book.enter(sub, DeliveryState::Held);
        Ok(())
    }

    /// Releases a held subscription's deliveries, due at `now_ms`.
    pub fn resume_subscription(&self, sub: u64, now_ms: u64) -> Result<u64, StoreError> {
        let mut book = self.book()?;
        self.apply_behind(&mut book)?;
        book.held.remove(&sub);
        let mut batch = Ops::default();
        batch.remove(key(HELD_SUB, &[sub]));
        let mut moved = 0;
        for item in self.queue.scan_prefix(key(HELD, &[sub])) {
            let (hk, v) = item?;
            let Some(mut d) = self.record(&hk, &v)? else {
                continue;
            };
            batch.remove(hk);
            d.state = DeliveryState::Due;
            d.due_at = d.due_at.min(now_ms);
            batch.insert(key(DUE, &[d.due_at, d.id]), due_value(&d));
            book.due.insert(sub, entry_of(&d));
            book.retrying(sub, d.attempts, true);
            moved += 1;
        }
        self.apply(batch)?;
        let c = book.counts(sub);
        c.held -= moved.min(c.held);
        c.due += moved;
        drop(book);
        self.flush()?;
        Ok(moved)
    }

    /// When the next delivery is due or the next lease expires, if any.
    pub fn next_due_at(&self) -> Result<Option<u64>, StoreError> {
        let book = self.book()?;
        let due = book.due.earliest();
        let lease = book.deadlines.first().map(|(until, _)| *until);
        Ok(match (due, lease) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        })
    }

    /// The record under a due key, or `None` when it is gone; a record that does not decode
    /// is moved aside and reported as gone.
    fn stored_due(&self, due_key: &[u8]) -> Result<Option<Delivery>, StoreError> {
        match self.queue.get(due_key)? {
            Some(bytes) => self.record(due_key, &bytes),
            None => Ok(None),
        }
    }

    /// The delivery in a record of any state (due records carry a header first), or `None`
    /// when it does not decode: then it is moved aside and reported, never a panic or a stop.
    fn record(&self, k: &[u8], v: &[u8]) -> Result<Option<Delivery>, StoreError> {
        let decoded = match k.first() {
            Some(&DUE) => decode_due(k, v),
            _ => codec::decode(k, v),
        };
        match decoded {
            Ok(delivery) => Ok(Some(delivery)),
            Err(error) => {
                self.move_aside(k, v, &error)?;
                Ok(None)
            }
        }
    }

    /// A delivery by id, in any state but delivered (delivered ones leave the store; their
    /// attempts stay). A diagnostic: one in flight is found at once, others by walking the
    /// queue's keys, since keeping an id index would cost every enqueue a write.
    pub fn delivery(&self, id: u64) -> Result<Option<Delivery>, StoreError> {
        let mut book = self.book()?;
        self.apply_behind(&mut book)?;
        if let Some(lease) = book.leased.get(&id) {
            let until = lease.until;
            let due_key = lease.due_key.clone();
            drop(book);
            return Ok(self.stored_due(&due_key)?.map(|mut delivery| {
                delivery.state = DeliveryState::InFlight { until };
                delivery
            }));
        }
        drop(book);
        for tag in [DUE, HELD, DEAD] {
            for item in self.queue.scan_prefix([tag]).keys() {
                let k = item?;
                if part(&k, 9) != id {
                    continue;
                }
                let Some(bytes) = self.queue.get(&k)? else {
                    continue;
                };
                let delivery = match tag {
                    DUE => decode_due(&k, &bytes)?,
                    _ => codec::decode(&k, &bytes)?,
                };
                return Ok(Some(delivery));
            }
        }
        Ok(None)
    }

    // ---- attempts and dead letters ----

    /// Every attempt of a delivery, oldest first.
    pub fn attempts_for_delivery(&self, id: u64) -> Result<Vec<Attempt>, StoreError> {
        self.catch_up()?;
        let mut out: Vec<Attempt> = Vec::new();
        for item in self.queue.scan_prefix(key(ATTEMPT, &[id])) {
            let (k, v) = item?;
            out.push(codec::decode(&k, &v)?);
        }
        for pointer in self.queue.scan_prefix(attempts::bucket_prefix(id)).keys() {
            let pointer = pointer?;
            let record_key = attempts::pointed(&pointer);
            let Some(record) = self.queue.get(&record_key)? else {
                // A record goes with its pointers, all those it can name: one cut short named
                // fewer. A pointer is never written without its record, so this one is left over.
                self.queue.remove(&pointer)?;
                continue;
            };
            for entry in attempts::entries(&record_key, &record) {
                match entry.bytes {
                    Some(bytes) if entry.id == id => {
                        out.push(codec::decode(&record_key, &record[bytes])?);
                    }
                    _ => {}
                }
            }
        }
        out.sort_by_key(|a| (a.at, a.number));
        Ok(out)
    }

    /// The newest attempts of a subscription's deliveries, newest first, at most `limit`, as
    /// (delivery id, attempt).
    pub fn attempts_for_subscription(
        &self,
        sub: u64,
        limit: usize,
    ) -> Result<Vec<(u64, Attempt)>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        self.catch_up()?;
        // The newest `limit` as (at, id, n), smallest first. A record's key names its newest
        // attempt and records come newest key first, so once `limit` are newer than the next
        // record's key, neither it nor any after it holds a newer one.
        // Each with where it is: in the record (its key, value and place) or, from an older
        // build, under its own key.
        let mut newest = BTreeMap::new();
        for item in self.queue.scan_prefix(key(BY_SUB, &[sub])).rev() {
            let (k, record) = item?;
            let named = attempts::named(&k);
            if newest.len() >= limit
                && newest
                    .first_key_value()
                    .is_some_and(|(first, _)| *first > named)
            {
                break;
            }
            for entry in attempts::entries(&k, &record) {
                let place = entry.bytes.map(|bytes| (k.clone(), record.clone(), bytes));
                newest.insert((entry.at, entry.id, entry.n), place);
                if newest.len() > limit {
                    newest.pop_first();
                }
            }
        }
        let mut out = Vec::with_capacity(newest.len());
        for ((at, id, n), place) in newest.into_iter().rev() {
            if let Some((k, record, bytes)) = place {
                out.push((id, codec::decode(&k, &record[bytes])?));
            } else {
                let ak = key(ATTEMPT, &[id, at, n]);
                if let Some(v) = self.queue.get(&ak)? {
                    out.push((id, codec::decode(&ak, &v)?));
                }
            }
        }
        Ok(out)
    }

    /// Dead letters of one subscription or all, dead-lettered within `[from_ms, to_ms)`.
    pub fn dead_letters(
        &self,
        sub: Option<u64>,
        from_ms: u64,
        to_ms: u64,
    ) -> Result<Vec<Delivery>, StoreError> {
        self.catch_up()?;
        self.scan_dead(sub, from_ms, to_ms)
    }

    /// The dead letters on disk that `dead_letters` means. Replay and purge call it under the
    /// book lock, so two of them at once never act on the same dead letter twice.
    fn scan_dead(
        &self,
        sub: Option<u64>,
        from_ms: u64,
        to_ms: u64,
    ) -> Result<Vec<Delivery>, StoreError> {
        let prefix = match sub {
            Some(s) => key(DEAD, &[s]),
            None => vec![DEAD],
        };
        let mut out = Vec::new();
        for item in self.queue.scan_prefix(prefix) {
            let (k, v) = item?;
            let Some(d) = self.record(&k, &v)? else {
                continue;
            };
            if matches!(d.state, DeliveryState::Dead { at } if at >= from_ms && at < to_ms) {
                out.push(d);
            }
        }
        Ok(out)
    }

    /// Puts dead letters (of one subscription or all, dead-lettered within `[from_ms, to_ms)`)
    /// back in the queue, due at `now_ms`, with their attempt count reset (their attempt
    /// history is kept); returns how many.
    pub fn replay_dead(
        &self,
        sub: Option<u64>,
        from_ms: u64,
        to_ms: u64,
        now_ms: u64,
    ) -> Result<usize, StoreError> {
        let mut book = self.book()?;
        self.apply_behind(&mut book)?;
        let dead = self.scan_dead(sub, from_ms, to_ms)?;
        let mut batch = Ops::default();
        let mut moved = Vec::new();
        for mut d in dead {
            let state = d.state;
            batch.remove(key(DEAD, &[d.subscription_id, d.id]));
            d.attempts = 0;
            let target = self.requeue(&mut batch, &mut d, &mut book, now_ms);
            moved.push((d.subscription_id, state, target));
        }
        self.apply(batch)?;
        for (sub, from, to) in &moved {
            book.leave(*sub, *from);
            book.enter(*sub, *to);
        }
        drop(book);
        self.flush()?;
        Ok(moved.len())
    }

    /// Deletes dead letters (of one subscription or all, dead-lettered within `[from_ms,
    /// to_ms)`); their attempts go with the retention; returns how many.
    pub fn purge_dead(
        &self,
        sub: Option<u64>,
        from_ms: u64,
        to_ms: u64,
    ) -> Result<usize, StoreError> {
        let mut book = self.book()?;
        self.apply_behind(&mut book)?;
        let dead = self.scan_dead(sub, from_ms, to_ms)?;
        if dead.is_empty() {
            // Nothing to write: no flush (the engine asks periodically).
            return Ok(0);
        }
        let mut batch = Ops::default();
        for d in &dead {
            batch.remove(key(DEAD, &[d.subscription_id, d.id]));
        }
        self.apply(batch)?;
        for d in &dead {
            book.leave(d.subscription_id, d.state);
        }
        drop(book);
        self.flush()?;
        Ok(dead.len())
    }

    /// Drops what is past retention: attempts made before `now_ms` minus the attempt retention
    /// (of any delivery, finished or not), and remembered event ids older than the dedup
    /// retention. Bounded to `max` records (and about `2 * max` index steps) per call so it
    /// never stalls writers; a call goes on where the last one stopped. Returns how many were
    /// removed; call it periodically (the engine does, once a minute).
    pub fn prune(&self, now_ms: u64, max: usize) -> Result<usize, StoreError> {
        let mut book = self.book()?;
        self.apply_behind(&mut book)?;
        let mut batch = Ops::default();
        let mut removed = 0;
        let attempts_before =
            now_ms.saturating_sub(self.config.attempt_retention.as_millis() as u64);
        // Walk the per-subscription attempt index, oldest first within each subscription,
        // seeking to the next subscription at the first record whose newest attempt is still
        // within retention (its older ones stay with it, a settle batch apart): the cost is the
        // attempts removed plus one seek per subscription, and needs no index of its own (which
        // would cost every settle a write). A call stops after a bounded number of steps (a
        // record goes whole, so it may remove up to one record more than `max`); the next one
        // goes on from there, and starts over after the last subscription.
        let mut cursor = std::mem::take(&mut book.prune_cursor);
        if cursor.is_empty() {
            cursor = key(BY_SUB, &[0]);
        }
        let mut steps = 0;
        while removed < max && steps < max.saturating_mul(2).max(64) {
            steps += 1;
            let Some(item) = self.queue.range(cursor.clone()..).next() else {
                cursor.clear();
                break;
            };
            let (bk, record) = item?;
            if bk.first() != Some(&BY_SUB) || bk.len() != 33 {
                cursor.clear();
                break;
            }
            let sub = part(&bk, 1);
            if attempts::named(&bk).0 < attempts_before {
                let entries = attempts::entries(&bk, &record);
                for pointer in attempts::pointers(&bk, &entries) {
                    batch.remove(pointer);
                }
                for entry in entries {
                    if entry.bytes.is_none() {
                        batch.remove(key(ATTEMPT, &[entry.id, entry.at, entry.n]));
                    }
                    removed += 1;
                }
                cursor = bk.to_vec();
                cursor.push(0);
                batch.remove(bk);
            } else if let Some(next) = sub.checked_add(1) {
                cursor = key(BY_SUB, &[next]);
            } else {
                cursor.clear();
                break;
            }
        }
        book.prune_cursor = cursor;
        let seen_before = now_ms.saturating_sub(self.config.dedup_retention.as_millis() as u64);
        for item in self
            .queue
            .range(key(SEEN_AT, &[0])..key(SEEN_AT, &[seen_before]))
            .take(max)
        {
            let (tk, further) = item?;
            let first = tk.get(9..).unwrap_or_default();
            for id in std::iter::once(first).chain(expiry_ids(&further)) {
                let seen = [&[SEEN], id].concat();
                // An id seen again after its retention was remembered anew under a later
                // time: only this old expiry goes, not the fresh memory of it. One waiting
                // for its group commit is about to be (outside the book lock): removing its
                // memory now could come after that, and let the id through again.
                let renewed = self
                    .queue
                    .get(&seen)?
                    .is_some_and(|at| part(&at, 0) >= seen_before);
                let pending =
                    std::str::from_utf8(id).is_ok_and(|id| book.pending_seen.contains(id));
                if !renewed && !pending {
                    batch.remove(seen);
                }
                removed += 1;
            }
            batch.remove(tk);
        }
        self.apply(batch)?;
        Ok(removed)
    }

    // ---- counts ----

    /// Deliveries by state over all subscriptions, from counters (no scan).
    pub fn counts(&self) -> Result<Counts, StoreError> {
        let book = self.book()?;
        Ok(book
            .counts
            .values()
            .fold(Counts::default(), |mut total, c| {
                total.due += c.due;
                total.retrying += c.retrying;
                total.in_flight += c.in_flight;
                total.held += c.held;
                total.delivered += c.delivered;
                total.dead += c.dead;
                total
            }))
    }

    /// Deliveries by state of one subscription, from counters (no scan).
    pub fn subscription_counts(&self, sub: u64) -> Result<Counts, StoreError> {
        Ok(self.book()?.counts.get(&sub).copied().unwrap_or_default())
    }

    /// The size of the store's files on disk, in bytes.
    pub fn size_on_disk(&self) -> Result<u64, StoreError> {
        self.catch_up()?;
        Ok(self.db.size_on_disk()?)
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        let _ = self.catch_up();
        // Give back the rest of the reserved id block, so a clean reopen counts on where this
        // left off (only a crash skips ids).
        if let Ok(book) = self.book() {
            let _ = self
                .queue
                .insert(NEXT_DELIVERY, &book.next_delivery.to_be_bytes()[..]);
        }
        let _ = self.db.flush();
        if let Ok(canonical) = self.path.canonicalize() {
            if let Ok(mut closed) = CLOSED.lock() {
                if !closed.contains(&canonical) {
                    closed.push(canonical.clone());
                }
            }
            if let Ok(mut open) = OPEN.lock() {
                open.retain(|p| *p != canonical);
            }
        }
    }
}

/// A due delivery's value: its subscription and whether it is ordered, then the record, so
/// that leasing can pass over deliveries it will not take without decoding them.
fn due_value(delivery: &Delivery) -> Vec<u8> {
    let mut value = Vec::with_capacity(9 + 64 + delivery.body.len());
    value.extend_from_slice(&delivery.subscription_id.to_be_bytes());
    value.push(u8::from(delivery.ordered));
    codec::encode_into(delivery, &mut value);
    value
}

/// A due delivery as the due index files it.
fn entry_of(delivery: &Delivery) -> Entry {
    Entry {
        due_at: delivery.due_at,
        id: delivery.id,
        ordered: delivery.ordered,
    }
}

/// The record in a due value (see [`due_value`]).
fn decode_due(key: &[u8], value: &[u8]) -> Result<Delivery, StoreError> {
    codec::decode(key, value.get(9..).unwrap_or_default())
}

/// The expiry record of remembered event ids `(id, remembered at)`: keyed by the latest time
/// among them (so none is forgotten early) and the first id, with the others in the value,
/// each as a big-endian u32 length and its bytes.
fn expiry_record(ids: &[(String, u64)]) -> Option<(Vec<u8>, Vec<u8>)> {
    let ((first, _), rest) = ids.split_first()?;
    let at = ids.iter().map(|(_, at)| *at).max().unwrap_or_default();
    let mut k = key(SEEN_AT, &[at]);
    k.extend_from_slice(first.as_bytes());
    let mut v = Vec::new();
    for (id, _) in rest {
        v.extend_from_slice(&(id.len() as u32).to_be_bytes());
        v.extend_from_slice(id.as_bytes());
    }
    Some((k, v))
}

/// The further event ids in an expiry record's value (see [`expiry_record`]); a value cut
/// short yields what it holds whole.
fn expiry_ids(mut value: &[u8]) -> impl Iterator<Item = &[u8]> {
    std::iter::from_fn(move || {
        let len = part_u32(take(&mut value, 4)?);
        take(&mut value, len)
    })
}

/// The first `len` bytes of `rest`, which moves past them.
fn take<'a>(rest: &mut &'a [u8], len: usize) -> Option<&'a [u8]> {
    let (head, tail) = rest.split_at_checked(len)?;
    *rest = tail;
    Some(head)
}

fn part_u32(bytes: &[u8]) -> usize {
    bytes
        .try_into()
        .map_or(0, |b: [u8; 4]| u32::from_be_bytes(b) as usize)
}

fn key_str(tag: u8, text: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + text.len());
    out.push(tag);
    out.extend_from_slice(text.as_bytes());
    out
}

fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            sync_dir(&path)?;
        } else {
            std::fs::File::open(&path)?.sync_all()?;
        }
    }
    std::fs::File::open(dir)?.sync_all()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_can_be_shared_between_threads() {
        fn shared<T: Send + Sync>() {}
        shared::<Store>();
    }

    #[test]
    fn later_write_to_a_key_wins_within_one_batch() {
        // `settle` removes a due entry and `requeue` may insert the very same key again.
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path()).unwrap();
        let mut ops = Ops::default();
        ops.insert(b"k".as_slice(), b"old");
        ops.remove(b"k".as_slice());
        ops.insert(b"k".as_slice(), b"new");
        ops.insert(b"gone".as_slice(), b"x");
        ops.remove(b"gone".as_slice());
        let mut batch = Batch::default();
        ops.into_batch(&mut batch);
        db.apply_batch(batch).unwrap();
        assert_eq!(db.get("k").unwrap().as_deref(), Some(&b"new"[..]));
        assert_eq!(db.get("gone").unwrap(), None);
    }

    #[test]
    fn due_value_names_subscription_and_order_then_the_record() {
        let delivery = sample(7, 300, true);
        let value = due_value(&delivery);
        assert_eq!((part(&value, 0), value[8]), (300, 1));
        assert_eq!(decode_due(b"q", &value).unwrap(), delivery);
        assert!(
            decode_due(b"q", &value[..9]).is_err(),
            "a header alone is corrupt"
        );
    }

    #[test]
    fn a_lease_hands_out_a_kept_record_exactly_as_it_is_on_disk() {
        let dir = tempfile::tempdir().unwrap();
        let new = |n: u64| NewDelivery {
            subscription_id: n % 3 + 1,
            event_ids: vec![format!("e{n}")],
            event_type: "contact.updated".into(),
            body: format!(r#"{{"n":{n}}}"#).into_bytes(),
            due_at: 0,
            ordered: false,
        };
        // Room for three of the six records (all of one size).
        let one = Fresh::size(&Delivery {
            id: 0,
            subscription_id: 1,
            event_ids: vec!["e0".into()],
            event_type: "contact.updated".into(),
            body: br#"{"n":0}"#.to_vec(),
            attempts: 0,
            due_at: 0,
            created_at: 0,
            ordered: false,
            state: DeliveryState::Due,
        });
        let config = StoreConfig {
            fresh_capacity: 3 * one,
            ..StoreConfig::default()
        };
        let store = Store::open(dir.path(), config).unwrap();
        let kept = |store: &Store| store.book.lock().unwrap().fresh.records.len();
        let ids = store
            .enqueue(&[], (0..6).map(new).collect(), 1)
            .unwrap()
            .delivery_ids;
        assert_eq!(kept(&store), 3, "kept up to the capacity");

        // A hold takes its subscription's records out (they move to another key on disk);
        // the resumed ones are read from disk again.
        store.hold_subscription(1).unwrap();
        let after_hold = kept(&store);
        assert!(after_hold < 3, "subscription 1 had a kept record");
        store.resume_subscription(1, 5).unwrap();
        // A delivery passed over by `wanted` keeps its kept record.
        let mut leased = store.lease_where(10, 10, |sub| sub == 1).unwrap();
        assert!(leased.iter().all(|d| d.subscription_id == 1));
        assert_eq!(kept(&store), after_hold);

        leased.extend(store.lease(10, 10).unwrap());
        assert_eq!(kept(&store), 0, "a lease takes what it hands out");
        assert_eq!(store.book.lock().unwrap().fresh.bytes, 0);
        let mut leased_ids: Vec<u64> = leased.iter().map(|d| d.id).collect();
        leased_ids.sort();
        assert_eq!(leased_ids, ids);
        for delivery in leased {
            assert_eq!(
                Some(&delivery),
                store.delivery(delivery.id).unwrap().as_ref()
            );
        }
    }

    #[test]
    fn a_settle_batch_indexes_each_subscriptions_attempts_in_one_record() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), StoreConfig::default()).unwrap();
        let new = |n: u64| NewDelivery {
            subscription_id: if n < 6 { 1 } else { 2 },
            event_ids: vec![format!("e{n}")],
            event_type: "contact.updated".into(),
            body: b"{}".to_vec(),
            due_at: 0,
            ordered: false,
        };
        let ids = store
            .enqueue(&[], (0..8).map(new).collect(), 1)
            .unwrap()
            .delivery_ids;
        assert_eq!(store.lease(1, 10).unwrap().len(), 8);
        let attempt = |at: u64| Attempt {
            number: 1,
            at,
            duration_ms: 1,
            status: Some(200),
            outcome: "delivered".into(),
            excerpt: String::new(),
        };
        // Subscription 1: attempts at 10 and 50 in one batch, at 20, 30, 40 and 45 in the
        // next, so the older record holds the newest attempt and one older than all of the
        // newer record's. Subscription 2: two attempts in the first batch.
        for (id, at) in [(ids[0], 10), (ids[1], 50), (ids[6], 12), (ids[7], 13)] {
            store.complete(id, attempt(at)).unwrap();
        }
        store.flush().unwrap();
        for (id, at) in [(ids[2], 20), (ids[3], 30), (ids[4], 40), (ids[5], 45)] {
            store.complete(id, attempt(at)).unwrap();
        }
        store.flush().unwrap();
        let records: Vec<u64> = store
            .queue
            .scan_prefix([BY_SUB])
            .map(|item| part(&item.unwrap().0, 1))
            .collect();
        assert_eq!(records, [1, 1, 2], "one record per subscription and batch");
        assert_eq!(
            store.queue.scan_prefix(key(ATTEMPT, &[])).count(),
            0,
            "no record per attempt"
        );
        for (id, at) in [(ids[0], 10), (ids[5], 45), (ids[7], 13)] {
            assert_eq!(store.attempts_for_delivery(id).unwrap(), [attempt(at)]);
        }

        // A record of one attempt with an empty value, as older builds wrote them.
        store
            .queue
            .insert(key(BY_SUB, &[1, 42, 99, 1]), b"")
            .unwrap();
        store
            .queue
            .insert(key(ATTEMPT, &[99, 42, 1]), codec::encode(&attempt(42)))
            .unwrap();
        assert_eq!(store.attempts_for_delivery(99).unwrap(), [attempt(42)]);

        let newest = |limit: usize| -> Vec<u64> {
            let listed = store.attempts_for_subscription(1, limit).unwrap();
            listed.iter().map(|(_, a)| a.at).collect()
        };
        assert_eq!(newest(10), [50, 45, 42, 40, 30, 20, 10]);
        assert_eq!(newest(3), [50, 45, 42]);
        assert_eq!(newest(1), [50]);
        assert!(newest(0).is_empty());
        let listed = store.attempts_for_subscription(2, 10).unwrap();
        assert_eq!(listed, [(ids[7], attempt(13)), (ids[6], attempt(12))]);

        // A record goes once its newest attempt is past retention, the older ones with it.
        let day = 24 * 3600 * 1000;
        let retention = |at: u64| at + 30 * day + 1;
        assert_eq!(
            store.prune(retention(42), 100).unwrap(),
            3,
            "42, and 12 and 13"
        );
        assert_eq!(newest(10), [50, 45, 40, 30, 20, 10]);
        assert!(store.attempts_for_subscription(2, 10).unwrap().is_empty());
        assert_eq!(store.prune(retention(45), 100).unwrap(), 4, "20 to 45");
        assert_eq!(newest(10), [50, 10]);
        assert_eq!(store.prune(retention(50), 100).unwrap(), 2);
        assert!(newest(10).is_empty());
        assert!(store.attempts_for_delivery(ids[0]).unwrap().is_empty());
        assert!(store.queue.scan_prefix([BY_SUB]).next().is_none());
        assert!(
            store.queue.scan_prefix([b'b']).next().is_none(),
            "pruned records leave no pointers behind"
        );
    }

    #[test]
    fn a_layout_2_store_opens_as_it_is_and_its_attempt_records_read() {
        let dir = tempfile::tempdir().unwrap();
        let attempt = Attempt {
            number: 1,
            at: 100,
            duration_ms: 1,
            status: Some(200),
            outcome: "delivered".into(),
            excerpt: String::new(),
        };
        {
            // What a layout-2 build left: an attempt under `a id at n`, named by an index
            // record of one.
            let db = sled::open(dir.path()).unwrap();
            let meta = db.open_tree("meta").unwrap();
            meta.insert(FORMAT_KEY, &[2u8]).unwrap();
            let queue = db.open_tree("queue").unwrap();
            queue
                .insert(key(ATTEMPT, &[7, 100, 1]), codec::encode(&attempt))
                .unwrap();
            queue.insert(key(BY_SUB, &[1, 100, 7, 1]), &[][..]).unwrap();
            db.flush().unwrap();
        }
        let store = open_after_raw_sled(dir.path());
        assert_eq!(
            store.attempts_for_delivery(7).unwrap(),
            std::slice::from_ref(&attempt)
        );
        assert_eq!(
            store.attempts_for_subscription(1, 10).unwrap(),
            [(7, attempt)]
        );
        let layout = store.db.open_tree("meta").unwrap().get(FORMAT_KEY).unwrap();
        assert_eq!(layout.as_deref(), Some(&[LAYOUT][..]));
        let day = 24 * 3600 * 1000;
        assert_eq!(store.prune(100 + 31 * day, 10).unwrap(), 1);
        assert_eq!(store.queue.scan_prefix(key(ATTEMPT, &[])).count(), 0);
    }

    #[test]
    fn a_pointer_left_by_a_record_cut_short_goes_when_a_read_meets_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), StoreConfig::default()).unwrap();
        let filed = |id: u64| Filed {
            sub: 1,
            at: id,
            id,
            n: 1,
            bytes: codec::encode(&Attempt {
                number: 1,
                at: id,
                duration_ms: 1,
                status: Some(500),
                outcome: "http 500".into(),
                excerpt: String::new(),
            }),
        };
        // Ids 1 and 100 are in buckets 0 and 1; the record loses id 100's attempt to a cut.
        for (k, mut v) in attempts::records(vec![filed(1), filed(100)]) {
            if k[0] == BY_SUB {
                v.pop();
            }
            store.queue.insert(k, v).unwrap();
        }
        assert_eq!(store.attempts_for_delivery(1).unwrap().len(), 1);
        assert!(store.attempts_for_delivery(100).unwrap().is_empty());
        let day = 24 * 3600 * 1000;
        assert_eq!(store.prune(100 + 31 * day, 10).unwrap(), 1);
        let pointers = || store.queue.scan_prefix([b'b']).count();
        assert_eq!(pointers(), 1, "id 100's bucket was not named");
        assert!(store.attempts_for_delivery(100).unwrap().is_empty());
        assert_eq!(pointers(), 0);
    }

    /// Opens the store where a test wrote with sled directly: sled lets go of its file lock
    /// only once its background threads have dropped the database, a moment after the test's
    /// handle is gone, so a lock error is retried for a bounded time.
    fn open_after_raw_sled(path: &Path) -> Store {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            match Store::open(path, StoreConfig::default()) {
                Err(StoreError::Locked { .. }) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(10));
                }
                opened => return opened.expect("store opens"),
            }
        }
    }

    fn sample(id: u64, sub: u64, ordered: bool) -> Delivery {
        Delivery {
            id,
            subscription_id: sub,
            event_ids: vec![format!("e{id}")],
            event_type: "a.b".into(),
            body: b"{}".to_vec(),
            attempts: 0,
            due_at: 5,
            created_at: 5,
            ordered,
            state: DeliveryState::Due,
        }
    }

    #[test]
    fn a_layout_1_store_is_moved_into_this_layout_on_open() {
        let dir = tempfile::tempdir().unwrap();
        {
            // What a layout-1 build left: records under `d id`, index entries without values,
            // a lease on disk.
            let db = sled::open(dir.path()).unwrap();
            db.open_tree("meta")
                .unwrap()
                .insert(FORMAT_KEY, &[1u8])
                .unwrap();
            let queue = db.open_tree("queue").unwrap();
            let due = sample(1, 10, false);
            let mut in_flight = sample(2, 10, false);
            in_flight.state = DeliveryState::InFlight { until: 99 };
            let mut held = sample(3, 11, false);
            held.state = DeliveryState::Held;
            let mut dead = sample(4, 10, false);
            dead.state = DeliveryState::Dead { at: 7 };
            for d in [&due, &in_flight, &held, &dead] {
                queue
                    .insert(key(LEGACY_DELIVERY, &[d.id]), codec::encode(d))
                    .unwrap();
            }
            queue.insert(key(DUE, &[5, 1]), &[0u8; 9][..]).unwrap();
            queue.insert(key(LEGACY_LEASED, &[99, 2]), &[][..]).unwrap();
            queue.insert(key(HELD, &[11, 3]), &[][..]).unwrap();
            queue.insert(key(HELD_SUB, &[11]), &[][..]).unwrap();
            queue.insert(key(DEAD, &[10, 4]), &[][..]).unwrap();
            queue
                .insert(NEXT_DELIVERY, &5u64.to_be_bytes()[..])
                .unwrap();
            db.flush().unwrap();
        }
        let store = open_after_raw_sled(dir.path());
        let counts = store.counts().unwrap();
        assert_eq!((counts.due, counts.held, counts.dead), (2, 1, 1));
        let leased = store.lease(10, 10).unwrap();
        assert_eq!(leased.iter().map(|d| d.id).collect::<Vec<_>>(), [1, 2]);
        assert_eq!(store.dead_letters(Some(10), 0, u64::MAX).unwrap()[0].id, 4);
        assert_eq!(store.resume_subscription(11, 10).unwrap(), 1);
        assert!(store.corrupt_keys().unwrap().is_empty());
        assert!(store.queue.scan_prefix([LEGACY_DELIVERY]).next().is_none());
        let layout = store.db.open_tree("meta").unwrap().get(FORMAT_KEY).unwrap();
        assert_eq!(layout.as_deref(), Some(&[LAYOUT][..]));
    }

    #[test]
    fn journal_records_round_trip_and_a_cut_one_is_corrupt() {
        let mut ops = Ops::default();
        ops.insert(b"k1".as_slice(), b"v1");
        ops.remove(b"gone".as_slice());
        ops.insert(b"k2".as_slice(), b"");
        let bytes = ops.encode();
        let back = Ops::decode(b"j", &bytes).unwrap();
        assert_eq!(back.writes, ops.writes);
        for cut in 0..bytes.len() {
            assert!(Ops::decode(b"j", &bytes[..cut]).is_err(), "cut at {cut}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(Ops::decode(b"j", &longer).is_err());
        let mut newer = bytes;
        newer[0] = codec::FORMAT + 1;
        assert!(Ops::decode(b"j", &newer).is_err());
        let unknown_write = [codec::FORMAT, 0, 0, 0, 1, 0, 0, 0, 1, b'k', 7];
        assert!(Ops::decode(b"j", &unknown_write).is_err());
    }

    #[test]
    fn a_journal_left_by_a_crash_is_written_out_on_open_and_a_corrupt_one_moved_aside() {
        let dir = tempfile::tempdir().unwrap();
        {
            // What a crash between a group commit's flush and its write-out leaves: the
            // journal on disk, one of its writes done, an id block further on than its own.
            let db = sled::open(dir.path()).unwrap();
            let queue = db.open_tree("queue").unwrap();
            let mut ops = Ops::default();
            let first = sample(1, 10, false);
            let second = sample(2, 10, false);
            ops.insert(key(SEEN, &[]), 5u64.to_be_bytes());
            ops.insert(key(DUE, &[5, 1]), due_value(&first));
            ops.insert(key(DUE, &[5, 2]), due_value(&second));
            ops.insert(NEXT_DELIVERY, 1024u64.to_be_bytes());
            queue.insert(key(DUE, &[5, 1]), due_value(&first)).unwrap();
            queue
                .insert(NEXT_DELIVERY, &2048u64.to_be_bytes()[..])
                .unwrap();
            queue.insert(key(JOURNAL, &[7]), ops.encode()).unwrap();
            queue.insert(key(JOURNAL, &[8]), &b"\x01\0\0"[..]).unwrap();
            db.flush().unwrap();
        }
        let store = open_after_raw_sled(dir.path());
        assert_eq!(store.counts().unwrap().due, 2);
        let leased = store.lease(10, 10).unwrap();
        assert_eq!(leased.iter().map(|d| d.id).collect::<Vec<_>>(), [1, 2]);
        assert!(store.queue.scan_prefix([JOURNAL]).next().is_none());
        assert_eq!(
            store.corrupt_keys().unwrap(),
            [codec::hex(&key(JOURNAL, &[8]))]
        );
        let n = store.queue.get(NEXT_DELIVERY).unwrap().unwrap();
        assert_eq!(part(&n, 0), 2048, "an id block never goes back");
    }
}
