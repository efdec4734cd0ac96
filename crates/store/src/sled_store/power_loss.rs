//! What [`Durability::Sync`](super::Durability::Sync) makes durable beyond sled's own flush,
//! so that a write survives a power loss, at the cost of one `fdatasync` per group commit.
//!
//! sled 0.34 writes its log into one file, `db`, with `pwrite` and `sync_file_range`, which
//! neither flushes the disk's cache nor makes the file's size and block map durable: a power
//! loss can undo it. `fdatasync` of `db` makes both durable, so it is the one call a group
//! commit needs. Two more things can carry data: values too large for a log segment go to
//! files of their own under `blobs/`, written without any sync; a new one is synced, and then
//! the `blobs` directory, so that its name survives too (a directory is synced only when a
//! file appeared in it). Whether one appeared is read from the directory's modification time,
//! on a handle held open, so a commit with no new blob opens no file. The store directory is
//! synced once, at open, for `db`, `conf` and `blobs` themselves. sled's snapshot files are not synced: they are rebuilt from the log.
//! docs/BENCHMARKS.md measures the cost.

use std::collections::HashSet;
use std::ffi::OsString;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

/// How long after a change of the blobs directory it is read again at every sync: a file
/// created within the same tick of the file system's clock as the last read leaves the
/// modification time as it was, so recent times are not trusted.
const SETTLED: Duration = Duration::from_millis(100);

/// The blob files synced, and the directory's modification time when they were listed.
#[derive(Debug, Default)]
struct Synced {
    names: HashSet<OsString>,
    listed_at: Option<SystemTime>,
}

/// The files a `Sync` store keeps open to sync, and the blobs it has synced.
#[derive(Debug)]
pub(super) struct PowerLossSync {
    log: File,
    blobs: PathBuf,
    /// The blobs directory, held open to read its modification time.
    blobs_dir: Option<File>,
    synced_blobs: Mutex<Synced>,
    /// `fdatasync`/`fsync` calls made, for tests and benches.
    calls: AtomicU64,
}

impl PowerLossSync {
    /// Opens sled's log for syncing and makes the store's files' names durable; `calls` counts
    /// on from the syncs made before (by the generation a compaction replaced).
    pub(super) fn open(path: &Path, calls: u64) -> io::Result<PowerLossSync> {
        let log = File::open(path.join("db"))?;
        log.sync_data()?;
        File::open(path)?.sync_all()?;
        let blobs = path.join("blobs");
        let sync = PowerLossSync {
            log,
            blobs_dir: File::open(&blobs).ok(),
            blobs,
            synced_blobs: Mutex::new(Synced::default()),
            calls: AtomicU64::new(calls),
        };
        // Blobs from before this open are synced once, as if new.
        sync.sync_new_blobs()?;
        Ok(sync)
    }

    /// Makes everything sled has flushed durable: one `fdatasync` of the log, and a sync of
    /// any blob file created since the last call and of its directory.
    pub(super) fn sync(&self) -> io::Result<()> {
        self.log.sync_data()?;
        self.calls.fetch_add(1, Ordering::Relaxed);
        self.sync_new_blobs()
    }

    fn sync_new_blobs(&self) -> io::Result<()> {
        let mut synced = self
            .synced_blobs
            .lock()
            .map_err(|_| io::Error::other("poisoned"))?;
        let changed_at = match &self.blobs_dir {
            Some(dir) => Some(dir.metadata()?.modified()?),
            None => None,
        };
        let settled = |at: SystemTime| {
            SystemTime::now()
                .duration_since(at)
                .is_ok_and(|age| age > SETTLED)
        };
        if let (Some(changed), Some(listed)) = (changed_at, synced.listed_at) {
            if changed == listed && settled(changed) {
                return Ok(());
            }
        }
        let mut present = HashSet::new();
        let mut appeared = false;
        match std::fs::read_dir(&self.blobs) {
            Ok(entries) => {
                for entry in entries {
                    let name = entry?.file_name();
                    if !synced.names.contains(&name) {
                        File::open(self.blobs.join(&name))?.sync_data()?;
                        self.calls.fetch_add(1, Ordering::Relaxed);
                        appeared = true;
                    }
                    present.insert(name);
                }
            }
            Err(error) if error.kind() == io::ErrorKind::NotFound => {}
            Err(error) => return Err(error),
        }
        if appeared {
            File::open(&self.blobs)?.sync_all()?;
            self.calls.fetch_add(1, Ordering::Relaxed);
        }
        // Blobs sled removed are forgotten, so the set stays as small as the directory.
        synced.names = present;
        synced.listed_at = changed_at;
        Ok(())
    }

    /// How many sync calls this store has made.
    pub(super) fn calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use crate::backend::Queue;
    use crate::model::NewDelivery;
    use crate::sled_store::{Durability, SledStore, StoreConfig};

    fn delivery(n: u64, body_len: usize) -> NewDelivery {
        NewDelivery {
            subscription_id: 1,
            event_ids: vec![format!("e{n}")],
            event_type: "a.b".into(),
            body: vec![b'x'; body_len],
            due_at: 0,
            ordered: false,
            message_id: format!("msg_{n}"),
            order_key: None,
        }
    }

    #[test]
    fn a_sync_store_syncs_once_per_group_commit_and_each_new_blob_once() {
        let dir = tempfile::tempdir().unwrap();
        let config = StoreConfig {
            durability: Durability::Sync,
            ..StoreConfig::default()
        };
        let store = SledStore::open(dir.path(), config).unwrap();
        let opened = store.sync_count();
        for n in 0..5 {
            store.enqueue(&[], vec![delivery(n, 300)], 0).unwrap();
        }
        assert_eq!(
            store.sync_count() - opened,
            5,
            "one fdatasync per publish alone"
        );

        // A value past sled's segment share (a quarter of 512 KiB) goes to a blob file: it is
        // synced, and its directory, once.
        let before_blob = store.sync_count();
        store
            .enqueue(&[], vec![delivery(9, 300 * 1024)], 0)
            .unwrap();
        let blobs = std::fs::read_dir(dir.path().join("blobs")).unwrap().count();
        assert!(blobs >= 1, "sled wrote a blob");
        assert!(
            store.sync_count() - before_blob >= 3,
            "the log, the new blob, and its directory"
        );

        // Blobs synced once are not synced again: once sled has written out what it holds (a
        // blob written after a flush is synced by the next), a commit costs the log alone. The
        // blob's leaf is rewritten as a new blob now and then while its neighbours change (each
        // commit writes a delivery and its subscription's enqueued total near it), so this may
        // take some dozens of commits; 20 were too few for layout 5.
        let mut alone = 0;
        for n in 10..100 {
            let before = store.sync_count();
            store.enqueue(&[], vec![delivery(n, 300)], 0).unwrap();
            alone = if store.sync_count() - before == 1 {
                alone + 1
            } else {
                0
            };
            if alone == 3 {
                break;
            }
        }
        assert_eq!(alone, 3, "three commits in a row cost one sync each");
    }

    #[test]
    fn other_durabilities_make_no_sync_call() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path(), StoreConfig::default()).unwrap();
        store.enqueue(&[], vec![delivery(1, 300)], 0).unwrap();
        assert_eq!(store.sync_count(), 0);
    }
}
