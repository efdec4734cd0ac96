//! The embedded backend: a sled database in a directory, behind the storage traits.
//!
//! sled keeps four trees. `meta` holds the on-disk layout version; `subs` holds subscriptions
//! (JSON, so their format can grow) and the subscription id counter (in the same tree, so an
//! id and its record commit in one batch); `queue` holds every delivery, attempts and counts
//! under one-byte key prefixes (`keys.rs`), so that each state change is one atomic write;
//! `corrupt` holds records that failed to decode, moved aside.
//!
//! A delivery is one record, filed under the key of its state: due, held or dead. sled's cost
//! is per operation, nearly whatever the size, so one record per delivery, not a record plus
//! index entries, is what makes an enqueue cost about one raw sled write, and a delivered
//! delivery two (in, out) and a share of the record that holds its settle batch's attempts
//! (`attempts.rs`). What lives in memory is in `book.rs`: counts (on disk too, so opening reads
//! them instead of every record), leases, and a window of each subscription's first due
//! deliveries (`due.rs`), read on from disk as leases take them.
//!
//! The database lives in a generation of the store's directory (`generation`): a compaction
//! (`compact`) copies what is live into the next one and continues there, since sled 0.34
//! hardly gives back the space of removed records. Every operation passes a gate (`gate`)
//! that a compaction closes, so none runs on the generation being replaced.
//!
//! Each job has its module: `config` (how a store is opened), `keys` (the key layout and record
//! shapes), `open` (opening, migration and recovery), `book` (the in-memory state),
//! `group_commit` (durable enqueues sharing flushes), `write_behind` (buffered settles),
//! `order` (per-record ordering), `registry`, `queue`, `history` (attempts and dead letters),
//! `tallies` (failure streaks, hourly counts, send slots), `prune` (retention), `compact`,
//! `generation`, `gate`, and `repair` (salvaging a damaged store into a new one).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use sled::{Batch, Db, Tree};

use crate::error::StoreError;
use crate::model::Delivery;

mod attempts;
mod book;
mod codec;
mod compact;
mod config;
mod due;
mod gate;
mod generation;
mod group_commit;
mod history;
mod ids;
mod keys;
mod open;
mod ops;
mod order;
mod power_loss;
mod prune;
mod queue;
mod registry;
mod repair;
mod scan;
mod tallies;
mod write_behind;

pub use self::compact::Compacted;
pub use self::config::{Durability, StoreConfig};
pub use self::repair::{RepairReport, Unreadable};

use self::book::Book;
use self::group_commit::Flusher;
use self::keys::{decode_due, DUE, NEXT_DELIVERY, ORDERED};
use self::ops::Ops;

/// The embedded store: subscriptions and the delivery queue in a sled directory. It implements
/// [`Registry`](crate::Registry), [`Queue`](crate::Queue) and [`History`](crate::History);
/// what only sled has (flush counts, size on disk, records moved aside) is here.
///
/// ```
/// use callout_store::{NewDelivery, Queue, SledStore, StoreConfig};
/// let dir = tempfile::tempdir()?;
/// let store = SledStore::open(dir.path(), StoreConfig::default())?;
/// let receipt = store.enqueue(&[], vec![NewDelivery {
///     subscription_id: 1, event_ids: vec!["e1".into()], event_type: "contact.created".into(),
///     body: b"{}".to_vec(), due_at: 1_000, ordered: false, message_id: "msg_1".into(), order_key: None,
/// }], 1_000)?;
/// let leased = store.lease(1_000, 10)?;
/// assert_eq!(leased[0].delivery.id, receipt.delivery_ids[0]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct SledStore {
    path: PathBuf,
    /// `path` made canonical when it was opened: where the generations are.
    root: PathBuf,
    /// The store's lock (`generation.rs`), held while it is open.
    _lock: std::fs::File,
    /// The sled database of the current generation; replaced only by a compaction, with the
    /// gate closed, so an operation sees one generation from start to end.
    files: RwLock<Arc<Files>>,
    /// Every operation passes it; a compaction closes it.
    gate: gate::Gate,
    /// The size on disk a compaction left, or 0 before the first of this process.
    compacted_size: std::sync::atomic::AtomicU64,
    /// Set when a compaction's switch to a new generation is not known to be on disk (its
    /// directory's sync failed): flushes sync the directory until it is.
    root_unsynced: std::sync::atomic::AtomicBool,
    /// When a lease or prune next looks whether a compaction is due.
    next_compaction_look: Mutex<std::time::Instant>,
    /// How many deliveries were queued at the last look (0 before the first).
    queued_at_last_look: std::sync::atomic::AtomicU64,
    config: StoreConfig,
    book: Mutex<Book>,
    /// Held while a handed-off write-behind buffer is applied, and taken by every other
    /// apply of it: taken under the book lock, it orders the applies and lets a reader wait
    /// for the settles it must see.
    behind_gate: Mutex<()>,
    flusher: Flusher,
    tallies: tallies::TallyBook,
}

/// One generation's open sled database and trees.
struct Files {
    generation: u64,
    db: Db,
    subs: Tree,
    queue: Tree,
    corrupt: Tree,
    /// What `Durability::Sync` syncs after each flush; `None` for the other durabilities.
    power_loss: Option<power_loss::PowerLossSync>,
}

impl std::fmt::Debug for SledStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SledStore")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

/// sled's errors as the store's own: I/O stays I/O, the rest is the backend's message.
pub(crate) fn sled_error(error: sled::Error) -> StoreError {
    match error {
        sled::Error::Io(io) => StoreError::Io(io),
        other => StoreError::Storage(other.to_string()),
    }
}

/// `?` for sled results: [`sled_error`] without a `From` impl, which would put sled's error
/// type in this crate's public API.
pub(crate) trait OrStoreError<T> {
    /// The result with sled's error turned into the store's.
    fn db(self) -> Result<T, StoreError>;
}

impl<T> OrStoreError<T> for Result<T, sled::Error> {
    fn db(self) -> Result<T, StoreError> {
        self.map_err(sled_error)
    }
}

impl SledStore {
    /// The current generation's files. Only an operation (inside the gate) may use them: a
    /// compaction replaces them with the gate closed, and a write made through a handle kept
    /// from before would be lost with the old generation.
    fn files(&self) -> Arc<Files> {
        debug_assert!(self.gate.is_inside(), "store files used outside the gate");
        match self.files.read() {
            Ok(files) => Arc::clone(&files),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }

    /// The delivery queue tree of the current generation (see [`SledStore::files`]).
    fn queue(&self) -> Tree {
        self.files().queue.clone()
    }

    /// The subscriptions tree of the current generation (see [`SledStore::files`]).
    fn subs(&self) -> Tree {
        self.files().subs.clone()
    }

    /// The queue tree for a unit test to look into, outside any operation.
    #[cfg(test)]
    fn test_queue(&self) -> Tree {
        self.files.read().expect("files").queue.clone()
    }

    /// The database for a unit test to look into, outside any operation.
    #[cfg(test)]
    fn test_db(&self) -> Db {
        self.files.read().expect("files").db.clone()
    }

    /// Enters the gate for one operation (`gate.rs`).
    fn pass(&self) -> Result<gate::Pass<'_>, StoreError> {
        self.gate.enter()
    }

    /// The directory the store lives in.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Records that failed to decode and were moved aside, by key (hex).
    pub fn corrupt_keys(&self) -> Result<Vec<String>, StoreError> {
        let _pass = self.pass()?;
        self.files()
            .corrupt
            .iter()
            .keys()
            .map(|k| Ok(codec::hex(&k.db()?)))
            .collect()
    }

    /// How many flushes the store has made for durable writes (group commit makes this smaller
    /// than the number of writes).
    pub fn flush_count(&self) -> u64 {
        self.flusher.flushes()
    }

    /// How many `fdatasync`/`fsync` calls the store has made for [`Durability::Sync`] since it
    /// was opened: one per group commit, and one more for each blob file sled created (and its
    /// directory). 0 for the other durabilities.
    pub fn sync_count(&self) -> u64 {
        let Ok(_pass) = self.pass() else { return 0 };
        self.files()
            .power_loss
            .as_ref()
            .map_or(0, |sync| sync.calls())
    }

    /// The size of the store's files on disk, in bytes.
    pub fn size_on_disk(&self) -> Result<u64, StoreError> {
        let _pass = self.pass()?;
        self.catch_up()?;
        self.files().db.size_on_disk().db()
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
        self.queue().apply_batch(batch).db()
    }

    /// The record under a due key, or `None` when it is gone; a record that does not decode
    /// is moved aside and reported as gone.
    fn stored_due(&self, due_key: &[u8]) -> Result<Option<Delivery>, StoreError> {
        match self.queue().get(due_key).db()? {
            Some(bytes) => self.record(due_key, &bytes),
            None => Ok(None),
        }
    }

    /// The delivery in a record of any state (due records carry a header first), or `None`
    /// when it does not decode: then it is moved aside and reported, never a panic or a stop.
    fn record(&self, k: &[u8], v: &[u8]) -> Result<Option<Delivery>, StoreError> {
        let decoded = match k.first() {
            Some(&DUE | &ORDERED) => decode_due(k, v),
            _ => codec::decode_delivery(k, v),
        };
        match decoded {
            Ok(delivery) => Ok(Some(delivery)),
            Err(error) => {
                self.move_aside(k, v, &error)?;
                Ok(None)
            }
        }
    }

    fn move_aside(&self, k: &[u8], v: &[u8], error: &StoreError) -> Result<(), StoreError> {
        tracing::error!(%error, "corrupt record moved aside");
        self.files().corrupt.insert(k, v).db()?;
        self.queue().remove(k).db()?;
        Ok(())
    }
}

impl Drop for SledStore {
    fn drop(&mut self) {
        if let Ok(_pass) = self.pass() {
            let _ = self.catch_up();
            // Give back the rest of the reserved id block, so a clean reopen counts on where
            // this left off (only a crash skips ids). Not for a store whose open failed
            // before it read the next id: 0 would hand out stored ids again.
            if let Ok(book) = self.book() {
                if book.next_delivery > 0 {
                    let _ = self
                        .queue()
                        .insert(NEXT_DELIVERY, &book.next_delivery.to_be_bytes()[..]);
                }
            }
            let _ = self.files().db.flush();
        }
        open::closed(&self.root);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_can_be_shared_between_threads() {
        fn shared<T: Send + Sync>() {}
        shared::<SledStore>();
    }
}

/// What the unit tests of several modules share.
#[cfg(test)]
pub(crate) mod test_support {
    pub(super) use std::path::Path;
    pub(super) use std::time::{Duration, Instant};

    pub(super) use crate::backend::{History, Queue};
    pub(super) use crate::error::StoreError;
    pub(super) use crate::model::*;

    pub(super) use super::attempts::Filed;
    pub(super) use super::book::Fresh;
    pub(super) use super::keys::*;
    pub(super) use super::{SledStore, StoreConfig};

    /// Opens the store where a test wrote with sled directly: sled lets go of its file lock
    /// only once its background threads have dropped the database, a moment after the test's
    /// handle is gone, so a lock error is retried for a bounded time.
    pub(super) fn open_after_raw_sled(path: &Path) -> SledStore {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            match SledStore::open(path, StoreConfig::default()) {
                Err(StoreError::Locked { .. }) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(10));
                }
                opened => return opened.expect("store opens"),
            }
        }
    }

    /// The layout version the store has written.
    pub(super) fn stored_layout(store: &SledStore) -> Option<u8> {
        let meta = store.test_db().open_tree("meta").expect("meta tree");
        let layout = meta.get(FORMAT_KEY).expect("meta read");
        layout.and_then(|v| v.first().copied())
    }

    pub(super) fn sample(id: u64, sub: u64, ordered: bool) -> Delivery {
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
            message_id: format!("msg_{id}"),
            order_key: None,
        }
    }
}
