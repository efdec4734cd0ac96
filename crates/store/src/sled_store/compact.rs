//! Compaction: the store's records copied into a fresh sled directory, the next generation
//! (`generation.rs`), which then replaces the old one.
//!
//! sled 0.34 gives back the space of removed records slowly, and hardly at all while a small
//! live set churns: its log, and the page table it keeps in memory, grow with every delivery
//! written (docs/BENCHMARKS.md, Backlog and soak). A copy holds only what is live. It runs with
//! the gate closed, so no operation runs during it: they wait, a pause as long as the copy.
//! The store starts one itself, from leases and prunes, once its files have grown
//! [`StoreConfig::compact_headroom`](super::StoreConfig::compact_headroom) past [`GROWTH`]
//! times what is live, while at most
//! [`StoreConfig::compact_max_queued`](super::StoreConfig::compact_max_queued) deliveries are
//! queued and the queue is not shrinking fast, so that the copy, and the pause, stay short.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sled::Batch;

use crate::backend::Queue;
use crate::error::StoreError;

use super::generation;
use super::open::open_sled;
use super::scan;
use super::{Files, OrStoreError, SledStore};

/// How many records a compaction copies per sled batch: bigger batches hold more of sled's
/// nodes in memory at once, for a copy only a little faster (docs/BENCHMARKS.md, Compaction).
const COPY_BATCH: usize = 100;

/// The page cache of the new generation while it is written (at most the store's own): the copy
/// writes each page once and never reads it back.
const COPY_CACHE: u64 = 1024 * 1024;

/// How many times what is live a store's files may grow to (plus the headroom) before a
/// compaction is due. sled reuses the space of removed records once its file is several times
/// what is live, so its files grow slowly there, and fast again in a fresh generation: a
/// smaller factor compacts often for little (docs/BENCHMARKS.md, Compaction).
const GROWTH: u64 = 4;

/// What a queued delivery and a kept attempt take on disk, about, for the estimate of what is
/// live before the first compaction (bodies of a few hundred bytes; larger ones are counted
/// right once a compaction has measured them).
const DELIVERY_BYTES: u64 = 512;
const ATTEMPT_BYTES: u64 = 128;

/// How long after a failed compaction (a full disk, say: the copy needs room for what is
/// live) the next look waits; each attempt makes operations wait for as long as it ran.
const AFTER_FAILURE: Duration = Duration::from_secs(300);

/// How often leases look whether a compaction is due: a look reads the size of sled's files,
/// and churn can grow them by several MB a second.
const LOOK_EVERY: Duration = Duration::from_secs(1);

/// What a compaction did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Compacted {
    /// The store's size on disk before, in bytes.
    pub size_before: u64,
    /// Its size on disk after, in bytes.
    pub size_after: u64,
    /// How many records were copied.
    pub records: u64,
    /// How long operations waited for it.
    pub took: Duration,
}

impl SledStore {
    /// Copies every record into a fresh sled directory and continues there, giving back the
    /// space (on disk and in memory) that sled holds for records long removed. Operations wait
    /// while it runs; a crash at any point leaves the store as it was before or as it is after.
    /// The store calls it itself when it is due (see
    /// [`StoreConfig::compact_headroom`](super::StoreConfig::compact_headroom)).
    ///
    /// ```
    /// use callout_store::{NewDelivery, Queue, SledStore, StoreConfig};
    /// let dir = tempfile::tempdir()?;
    /// let store = SledStore::open(dir.path(), StoreConfig::default())?;
    /// let receipt = store.enqueue(&[], vec![NewDelivery {
    ///     subscription_id: 1, event_ids: vec!["e1".into()], event_type: "contact.created".into(),
    ///     body: b"{}".to_vec(), due_at: 1_000, ordered: false, message_id: "msg_1".into(), order_key: None,
    /// }], 1_000)?;
    /// store.compact()?;
    /// assert_eq!(store.lease(1_000, 10)?[0].delivery.id, receipt.delivery_ids[0]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn compact(&self) -> Result<Compacted, StoreError> {
        let started = Instant::now();
        let Some(_closed) = self.gate.close()? else {
            return Err(StoreError::Storage(
                "a compaction cannot run inside a store operation".into(),
            ));
        };
        // Settles still buffered go to the old generation first, so the copy has them.
        self.catch_up()?;
        let old = self.files();
        old.db.flush().db()?;
        let size_before = old.db.size_on_disk().db()?;
        let next = old.generation + 1;
        let dir = generation::dir(&self.root, next);
        if dir.exists() {
            std::fs::remove_dir_all(&dir)?;
        }
        let syncs = old.power_loss.as_ref().map_or(0, |sync| sync.calls());
        let (files, records) = match self.copy_into(&old, next, syncs) {
            Ok(copied) => copied,
            Err(error) => {
                let _ = std::fs::remove_dir_all(&dir);
                return Err(error);
            }
        };
        let size_after = files.db.size_on_disk().db()?;
        let durable = generation::make_current(&self.root, next)?;
        let replaced = match self.files.write() {
            Ok(mut current) => std::mem::replace(&mut *current, Arc::new(files)),
            Err(poisoned) => std::mem::replace(&mut *poisoned.into_inner(), Arc::new(files)),
        };
        drop(old);
        // The last handles of the old generation: sled closes its files as they go.
        drop(replaced);
        // Kept when the switch may not survive a power loss (the next open removes it), and
        // flushes sync the directory until it does, so that a power loss cannot take back a
        // write they made durable.
        if !durable {
            self.root_unsynced.store(true, Ordering::SeqCst);
        } else if let Err(error) = generation::sweep(&self.root, next) {
            tracing::warn!(%error, "could not remove the store's previous generation");
        }
        self.compacted_size.store(size_after, Ordering::Relaxed);
        let compacted = Compacted {
            size_before,
            size_after,
            records,
            took: started.elapsed(),
        };
        tracing::info!(?compacted, generation = next, "store compacted");
        Ok(compacted)
    }

    /// Compacts when it is due, looking at most once per [`LOOK_EVERY`]; for leases and prunes
    /// to call outside any operation. A compaction that fails is tried again [`AFTER_FAILURE`]
    /// later.
    pub(super) fn compact_when_due(&self) {
        if self.config.compact_headroom == 0 || self.gate.is_inside() {
            return;
        }
        match self.next_compaction_look.try_lock() {
            Ok(mut next) if Instant::now() >= *next => *next = Instant::now() + LOOK_EVERY,
            _ => return,
        }
        if let Err(error) = self.compact_if_due() {
            tracing::warn!(%error, "could not compact the store; trying again in 5 minutes");
            if let Ok(mut next) = self.next_compaction_look.lock() {
                *next = Instant::now() + AFTER_FAILURE;
            }
        }
    }

    /// Compacts when it is due: the files are more than [`GROWTH`] times what is live plus
    /// `compact_headroom`, no more than `compact_max_queued` deliveries are queued, and the
    /// queue did not shrink by more than a tenth since the last look. What is live is what the
    /// last compaction left, or if more, an estimate from the counts.
    fn compact_if_due(&self) -> Result<Option<Compacted>, StoreError> {
        let (size, queued, estimate) = {
            let _pass = self.pass()?;
            let counts = self.counts()?;
            let queued = counts.due + counts.in_flight + counts.held + counts.dead;
            let attempts: u64 = self.book()?.disk.values().map(|d| d.attempts).sum();
            let estimate = queued * DELIVERY_BYTES + attempts * ATTEMPT_BYTES;
            (self.files().db.size_on_disk().db()?, queued, estimate)
        };
        let live = estimate.max(self.compacted_size.load(Ordering::Relaxed));
        let due = live
            .saturating_mul(GROWTH)
            .saturating_add(self.config.compact_headroom);
        let before = self.queued_at_last_look.swap(queued, Ordering::Relaxed);
        if size < due || queued > self.config.compact_max_queued || shrinking(before, queued) {
            return Ok(None);
        }
        self.compact().map(Some)
    }

    /// Writes generation `n` beside the current one: every tree's records, flushed and synced.
    fn copy_into(&self, old: &Files, n: u64, syncs: u64) -> Result<(Files, u64), StoreError> {
        let dir = generation::dir(&self.root, n);
        let copying = super::StoreConfig {
            cache_capacity: self.config.cache_capacity.min(COPY_CACHE),
            ..self.config.clone()
        };
        let db = open_sled(&dir, &copying)?;
        let mut records = 0;
        for name in old.db.tree_names() {
            let (from, to) = (old.db.open_tree(&name).db()?, db.open_tree(&name).db()?);
            let mut batch = Batch::default();
            let mut in_batch = 0;
            for item in scan::whole(&from) {
                let (k, v) = item?;
                batch.insert(k, v);
                in_batch += 1;
                if in_batch == COPY_BATCH {
                    to.apply_batch(std::mem::take(&mut batch)).db()?;
                    records += in_batch as u64;
                    in_batch = 0;
                }
            }
            to.apply_batch(batch).db()?;
            records += in_batch as u64;
        }
        db.flush().db()?;
        drop(db);
        generation::mark_complete(&dir)?;
        generation::sync_all(&dir)?;
        // Opened again with the store's own cache, and without what the copy left in memory.
        let db = reopen(&dir, &self.config)?;
        let files = Files::of(n, db, &dir, &self.config, syncs)?;
        Ok((files, records))
    }
}

/// Whether the queue shrank by more than a tenth between two looks: then a compaction waits,
/// since what it would copy, and how long operations would wait for it, is shrinking too.
fn shrinking(before: u64, now: u64) -> bool {
    now < before - before / 10
}

/// Opens the sled database just dropped in `dir`, waiting for sled's background threads to let
/// go of its lock.
fn reopen(dir: &std::path::Path, config: &super::StoreConfig) -> Result<sled::Db, StoreError> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match open_sled(dir, config) {
            Err(StoreError::Locked { .. }) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(2));
            }
            opened => return opened,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sled_store::test_support::*;
    use crate::Registry;

    fn new(id: u64, sub: u64) -> NewDelivery {
        NewDelivery {
            subscription_id: sub,
            event_ids: vec![format!("e{id}")],
            event_type: "a.b".into(),
            body: vec![b'x'; 300],
            due_at: 5,
            ordered: false,
            message_id: format!("msg_{id}"),
            order_key: None,
        }
    }

    fn delivered(number: u32) -> Attempt {
        Attempt {
            number,
            at: 10,
            duration_ms: 1,
            status: Some(200),
            outcome: "delivered".into(),
            excerpt: String::new(),
        }
    }

    #[test]
    fn a_compacted_store_holds_what_it_held_and_gives_back_the_space() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path(), StoreConfig::default()).unwrap();
        let sub = store
            .create_subscription(
                callout_core::Subscription::new("https://receiver.example/hooks").events(["*"]),
                1,
            )
            .unwrap()
            .id;
        // Churn: 20,000 deliveries in and out, 50 left due, one dead.
        for round in 0..200u64 {
            let batch = (0..100).map(|n| new(round * 100 + n, sub)).collect();
            let ids = store.enqueue(&[], batch, 5).unwrap().delivery_ids;
            let keep = if round == 199 { 50 } else { 0 };
            for leased in store.lease(5, 100).unwrap().into_iter().skip(keep) {
                if leased.delivery.id == ids[99] && round == 0 {
                    store.dead_letter(leased.token, delivered(1)).unwrap();
                } else {
                    store.complete(leased.token, delivered(1)).unwrap();
                }
            }
        }
        store.flush().unwrap();
        let counts_before = store.counts().unwrap();
        let attempts_before = store.attempts_for_subscription(sub, 100_000).unwrap().len();
        let db = store.test_db();
        let live: usize = db
            .tree_names()
            .iter()
            .map(|n| db.open_tree(n).unwrap().len())
            .sum();
        drop(db);
        let compacted = store.compact().unwrap();
        assert_eq!(compacted.records, live as u64);
        assert!(
            compacted.size_after < compacted.size_before,
            "{compacted:?}"
        );
        assert_eq!(store.size_on_disk().unwrap(), compacted.size_after);
        assert_eq!(store.counts().unwrap(), counts_before);
        assert_eq!(
            store.attempts_for_subscription(sub, 100_000).unwrap().len(),
            attempts_before
        );
        // The old generation is gone from the directory; the store goes on in the new one.
        assert!(!dir.path().join("db").exists());
        assert!(dir.path().join("gen-1").join("db").is_file());
        drop(store);
        // An older callout opens sled in the directory itself: sled refuses it there, rather
        // than start an empty store over this one.
        let older = sled::open(dir.path());
        assert!(
            older.is_err(),
            "sled opened the directory of a compacted store"
        );
        drop(older);
        let store = open_after_raw_sled(dir.path());
        let more = store.enqueue(&[], vec![new(1_000_000, sub)], 6).unwrap();
        assert!(
            more.delivery_ids[0] > 20_000,
            "ids go on from the old generation"
        );
        drop(store);
        let store = open_after_raw_sled(dir.path());
        // The 50 left in flight come back due, as after any reopen.
        let queued = counts_before.due + counts_before.in_flight + 1;
        assert_eq!(counts_before.in_flight, 50);
        assert_eq!(store.counts().unwrap().due, queued);
        assert_eq!(
            store
                .dead_letters(&DeadFilter::subscription(sub))
                .unwrap()
                .len(),
            1
        );
        assert!(store.get_subscription(sub).unwrap().is_some());
        // A second compaction moves on to the next generation and removes this one.
        store.compact().unwrap();
        assert!(!dir.path().join("gen-1").exists());
        assert!(dir.path().join("gen-2").join("db").is_file());
        assert_eq!(store.lease(5, 1_000).unwrap().len() as u64, queued);
    }

    #[test]
    fn operations_from_other_threads_during_a_compaction_wait_and_land_in_the_new_generation() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path(), StoreConfig::default()).unwrap();
        let enqueued = std::sync::Mutex::new(Vec::new());
        std::thread::scope(|scope| {
            for writer in 0..4u64 {
                let (store, enqueued) = (&store, &enqueued);
                scope.spawn(move || {
                    for n in 0..300u64 {
                        let id = writer * 1_000 + n;
                        let receipt = store.enqueue(&[], vec![new(id, 1)], 5).unwrap();
                        enqueued.lock().unwrap().extend(receipt.delivery_ids);
                    }
                });
            }
            for _ in 0..5 {
                store.compact().unwrap();
            }
        });
        let enqueued = enqueued.into_inner().unwrap();
        assert_eq!(enqueued.len(), 1_200);
        drop(store);
        let store = open_after_raw_sled(dir.path());
        let mut leased: Vec<u64> = store
            .lease(5, 10_000)
            .unwrap()
            .iter()
            .map(|l| l.delivery.id)
            .collect();
        leased.sort_unstable();
        let mut expected = enqueued;
        expected.sort_unstable();
        assert_eq!(leased, expected);
    }

    /// A store compacting past 1 MiB of headroom with at most 1,000 queued, and 6,000 queued.
    fn small_headroom_with_6000_queued() -> (tempfile::TempDir, SledStore) {
        let dir = tempfile::tempdir().unwrap();
        let config = StoreConfig {
            compact_headroom: 1024 * 1024,
            compact_max_queued: 1_000,
            ..StoreConfig::default()
        };
        let store = SledStore::open(dir.path(), config).unwrap();
        for round in 0..60u64 {
            let batch = (0..100).map(|n| new(round * 100 + n, 1)).collect();
            store.enqueue(&[], batch, 5).unwrap();
        }
        (dir, store)
    }

    #[test]
    fn a_due_compaction_waits_while_the_queue_shrinks_fast_and_runs_once_it_settles() {
        let (dir, store) = small_headroom_with_6000_queued();
        assert!(store.compact_if_due().unwrap().is_none(), "6,000 queued");
        let leased = store.lease(5, 10_000).unwrap();
        assert_eq!(leased.len(), 6_000);
        for leased in leased.into_iter().skip(100) {
            store.complete(leased.token, delivered(1)).unwrap();
        }
        store.flush().unwrap();
        // 100 in flight: few enough, and the files are past four times what is live plus the
        // headroom, but the queue fell from 6,000 since the last look.
        assert!(store.compact_if_due().unwrap().is_none());
        assert!(
            !dir.path().join("gen-1").exists(),
            "compacted while draining"
        );
        // 100 again: settled, so the copy runs, and copies those 100.
        let compacted = store
            .compact_if_due()
            .unwrap()
            .expect("compacted once settled");
        assert!(dir.path().join("gen-1").is_dir());
        assert!(compacted.size_after < compacted.size_before);
        assert_eq!(store.counts().unwrap().in_flight, 100);
    }

    #[test]
    fn a_failed_compaction_is_tried_again_only_after_a_while() {
        let (dir, store) = small_headroom_with_6000_queued();
        for leased in store.lease(5, 10_000).unwrap() {
            store.complete(leased.token, delivered(1)).unwrap();
        }
        store.flush().unwrap();
        // 6,000 attempts are estimated at 0.75 MiB: due past 4 MiB.
        assert!(store.size_on_disk().unwrap() > 4 * 1024 * 1024);
        // Due, but the next generation's place is taken by a file: the copy cannot start.
        std::fs::write(dir.path().join("gen-1"), b"in the way").unwrap();
        // The lease above looked (the queue was long then); the next look is a second on, and
        // sees the queue fallen from 6,000 to none, so it waits; the one after tries.
        for _ in 0..2 {
            std::thread::sleep(LOOK_EVERY + Duration::from_millis(100));
            store.prune(10, 100).unwrap();
        }
        assert!(dir.path().join("db").is_file(), "not compacted");
        assert_eq!(
            store.counts().unwrap().delivered,
            6_000,
            "the store goes on"
        );
        // With the way clear, looks every second would compact at once; after a failure the
        // next waits minutes. 2.5 s is two and a half looks' worth.
        std::fs::remove_file(dir.path().join("gen-1")).unwrap();
        let until = std::time::Instant::now() + Duration::from_millis(2_500);
        while std::time::Instant::now() < until {
            store.prune(10, 100).unwrap();
            store.lease(5, 10).unwrap();
            std::thread::sleep(Duration::from_millis(50));
        }
        assert!(!dir.path().join("gen-1").exists(), "tried again at once");
        store.compact().unwrap();
        assert!(dir.path().join("gen-1").is_dir());
    }

    #[test]
    fn prune_compacts_once_the_files_outgrow_the_headroom_with_a_short_queue() {
        // Past four times what is live plus the headroom (what is live is estimated at 512 B a
        // delivery, 128 B an attempt: 3 MiB, then 0.75 MiB), but with the queue longer than
        // allowed: no compaction.
        let (dir, store) = small_headroom_with_6000_queued();
        store.flush().unwrap();
        assert!(store.size_on_disk().unwrap() > 4 * 1024 * 1024);
        // The store's first look is now (enqueues do not look).
        store.prune(10, 100).unwrap();
        assert!(
            dir.path().join("db").is_file(),
            "compacted with 6,000 queued"
        );
        for leased in store.lease(5, 10_000).unwrap() {
            store.complete(leased.token, delivered(1)).unwrap();
        }
        // Drained: the next look, at most a second on, compacts.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !dir.path().join("gen-1").is_dir() {
            assert!(
                std::time::Instant::now() < deadline,
                "not compacted once drained"
            );
            std::thread::sleep(Duration::from_millis(50));
            store.prune(10, 100).unwrap();
        }
        assert!(!dir.path().join("db").exists());
        assert_eq!(store.counts().unwrap().due, 0);
    }
}
