//! Where in a store's directory its sled database is: the directory itself (generation 0, every
//! store before its first compaction), or the subdirectory `gen-N` that the file `CURRENT` names.
//! A compaction writes generation N+1 beside N and makes it current by renaming a new `CURRENT`
//! over the old one, so a crash leaves exactly one of the two current; opening removes the
//! other. The file `lock`, held for as long as a store is open, keeps a second process out of
//! every generation (sled's own lock covers only the one it opened, and opening sweeps the rest).

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::StoreError;

const CURRENT: &str = "CURRENT";
const LOCK: &str = "lock";
const PREFIX: &str = "gen-";
/// Written into a generation once all of it is on disk, before it is made current: a repair of
/// a store whose `CURRENT` is damaged reads the newest generation that has it.
const COMPLETE: &str = "complete";

/// What sled 0.34 keeps in its directory (`snap.` names a prefix).
const SLED_FILES: [&str; 3] = ["conf", "db", "blobs"];
const SLED_SNAPSHOT: &str = "snap.";

/// Takes the store's lock for as long as the file returned is open.
pub(super) fn lock(root: &Path) -> Result<File, StoreError> {
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(root.join(LOCK))?;
    held(root, file.try_lock())?;
    Ok(file)
}

/// The store's lock, if a store of this version has ever been opened at `root` (a store that
/// has never had one has no generations for another process to replace): for a repair,
/// which must not create files in the store it reads.
pub(super) fn lock_existing(root: &Path) -> Result<Option<File>, StoreError> {
    let file = match File::open(root.join(LOCK)) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    held(root, file.try_lock_shared())?;
    Ok(Some(file))
}

/// A try at the lock of the store at `root` as the store's error: `Locked` when another
/// holds it.
fn held(root: &Path, tried: Result<(), std::fs::TryLockError>) -> Result<(), StoreError> {
    match tried {
        Ok(()) => Ok(()),
        Err(std::fs::TryLockError::WouldBlock) => Err(StoreError::Locked {
            path: root.to_path_buf(),
        }),
        Err(std::fs::TryLockError::Error(error)) => Err(error.into()),
    }
}

/// Whether `name`, in a generation's directory, is one of sled's files.
pub(super) fn is_sleds(name: &str) -> bool {
    SLED_FILES.contains(&name) || name.starts_with(SLED_SNAPSHOT)
}

/// Marks generation `dir` as whole; [`sync_all`] after makes the mark durable with the rest.
pub(super) fn mark_complete(dir: &Path) -> Result<(), StoreError> {
    File::create(dir.join(COMPLETE))?;
    Ok(())
}

/// The directory of generation `n`.
pub(super) fn dir(root: &Path, n: u64) -> PathBuf {
    if n == 0 {
        root.to_path_buf()
    } else {
        root.join(format!("{PREFIX}{n}"))
    }
}

/// The current generation: the one `CURRENT` names, or 0 without it.
pub(super) fn current(root: &Path) -> Result<u64, StoreError> {
    let named = match std::fs::read_to_string(root.join(CURRENT)) {
        Ok(named) => named,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e.into()),
    };
    let damaged = |detail: String| StoreError::Damaged {
        path: root.to_path_buf(),
        detail,
    };
    let n = named
        .trim_end()
        .strip_prefix(PREFIX)
        .and_then(|n| n.parse::<u64>().ok())
        .filter(|&n| n > 0)
        .ok_or_else(|| damaged(format!("`{CURRENT}` names no generation: {named:?}")))?;
    if !dir(root, n).join("db").is_file() {
        return Err(damaged(format!(
            "`{CURRENT}` names {PREFIX}{n}, which has no `db` file"
        )));
    }
    Ok(n)
}

/// The directory a repair reads: the current generation's, or when `CURRENT` is damaged the
/// newest generation's that was written whole (a compaction a crash cut short leaves one
/// that was not), or the store's directory itself.
pub(super) fn salvageable(root: &Path) -> PathBuf {
    if let Ok(n) = current(root) {
        return dir(root, n);
    }
    let newest = std::fs::read_dir(root)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let name = entry.file_name();
            let n = name
                .to_string_lossy()
                .strip_prefix(PREFIX)?
                .parse::<u64>()
                .ok()?;
            dir(root, n).join(COMPLETE).is_file().then_some(n)
        });
    dir(root, newest.max().unwrap_or(0))
}

/// What the store's directory holds as sled's `conf` once its database is in a generation
/// of its own: an older callout, which opens sled in the directory itself, would otherwise
/// find no database there and start an empty one over the store; sled refuses this one, so
/// that callout reports the store damaged instead.
const GUARD: &[u8] = b"moved: this store's database is in the generation that CURRENT names; open it with a callout that knows store generations\n\0\0\0\0";

/// Removes every generation but `keep`: what a compaction a crash cut short left, or the one a
/// finished compaction replaced. With `keep` above 0, the directory's own sled files go and
/// [`GUARD`] takes the place of its `conf`.
pub(super) fn sweep(root: &Path, keep: u64) -> Result<(), StoreError> {
    for entry in std::fs::read_dir(root)? {
        let entry = entry?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let generation = name
            .strip_prefix(PREFIX)
            .and_then(|n| n.parse::<u64>().ok());
        // Generation 0 lives beside the others, in the store's directory itself.
        if generation.is_some_and(|n| n != keep) || (keep != 0 && is_sleds(&name)) {
            if entry.file_type()?.is_dir() {
                std::fs::remove_dir_all(entry.path())?;
            } else {
                std::fs::remove_file(entry.path())?;
            }
        }
    }
    if keep != 0 {
        std::fs::write(root.join("conf"), GUARD)?;
    }
    Ok(())
}

/// Makes generation `n` current: a new `CURRENT` is written and synced beside the old, renamed
/// over it, and the directory synced, so a crash leaves the old one or the new. An error means
/// the old one is still current; `Ok(false)` that the new one is, but the directory's sync
/// failed, so a power loss might bring the old one back, which must then be kept.
pub(super) fn make_current(root: &Path, n: u64) -> Result<bool, StoreError> {
    let next = root.join(format!("{CURRENT}.next"));
    let mut file = File::create(&next)?;
    writeln!(file, "{PREFIX}{n}")?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&next, root.join(CURRENT))?;
    match File::open(root).and_then(|dir| dir.sync_all()) {
        Ok(()) => Ok(true),
        Err(error) => {
            tracing::warn!(%error, "could not sync the store's directory after a compaction");
            Ok(false)
        }
    }
}

/// Syncs every file under `dir`, then the directories, so a generation a compaction wrote is on
/// disk before it is made current, whatever durability the store runs with: a power loss must
/// not take the whole store with it.
pub(super) fn sync_all(dir: &Path) -> Result<(), StoreError> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            sync_all(&entry.path())?;
        } else {
            File::open(entry.path())?.sync_all()?;
        }
    }
    File::open(dir)?.sync_all()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn current_is_read_from_its_file_and_a_bad_one_is_damage() {
        let root = tempfile::tempdir().unwrap();
        assert_eq!(current(root.path()).unwrap(), 0);
        std::fs::create_dir(dir(root.path(), 3)).unwrap();
        std::fs::write(dir(root.path(), 3).join("db"), b"").unwrap();
        make_current(root.path(), 3).unwrap();
        assert_eq!(current(root.path()).unwrap(), 3);
        for bad in ["gen-x\n", "gen-0\n", "", "gen-4\n"] {
            std::fs::write(root.path().join(CURRENT), bad).unwrap();
            assert!(
                matches!(current(root.path()), Err(StoreError::Damaged { .. })),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn a_sweep_keeps_the_current_generation_and_what_is_not_sleds() {
        let root = tempfile::tempdir().unwrap();
        let root = root.path();
        for file in [
            "conf",
            "db",
            "snap.00000001",
            "lock",
            "CURRENT",
            "notes.txt",
        ] {
            std::fs::write(root.join(file), b"x").unwrap();
        }
        std::fs::create_dir_all(root.join("blobs")).unwrap();
        for n in [1, 2] {
            std::fs::create_dir_all(dir(root, n).join("blobs")).unwrap();
        }
        sweep(root, 2).unwrap();
        let mut left: Vec<String> = std::fs::read_dir(root)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left, ["CURRENT", "conf", "gen-2", "lock", "notes.txt"]);
        assert_eq!(std::fs::read(root.join("conf")).unwrap(), GUARD);
        // Generation 0 current: its files stay, the others go.
        std::fs::write(root.join("db"), b"x").unwrap();
        sweep(root, 0).unwrap();
        assert!(root.join("db").is_file() && !dir(root, 2).exists());
    }

    #[test]
    fn with_current_damaged_a_repair_reads_the_newest_generation_written_whole() {
        let root = tempfile::tempdir().unwrap();
        let root = root.path();
        assert_eq!(
            salvageable(root),
            root,
            "no generations: the directory itself"
        );
        for n in [1, 2, 3] {
            std::fs::create_dir_all(dir(root, n)).unwrap();
            std::fs::write(dir(root, n).join("db"), b"x").unwrap();
        }
        mark_complete(&dir(root, 1)).unwrap();
        mark_complete(&dir(root, 2)).unwrap();
        // 3 is what a compaction cut short leaves: a log, no mark.
        make_current(root, 2).unwrap();
        assert_eq!(salvageable(root), dir(root, 2));
        std::fs::write(root.join(CURRENT), b"gen-?").unwrap();
        assert_eq!(salvageable(root), dir(root, 2));
        std::fs::remove_dir_all(dir(root, 2)).unwrap();
        assert_eq!(salvageable(root), dir(root, 1));
    }

    #[test]
    fn a_repair_waits_for_no_lock_of_a_store_never_opened_and_is_kept_out_of_an_open_one() {
        let root = tempfile::tempdir().unwrap();
        assert!(lock_existing(root.path()).unwrap().is_none());
        assert!(!root.path().join(LOCK).exists(), "a repair creates nothing");
        let held = lock(root.path()).unwrap();
        assert!(matches!(
            lock_existing(root.path()),
            Err(StoreError::Locked { .. })
        ));
        drop(held);
        assert!(lock_existing(root.path()).unwrap().is_some());
    }

    #[test]
    fn a_second_lock_on_a_store_is_refused_until_the_first_is_dropped() {
        let root = tempfile::tempdir().unwrap();
        let held = lock(root.path()).unwrap();
        assert!(matches!(lock(root.path()), Err(StoreError::Locked { .. })));
        drop(held);
        lock(root.path()).unwrap();
    }
}
