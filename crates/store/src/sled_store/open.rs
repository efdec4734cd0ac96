//! Opening a sled store: the one handle per directory in this process, the layout check,
//! moving an older layout's records into this one (once, reading every record), and recovery:
//! journals a crash left written out, the counts read from their records and each
//! subscription's first due deliveries from disk, leases of a dead process voided. Recovery
//! reads no more than that, so opening takes about as long with a million deliveries queued as
//! with none; a corrupt record is moved aside when a lease, a read or a hold meets it.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use crate::error::StoreError;
use crate::model::DeliveryState;

use super::book::{Book, Fresh};
use super::codec;
use super::generation;
use super::group_commit::Flusher;
use super::keys::part;
use super::keys::{
    due_key_of, due_value, key, BY_SUB, COUNTS, DEAD, DELIVERED, DUE, ENQUEUED, FORGOTTEN,
    FORMAT_KEY, HELD, HELD_SUB, JOURNAL, LAYOUT, LAYOUT_BY_SUBSCRIPTION, LEGACY_DELIVERY,
    LEGACY_LEASED, LEGACY_PENDING, NEXT_DELIVERY, ORDERED, REMEMBERED,
};
use super::ops::Ops;
use super::power_loss::PowerLossSync;
use super::{Durability, Files, OrStoreError, SledStore, StoreConfig};

/// Paths open in this process: sled's file lock stops a second process, this stops a second
/// handle in the same one.
static OPEN: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

/// Paths this process has closed. sled lets go of its file lock only once its background
/// threads have dropped the database, a moment after the last handle: reopening one of these
/// waits for that instead of failing with `Locked`.
static CLOSED: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

/// How long a reopen of a path this process closed waits for sled's lock.
const REOPEN_WAIT: Duration = Duration::from_secs(2);

/// Notes that the store at `path` was closed by this process (see [`CLOSED`]).
pub(super) fn closed(path: &Path) {
    if let Ok(canonical) = path.canonicalize() {
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

/// sled's refusal to open a store as [`StoreError::Damaged`] when it is one: callout never
/// changes what sled's `conf` file holds (segment size, compression, sled's version), so sled
/// finding it unreadable or different means damage, not an old store to upgrade, whatever
/// sled's message says ("created using pagecache version 2.34" for one flipped byte).
pub(super) fn damaged(path: &Path, error: sled::Error) -> StoreError {
    let detail = match &error {
        sled::Error::Corruption { .. } | sled::Error::Unsupported(_) => {
            if conf_checks_out(path) == Some(false) {
                "sled's `conf` file fails its checksum".to_string()
            } else {
                format!("sled: {error}")
            }
        }
        _ => return super::sled_error(error),
    };
    StoreError::Damaged {
        path: path.to_path_buf(),
        detail,
    }
}

/// Whether sled's `conf` file matches the CRC-32 sled appends to it (sled itself only warns
/// when it does not); `None` when it cannot be read.
pub(super) fn conf_checks_out(path: &Path) -> Option<bool> {
    let bytes = std::fs::read(path.join("conf")).ok()?;
    let (body, crc) = bytes.split_at_checked(bytes.len().checked_sub(4)?)?;
    Some(crc32(body).to_le_bytes() == crc)
}

/// CRC-32 (IEEE), as sled's `crc32fast` computes it; a conf file is a few dozen bytes.
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &byte in bytes {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = (crc >> 1) ^ (0xEDB8_8320 & (crc & 1).wrapping_neg());
        }
    }
    !crc
}

/// Opens sled in `dir` as every callout store is opened.
pub(super) fn open_sled(dir: &Path, config: &StoreConfig) -> Result<sled::Db, StoreError> {
    sled::Config::new()
        .path(dir)
        .cache_capacity(config.cache_capacity)
        .flush_every_ms(Some(500))
        .open()
        .map_err(|e| match e {
            sled::Error::Io(io) if io.to_string().contains("could not acquire lock") => {
                StoreError::Locked {
                    path: dir.to_path_buf(),
                }
            }
            other => damaged(dir, other),
        })
}

impl Files {
    /// Opens generation `n` of the store at `root`.
    pub(super) fn open(root: &Path, n: u64, config: &StoreConfig) -> Result<Files, StoreError> {
        let dir = generation::dir(root, n);
        Files::of(n, open_sled(&dir, config)?, &dir, config, 0)
    }

    /// The trees of a generation's open database; `syncs` carries the count of power-loss
    /// syncs over from the generation it replaces.
    pub(super) fn of(
        generation: u64,
        db: sled::Db,
        dir: &Path,
        config: &StoreConfig,
        syncs: u64,
    ) -> Result<Files, StoreError> {
        Ok(Files {
            generation,
            subs: db.open_tree("subs").db()?,
            queue: db.open_tree("queue").db()?,
            corrupt: db.open_tree("corrupt").db()?,
            power_loss: match config.durability {
                Durability::Sync => Some(PowerLossSync::open(dir, syncs)?),
                _ => None,
            },
            db,
        })
    }
}

/// Whether this process has the store at `path` open.
pub(super) fn is_open(path: &Path) -> bool {
    path.canonicalize()
        .is_ok_and(|canonical| OPEN.lock().is_ok_and(|open| open.contains(&canonical)))
}

impl SledStore {
    /// Opens the store at `path`, creating it if absent. Deliveries a dead process had in
    /// flight return to the due queue (at-least-once).
    pub fn open(path: impl AsRef<Path>, config: StoreConfig) -> Result<SledStore, StoreError> {
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
        let mut opened = SledStore::open_unregistered(&path, &canonical, config.clone());
        let closed_here = CLOSED.lock().is_ok_and(|c| c.contains(&canonical));
        let deadline = std::time::Instant::now() + REOPEN_WAIT;
        while closed_here
            && matches!(opened, Err(StoreError::Locked { .. }))
            && std::time::Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(5));
            opened = SledStore::open_unregistered(&path, &canonical, config.clone());
        }
        if opened.is_err() {
            if let Ok(mut open) = OPEN.lock() {
                open.retain(|p| *p != canonical);
            }
        }
        opened
    }

    /// Opens the store at `path`, whose canonical form is `root`: the generations are found
    /// from `root`, so that a host changing its working directory cannot send a compaction
    /// elsewhere.
    fn open_unregistered(
        path: &Path,
        root: &Path,
        config: StoreConfig,
    ) -> Result<SledStore, StoreError> {
        let lock = generation::lock(root)?;
        let current = generation::current(root)?;
        generation::sweep(root, current)?;
        let files = Files::open(root, current, &config)?;
        let meta = files.db.open_tree("meta").db()?;
        let layout = match meta.get(FORMAT_KEY).db()?.as_deref() {
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
        let store = SledStore {
            path: path.to_path_buf(),
            root: root.to_path_buf(),
            _lock: lock,
            files: RwLock::new(Arc::new(files)),
            gate: Default::default(),
            compacted_size: Default::default(),
            root_unsynced: Default::default(),
            next_compaction_look: Mutex::new(std::time::Instant::now()),
            queued_at_last_look: Default::default(),
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
            tallies: Default::default(),
        };
        store.recover_on_open(layout, &meta)?;
        Ok(store)
    }

    fn recover_on_open(&self, layout: u8, meta: &sled::Tree) -> Result<(), StoreError> {
        let _pass = self.pass()?;
        if layout < 2 {
            self.migrate_layout_1()?;
        }
        if layout < 4 {
            self.forget_old_chunk_default()?;
        }
        self.write_out_journals()?;
        if layout < LAYOUT_BY_SUBSCRIPTION {
            self.migrate_due_keys()?;
            self.recount()?;
        }
        // Only once the records are in this layout: a crash before it migrates again.
        meta.insert(FORMAT_KEY, &[LAYOUT]).db()?;
        self.recover()?;
        self.load_streaks()
    }

    /// Moves a layout-1 store's deliveries (`d id` records with value-less index entries) into
    /// this layout, in one batch: each record goes under the key of its state, replacing its
    /// index entry; a lease of layout 1 returns the delivery to due.
    fn migrate_layout_1(&self) -> Result<(), StoreError> {
        let mut batch = Ops::default();
        for item in self.queue().scan_prefix([LEGACY_LEASED]) {
            batch.remove(item.db()?.0);
        }
        // Index entries in layout 1: the records they index are filed anew below.
        for item in self.queue().scan_prefix([DUE]) {
            batch.remove(item.db()?.0);
        }
        for item in self.queue().scan_prefix([LEGACY_DELIVERY]) {
            let (k, v) = item.db()?;
            let Some(mut delivery) = self.record(&k, &v)? else {
                continue;
            };
            batch.remove(k);
            let (sub, id) = (delivery.subscription_id, delivery.id);
            match delivery.state {
                DeliveryState::Held => {
                    batch.insert(key(HELD, &[sub, id]), codec::encode_delivery(&delivery))
                }
                DeliveryState::Dead { .. } => {
                    batch.insert(key(DEAD, &[sub, id]), codec::encode_delivery(&delivery))
                }
                DeliveryState::Due | DeliveryState::InFlight { .. } => {
                    delivery.state = DeliveryState::Due;
                    batch.insert(due_key_of(&delivery), due_value(&delivery));
                }
            }
        }
        self.apply(batch)?;
        self.queue().flush().db()?;
        Ok(())
    }

    /// Writes out the journals of group commits a crash left (see `group_commit.rs`); one that
    /// does not decode is moved aside.
    fn write_out_journals(&self) -> Result<(), StoreError> {
        for item in self.queue().scan_prefix([JOURNAL]) {
            let (k, v) = item.db()?;
            match Ops::decode(&k, &v) {
                Ok(ops) => self.write_out(&k, ops)?,
                Err(error) => self.move_aside(&k, &v, &error)?,
            }
        }
        Ok(())
    }

    /// Moves due records of layouts up to 4 (`q due_at id`, one due order over all
    /// subscriptions) under this layout's keys in one pass, a batch at a time: a crash in
    /// between leaves the rest for the next open, which goes on (the layout is written only
    /// after). The new keys are longer, so the pass knows them when it meets them.
    fn migrate_due_keys(&self) -> Result<(), StoreError> {
        const BATCH: usize = 10_000;
        let mut batch = Ops::default();
        for item in self.queue().scan_prefix([DUE]) {
            let (k, v) = item.db()?;
            if k.len() != 17 {
                continue;
            }
            if let Some(delivery) = self.record(&k, &v)? {
                batch.remove(k);
                batch.insert(due_key_of(&delivery), due_value(&delivery));
            }
            if batch.writes.len() >= 2 * BATCH {
                self.apply(std::mem::take(&mut batch))?;
                // A flush lets sled free what the batches replaced: migrating 1M deliveries
                // peaked at 400 MB resident without, 275 MB with (docs/BENCHMARKS.md).
                self.queue().flush().db()?;
            }
        }
        self.apply(batch)
    }

    /// Counts every delivery record anew and writes the counts (`ENQUEUED`, `COUNTS`): once,
    /// for a store of a layout that kept none, and for a repaired one. Reads every record;
    /// a corrupt one is moved aside.
    pub(super) fn recount(&self) -> Result<(), StoreError> {
        let mut book = self.book()?;
        self.apply_behind(&mut book)?;
        let mut batch = Ops::default();
        for tag in [ENQUEUED, COUNTS] {
            for k in self.queue().scan_prefix([tag]).keys() {
                batch.remove(k.db()?);
            }
        }
        book.counts.clear();
        book.disk.clear();
        let mut highest = 0;
        for tag in [DUE, ORDERED, HELD, DEAD] {
            for item in self.queue().scan_prefix([tag]) {
                let (k, v) = item.db()?;
                let Some(delivery) = self.record(&k, &v)? else {
                    continue;
                };
                highest = highest.max(delivery.id);
                let sub = delivery.subscription_id;
                let state = match tag {
                    DUE | ORDERED => DeliveryState::Due,
                    _ => delivery.state,
                };
                book.enter(sub, state);
                if state == DeliveryState::Due {
                    book.retrying(sub, delivery.attempts, true);
                }
            }
        }
        for item in self.queue().scan_prefix([DELIVERED]) {
            let (k, v) = item.db()?;
            book.counts(part(&k, 1)).delivered = part(&v, 0);
        }
        for item in self.queue().scan_prefix([BY_SUB]) {
            let (k, v) = item.db()?;
            let held = super::attempts::entries(&k, &v).len() as u64;
            book.disk.entry(part(&k, 1)).or_default().attempts += held;
            book.dirty.insert(part(&k, 1));
        }
        // Ids only grow, whatever a store of an older layout kept of its counter.
        let reserved = self
            .queue()
            .get(NEXT_DELIVERY)
            .db()?
            .map_or(1, |v| part(&v, 0));
        if highest >= reserved {
            batch.insert(NEXT_DELIVERY, (highest + 1).to_be_bytes());
        }
        let subs: Vec<(u64, u64)> = book.counts.iter().map(|(&s, c)| (s, c.due)).collect();
        for (sub, due) in subs {
            // Counted as enqueued: the rest of the count starts at zero.
            let (k, v) = book.enqueued(sub, due);
            batch.insert(k, v);
            book.dirty.insert(sub);
        }
        self.write_now(&mut book, batch)?;
        book.counts.clear();
        book.disk.clear();
        drop(book);
        self.queue().flush().db()?;
        Ok(())
    }

    /// Rebuilds the book: the next id, the held subscriptions, the counts from their records,
    /// and each subscription's first due deliveries. Due records of held subscriptions (a
    /// delivery a dead process had in flight stays under its due key) are filed as held, as
    /// `reschedule` would have put them.
    fn recover(&self) -> Result<(), StoreError> {
        let mut book = self.book()?;
        let counter = |k: &[u8]| -> Result<u64, StoreError> {
            Ok(self.queue().get(k).db()?.map_or(0, |v| part(&v, 0)))
        };
        book.next_delivery = counter(NEXT_DELIVERY)?.max(1);
        self.flusher
            .remembered
            .store(counter(REMEMBERED)?, std::sync::atomic::Ordering::SeqCst);
        book.forgotten = counter(FORGOTTEN)?;
        // Everything on disk is filed: no group commit is under way.
        book.filed_below = u64::MAX;
        for item in self.queue().scan_prefix([HELD_SUB]) {
            let (k, _) = item.db()?;
            book.held.insert(part(&k, 1));
        }
        let mut enqueued = std::collections::BTreeMap::new();
        for item in self.queue().scan_prefix([ENQUEUED]) {
            let (k, v) = item.db()?;
            enqueued.insert(part(&k, 1), (Some(v), None));
        }
        for item in self.queue().scan_prefix([COUNTS]) {
            let (k, v) = item.db()?;
            enqueued.entry(part(&k, 1)).or_insert((None, None)).1 = Some(v);
        }
        for (sub, (e, c)) in &enqueued {
            book.load_counts(*sub, e.as_deref(), c.as_deref());
        }
        for item in self.queue().scan_prefix([DELIVERED]) {
            let (k, v) = item.db()?;
            book.counts(part(&k, 1)).delivered = part(&v, 0);
        }
        let mut batch = Ops::default();
        for item in self.queue().scan_prefix([LEGACY_PENDING]) {
            batch.remove(item.db()?.0);
        }
        let due: Vec<u64> = book
            .counts
            .iter()
            .filter(|(_, c)| c.due > 0)
            .map(|(&sub, _)| sub)
            .collect();
        for sub in due {
            if book.held.contains(&sub) {
                self.hold_due(&mut batch, &mut book, sub)?;
            } else {
                book.due.unread(sub);
                self.top_up(&mut book, sub)?;
            }
        }
        book.filed_below = book.next_delivery;
        book.reserved_until = book.next_delivery;
        self.write_now(&mut book, batch)?;
        drop(book);
        self.queue().flush().db()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sled_store::test_support::*;

    #[test]
    fn conf_checksums_are_sleds_crc32() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926, "the CRC-32 check value");
        let dir = tempfile::tempdir().unwrap();
        drop(SledStore::open(dir.path(), StoreConfig::default()).unwrap());
        assert_eq!(conf_checks_out(dir.path()), Some(true));
        let mut conf = std::fs::read(dir.path().join("conf")).unwrap();
        conf[0] ^= 1;
        std::fs::write(dir.path().join("conf"), conf).unwrap();
        assert_eq!(conf_checks_out(dir.path()), Some(false));
        assert_eq!(conf_checks_out(&dir.path().join("absent")), None);
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
        assert_eq!(stored_layout(&store), Some(LAYOUT));
        let day = 24 * 3600 * 1000;
        assert_eq!(store.prune(100 + 31 * day, 10).unwrap(), 1);
        assert_eq!(store.test_queue().scan_prefix(key(ATTEMPT, &[])).count(), 0);
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
        assert_eq!(
            leased.iter().map(|d| d.delivery.id).collect::<Vec<_>>(),
            [1, 2]
        );
        assert_eq!(
            store.dead_letters(&DeadFilter::subscription(10)).unwrap()[0].id,
            4
        );
        assert_eq!(store.resume_subscription(11, 10).unwrap(), 1);
        assert!(store.corrupt_keys().unwrap().is_empty());
        assert!(store
            .test_queue()
            .scan_prefix([LEGACY_DELIVERY])
            .next()
            .is_none());
        assert_eq!(stored_layout(&store), Some(LAYOUT));
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
            ops.insert(due_key_of(&first), due_value(&first));
            ops.insert(due_key_of(&second), due_value(&second));
            ops.insert(key(ENQUEUED, &[10]), 2u64.to_be_bytes());
            ops.insert(NEXT_DELIVERY, 1024u64.to_be_bytes());
            queue.insert(due_key_of(&first), due_value(&first)).unwrap();
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
        assert_eq!(
            leased.iter().map(|d| d.delivery.id).collect::<Vec<_>>(),
            [1, 2]
        );
        assert!(store.test_queue().scan_prefix([JOURNAL]).next().is_none());
        assert_eq!(
            store.corrupt_keys().unwrap(),
            [codec::hex(&key(JOURNAL, &[8]))]
        );
        let n = store.test_queue().get(NEXT_DELIVERY).unwrap().unwrap();
        assert_eq!(part(&n, 0), 2048, "an id block never goes back");
    }
}
